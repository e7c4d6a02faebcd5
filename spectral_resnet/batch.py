"""Batch inference: many pairs, one process (`python infer.py target=DIR sample=DIR`, or
`pairs=pairs.csv`).

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
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from spectral_resnet.config import ShaderConfig
from spectral_resnet.io import IMAGE_SUFFIXES, load_image, save_image
from spectral_resnet.model import working_spectrum

FAILURE_FIELDS = ("name", "target", "sample", "error")


class BatchError(ValueError):
    """The batch as a whole cannot run (no pairs, a bad pairs file)."""


def pairs_from_dirs(targets: Path, samples: Path) -> list[tuple[str, Path | None, Path | None]]:
    """(name, target, sample) for every file stem in either folder; None where a folder has
    no file of that name (recorded as a failure, not dropped in silence)."""

    def by_stem(folder: Path) -> dict[str, Path]:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return {p.stem: p for p in files}

    t, s = by_stem(targets), by_stem(samples)
    return [(name, t.get(name), s.get(name)) for name in sorted(t.keys() | s.keys())]


def pairs_from_csv(path: Path) -> list[tuple[str, Path | None, Path | None]]:
    """Rows `target,sample` (a header row of those names is allowed); relative paths are
    relative to the CSV's folder. Names are `<target stem>_<sample stem>`, numbered if
    repeated."""
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError) as err:
        raise BatchError(f"pairs file {path} cannot be read: {err}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0]] == ["target", "sample"]:
        rows = rows[1:]
    pairs, seen = [], {}
    for line, row in enumerate(rows, 1):
        if len(row) != 2:
            raise BatchError(f"pairs file {path}, row {line}: expected target,sample, got {row}")
        t, s = (path.parent / c.strip() for c in row)
        name = f"{t.stem}_{s.stem}"
        seen[name] = seen.get(name, 0) + 1
        pairs.append((name if seen[name] == 1 else f"{name}_{seen[name]}", t, s))
    return pairs


def batch_pairs(cfg: DictConfig) -> list[tuple[str, Path | None, Path | None]]:
    if cfg.pairs:
        pairs = pairs_from_csv(Path(cfg.pairs))
    else:
        target, sample = Path(cfg.target), Path(cfg.sample or "")
        if not sample.is_dir():
            raise BatchError(f"target={target} is a folder, so sample= must be a folder too")
        pairs = pairs_from_dirs(target, sample)
    if not pairs:
        raise BatchError("no image pairs found; see `python infer.py --help`")
    return pairs


class PairFiles(Dataset):
    """Each pair's images, read, checked and with their spectra in the cache: the work the
    dataloader workers do while the main process shades the previous pair."""

    def __init__(self, pairs, config: ShaderConfig, max_pixels: int):
        self.pairs, self.config, self.max_pixels = pairs, config, max_pixels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        name, target, sample = self.pairs[index]
        item = {"name": name, "target": target, "sample": sample}
        try:
            for role, path in (("target", target), ("sample", sample)):
                if path is None:
                    raise ValueError(f"no {role} file named {name}.*")
                image = load_image(path, max_pixels=self.max_pixels)
                working_spectrum(self.config, image)  # cached for the model
                item[f"{role}_image"] = image
        except (ValueError, OSError) as err:  # ImageError is a ValueError
            item["error"] = str(err)
        return item


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


def run_batch(cfg: DictConfig, shader, device, out_dir: Path, shade, write_json) -> dict:
    """Shade every pair in the configured directions; write as it goes; return the summary."""
    start = time.perf_counter()
    pairs = batch_pairs(cfg)
    data = PairFiles(pairs, shader.config, cfg.max_pixels)
    loader = DataLoader(
        data,
        batch_size=None,
        num_workers=cfg.num_workers,
        worker_init_fn=quiet_worker if cfg.num_workers else None,
    )
    directions = {"forward": 1, "reverse": 1, "both": 2}[cfg.direction]
    summary = {"pairs": len(pairs), "done": [], "failed": []}
    thumbs = []
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(pairs) * directions, desc="pairs", unit="run", disable=not cfg.progress)
    for item in loader:
        if "error" in item:
            summary["failed"].append(
                {k: None if item[k] is None else str(item[k]) for k in FAILURE_FIELDS}
            )
            bar.update(directions)
            continue
        t_img, s_img = item["target_image"][None], item["sample_image"][None]
        runs = []
        if cfg.direction in ("forward", "both"):
            runs.append((t_img, s_img, item["target"], item["sample"]))
        if cfg.direction in ("reverse", "both"):
            runs.append((s_img, t_img, item["sample"], item["target"]))
        folder = out_dir / item["name"]
        folder.mkdir(exist_ok=True)
        entries = []
        for target, sample, t_path, s_path in runs:
            pictures, entry = shade(shader, target, sample, t_path, s_path, device)
            for file, image in pictures.items():
                save_image(image, folder / file)
            thumbs.append(thumbnail(pictures[entry["output"]]))
            entries.append(entry)
            bar.update(1)
        write_json({"runs": entries}, folder / "run.json")
        summary["done"].append({"name": item["name"], "outputs": [e["output"] for e in entries]})
    bar.close()
    if thumbs:
        save_image(grid(thumbs), out_dir / "grid.png")
    seconds = time.perf_counter() - start
    summary["seconds"] = round(seconds, 3)
    summary["pairs_per_minute"] = round(60 * len(summary["done"]) / max(seconds, 1e-9), 2)
    write_json(summary, out_dir / "summary.json")
    return summary
