"""How close a shading run is to its floor, on a 512² pair of real photos (scikit-image's
astronaut and coffee), both directions, default options, 2 threads.

    python benchmarks/bench_infer.py                   # (a) and (b)
    python benchmarks/bench_infer.py --baseline linear # + the default weights against others
    python benchmarks/bench_infer.py --only b          # (b) alone, about a minute

(a) the whole `python infer.py` process, cold spectrum cache, over its floor: a process
    beside it that imports the package and solves the pair's two working-size spectra cold
    (runs paired A B A B; medians).
(b) warm, in one process, per direction: everything after the spectra (tokens, views, the
    stack, evidence, the pastes and the pictures) over the cold solve of its two spectra,
    solved beside each run (medians of at least 3 runs).
--baseline NAME: the default weights' whole warm process against NAME's (paired runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def photos(folder: Path) -> list[Path]:
    """The pair: two real photos resized to 512², as PNG files."""
    from PIL import Image
    from skimage import data

    paths = []
    for name in ("astronaut", "coffee"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(data, name)()).resize((512, 512), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def timed(command: list[str], cache: Path) -> float:
    """Wall seconds of one process with its own spectrum cache folder."""
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(cache))
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def floor(paths: list[str], threads: int) -> None:
    """The yardstick process: import the package, solve both working-size spectra cold (with
    the process settings `infer.py` makes, and its exit without the interpreter's teardown)."""
    import torch

    from spectral_resnet.cli import leave, quick_exit, tune_process

    tune_process()
    quick_exit()  # as infer.py's process: the floor is not Python's exit walk
    from spectral_resnet.config import ShaderConfig
    from spectral_resnet.io import load_image
    from spectral_resnet.model import working_spectrum

    torch.set_num_threads(threads)
    config = ShaderConfig()
    for path in paths:
        working_spectrum(config, load_image(path))
    leave(0)  # as infer.py leaves


def paired(a: list[str], b: list[str], repeats: int, folder: Path) -> tuple[float, float]:
    """Medians of A B A B ... runs, each with a cold (fresh) spectrum cache."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(repeats):
        for key, command in (("a", a), ("b", b)):
            times[key].append(timed(command, folder / f"cache-{key}-{i}"))
    return statistics.median(times["a"]), statistics.median(times["b"])


def warm_directions(paths: list[Path], threads: int, weights: str, repeats: int) -> list[dict]:
    """(b): per direction, after one warm-up run, the median over `repeats` runs of the run
    after the spectra, over the median cold solve of its two spectra (solved here without
    the cache, as often)."""
    import torch

    from spectral_resnet import runs
    from spectral_resnet.cli import tune_process
    from spectral_resnet.config import ShaderConfig
    from spectral_resnet.io import load_image
    from spectral_resnet.model import SpectralShader, working_spectrum

    torch.set_num_threads(threads)
    tune_process()  # as infer.py does
    config = ShaderConfig()
    shader = SpectralShader.from_pretrained(weights, config).eval()
    images = {p: load_image(p)[None] for p in paths}
    uncached = replace(config, spectrum=replace(config.spectrum, cache=False))  # always solved
    rows = []
    for t_path, s_path in (paths, paths[::-1]):
        target, sample = images[t_path], images[s_path]
        name = f"{t_path.stem}_{s_path.stem}"
        runs.shade(shader, target, sample, name, t_path, s_path, "cpu")  # fills the cache
        solves, afters, entries = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            for img in (target, sample):
                working_spectrum(uncached, img[0])
            solves.append(time.perf_counter() - start)
            start = time.perf_counter()
            _, entry = runs.shade(shader, target, sample, name, t_path, s_path, "cpu")
            afters.append(time.perf_counter() - start - entry["timings_s"]["spectra"])
            entries.append(entry["timings_s"])
        middle = afters.index(statistics.median_low(afters))  # the median run's own timings
        rows.append(
            {
                "direction": name,
                "solve": statistics.median_low(solves),
                "after": afters[middle],
                **entries[middle],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="paired runs per command")
    parser.add_argument("--baseline", help="shipped weights (or a file) to time beside the default")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--only", choices=("a", "b"), help="measure only (a) or only (b)")
    parser.add_argument("--floor", nargs=2, help=argparse.SUPPRESS)  # the yardstick process
    args = parser.parse_args()
    if args.floor:
        return floor(args.floor, args.threads)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = photos(tmp)
        pair = [f"target={paths[0]}", f"sample={paths[1]}", f"threads={args.threads}"]
        infer = [sys.executable, str(ROOT / "infer.py"), *pair, "progress=false"]
        yardstick = [sys.executable, __file__, "--threads", str(args.threads), "--floor"]
        if args.only != "b":
            whole, least = paired(
                [*infer, f"output_dir={tmp / 'out'}"],
                [*yardstick, *map(str, paths)],
                args.repeats,
                tmp,
            )
            figures["a"] = {"whole_s": whole, "floor_s": least, "ratio": whole / least}
            print("(a) 512² photo pair, both directions, cold spectrum cache, whole process")
            print("| process | wall s (median) |\n|---|---|")
            print(f"| python infer.py | {whole:.2f} |")
            print(f"| floor: import + two cold working-size spectra | {least:.2f} |")
            print(f"| ratio (goal <= 1.5) | **{whole / least:.2f}** |\n")

        if args.only != "a":
            rows = warm_directions(paths, args.threads, "default", max(3, args.repeats))
            figures["b"] = rows
            print("(b) warm, one process, per direction")
            print(
                "| direction | after the spectra s | of it: ops | cold solve of its spectra s | ratio (goal <= 1.0) |"
            )
            print("|---|---|---|---|---|")
            for r in rows:
                print(
                    f"| {r['direction']} | {r['after']:.2f} | {r['blocks']:.2f} | {r['solve']:.2f} | "
                    f"**{r['after'] / r['solve']:.2f}** |"
                )
        if args.baseline:
            base = [*infer, f"output_dir={tmp / 'base'}", f"ckpt={args.baseline}"]
            warmup = [*infer, f"output_dir={tmp / 'warm'}"]
            cache = tmp / "shared-cache"
            timed(warmup, cache)  # both then run with the same warm cache
            times: dict[str, list[float]] = {"default": [], "baseline": []}
            for _ in range(args.repeats):
                times["default"].append(timed([*infer, f"output_dir={tmp / 'a'}"], cache))
                times["baseline"].append(timed(base, cache))
            a, b = (statistics.median(times[k]) for k in ("default", "baseline"))
            figures["baseline"] = {"name": args.baseline, "default_s": a, "baseline_s": b}
            print("\n512² photo pair, both directions, warm cache, whole process")
            print("| weights | wall s (median) |\n|---|---|")
            print(f"| default | {a:.2f} |\n| {args.baseline} | {b:.2f} |")
            print(f"| ratio default / {args.baseline} | **{a / b:.2f}** |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **figures}, indent=1))


if __name__ == "__main__":
    main()
