"""What `python infer.py` does: load and validate everything, shade, render, then write.

Nothing touches the output directory until every input has been read and every picture
rendered and encoded in memory, and each file is written atomically, so bad input never
leaves half a result behind. Known failures become one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from spectral_resnet.batch import BatchStopped, run_batch
from spectral_resnet.cli import (
    UsageError,
    check_cache,
    check_options,
    check_writable,
    remove_failed_run_dir,
    run_directions,
    set_threads,
    shader_config,
    write_json,
)
from spectral_resnet.directions import ChildLost, can_fork, side_by_side
from spectral_resnet.io import (
    ImageError,
    load_image,
    save_image,
)
from spectral_resnet.model import CheckpointError, SpectralShader, working_spectrum
from spectral_resnet.runs import blocks_bar, encode_all, notice, pair_masks, shade
from spectral_resnet.weights import ALIASES, checkpoint_path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def resolve_output_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not running under @hydra.main (e.g. the compose API)
        return Path("outputs/infer") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def model_overrides() -> set[str]:
    """The model options set on this run's command line, as dotted names ("spectrum.k")."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = HydraConfig.get().overrides.task
    except ValueError:  # not running under @hydra.main (e.g. the compose API)
        return set()
    names = (item.split("=", 1)[0].lstrip("+~") for item in task)
    return {n.removeprefix("model.") for n in names if n.startswith("model.")}


def build_shader(cfg: DictConfig, device: torch.device) -> SpectralShader:
    """The configured shader, or the model a checkpoint was trained with (its architecture
    fixed; runtime options such as pattern, work_size and paste.* from the config)."""
    config, given = shader_config(cfg.model), model_overrides()
    ckpt = cfg.ckpt
    if ckpt in ALIASES and "attention.qk_init" in given:  # the command line picks a hand init
        ckpt = None
    if ckpt:
        return (
            SpectralShader.from_checkpoint(checkpoint_path(ckpt), config, given).to(device).eval()
        )
    if config.attention.qk_init == "learned":
        print(
            "warning: qk_init=learned without a checkpoint runs untrained projections "
            "(patch matching); use ckpt=default or a train.py checkpoint",
            file=sys.stderr,
        )
    return SpectralShader(config).to(device).eval()


def run_device(cfg: DictConfig) -> torch.device:
    """Check every option (InferConfig's ranges) and the device; set the threads; the device
    to run on."""
    check_options(cfg)
    check_cache()
    if cfg.device not in ("cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise UsageError(f"device must be cpu or cuda, got {cfg.device!r}")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("device=cuda but no CUDA device is available; use device=cpu")
    set_threads(cfg.threads)
    return torch.device(cfg.device)


def is_batch(cfg: DictConfig) -> bool:
    return bool(cfg.pairs) or (cfg.target is not None and Path(cfg.target).is_dir())


def run_many(cfg: DictConfig) -> tuple[Path, dict]:
    """Batch mode: every pair of two folders or of a pairs CSV, in one process."""
    device = run_device(cfg)
    out_dir = resolve_output_dir(cfg)
    check_writable(out_dir)
    shader = build_shader(cfg, device)
    return out_dir, run_batch(cfg, shader, device, out_dir)


def run(cfg: DictConfig) -> tuple[Path, list[Path]]:
    """Shade the pair in the configured directions; returns the output dir and files written."""
    start = time.perf_counter()
    device = run_device(cfg)
    target_path = Path(cfg.target) if cfg.target else ASSETS / "toof.png"
    sample_path = Path(cfg.sample) if cfg.sample else ASSETS / "tone.png"
    directions = run_directions(cfg.direction, target_path, sample_path)
    threads = torch.get_num_threads()
    beside = cfg.parallel and len(directions) == 2 and can_fork(device, threads)
    images = {p: load_image(p, max_pixels=cfg.max_pixels) for p in (target_path, sample_path)}
    masks = pair_masks(
        {"target": target_path, "sample": sample_path},
        {"target": images[target_path], "sample": images[sample_path]},
        {"target": cfg.target_mask, "sample": cfg.sample_mask},
    )
    out_dir = resolve_output_dir(cfg)
    check_writable(out_dir)
    shader = build_shader(cfg, device)
    report = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model": shader.config.to_dict(),  # what ran: a checkpoint's architecture included
        "runs": [],
    }

    solved: dict[int, float] = {}  # direction -> seconds its process solved a spectrum first

    def solve(index: int) -> None:
        """The spectrum of a direction's target, solved before it runs beside the other and
        left in the cache for it (without a cache each direction solves its own)."""
        if not shader.config.spectrum.cache:
            return
        began = time.perf_counter()
        working_spectrum(shader.config, images[directions[index][1]])
        solved[index] = time.perf_counter() - began

    def direction(index: int, tick: Callable[[], None]) -> tuple[dict, dict]:
        """One direction's pictures (file -> image) and run.json entry, whose timings count
        the spectrum solved before it. tick: after each block."""
        name, t_path, s_path = directions[index]
        images_t, images_s = images[t_path][None], images[s_path][None]
        made, entry = shade(shader, images_t, images_s, name, t_path, s_path, device, masks, tick)
        timings = entry["timings_s"]
        for key in ("spectra", "total"):
            timings[key] = round(timings[key] + solved.get(index, 0.0), 4)
        return made, entry

    def bar(index: int, line: int = 0):
        return blocks_bar(directions[index][0], len(shader.blocks), cfg.progress, line)

    pending: dict[str, Future | bytes] = {}  # file -> its bytes, or their encoding under way
    pool = ThreadPoolExecutor(max_workers=2)  # PNG encoders release the GIL

    def collect(files: dict, entry: dict) -> None:
        """A direction's entry, and its files: their bytes, or their encoding under way."""
        pending.update(files)
        report["runs"].append(entry)

    def started(made: dict, entry: dict) -> tuple[dict, dict]:
        """A direction's pictures put to the encoders, with its entry."""
        return encode_all(made, pool.submit), entry

    try:
        if beside:  # the reverse in a process of its own, which encodes its own pictures
            # both bars drawn here, and closed top first: each close ends the line it is on
            with bar(1, line=1) as theirs, bar(0) as mine:
                _, made = side_by_side(
                    lambda: collect(*started(*direction(0, mine.update))),  # encoded meanwhile
                    lambda step: encoded(*direction(1, step)),
                    lambda: solve(0),
                    lambda: solve(1),
                    threads,
                    theirs.update,
                )
            collect(*made)
        else:  # one after the other, each one's pictures encoded while the next runs
            for index in range(len(directions)):  # no name keeps its float pictures alive
                with bar(index) as mine:
                    collect(*started(*direction(index, mine.update)))
        for entry in report["runs"]:
            if line := notice(entry):
                print(f"infer.py: note: {line}", file=sys.stderr)
        files = {f: job if isinstance(job, bytes) else job.result() for f, job in pending.items()}
    finally:
        pool.shutdown(cancel_futures=True)  # Ctrl-C: no more encoding than is under way

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for file, data in files.items():
            written.append(save_image(data, out_dir / file))
        report["seconds"] = round(time.perf_counter() - start, 3)
        written.append(write_json(report, out_dir / "run.json"))
    except OSError as err:
        for path in written:
            path.unlink(missing_ok=True)
        raise UsageError(f"cannot write into {out_dir}: {err.strerror or err}") from None
    return out_dir, written


def encoded(pictures: dict, entry: dict) -> tuple[dict[str, bytes], dict]:
    """A direction's pictures as their files' bytes (two encoders at a time), with its
    entry: what a forked direction sends back, a tenth of the floats' size."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        files = encode_all(pictures, pool.submit)
        return {file: job.result() for file, job in files.items()}, entry


def cli_main(cfg: DictConfig) -> int:
    """Run and report: a one-line summary, or one error line on stderr and exit code 2."""
    hydra_dir = resolve_output_dir(cfg)
    batch = False
    try:
        batch = is_batch(cfg)
        if batch:
            out_dir, summary = run_many(cfg)
        else:
            out_dir, written = run(cfg)
    except BatchStopped as stop:  # Ctrl-C or a full disk: the finished pairs stay
        print(f"infer.py: {stop}", file=sys.stderr)
        return 130 if stop.interrupted else 2
    except (ImageError, UsageError, CheckpointError, ValueError, ChildLost) as err:
        print(f"infer.py: error: {err}", file=sys.stderr)
        remove_failed_run_dir(hydra_dir, default=not cfg.output_dir)
        return 2
    except KeyboardInterrupt:
        print("infer.py: interrupted; nothing more was written", file=sys.stderr)
        remove_failed_run_dir(hydra_dir, default=not cfg.output_dir)
        return 130
    if batch:
        failed = summary["failed"]
        print(
            f"shaded {len(summary['done'])} of {summary['pairs']} pairs into {out_dir} "
            f"({summary['pairs_per_minute']} pairs/min); {len(failed)} failed"
            + (
                ": " + ", ".join(f["name"] for f in failed) + " (see summary.json)"
                if failed
                else ""
            )
        )
        if summary["unchanged"]:
            print(
                f"infer.py: note: {len(summary['unchanged'])} runs pasted nothing "
                f"({', '.join(summary['unchanged'][:3])}{', ...' if len(summary['unchanged']) > 3 else ''}); "
                "their run.json says why",
                file=sys.stderr,
            )
        if not summary["done"] or (failed and cfg.strict):
            why = "every pair failed" if not summary["done"] else "strict=true and a pair failed"
            print(f"infer.py: error: {why}; see {out_dir / 'summary.json'}", file=sys.stderr)
            return 2
        return 0
    report = json.loads((out_dir / "run.json").read_text())
    timing = "; ".join(
        f"{r['output']} {r['timings_s']['total']:.2f}s (spectra {r['timings_s']['spectra']:.2f}s)"
        for r in report["runs"]
    )
    print(f"wrote {len(written)} files to {out_dir}: {timing}")
    return 0
