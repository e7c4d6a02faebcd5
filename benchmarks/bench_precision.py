"""The learned layers in bfloat16 against float32 (`precision`), on the 512² photo pair of
bench_infer, per direction, warm, in one process:

    python benchmarks/bench_precision.py               # 2 threads, as infer.py runs
    python benchmarks/bench_precision.py --threads 1   # one direction's share when both run

Prints, per direction: the median time after the spectra at each precision and their ratio
(float32 / bfloat16: above 1, bfloat16 is faster). On a CPU without bf16 units (AVX512-BF16
or AMX), bfloat16 is emulated and slower; `auto` then runs float32. What bfloat16 does to
quality is measured on the held-out eval sets (docs/eval.md, "bfloat16 layers").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_infer import photos  # benchmarks/ is the script's own folder

from spectral_resnet import runs
from spectral_resnet.cli import tune_process
from spectral_resnet.config import ShaderConfig
from spectral_resnet.io import load_image
from spectral_resnet.model import SpectralShader, native_bfloat16

PRECISIONS = ("float32", "bfloat16")


def after_spectra(
    shader: SpectralShader, target, sample, paths, repeats: int
) -> tuple[float, dict]:
    """Median seconds of a warm direction after its (cached) spectra, and its run.json entry."""
    name = f"{paths[0].stem}_{paths[1].stem}"
    runs.shade(shader, target, sample, name, *paths, "cpu")  # warms the cache and the kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, entry = runs.shade(shader, target, sample, name, *paths, "cpu")
        times.append(time.perf_counter() - start - entry["timings_s"]["spectra"])
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_process()  # as infer.py does
    shader = SpectralShader.from_pretrained("default", ShaderConfig()).eval()
    native = native_bfloat16(torch.device("cpu"))
    print(f"bf16 units on this CPU: {'yes' if native else 'no (bfloat16 is emulated)'}\n")
    print("| direction | float32 s | bfloat16 s | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = photos(Path(tmp))
        images = {p: load_image(p)[None] for p in paths}
        for pair in (paths, paths[::-1]):
            target, sample = (images[p] for p in pair)
            times = {}
            for precision in PRECISIONS:
                shader.config.precision = precision
                times[precision] = after_spectra(shader, target, sample, pair, args.repeats)
            a, b = times["float32"], times["bfloat16"]
            print(f"| {pair[0].stem} <- {pair[1].stem} | {a:.2f} | {b:.2f} | **{a / b:.2f}** |")


if __name__ == "__main__":
    main()
