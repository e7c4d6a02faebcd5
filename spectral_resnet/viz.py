"""Pictures of a shader run: activation heatmaps, seed/mask overlays, contact sheets."""

from __future__ import annotations

import csv
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from spectral_resnet.io import to_uint8

# "inferno"-like anchors: dark purple -> red -> yellow, readable in print and for most CVD
_ANCHORS = torch.tensor(
    [
        [0.00, 0.00, 0.02],
        [0.26, 0.04, 0.41],
        [0.58, 0.15, 0.40],
        [0.87, 0.32, 0.23],
        [0.99, 0.65, 0.04],
        [0.99, 1.00, 0.64],
    ]
)
_MASK_COLOURS = torch.tensor(
    [[0.90, 0.10, 0.30], [0.10, 0.60, 0.90], [0.95, 0.60, 0.05], [0.20, 0.75, 0.30]]
)


HEATMAP_SIDE = 1024  # heatmaps are drawn at most this long: the activation is computed at
# the working resolution (model.work_size), so a phone-sized heatmap would only repeat it


def heatmap(values: Tensor, side: int = HEATMAP_SIDE) -> Tensor:
    """(H, W) values -> (3, H', W') colour image, area-reduced to at most `side` pixels long.
    Normalised robustly (99.5th percentile, then a square root) so a few strong peaks do not
    leave the rest of the map black."""
    v = values.detach().float().cpu()
    factor = max(v.shape) / side
    if factor > 1:
        size = [max(1, round(n / factor)) for n in v.shape]
        v = F.interpolate(v[None, None], size=size, mode="area")[0, 0]
    v = v - v.min()
    few = v.flatten()[:: max(1, v.numel() // (1 << 20))]  # the percentile of <= ~1 M values
    top = few.kthvalue(max(1, int(0.995 * few.numel()))).values
    scale = torch.maximum(top, 0.05 * v.max()).clamp_min(1e-12)
    v = (v / scale).clamp(0, 1).sqrt()
    pos = v * (len(_ANCHORS) - 1)
    lo = pos.floor().long().clamp(max=len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac  # (H, W, 3)
    return rgb.permute(2, 0, 1)


def overlay(image: Tensor, masks: Iterable[Tensor] | None, seeds: Tensor | None) -> Tensor:
    """Target (3, H, W) with retrieved masks (H, W) each tinted and seeds (S, 2) marked, the
    i-th mask and seed in the same colour: (3, H, W) uint8, as drawn (no float copy of a
    phone-sized picture)."""
    out = image.detach().float().cpu().clone()
    for i, m in enumerate([] if masks is None else masks):
        m = m.detach().cpu()
        box = mask_box(m)
        if box is None:  # an unused seed slot
            continue
        colour = _MASK_COLOURS[i % len(_MASK_COLOURS)][:, None, None]
        a = 0.6 * m[box].float().clamp(0, 1)[None]
        out[:, box[0], box[1]] = out[:, box[0], box[1]] * (1 - a) + colour * a
    pil = Image.fromarray(to_uint8(out))
    if seeds is not None:
        draw = ImageDraw.Draw(pil)
        r = max(2, round(0.02 * max(pil.size)))
        for i, (y, x) in enumerate(seeds.detach().cpu().tolist()):
            if y < 0:
                continue
            colour = tuple(int(255 * c) for c in _MASK_COLOURS[i % len(_MASK_COLOURS)])
            draw.line([(x - r, y), (x + r, y)], fill=colour, width=1)
            draw.line([(x, y - r), (x, y + r)], fill=colour, width=1)
            draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


def mask_box(mask: Tensor) -> tuple[slice, slice] | None:
    """The bounding box of a mask's positive pixels (H, W) as slices; None if it has none.
    Row and column maxima, not a nonzero() list: a phone-sized mask costs two reductions."""
    rows = torch.nonzero(mask.amax(1) > 0)[:, 0]
    if len(rows) == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = torch.nonzero(mask[y0:y1].amax(0) > 0)[:, 0]
    return slice(y0, y1), slice(int(cols[0]), int(cols[-1]) + 1)


def contact_sheet(panels: list[tuple[str, Tensor]], height: int = 256) -> Tensor:
    """Label + image panels side by side, each fitted into a `height` x 2 `height` box (aspect
    kept, so a 2000 x 1 strip stays small): (3, H', W'). Panels are float in [0, 1] or uint8
    pictures, or (H, W) values drawn as heatmaps."""
    tiles = []
    for title, img in panels:
        img = img.detach().cpu()
        img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
        if img.dim() == 2:
            img = heatmap(img)
        h, w = img.shape[-2:]
        s = min(height / h, 2 * height / w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        tile = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
        pil = Image.new("RGB", (max(size[1], 60), height + 18), (255, 255, 255))
        pil.paste(Image.fromarray(to_uint8(tile.clamp(0, 1))), (0, 18))
        ImageDraw.Draw(pil).text((4, 3), title, fill=(0, 0, 0))
        tiles.append(pil)
    gap = 6
    sheet = Image.new(
        "RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), height + 18), (255, 255, 255)
    )
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + gap
    return pil_to_tensor(sheet)


def pil_to_tensor(pil: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def line_plot(
    series: dict[str, list[tuple[float, float]]], title: str, size=(420, 280), xlabel="epoch"
) -> Tensor:
    """A small line chart (no plotting library needed): name -> [(x, y), ...] -> (3, H, W)."""
    w, h = size
    left, right, top, bottom = 48, 12, 24, 34
    pil = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(pil)
    points = [p for pts in series.values() for p in pts]
    if not points:
        return pil_to_tensor(pil)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def to_px(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
        )

    draw.rectangle([left, top, w - right, h - bottom], outline=(160, 160, 160))
    for frac in (0.0, 0.5, 1.0):
        y = y0 + frac * (y1 - y0)
        _, py = to_px(x0, y)
        draw.text((4, py - 6), f"{y:.3g}", fill=(60, 60, 60))
    draw.text((left, h - bottom + 4), f"{x0:g}", fill=(60, 60, 60))
    draw.text((w - right - 20, h - bottom + 4), f"{x1:g}", fill=(60, 60, 60))
    draw.text((w // 2 - 15, h - 16), xlabel, fill=(60, 60, 60))
    draw.text((left, 5), title, fill=(0, 0, 0))
    for i, (name, pts) in enumerate(series.items()):
        colour = tuple(int(255 * c) for c in _MASK_COLOURS[i % len(_MASK_COLOURS)])
        pts = sorted(pts)
        if len(pts) > 1:
            draw.line([to_px(*p) for p in pts], fill=colour, width=2)
        for p in pts:
            px, py = to_px(*p)
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        draw.text((w - right - 110, top + 6 + 14 * i), name, fill=colour)
    return pil_to_tensor(pil)


def training_curves(metrics_csv: str, names=("pck@0.05", "loss")) -> Tensor:
    """Train/val curves of a Lightning CSVLogger metrics.csv, one panel per metric."""
    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    panels = []
    for name in names:
        series = {}
        for stage in ("train", "val"):
            key = f"{stage}/{name}"
            pts = [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
            if pts:
                series[stage] = pts
        panels.append(line_plot(series, name))
    return torch.cat(panels, dim=2)
