"""Batch inference against a shell loop: pairs per minute for N pairs of 256² drawings
(forward direction, default model), as one `infer.py target=DIR sample=DIR` with 1 and 2
dataloader workers, cold and warm spectrum cache, beside single `infer.py` runs one after
another (what a shell loop does; timed on the first `--loop` pairs, warm cache).

    python benchmarks/bench_batch.py                 # 100 pairs (about 15 min on 2 cores)
    python benchmarks/bench_batch.py --pairs 30 --loop 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def infer(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), *args, "progress=false", "direction=forward"],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--loop", type=int, default=10, help="single runs timed for the loop")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    from spectral_resnet.data.drawings import random_drawing
    from spectral_resnet.io import save_image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        size = (args.size, args.size)
        for i in range(args.pairs):
            save_image(random_drawing(7000 + 2 * i, size).image, tmp / "a" / f"p{i:03d}.png")
            save_image(random_drawing(7001 + 2 * i, size).image, tmp / "b" / f"p{i:03d}.png")
        rows = []
        for workers in (1, 2):
            cache = tmp / f"cache{workers}"
            env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(cache))
            for state in ("cold", "warm"):
                out = tmp / f"out{workers}{state}"
                batch = [f"target={tmp / 'a'}", f"sample={tmp / 'b'}", f"output_dir={out}"]
                seconds = infer([*batch, f"num_workers={workers}", "threads=2"], env)
                rows.append((f"batch, {workers} worker(s), {state} cache", seconds / args.pairs))
                shutil.rmtree(out)
        env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp / "cache2"))  # warm
        loop = sum(
            infer(
                [
                    f"target={tmp / 'a' / f'p{i:03d}.png'}",
                    f"sample={tmp / 'b' / f'p{i:03d}.png'}",
                    f"output_dir={tmp / 'loop' / str(i)}",
                    "threads=2",
                ],
                env,
            )
            for i in range(min(args.loop, args.pairs))
        ) / min(args.loop, args.pairs)
        rows.append(("shell loop of single runs, warm cache", loop))
    print(f"{args.pairs} pairs of {args.size}² drawings, forward, 2 cores\n")
    print("| how | s per pair | pairs / min | x the shell loop |")
    print("|---|---|---|---|")
    for how, per_pair in rows:
        print(f"| {how} | {per_pair:.2f} | {60 / per_pair:.1f} | {loop / per_pair:.2f} |")


if __name__ == "__main__":
    main()
