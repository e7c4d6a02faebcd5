"""Any size: `python infer.py` (defaults, both directions) on a pair of real photos at
512², 1024², 2048² and 4000x3000 (a phone photo): wall seconds and peak RSS of each run, as
a ratio of the 512² run measured in the same process.

    python benchmarks/bench_any_size.py              # all sizes (about 5 min on 2 cores)
    python benchmarks/bench_any_size.py --sizes 512 1024
    python benchmarks/bench_any_size.py --sizes 4000x3000 --repeat 3   # medians of 3 rounds

The photos are scikit-image's coffee (target) and chelsea (sample), resized with Pillow's
bicubic filter (JPEG, as a phone writes), so every size has real-photo statistics.
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
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"512": (512, 512), "1024": (1024, 1024), "2048": (2048, 2048), "4000x3000": (4000, 3000)}


def run(args: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one infer.py process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "infer.py"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"infer.py {' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 2**20  # KB -> GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each cell is the median")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    from spectral_resnet.data.real import PHOTOS, data_dir

    rows, samples, runs = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ["512", *[s for s in args.sizes if s != "512"]]:  # the reference first
            w, h = SIZES[name]
            files = []
            for role, photo in (("target", "coffee"), ("sample", "chelsea")):
                img = Image.open(data_dir() / PHOTOS[photo][0]).convert("RGB")
                path = tmp / f"{role}_{name}.jpg"
                img.resize((w, h), Image.Resampling.BICUBIC).save(path, quality=92)
                files.append(path)
            samples.append((name, w * h, files))
        for round_ in range(args.repeat):  # sizes interleaved, so drift hits them alike
            for name, _, files in samples:
                out = tmp / f"out_{name}_{round_}"
                wall, rss = run(
                    [
                        f"target={files[0]}",
                        f"sample={files[1]}",
                        f"output_dir={out}",
                        f"threads={args.threads}",
                        "progress=false",
                    ],
                    dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp / f"cache{round_}")),
                )
                report = json.loads((out / "run.json").read_text())
                blocks = sum(r["timings_s"]["blocks"] for r in report["runs"])
                runs.setdefault(name, []).append((wall, rss, blocks))
    for name, pixels, _ in samples:
        wall, rss, blocks = (statistics.median(column) for column in zip(*runs[name]))
        rows.append((name, pixels, wall, rss, blocks))
    ref_wall, ref_rss = rows[0][2], rows[0][3]
    print("| pair (both directions) | pixels | wall s | x 512² | peak RSS GB | x 512² | blocks s |")
    print("|---|---|---|---|---|---|---|")
    for name, pixels, wall, rss, blocks in rows:
        print(
            f"| {name} | {pixels / 1e6:.2f} M | {wall:.1f} | {wall / ref_wall:.2f} | {rss:.2f} | "
            f"{rss / ref_rss:.2f} | {blocks:.1f} |"
        )


if __name__ == "__main__":
    main()
