"""What the working resolution costs at 1024²: a full-resolution eigensolve against a
256² (and 512²) solve lifted to 1024² (`spectral.lift`: joint bilateral upsampling, then one
Rayleigh-Ritz step), on real photos; and `match` PCK@0.05 of warped 1024² real-photo pairs
at the working resolutions a match can afford.

    python benchmarks/bench_lifting.py               # about 6 min on 2 cores
    python benchmarks/bench_lifting.py --pairs 2 --photos coffee

Spectrum columns: seconds (the lift's includes its working solve), sin of the largest
principal angle between the full solve's first 8 eigenvectors and the lifted 16-dimensional
span (0: contained, 1: a direction missed entirely), the 2nd and 16th eigenvalues, and
"localised": the mean share of an eigenvector's mass on its top 1% of pixels (1.0: it lives
on a speck). `match` scores every target pixel against every sample pixel at the working
resolution, so 512² (7e10 scores a pair) and 1024² are not run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from spectral_resnet.data.real import PHOTOS, data_dir
from spectral_resnet.eval import real_warp, synthetic_pairs
from spectral_resnet.model import SpectralShader, resize
from spectral_resnet.spectral import compute_spectrum, lift

SIZE, K = 1024, 16


def contained(full: torch.Tensor, span: torch.Tensor, m: int = 8) -> float:
    """sin of the largest principal angle between full[:, :m] and span(span)."""
    a, b = torch.linalg.qr(full[:, :m].double()).Q, torch.linalg.qr(span.double()).Q
    return float(torch.linalg.matrix_norm(a - b @ (b.T @ a), ord=2))


def localised(evecs: torch.Tensor) -> float:
    mass = evecs[:, 1:].double() ** 2
    top = mass.sort(0, descending=True).values[: max(1, mass.shape[0] // 100)].sum(0)
    return float(top.mean())


def spectrum_rows(photos: list[str]) -> list[tuple]:
    rows = []
    for name in photos:
        photo = Image.open(data_dir() / PHOTOS[name][0]).convert("RGB")
        photo = photo.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        image = torch.from_numpy(np.array(photo)).permute(2, 0, 1) / 255.0
        start = time.perf_counter()
        full = compute_spectrum(image, k=K, cache=False)
        rows.append((name, "full solve", time.perf_counter() - start, 0.0, full))
        for work in (256, 512):
            for refine in (False, True):
                start = time.perf_counter()
                small = resize(image[None], (work, work))[0]
                lifted = lift(
                    compute_spectrum(small, k=K, cache=False), small, image, refine=refine
                )
                how = f"{work}² lifted" + (" + Rayleigh-Ritz" if refine else "")
                seconds = time.perf_counter() - start
                rows.append((name, how, seconds, contained(full.evecs, lifted.evecs), lifted))
    return rows


def match_rows(pairs: int, seed: int) -> list[tuple]:
    """PCK@0.05 of the shipped model's match at 1024² for each working resolution."""
    data = list(synthetic_pairs(pairs, SIZE, seed, **real_warp(20.0, (0.9, 1.1))))
    rows = []
    for work in (64, 128, 256):
        config = SpectralShader.from_pretrained("default").config
        shader = SpectralShader.from_pretrained("default", replace(config, work_size=work))
        hits, start = [], time.perf_counter()
        for target, sample, flow, valid in data:
            with torch.no_grad():
                pred = shader.match(target[None], sample[None])[0]  # (H, W, 2) sample (x, y)
            dist = (pred - flow).norm(dim=-1)[valid]
            hits.append(float((dist <= 0.05 * SIZE).float().mean()))
        rows.append((work, sum(hits) / len(hits), (time.perf_counter() - start) / len(data)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=["coffee", "chelsea"])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    unknown = sorted(set(args.photos) - set(PHOTOS))
    if unknown:
        parser.error(f"unknown photos {unknown}; choose from {sorted(PHOTOS)}")
    torch.set_num_threads(args.threads)
    print(f"Spectra of real photos at {SIZE}², k = {K}\n")
    print(
        "| photo | how | seconds | x full solve | sin angle (full 8 in lifted 16) "
        "| lambda_2 | lambda_16 | localised |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = spectrum_rows(args.photos)
    ref = {name: seconds for name, how, seconds, _, _ in rows if how == "full solve"}
    for name, how, seconds, sine, spec in rows:
        print(
            f"| {name} | {how} | {seconds:.1f} | {seconds / ref[name]:.2f} | "
            + ("-" if how == "full solve" else f"{sine:.3f}")
            + f" | {float(spec.evals[1]):.1e} | {float(spec.evals[-1]):.1e} | "
            f"{localised(spec.evecs):.2f} |"
        )
    print(f"\nmatch PCK@0.05 at {SIZE}², {args.pairs} held-out real pairs rotated by ±20°\n")
    print("| work size | PCK@0.05 | s per pair |")
    print("|---|---|---|")
    for work, pck, seconds in match_rows(args.pairs, args.seed):
        print(f"| {work} | {pck:.3f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
