"""Paste quality on drawn pairs nobody tuned on: are pastes whole shapes, clear of the
target's ink, inside the frame? Judged against each drawing's true ink (its clean coverage
mask), never against what the shader itself segmented.

    python benchmarks/bench_paste.py                 # 20 random pairs, both directions
    python benchmarks/bench_paste.py --pairs 40 --first-seed 500
    python benchmarks/bench_paste.py --hard          # + one-piece samples, crowded targets,
                                                     #   samples larger than their target

Pairs are `random_drawing(seed)` targets and `random_drawing(seed + 1)` samples for seeds
first_seed, first_seed + 2, ... (the tests use seeds 0-7 at 128 px; nothing was tuned on
these). Default model: the shipped weights, default options, as `python infer.py` runs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml

from spectral_resnet import segments
from spectral_resnet.config import ShaderConfig
from spectral_resnet.data.drawings import crowded, one_piece, oversized_silhouette, random_drawing
from spectral_resnet.model import SpectralShader

GOALS = {  # measure: (goal, higher is better)
    "pastes area-matched to one whole reference component": (0.95, True),
    "paste area on target ink": (0.02, False),
    "pastes clipped by the frame (< 95% visible)": (0.05, False),
    "pastes drawn in the output (half their mask changed)": (0.99, True),
}


def carried(mask, place, shape: tuple[int, int], margin: int = 0):
    """A sample-space mask (H_s, W_s) under one paste's warp (placements: src, dest, angle,
    scale), onto a target canvas of `shape` grown by `margin` on every side: (H', W')."""
    src, dest, angle, scale = place[:2], place[2:4], place[4], place[5]
    canvas = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    warped = segments.rigid_warp(
        mask.float()[None, None], src[None], (dest + margin)[None], angle[None], canvas,
        scale=scale,
    )  # fmt: skip
    return warped[0, 0]


def paste_records(shader, target, sample) -> list[dict]:
    """For every paste of one run: its sample component's match to the reference labelling,
    its area on the target's true ink, and how much of it lies inside the frame."""
    with torch.no_grad():
        out = shader(target.image[None], sample.image[None])
    changed = (out.image[0] - target.image).abs().amax(0) > 0.05  # (H, W) drawn on
    ours = shader.sample_components(sample.image[None])[0]
    reference = sample.components(min_area=1)
    height, width = target.image.shape[-2:]
    margin = max(height, width)
    records = []
    for block in out.pastes:
        rows = zip(block.components[0], block.masks[0], block.placements[0], block.splits[0])
        for label, warped, place, cuts in rows:
            if label <= 0:
                continue
            on = warped > 0.5
            if cuts > 0:  # a part of its shape, placed inside the frame by construction
                records.append(
                    {"whole": None, "part": whole_part(on, sample, place), "area": int(on.sum()),
                     "on_ink": int((on & target.ink).sum()), "clipped": None,
                     "scale": float(place[5]), "drawn": drawn(on, changed)}
                )  # fmt: skip
                continue
            mine = ours == label
            hits = reference[mine & (reference > 0)]
            whole = False
            if len(hits):
                ref = reference == hits.mode().values
                area = float(ref.sum())
                whole = float((mine & ref).sum()) >= 0.9 * area and float(mine.sum()) <= 1.1 * area
            # the same warp onto a canvas with a margin all round: how much falls outside
            full = carried(mine, place, (height, width), margin)
            inside = float(full[margin:-margin, margin:-margin].sum()) / max(
                float(full.sum()), 1e-6
            )
            records.append(
                {
                    "whole": whole,
                    "area": int(on.sum()),
                    "on_ink": int((on & target.ink).sum()),
                    "clipped": inside < 0.95,
                    "scale": float(place[5]),
                    "drawn": drawn(on, changed),
                }
            )
    skipped = sum(int(b.skipped.sum()) for b in out.pastes)
    return records, skipped


def drawn(placed, changed) -> bool:
    """Whether a placed paste shows in the output: at least half of its mask's pixels differ
    from the target (a mask placed but not drawn is a paste the user never sees)."""
    return bool(placed.any()) and float(changed[placed].float().mean()) >= 0.5


def whole_part(pasted, sample, place) -> bool | None:
    """Whether a pasted part (H, W) bool of a split shape is whole: the sample's reference
    parts (`Drawing.parts`: the rings of a one-piece drawing, the whole of a silhouette),
    carried by the paste's own warp, are each in it to 90% or out of it to 90%, and at
    least one is in. None where the sample has no reference parts."""
    if sample.parts is None:
        return None
    inside = []
    for k in range(1, int(sample.parts.max()) + 1):
        ref = carried(sample.parts == k, place, tuple(pasted.shape)) > 0.5
        area = max(int(ref.sum()), 1)
        share = int((ref & pasted).sum()) / area
        if 0.1 < share < 0.9:
            return False  # a reference part cut through
        inside.append(share >= 0.9)
    return any(inside)


HARD = {  # kind: (target, sample) drawings of a seed
    "one-piece sample": lambda seed, size: (random_drawing(seed, size), one_piece(seed + 1, size)),
    "crowded target": lambda seed, size: (crowded(seed, size), random_drawing(seed + 1, size)),
    "sample larger than the target": lambda seed, size: (
        random_drawing(seed, size),
        oversized_silhouette(seed + 1, size),
    ),
}


def hard_pairs(shader, pairs: int, first_seed: int, size) -> None:
    """The pairs where pastes are hard to place, one direction each: a table of how many
    runs paste at all, and the quality of what they paste."""
    print(
        "\n| kind | runs with a paste | pastes (parts) | whole shapes (of unsplit) | whole parts (of parts) | on ink | clipped (unsplit) |"
    )
    print("|---|---|---|---|---|---|---|")
    total, sound = [0, 0], [0, 0]  # runs (with a paste, all); pastes (whole shape or part, all)
    for kind, make in HARD.items():
        runs_with, records = 0, []
        for i in range(pairs):
            target, sample = make(first_seed + 2 * i, size)
            recs, _ = paste_records(shader, target, sample)
            runs_with += bool(recs)
            records += recs
        whole = [r for r in records if r["whole"] is not None]
        judged = [r for r in records if r.get("part") is not None]
        parts = len(records) - len(whole)
        good_parts = sum(r["part"] for r in judged)
        ink = sum(r["on_ink"] for r in records) / max(sum(r["area"] for r in records), 1)
        share = lambda xs, key: sum(r[key] for r in xs) / max(len(xs), 1)  # noqa: E731
        print(
            f"| {kind} | {runs_with}/{pairs} | {len(records)} ({parts}) | "
            f"{100 * share(whole, 'whole'):.1f}% | {good_parts}/{len(judged)} | {100 * ink:.1f}% | "
            f"{100 * share(whole, 'clipped'):.1f}% |"
        )
        total[0] += runs_with
        total[1] += pairs
        sound[0] += sum(r["whole"] for r in whole) + good_parts
        sound[1] += len(whole) + len(judged)
    print(
        f"\nruns with at least one paste: {total[0]}/{total[1]} = {100 * total[0] / total[1]:.0f}% (goal >= 90%)"
    )
    print(
        f"pastes that are whole shapes or whole parts: {sound[0]}/{sound[1]} = "
        f"{100 * sound[0] / max(sound[1], 1):.1f}% (goal >= 95%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--hard", action="store_true", help="also the hard pairs (see HARD)")
    parser.add_argument("--weights", default="default", help="shipped weights by name, or a file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
        help="a runtime option, e.g. attention.max_keys=1024 or precision=float32 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ShaderConfig().to_dict()
    for item in args.set:
        name, _, value = item.partition("=")
        *groups, key = name.split(".")
        section = options
        for group in groups:
            section = section[group]
        section[key] = yaml.safe_load(value)
    shader = SpectralShader.from_pretrained(args.weights, ShaderConfig.from_dict(options)).eval()
    size = (args.size, args.size)
    records, skipped, runs, start = [], 0, 0, time.perf_counter()
    for i in range(args.pairs):
        seed = args.first_seed + 2 * i
        a, b = random_drawing(seed, size), random_drawing(seed + 1, size)
        for target, sample in ((a, b), (b, a)):
            recs, skips = paste_records(shader, target, sample)
            records += recs
            skipped += skips
            runs += 1
    unsplit = [r for r in records if r["whole"] is not None]  # parts: judged in --hard
    n = max(len(unsplit), 1)
    figures = {
        "pastes area-matched to one whole reference component": sum(r["whole"] for r in unsplit)
        / n,
        "paste area on target ink": sum(r["on_ink"] for r in records)
        / max(sum(r["area"] for r in records), 1),
        "pastes clipped by the frame (< 95% visible)": sum(r["clipped"] for r in unsplit) / n,
        "pastes drawn in the output (half their mask changed)": sum(r["drawn"] for r in records)
        / max(len(records), 1),
    }
    seconds = time.perf_counter() - start
    print(
        f"{runs} runs ({args.pairs} pairs of {args.size}² drawings, both directions), {seconds:.0f} s"
    )
    print(
        f"{len(records)} pastes ({len(records) / runs:.1f} a run, "
        f"{sum(r['scale'] < 1 for r in records)} shrunk), {skipped} seeds skipped for room\n"
    )
    print("| measure | value | goal | met |")
    print("|---|---|---|---|")
    for name, value in figures.items():
        goal, higher = GOALS[name]
        met = value >= goal if higher else value <= goal
        sign = ">=" if higher else "<="
        print(
            f"| {name} | {100 * value:.1f}% | {sign} {100 * goal:.0f}% | {'yes' if met else 'NO'} |"
        )
    if args.hard:
        hard_pairs(shader, args.pairs, args.first_seed, size)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "pastes": len(records), "runs": runs, **figures}, f, indent=1
            )


if __name__ == "__main__":
    main()
