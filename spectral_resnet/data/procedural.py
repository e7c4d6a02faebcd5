"""Procedural images: the demo pair and benchmark inputs, drawn by the project's own code.

- `curves`:  like the seed's "toof": curved line work, each stroke one connected curve.
- `diagram`: like the seed's "tone"/tonegraph: disconnected rectangles, arrows and text-like
             marks, the case the prototype merged into blobs.
- `scene`:   a "real-looking" photo stand-in (shaded shapes, gradients, grain) for benchmarks.

Run `python -m spectral_resnet.data.procedural` to remake `assets/toof.png` and `assets/tone.png`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

SUPERSAMPLE = 4  # draw large, then downsample: anti-aliased strokes
DEMO_SIZE = (160, 160)


def _canvas(size: tuple[int, int], colour) -> tuple[Image.Image, ImageDraw.ImageDraw, float]:
    h, w = size
    img = Image.new("RGB", (w * SUPERSAMPLE, h * SUPERSAMPLE), colour)
    return img, ImageDraw.Draw(img), SUPERSAMPLE


def _finish(img: Image.Image, size: tuple[int, int]) -> Tensor:
    h, w = size
    small = img.resize((w, h), Image.Resampling.LANCZOS)
    return to_tensor(small)


def to_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> (3, H, W) float32 in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def curves(size: tuple[int, int] = DEMO_SIZE, seed: int = 0, strokes: int = 3) -> Tensor:
    """Curved strokes (spirals and a wave), each one connected line, on a pale background."""
    rng = np.random.default_rng(seed)
    h, w = size
    img, draw, s = _canvas(size, (246, 242, 232))
    width = max(1, round(0.02 * min(h, w) * s))
    colour = (120, 60, 170)
    wave_y = h * rng.uniform(0.78, 0.85)
    wave = [
        (s * w * (0.1 + 0.8 * u), s * (wave_y + 0.06 * h * math.sin(4 * math.pi * u)))
        for u in np.linspace(0, 1, 200)
    ]
    draw.line(wave, fill=colour, width=width, joint="curve")
    for i in range(strokes):
        cx = w * (i + 0.5) / strokes + rng.uniform(-0.03, 0.03) * w
        cy = h * (0.3 if i % 2 == 0 else 0.5) + rng.uniform(-0.04, 0.04) * h
        turns, radius = rng.uniform(1.3, 1.9), min(h, w) * rng.uniform(0.11, 0.14)
        direction = -1 if i % 2 == 0 else 1
        pts = []
        for u in np.linspace(0, 1, 300):
            r, a = radius * (1 - 0.8 * u), direction * 2 * math.pi * turns * u
            pts.append((s * (cx + r * math.cos(a)), s * (cy + r * math.sin(a))))
        draw.line(pts, fill=colour, width=width, joint="curve")
    return _finish(img, size)


def _arrow(draw, start, end, colour, width, head):
    (x0, y0), (x1, y1) = start, end
    draw.line([start, end], fill=colour, width=width)
    a = math.atan2(y1 - y0, x1 - x0)
    left = (x1 - head * math.cos(a - 0.45), y1 - head * math.sin(a - 0.45))
    right = (x1 - head * math.cos(a + 0.45), y1 - head * math.sin(a + 0.45))
    draw.polygon([end, left, right], fill=colour)


def diagram(size: tuple[int, int] = DEMO_SIZE, seed: int = 0) -> Tensor:
    """A tonegraph-like diagram: boxes, arrows between them, and rows of text-like dashes."""
    rng = np.random.default_rng(seed)
    h, w = size
    img, draw, s = _canvas(size, (250, 250, 250))
    width = max(1, round(0.015 * min(h, w) * s))
    green, dark = (30, 150, 90), (40, 40, 60)
    boxes = []
    for row, col in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        bw, bh = w * rng.uniform(0.22, 0.28), h * rng.uniform(0.16, 0.22)
        x = w * (0.08 + 0.5 * col) + rng.uniform(0, 0.1 * w)
        y = h * (0.1 + 0.5 * row) + rng.uniform(0, 0.08 * h)
        boxes.append((x, y, x + bw, y + bh))
        draw.rectangle([s * x, s * y, s * (x + bw), s * (y + bh)], outline=green, width=width)
        for line in range(2):  # text-like marks inside each box
            ty = y + bh * (0.35 + 0.3 * line)
            tx = x + bw * 0.15
            while tx < x + bw * 0.8:
                dash = bw * rng.uniform(0.08, 0.18)
                draw.line([(s * tx, s * ty), (s * (tx + dash), s * ty)], fill=dark, width=width)
                tx += dash + bw * 0.07
    gap = 0.03 * min(h, w)
    for a, b in [(0, 1), (0, 2), (1, 3)]:
        ax0, ay0, ax1, ay1 = boxes[a]
        bx0, by0, bx1, by1 = boxes[b]
        if abs(ax0 - bx0) < abs(ay0 - by0):  # vertical arrow
            x = s * (min(ax1, bx1) + max(ax0, bx0)) / 2
            start, end = (x, s * (ay1 + gap)), (x, s * (by0 - gap))
        else:
            y = s * (max(ay0, by0) + min(ay1, by1)) / 2
            start, end = (s * (ax1 + gap), y), (s * (bx0 - gap), y)
        _arrow(draw, start, end, green, width, head=0.05 * min(h, w) * s)
    return _finish(img, size)


def scene(size: tuple[int, int] = (256, 256), seed: int = 0) -> Tensor:
    """Photo stand-in: graded sky, shaded ellipses and polygons, soft shadows, sensor grain."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.55 + 0.3 * yy, 0.6 + 0.2 * xx, 0.75 - 0.3 * yy], -1)
    img = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.25) * w, rng.uniform(0.05, 0.25) * h
        colour = tuple(int(c) for c in rng.integers(20, 235, 3))
        if rng.random() < 0.5:
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        else:
            k = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            draw.polygon(
                [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles], fill=colour
            )
    img = img.filter(ImageFilter.GaussianBlur(radius=0.8))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    shade = 0.85 + 0.15 * np.cos(6 * xx + 3 * yy)[..., None]
    arr = np.clip(arr * shade + rng.normal(0, 0.01, arr.shape), 0, 1).astype(np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def write_demo_pair(directory: Path | str = "assets") -> tuple[Path, Path]:
    """Write the demo pair `toof.png` (curves) and `tone.png` (diagram) into `directory`."""
    from spectral_resnet.io import save_image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    toof, tone = directory / "toof.png", directory / "tone.png"
    save_image(curves(seed=3), toof)
    save_image(diagram(seed=1), tone)
    return toof, tone


def main() -> None:
    parser = argparse.ArgumentParser(description="Remake the bundled demo pair.")
    parser.add_argument("--out", default="assets", help="output folder (default: assets)")
    args = parser.parse_args()
    for path in write_demo_pair(args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
