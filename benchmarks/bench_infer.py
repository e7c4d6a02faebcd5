"""End-to-end `python infer.py` wall time on the demo pair and on a 512^2 pair, with a cold
and a warm spectrum cache, as ratios of the eigensolve time measured in the same run; with
`--baseline CKPT`, each run is paired with the same run on that checkpoint (A B A B) and
the table gains their ratio.

    python benchmarks/bench_infer.py
    python benchmarks/bench_infer.py --baseline spectral_resnet/weights/linear.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def infer(args: list[str], cache: str, out: Path) -> tuple[float, dict]:
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=cache)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), *args, f"output_dir={out}", "progress=false"],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start, json.loads((out / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", help="a checkpoint to time beside the default weights")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per model (median)")
    args = parser.parse_args()
    if args.baseline:
        return compare(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from spectral_resnet.data.procedural import scene
        from spectral_resnet.io import save_image

        save_image(scene((512, 512), seed=0), tmp / "photo_a.png")
        save_image(scene((512, 512), seed=1), tmp / "photo_b.png")
        cases = {
            "demo pair (160²), both directions": [],
            "512² pair, both directions": [
                f"target={tmp / 'photo_a.png'}",
                f"sample={tmp / 'photo_b.png'}",
            ],
        }
        print("| input | cache | wall s | eigensolves s | wall / eigensolves | cold / warm |")
        print("|---|---|---|---|---|---|")
        for label, extra in cases.items():
            cache = str(tmp / f"cache-{len(label)}")
            extra = [*extra, f"threads={args.threads}"]
            cold, report = infer(extra, cache, tmp / "cold")
            solve = sum(r["timings_s"]["eigensolve"] for r in report["runs"])
            warm, _ = infer(extra, cache, tmp / "warm")
            print(f"| {label} | cold | {cold:.2f} | {solve:.2f} | {cold / solve:.2f} | |")
            print(
                f"| {label} | warm | {warm:.2f} | 0 (cached) | {warm / solve:.2f} | {cold / warm:.1f}x |"
            )


def compare(args) -> None:
    """The default weights against --baseline on the 512² pair, warm cache, paired runs."""
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from spectral_resnet.data.procedural import scene
        from spectral_resnet.io import save_image

        save_image(scene((512, 512), seed=0), tmp / "photo_a.png")
        save_image(scene((512, 512), seed=1), tmp / "photo_b.png")
        pair = [f"target={tmp / 'photo_a.png'}", f"sample={tmp / 'photo_b.png'}"]
        pair.append(f"threads={args.threads}")
        cache = str(tmp / "cache")
        infer(pair, cache, tmp / "warmup")  # fills the spectrum cache for both
        times: dict[str, list[float]] = {"default": [], "baseline": []}
        for _ in range(args.repeats):
            times["default"].append(infer(pair, cache, tmp / "a")[0])
            times["baseline"].append(infer([*pair, f"ckpt={args.baseline}"], cache, tmp / "b")[0])
        a, b = (statistics.median(times[k]) for k in ("default", "baseline"))
        print("| 512² pair, both directions, warm cache | wall s (median) |")
        print("|---|---|")
        print(f"| default weights | {a:.2f} |")
        print(f"| {args.baseline} | {b:.2f} |")
        print(f"| ratio default / baseline | **{a / b:.2f}** |")


if __name__ == "__main__":
    main()
