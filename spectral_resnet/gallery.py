"""The gallery: the shipped shader, default options, on pairs nobody tuned it on, both ways.

    python -m spectral_resnet.gallery            # sheets into assets/gallery/
    python -m spectral_resnet.gallery --redraw   # first redraw the committed input PNGs

Inputs are committed PNGs in assets/gallery/inputs/: Pillow drawings from
`spectral_resnet.data.drawings` and photos from scikit-image's CC0 / public-domain set,
shrunk to 192 px. Each pair's picture stacks its two contact sheets (target <- sample, then
the reverse): target, sample, activation, seeds with masks, output. `gallery.json` records
the pastes and skips of every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from spectral_resnet.config import ShaderConfig
from spectral_resnet.data.drawings import DRAWINGS, SIZE
from spectral_resnet.data.real import PHOTOS, data_dir
from spectral_resnet.io import load_image, save_image
from spectral_resnet.model import SpectralShader
from spectral_resnet.runs import render

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "assets" / "gallery"

# pair name: (target, sample, what it covers); names are drawings or photos
PAIRS: dict[str, tuple[str, str, str]] = {
    "house_polygons": ("house", "polygons", "line art and a diagram of outlines"),
    "constellation_neon": ("constellation", "neon", "light-on-dark line art"),
    "trees_horse": ("trees", "horse", "silhouettes: dark on light, light on dark"),
    "camera_horse": ("camera", "horse", "a grey photo and a silhouette"),
    "coffee_signs": ("coffee", "signs", "a photo and a drawing of words, arrows, hatching"),
    "coins_astronaut": ("coins", "astronaut", "two photos"),
    "signs_polygons": ("signs", "polygons", "words, arrows and hatching with outlines"),
    "house_ringtree": ("house", "ringtree", "line art and a one-piece drawing, split to fit"),
    "camera_big_horse": ("camera", "big_horse", "a silhouette larger than its target, fitted"),
}


def draw_input(name: str) -> torch.Tensor:
    """A gallery input from code: a drawing, or a photo shrunk to the drawings' size."""
    if name in DRAWINGS:
        return DRAWINGS[name]().image
    photo = load_image(data_dir() / PHOTOS[name][0])
    scale = max(SIZE) / max(photo.shape[-2:])
    size = (round(photo.shape[-2] * scale), round(photo.shape[-1] * scale))
    return F.interpolate(photo[None], size=size, mode="area")[0].clamp(0, 1)


def stack(sheets: list[torch.Tensor], gap: int = 8) -> torch.Tensor:
    """Contact sheets one above the other on white: (3, H, W)."""
    width = max(s.shape[-1] for s in sheets)
    rows = [F.pad(s, (0, width - s.shape[-1], 0, gap), value=1.0) for s in sheets]
    return torch.cat(rows, 1)[:, :-gap]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spectral_resnet.gallery", description=__doc__)
    parser.add_argument("--out", type=Path, default=GALLERY, help="where the sheets go")
    parser.add_argument("--redraw", action="store_true", help="redraw the input PNGs first")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    inputs = GALLERY / "inputs"
    names = sorted({n for target, sample, _ in PAIRS.values() for n in (target, sample)})
    if args.redraw:
        inputs.mkdir(parents=True, exist_ok=True)
        for name in names:
            save_image(draw_input(name), inputs / f"{name}.png")
    missing = [n for n in names if not (inputs / f"{n}.png").exists()]
    if missing:
        print(f"error: no gallery inputs {missing} in {inputs}; run with --redraw", file=sys.stderr)
        return 2
    images = {n: load_image(inputs / f"{n}.png")[None] for n in names}
    shader = SpectralShader.from_pretrained("default", ShaderConfig()).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    for pair, (first, second, covers) in tqdm(PAIRS.items(), desc="gallery", unit="pair"):
        sheets = []
        for target, sample in ((first, second), (second, first)):
            with torch.no_grad():
                out = shader(images[target], images[sample])
            name = f"{target}_{sample}"
            sheets.append(render(name, images[target], images[sample], out, shader.pattern)[
                f"{name}_{shader.pattern}_sheet.png"
            ])  # fmt: skip
            report[name] = {
                "covers": covers,
                "pastes": sum(int((b.components[0] > 0).sum()) for b in out.pastes),
                "no_room": sum(int(b.skipped[0].sum()) for b in out.pastes),
                "over_budget": sum(int(b.over_budget[0].sum()) for b in out.pastes),
            }
        save_image(stack(sheets), args.out / f"{pair}.png")
    (args.out / "gallery.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'run (target_sample)':28s} {'pastes':>6s} {'no room':>7s} {'over cap':>8s}")
    for name, r in report.items():
        print(f"{name:28s} {r['pastes']:6d} {r['no_room']:7d} {r['over_budget']:8d}")
    print(f"wrote {len(PAIRS)} pictures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
