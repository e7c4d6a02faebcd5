"""The conv stem's memory layout: channels-last (what `ConvStem` uses) against the
default NCHW, at the inference shapes (one 256² working image; the 35 views of a sample at
64 px) and for a training step (8 crops of 64², forward and backward).

    python benchmarks/bench_stem.py

Prints one row per case: the median time of each layout and their ratio (NCHW / channels-
last: above 1, channels-last is faster), with the largest difference of the features.
"""

from __future__ import annotations

import argparse

import torch
from bench_library import median_time  # benchmarks/ is the script's own folder

from spectral_resnet.stack import ConvStem

LAYOUTS = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}


def run(stem: ConvStem, images: torch.Tensor, layout, train: bool) -> torch.Tensor:
    """One pass with the stem's weights and the input in `layout` (ConvStem itself builds
    channels-last weights; each case here sets both layouts explicitly)."""
    stem.to(memory_format=layout)
    x = images.contiguous(memory_format=layout)
    mean, std = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True).clamp_min(1e-3)
    if not train:
        with torch.no_grad():
            return stem.out(stem.body((x - mean) / std))
    stem.zero_grad()
    out = stem.out(stem.body((x - mean) / std))
    out.square().mean().backward()
    return out.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    stem = ConvStem(width=64)
    cases = {
        "eval: one 256² working image": (torch.rand(1, 3, 256, 256), False),
        "eval: 35 views at 64², 8 at a time": (torch.rand(8, 3, 64, 64), False),
        "train step: 8 crops of 64²": (torch.rand(8, 3, 64, 64), True),
    }
    print("| case | NCHW s | channels-last s | ratio | max diff |")
    print("|---|---|---|---|---|")
    for name, (images, train) in cases.items():
        times, outs = {}, {}
        repeat = 4 if "35 views" in name else 1
        for label, layout in LAYOUTS.items():
            stem.train(train)
            times[label] = median_time(
                lambda lay=layout, x=images, tr=train, n=repeat: [
                    run(stem, x, lay, tr) for _ in range(n)
                ],
                repeats=5,
            )
            outs[label] = run(stem, images, layout, train).float()
        diff = float((outs["nchw"] - outs["channels-last"]).abs().max())
        a, b = times["nchw"], times["channels-last"]
        print(f"| {name} | {a:.3f} | {b:.3f} | **{a / b:.2f}** | {diff:.1e} |")


if __name__ == "__main__":
    main()
