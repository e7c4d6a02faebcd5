"""Shader benchmark on a 512^2 pair: seconds split into spectra / blocks / rest, peak memory,
and total time as a ratio of the two eigensolves measured in the same run (cold cache),
plus the speed-up of a second run on the same images (spectra cached).

    python benchmarks/bench_model.py                 # patterns c, cccc; kernels linear, softmax
    python benchmarks/bench_model.py --size 256 --patterns c
Each configuration runs in a fresh subprocess, so the peak RSS column is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def measure(size: int, pattern: str, kernel: str, threads: int) -> dict:
    import torch

    from spectral_resnet import AttentionConfig, ShaderConfig, SpectralShader
    from spectral_resnet.data.procedural import scene

    torch.set_num_threads(threads)
    target, sample = scene((size, size), seed=0)[None], scene((size, size), seed=1)[None]
    softmax = kernel == "softmax"
    attention = AttentionConfig(qk_init="fmap", kernel=kernel, max_keys=4096 if softmax else None)
    config = ShaderConfig(pattern=pattern, work_size=128 if softmax else None, attention=attention)
    shader = SpectralShader(config)
    runs = []
    for _ in range(2):  # cold (empty cache dir), then warm
        start = time.perf_counter()
        with torch.no_grad():
            out = shader(target, sample)
        runs.append((time.perf_counter() - start, out.timings))
    (cold, t), (warm, _) = runs
    return dict(
        cold=cold,
        warm=warm,
        spectra=t["spectra"],
        eigensolve=t["eigensolve"],
        blocks=t["blocks"],
        rest=t["rest"],
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--patterns", nargs="+", default=["c", "cccc"])
    parser.add_argument("--kernels", nargs="+", default=["linear", "softmax"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, pattern, kernel = int(args.child[0]), args.child[1], args.child[2]
        print(json.dumps(measure(size, pattern, kernel, args.threads)))
        return

    print(
        "| size | pattern | kernel | cold s | spectra s | (eigensolves s) | blocks s | rest s "
        "| peak RSS MB | cold / eigensolves | warm s | cold / warm |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kernel in args.kernels:
        for pattern in args.patterns:
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, SPECTRAL_RESNET_CACHE=cache)
                cmd = [sys.executable, __file__, "--child", str(args.size), pattern, kernel]
                cmd += ["--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"| {args.size}² | {pattern} | {kernel} | {r['cold']:.2f} | {r['spectra']:.2f} "
                f"| {r['eigensolve']:.2f} | {r['blocks']:.2f} | {r['rest']:.2f} | {r['peak_mb']:.0f} "
                f"| {r['cold'] / r['eigensolve']:.2f} | {r['warm']:.3f} | {r['cold'] / r['warm']:.0f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
