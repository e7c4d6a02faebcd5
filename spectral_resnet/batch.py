"""Batch inference: many pairs, one process (`python infer.py target=DIR sample=DIR`,
`target=DIR sample=FILE`: one sample for every frame, or `pairs=pairs.csv`).

Dataloader workers read and check each pair's images and compute their spectra into the
cache (`num_workers`), while the main process shades, renders and writes: one subfolder
per pair as soon as it is done, then `summary.json` and `grid.png` (every output, side by
side). A pair that fails (an unreadable file, a missing partner) is recorded with its
reason and skipped; the batch goes on. Start-up (Python, torch, Hydra: seconds) is paid
once, not once per pair.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from spectral_resnet.cli import run_directions, safe_name, write_json
from spectral_resnet.config import ShaderConfig
from spectral_resnet.io import (
    IMAGE_SUFFIXES,
    image_mask,
    load_image,
    remove_stale_temps,
    save_image,
)
from spectral_resnet.model import working_spectrum
from spectral_resnet.runs import encode_all, notice, shade

FAILURE_FIELDS = ("name", "target", "sample", "error")
RESERVED = ("summary.json", "grid.png")  # the batch's own files: no pair folder takes their name


class BatchError(ValueError):
    """The batch as a whole cannot run (no pairs, a bad pairs file)."""


class BatchStopped(Exception):
    """The batch stopped before its end (Ctrl-C, a full disk); the pairs it finished stay,
    and summary.json says which pair stopped it and which never ran."""

    def __init__(self, message: str, interrupted: bool):
        super().__init__(message)
        self.interrupted = interrupted


@dataclass
class Pair:
    """One pair of a batch: its folder name, its files (None: missing), and why it cannot
    run, if it cannot."""

    name: str
    target: Path | None
    sample: Path | None
    error: str | None = None


def unique_names(pairs: list[Pair]) -> list[Pair]:
    """Each pair's name made safe (`safe_name`) and unique: repeats numbered `_2`, `_3`,
    and never one of the batch's own files."""
    seen: set[str] = {n.lower() for n in RESERVED}
    for pair in pairs:
        base = name = safe_name(pair.name)
        count = 1
        while name.lower() in seen:  # case-folded: macOS and Windows folders are
            count += 1
            name = f"{base}_{count}"
        seen.add(name.lower())
        pair.name = name
    return pairs


def pairs_from_dirs(targets: Path, samples: Path) -> list[Pair]:
    """A pair for every file stem in either folder. A stem missing from one folder, or
    shared by two files of one folder (`a.png`, `a.jpg`), is a pair that fails with that
    reason: recorded, never dropped in silence."""

    def by_stem(folder: Path) -> dict[str, list[Path]]:
        files: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.setdefault(path.stem, []).append(path)
        return files

    t, s = by_stem(targets), by_stem(samples)
    pairs = []
    for stem in sorted(t.keys() | s.keys()):
        found = {"target": t.get(stem, []), "sample": s.get(stem, [])}
        error = None
        for (role, files), folder in zip(found.items(), (targets, samples)):
            if not files:
                error = f"no {role} file named {stem}.* in {folder}"
            elif len(files) > 1:
                names = ", ".join(f.name for f in files)
                error = f"{len(files)} files named {stem}.* in {folder} ({names}); rename one"
        first = {role: files[0] if files else None for role, files in found.items()}
        pairs.append(Pair(stem, first["target"], first["sample"], error))
    return unique_names(pairs)


def pairs_with_one_sample(targets: Path, sample: Path) -> list[Pair]:
    """Every image of a folder, each named by its file's stem, with the same sample."""
    files = [p for p in sorted(targets.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    stems = [p.stem for p in files]
    return unique_names(
        [
            Pair(p.stem if stems.count(p.stem) == 1 else p.name, p, sample)
            for p in files
            if p.resolve() != sample.resolve()
        ]
    )


def pairs_from_csv(path: Path) -> list[Pair]:
    """Rows `target,sample` (a header row of those names is allowed; a spreadsheet's UTF-8
    byte-order mark too); relative paths are relative to the CSV's folder. Names are
    `<target stem>_<sample stem>`, numbered if repeated."""
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as err:
        raise BatchError(f"pairs file {path} cannot be read: {err}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0]] == ["target", "sample"]:
        rows = rows[1:]
    pairs = []
    for line, row in enumerate(rows, 1):
        if len(row) != 2:
            raise BatchError(f"pairs file {path}, row {line}: expected target,sample, got {row}")
        t, s = (path.parent / c.strip() for c in row)
        pairs.append(Pair(f"{safe_name(t.stem)}_{safe_name(s.stem)}", t, s))
    return unique_names(pairs)


def one_sample(cfg: DictConfig) -> Path | None:
    """The sample every pair shares (`target=DIR sample=FILE`), or None: pairs from a CSV or
    from two folders each have their own."""
    if cfg.pairs or not cfg.sample or not Path(cfg.sample).is_file():
        return None
    return Path(cfg.sample)


def batch_pairs(cfg: DictConfig, out_dir: Path) -> list[Pair]:
    """The batch's pairs; refuses an output_dir inside an input folder (its pictures would
    be read as inputs by the next run)."""
    if cfg.pairs:
        pairs = pairs_from_csv(Path(cfg.pairs))
    else:
        target, sample = Path(cfg.target), Path(cfg.sample or "")
        if not sample.is_dir() and not sample.is_file():
            raise BatchError(
                f"target={target} is a folder, so sample= must be a folder (paired by name) "
                "or one image file (the sample of every target)"
            )
        for folder in (target, sample) if sample.is_dir() else (target,):
            if out_dir.resolve().is_relative_to(folder.resolve()):
                raise BatchError(
                    f"output_dir {out_dir} is inside the input folder {folder}, so its pictures "
                    "would be read as inputs; choose an output_dir outside it"
                )
        shared = one_sample(cfg)
        pairs = (
            pairs_from_dirs(target, sample)
            if shared is None
            else pairs_with_one_sample(target, shared)
        )
    if not pairs:
        raise BatchError("no image pairs found; see `python infer.py --help`")
    return pairs


class PairFiles(Dataset):
    """Each pair's images and masks, read, checked and with their spectra in the cache: the
    work the dataloader workers do while the main process shades the previous pair. A sample
    shared by every pair (`target=DIR sample=FILE`) is read by the main process, once."""

    def __init__(self, pairs, config: ShaderConfig, cfg: DictConfig, shared: Path | None = None):
        self.pairs, self.config, self.max_pixels = pairs, config, cfg.max_pixels
        self.masks = {"target": cfg.target_mask, "sample": cfg.sample_mask}
        self.shared = shared

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        item = {"name": pair.name, "target": pair.target, "sample": pair.sample}
        try:
            if pair.error:
                raise ValueError(pair.error)
            for role in ("target", "sample") if self.shared is None else ("target",):
                item[f"{role}_image"], item[f"{role}_mask"] = self.load(role, item[role])
        except (ValueError, OSError) as err:  # ImageError is a ValueError
            item["error"] = str(err)
        return item

    def load(self, role: str, path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One image, its spectrum warmed in the cache, and its mask (None: none)."""
        image = load_image(path, max_pixels=self.max_pixels)
        working_spectrum(self.config, image)  # cached for the model
        return image, image_mask(self.masks[role], path, image.shape[-2:], f"{role}_mask")


def quiet_worker(_: int) -> None:
    """One torch thread per worker: the workers, not their threads, share the cores."""
    torch.set_num_threads(1)


def thumbnail(image: torch.Tensor, size: int = 160) -> torch.Tensor:
    """(3, H, W) area-resampled to fit a size x size tile: what the grid keeps of each output,
    so a batch of phone photos holds a few kB a run, not a full-size copy each."""
    s = size / max(image.shape[-2:])
    h, w = max(1, round(image.shape[-2] * s)), max(1, round(image.shape[-1] * s))
    return F.interpolate(image[None].float(), size=(h, w), mode="area")[0]


def grid(thumbs: list[torch.Tensor], size: int = 160, columns: int = 8) -> torch.Tensor:
    """Outputs (3, H, W) fitted into size x size tiles on white, `columns` a row."""
    rows = math.ceil(len(thumbs) / columns)
    sheet = torch.ones(3, rows * (size + 4), min(len(thumbs), columns) * (size + 4))
    for i, img in enumerate(thumbs):
        tile = thumbnail(img, size)  # the same size again if it is a thumbnail already
        h, w = tile.shape[-2:]
        y, x = (i // columns) * (size + 4), (i % columns) * (size + 4)
        sheet[:, y : y + h, x : x + w] = tile
    return sheet


def publish(staging: Path, folder: Path) -> None:
    """Move a finished pair's folder into place, replacing an earlier run's: a pair folder is
    only ever complete."""
    if folder.exists():
        old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)


def run_batch(cfg: DictConfig, shader, device, out_dir: Path) -> dict:
    """Shade every pair in the configured directions; write each pair's folder when it is
    complete and summary.json after every pair; return the summary. Ctrl-C or a full disk
    stop the batch with BatchStopped, after summary.json records where it stopped."""
    start = time.perf_counter()
    pairs = batch_pairs(cfg, out_dir)
    one = one_sample(cfg)
    data = PairFiles(pairs, shader.config, cfg, shared=one)
    shared = None if one is None else data.load("sample", one)  # read once, for every pair
    loader = DataLoader(
        data,
        batch_size=None,
        num_workers=cfg.num_workers,
        worker_init_fn=quiet_worker if cfg.num_workers else None,
    )
    runs = {"forward": 1, "reverse": 1, "both": 2}[cfg.direction]
    summary = {"pairs": len(pairs), "done": [], "failed": [], "stopped": None, "not_run": []}
    summary["unchanged"] = []  # runs that pasted nothing: their run.json says why
    thumbs: list[torch.Tensor] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir, ".*.partial")  # what a killed batch was writing

    def save_summary() -> None:
        seconds = time.perf_counter() - start
        summary["seconds"] = round(seconds, 3)
        summary["pairs_per_minute"] = round(60 * len(summary["done"]) / max(seconds, 1e-9), 2)
        write_json(summary, out_dir / "summary.json")

    def fail(item: dict, error: str) -> None:
        item = dict(item, error=error)
        summary["failed"].append(
            {k: None if item[k] is None else str(item[k]) for k in FAILURE_FIELDS}
        )

    def write_pair(item: dict) -> list[dict]:
        if shared is not None:  # the same tensor each pair: its ink and components found once
            item["sample_image"], item["sample_mask"] = shared
        images = {item["target"]: item["target_image"], item["sample"]: item["sample_image"]}
        masks = {item["target"]: item["target_mask"], item["sample"]: item["sample_mask"]}
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{item['name']}.", suffix=".partial"))
        try:
            entries = []
            for name, t_path, s_path in run_directions(
                cfg.direction, item["target"], item["sample"]
            ):
                target, sample = images[t_path][None], images[s_path][None]
                pictures, entry = shade(
                    shader, target, sample, name, t_path, s_path, device, masks=masks
                )
                for file, data in encode_all(pictures).items():
                    save_image(data, staging / file)
                thumbs.append(thumbnail(pictures[entry["output"]]))
                entries.append(entry)
                bar.update(1)
            write_json({"runs": entries}, staging / "run.json")
            publish(staging, out_dir / item["name"])
            return entries
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already once published

    bar = tqdm(total=len(pairs) * runs, desc="pairs", unit="run", disable=not cfg.progress)
    current, stop = None, None
    try:
        for item in loader:
            current = item["name"]
            if "error" in item:
                fail(item, item["error"])
                bar.update(runs)
            else:
                before = bar.n
                try:
                    entries = write_pair(item)
                    outputs = [e["output"] for e in entries]
                    summary["unchanged"] += [e["output"] for e in entries if notice(e)]
                    summary["done"].append({"name": item["name"], "outputs": outputs})
                except (ValueError, RuntimeError) as err:  # this pair cannot be shaded
                    fail(item, (str(err).strip() or repr(err)).splitlines()[0])
                    bar.update(runs - (bar.n - before))
            save_summary()
            current = None
    except KeyboardInterrupt:
        stop = ("interrupted", True)
    except OSError as err:  # a full disk, or the output folder gone: nothing more can be written
        stop = (f"cannot write into {out_dir}: {err.strerror or err}", False)
    finally:
        bar.close()
    if stop is not None:
        reason, interrupted = stop
        finished = {p["name"] for p in summary["done"] + summary["failed"]}
        summary["stopped"] = {"name": current, "reason": reason}
        summary["not_run"] = [p.name for p in pairs if p.name not in finished | {current}]
        note = "see summary.json"
        try:
            save_summary()
        except OSError:
            note = "summary.json could not be written either"
        done = len(summary["done"])
        raise BatchStopped(
            f"{reason}; {done} of {len(pairs)} pairs done in {out_dir} ({note})", interrupted
        )
    if thumbs:
        try:
            save_image(grid(thumbs), out_dir / "grid.png")
        except OSError as err:
            print(f"warning: grid.png not written ({err.strerror or err})", file=sys.stderr)
    save_summary()
    return summary
