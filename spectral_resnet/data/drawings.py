"""Drawings with their true ink: the pairs paste quality is judged on.

A `Sketch` draws every mark twice, stroke for stroke: in colour (anti-aliased by drawing at
4x and box-filtering down) and as a clean coverage mask. The mask thresholded at half
coverage, labelled with 8-connectivity, is the reference a person would agree with: one
component per shape. Nothing here is fitted: the shader sees only the colour image.

- named drawings (`DRAWINGS`) for the gallery: line art, light-on-dark line art,
  silhouettes, signs with text, arrows and hatching;
- `random_drawing(seed)` for the paste benchmark and the tests: marks of every kind, in
  random colours, sizes and polarity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from spectral_resnet import segments
from spectral_resnet.data.procedural import to_tensor

SUPERSAMPLE = 4
SIZE = (192, 192)  # (H, W) of the gallery drawings
Point = tuple[float, float]  # (x, y) in output pixels


@dataclass(frozen=True)
class Drawing:
    """A drawn image (3, H, W) and its reference ink (H, W): coverage >= 1/2."""

    image: Tensor
    ink: Tensor
    # the parts a person would cut a one-piece drawing into (H, W), 1..N on their ink and 0
    # on what joins them; None: every component is a part of its own
    parts: Tensor | None = None

    def components(self, min_area: int = 1) -> Tensor:
        """The reference labelling (H, W): 8-connected ink, pieces under min_area dropped."""
        return segments.annihilate_fuzz(segments.components(self.ink), min_area=min_area)


class Sketch:
    """A canvas drawn at SUPERSAMPLE x in colour and, mark for mark, as a coverage mask."""

    def __init__(self, size: tuple[int, int] = SIZE, background=(250, 250, 250)):
        h, w = size
        self.size = size
        self.rgb = Image.new("RGB", (w * SUPERSAMPLE, h * SUPERSAMPLE), background)
        self.mask = Image.new("L", self.rgb.size, 0)
        self.pens = (ImageDraw.Draw(self.rgb), ImageDraw.Draw(self.mask))

    def _draw(self, mark: Callable[[ImageDraw.ImageDraw, object], None], colour) -> None:
        for pen, fill in zip(self.pens, (tuple(colour), 255)):
            mark(pen, fill)

    @staticmethod
    def _up(points: list[Point]) -> list[Point]:
        return [(SUPERSAMPLE * x, SUPERSAMPLE * y) for x, y in points]

    def line(self, points: list[Point], width: float, colour) -> None:
        """An open polyline `width` px wide."""
        pts, wd = self._up(points), round(width * SUPERSAMPLE)
        self._draw(lambda pen, fill: pen.line(pts, fill=fill, width=wd, joint="curve"), colour)

    def outline(self, points: list[Point], width: float, colour) -> None:
        """A closed outline through `points`."""
        self.line([*points, points[0], points[1]], width, colour)

    def fill(self, points: list[Point], colour) -> None:
        """A filled polygon (a silhouette)."""
        pts = self._up(points)
        self._draw(lambda pen, fill: pen.polygon(pts, fill=fill), colour)

    def ellipse(self, centre: Point, radii: Point, colour, width: float | None = None) -> None:
        """A filled ellipse, or its outline `width` px wide."""
        (cx, cy), (rx, ry) = centre, radii
        box = self._up([(cx - rx, cy - ry), (cx + rx, cy + ry)])
        wd = None if width is None else round(width * SUPERSAMPLE)
        if wd is None:
            self._draw(lambda pen, fill: pen.ellipse(box, fill=fill), colour)
        else:
            self._draw(lambda pen, fill: pen.ellipse(box, outline=fill, width=wd), colour)

    def polygon(self, centre: Point, radius: float, sides: int, width: float, colour, turn=0.0):
        """A regular polygon outline."""
        cx, cy = centre
        angles = [turn + 2 * math.pi * i / sides - math.pi / 2 for i in range(sides)]
        self.outline(
            [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles], width, colour
        )

    def arrow(self, start: Point, end: Point, width: float, colour) -> None:
        """A shaft with a filled head: one shape."""
        (x0, y0), (x1, y1) = start, end
        a, head = math.atan2(y1 - y0, x1 - x0), 3 * width + 3
        back = (x1 - 0.6 * head * math.cos(a), y1 - 0.6 * head * math.sin(a))
        self.line([start, back], width, colour)
        self.fill(
            [
                end,
                (x1 - head * math.cos(a - 0.45), y1 - head * math.sin(a - 0.45)),
                (x1 - head * math.cos(a + 0.45), y1 - head * math.sin(a + 0.45)),
            ],
            colour,
        )

    def hatching(self, box: tuple[float, float, float, float], spacing: float, width, colour):
        """Parallel diagonal strokes clipped to a box: one component per stroke."""
        x0, y0, x1, y1 = box
        t = x0 - (y1 - y0) + spacing
        while t < x1 - spacing:
            a = (max(t, x0), y0 + max(0.0, x0 - t))  # the 45-degree line x - y = t - y0
            b = (min(t + (y1 - y0), x1), y0 + min(y1 - y0, x1 - t))
            if math.dist(a, b) > 3 * width:
                self.line([a, b], width, colour)
            t += spacing

    def text(self, corner: Point, words: str, height: float, colour) -> None:
        """Words in Pillow's bundled font, `height` px tall."""
        font = ImageFont.load_default(size=round(height * SUPERSAMPLE))
        xy = self._up([corner])[0]
        self._draw(lambda pen, fill: pen.text(xy, words, fill=fill, font=font), colour)

    def finish(self) -> Drawing:
        """Box-filter both layers down: the anti-aliased image and the half-coverage ink."""
        image = to_tensor(self.rgb.reduce(SUPERSAMPLE))
        coverage = np.asarray(self.mask.reduce(SUPERSAMPLE), dtype=np.float32) / 255
        return Drawing(image, torch.from_numpy(coverage >= 0.5))


def house(size=SIZE) -> Drawing:
    """Black line art: a house outline with a door, a window and a chimney."""
    h, w = size
    sk, ink, wd = Sketch(size, (252, 252, 250)), (20, 20, 20), 0.016 * w
    x0, x1, y0, y1 = 0.3 * w, 0.7 * w, 0.5 * h, 0.82 * h
    sk.outline([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], wd, ink)
    sk.outline([(x0 - 0.04 * w, y0), (0.5 * w, 0.28 * h), (x1 + 0.04 * w, y0)], wd, ink)
    sk.outline(
        [(0.45 * w, 0.66 * h), (0.55 * w, 0.66 * h), (0.55 * w, y1), (0.45 * w, y1)], wd, ink
    )
    sk.outline(
        [(0.6 * w, 0.56 * h), (0.66 * w, 0.56 * h), (0.66 * w, 0.62 * h), (0.6 * w, 0.62 * h)],
        wd,
        ink,
    )
    sk.line([(0.12 * w, 0.9 * h), (0.88 * w, 0.9 * h)], wd, ink)
    return sk.finish()


def polygons(size=SIZE) -> Drawing:
    """Four blue regular polygons (3 px outlines) and a red line."""
    h, w = size
    sk, blue = Sketch(size, (255, 255, 255)), (40, 70, 200)
    for (cx, cy), sides in zip(
        [(0.25, 0.25), (0.72, 0.25), (0.25, 0.68), (0.72, 0.68)], (3, 4, 5, 6)
    ):
        sk.polygon((cx * w, cy * h), 0.13 * w, sides, 3, blue)
    sk.line([(0.12 * w, 0.92 * h), (0.85 * w, 0.86 * h)], 3, (210, 40, 40))
    return sk.finish()


def constellation(size=SIZE) -> Drawing:
    """Light line art on a dark sky: star figures joined by lines, and a crescent."""
    h, w = size
    sk, pale = Sketch(size, (18, 22, 48)), (230, 236, 255)
    stars = [(0.15, 0.2), (0.3, 0.12), (0.42, 0.28), (0.3, 0.38)]
    sk.line([(x * w, y * h) for x, y in stars], 2, pale)
    stars = [(0.6, 0.55), (0.75, 0.48), (0.88, 0.62), (0.7, 0.75), (0.6, 0.55)]
    sk.line([(x * w, y * h) for x, y in stars], 2, pale)
    sk.ellipse((0.75 * w, 0.2 * h), (0.08 * w, 0.08 * h), (250, 220, 120), width=3)
    sk.line([(0.1 * w, 0.85 * h), (0.3 * w, 0.78 * h), (0.45 * w, 0.88 * h)], 2, pale)
    return sk.finish()


def neon(size=SIZE) -> Drawing:
    """Light-on-dark shapes: a star outline, rings and a zigzag."""
    h, w = size
    sk = Sketch(size, (25, 20, 30))
    star = [
        (0.28 * w + r * math.cos(a), 0.3 * h + r * math.sin(a))
        for i in range(10)
        for a, r in [(-math.pi / 2 + i * math.pi / 5, (0.16 if i % 2 == 0 else 0.07) * w)]
    ]
    sk.outline(star, 3, (255, 230, 80))
    sk.ellipse((0.72 * w, 0.3 * h), (0.12 * w, 0.12 * h), (90, 240, 220), width=3)
    sk.ellipse((0.3 * w, 0.72 * h), (0.1 * w, 0.06 * h), (255, 120, 200), width=3)
    zig = [(0.55 * w + i * 0.07 * w, (0.65 if i % 2 == 0 else 0.8) * h) for i in range(6)]
    sk.line(zig, 3, (120, 255, 120))
    return sk.finish()


def horse_points(x: float, y: float, s: float) -> list[list[Point]]:
    """A horse silhouette as overlapping polygons (body, neck and head, legs, tail), origin at
    the top left of its box, `s` px per unit."""
    body = [(0.25, 0.35), (0.75, 0.32), (0.82, 0.45), (0.75, 0.6), (0.28, 0.62), (0.2, 0.5)]
    neck = [(0.68, 0.36), (0.82, 0.1), (0.95, 0.14), (0.97, 0.22), (0.88, 0.24), (0.8, 0.45)]
    legs = [
        [(x0, 0.55), (x0 + 0.06, 0.55), (x0 + 0.05 + lean, 0.95), (x0 + lean, 0.95)]
        for x0, lean in [(0.24, -0.04), (0.34, 0.03), (0.66, -0.02), (0.74, 0.05)]
    ]
    tail = [(0.24, 0.38), (0.12, 0.45), (0.06, 0.7), (0.1, 0.72), (0.2, 0.5), (0.27, 0.45)]
    return [[(x + s * u, y + s * v) for u, v in part] for part in (body, neck, *legs, tail)]


def horse(size=SIZE) -> Drawing:
    """A white horse silhouette on black (the case ink=dark gets backwards)."""
    h, w = size
    sk = Sketch(size, (8, 8, 8))
    for part in horse_points(0.12 * w, 0.15 * h, 0.75 * w):
        sk.fill(part, (245, 245, 240))
    return sk.finish()


def trees(size=SIZE) -> Drawing:
    """Dark silhouettes on a pale sky: three trees and a hill line."""
    h, w = size
    sk, green = Sketch(size, (225, 235, 245)), (25, 60, 35)
    for cx, top, r in [(0.18, 0.2, 0.11), (0.5, 0.35, 0.08), (0.8, 0.15, 0.12)]:
        cx, top, r = cx * w, top * h, r * w
        sk.fill([(cx, top), (cx + r, top + 2.2 * r), (cx - r, top + 2.2 * r)], green)
        sk.fill([(cx - 0.15 * r, top + 2.2 * r), (cx + 0.15 * r, top + 2.2 * r),
                 (cx + 0.15 * r, top + 2.8 * r), (cx - 0.15 * r, top + 2.8 * r)], (70, 45, 30))  # fmt: skip
    sk.line([(0, 0.9 * h), (0.3 * w, 0.84 * h), (0.7 * w, 0.92 * h), (w, 0.86 * h)], 3, green)
    return sk.finish()


def signs(size=SIZE) -> Drawing:
    """A diagram of words, arrows and a hatched panel on white."""
    h, w = size
    sk, ink = Sketch(size, (250, 248, 244)), (30, 30, 40)
    sk.text((0.08 * w, 0.08 * h), "IN", 0.12 * h, ink)
    sk.text((0.62 * w, 0.08 * h), "OUT", 0.12 * h, (180, 30, 30))
    sk.arrow((0.25 * w, 0.15 * h), (0.55 * w, 0.15 * h), 2.5, ink)
    sk.arrow((0.75 * w, 0.3 * h), (0.75 * w, 0.55 * h), 2.5, (30, 90, 180))
    sk.hatching((0.1 * w, 0.45 * h, 0.45 * w, 0.85 * h), 0.06 * w, 2.5, ink)
    sk.polygon((0.75 * w, 0.78 * h), 0.1 * w, 4, 3, (30, 90, 180), turn=math.pi / 4)
    return sk.finish()


def ringtree(size=SIZE) -> Drawing:
    """One connected drawing: a tree of six rings joined by lines (a sample with one
    component, too big to paste whole into most targets)."""
    h, w = size
    sk, ink = Sketch(size, (250, 250, 250)), (40, 40, 160)
    nodes = [(0.5, 0.16), (0.26, 0.47), (0.74, 0.47), (0.16, 0.83), (0.42, 0.83), (0.83, 0.83)]
    nodes, r = [(x * w, y * h) for x, y in nodes], 0.085 * w
    for a, b in [(0, 1), (0, 2), (1, 3), (1, 4), (2, 5)]:
        (xa, ya), (xb, yb) = nodes[a], nodes[b]
        d = math.hypot(xb - xa, yb - ya)
        ux, uy = (xb - xa) / d, (yb - ya) / d
        sk.line([(xa + r * ux, ya + r * uy), (xb - r * ux, yb - r * uy)], 3, ink)  # ring to ring
    for centre in nodes:
        sk.ellipse(centre, (r, r), ink, width=3)
    return sk.finish()


def big_horse(size=SIZE) -> Drawing:
    """A dark horse silhouette on a canvas 1.7x by 2.1x the given size: a sample larger than
    any target of that size (the shape is fitted to the target's frame before min_scale)."""
    h, w = round(1.7 * size[0]), round(2.1 * size[1])
    sk = Sketch((h, w), (250, 250, 250))
    for part in horse_points(0.05 * w, 0.05 * h, 0.9 * min(h, w)):
        sk.fill(part, (60, 40, 30))
    return sk.finish()


DRAWINGS: dict[str, Callable[..., Drawing]] = {
    f.__name__: f
    for f in (house, polygons, constellation, neon, horse, trees, signs, ringtree, big_horse)
}


def random_drawing(seed: int, size: tuple[int, int] = SIZE) -> Drawing:
    """Marks of every kind (outlines 2-4 px, arrows, words, hatching, silhouettes), one per
    cell of a jittered 3 x 3 grid, in random colours; light-on-dark one time in three."""
    rng = np.random.default_rng(seed)
    h, w = size
    dark = rng.random() < 1 / 3
    background = tuple(
        int(v) for v in (rng.integers(10, 50, 3) if dark else rng.integers(225, 256, 3))
    )
    sk = Sketch(size, background)
    cell = min(h, w) / 3

    def colour():
        v = rng.integers(150, 256, 3) if dark else rng.integers(0, 120, 3)
        return tuple(int(c) for c in v)

    for i in rng.permutation(9)[: rng.integers(4, 8)]:
        cx = (i % 3 + 0.5) * w / 3 + rng.uniform(-0.08, 0.08) * cell
        cy = (i // 3 + 0.5) * h / 3 + rng.uniform(-0.08, 0.08) * cell
        r, width, kind = cell * rng.uniform(0.25, 0.38), rng.uniform(2, 4), rng.integers(6)
        if kind == 0:
            sk.polygon(
                (cx, cy), r, int(rng.integers(3, 8)), width, colour(), turn=rng.uniform(0, 1)
            )
        elif kind == 1:
            sk.ellipse((cx, cy), (r, r * rng.uniform(0.5, 1)), colour(), width=width)
        elif kind == 2:
            a = rng.uniform(0, 2 * math.pi)
            start = (cx - r * math.cos(a), cy - r * math.sin(a))
            sk.arrow(start, (cx + r * math.cos(a), cy + r * math.sin(a)), width, colour())
        elif kind == 3:
            word = "".join(rng.choice(list("AEHKMNRSTWXZ"), 2))
            sk.text((cx - 0.8 * r, cy - 0.6 * r), word, 1.1 * r, colour())
        elif kind == 4:
            sk.hatching(
                (cx - r, cy - r, cx + r, cy + r), rng.uniform(0.3, 0.45) * r, width, colour()
            )
        else:
            fill = colour()
            for part in horse_points(cx - r, cy - r, 2 * r):
                sk.fill(part, fill)
    return sk.finish()


def one_piece(seed: int, size: tuple[int, int] = SIZE) -> Drawing:
    """One connected drawing: 4-7 rings on a jittered grid, joined ring to ring by lines
    along a random spanning tree (a sample whose only shape rarely fits whole)."""
    rng = np.random.default_rng(seed)
    h, w = size
    sk, ink = Sketch(size, (250, 250, 250)), tuple(int(c) for c in rng.integers(0, 120, 3))
    cells = rng.permutation(9)[: rng.integers(4, 8)]
    r = min(h, w) * rng.uniform(0.06, 0.09)
    nodes = [
        (
            (i % 3 + 0.5 + rng.uniform(-0.15, 0.15)) * w / 3,
            (i // 3 + 0.5 + rng.uniform(-0.15, 0.15)) * h / 3,
        )
        for i in cells
    ]
    width = rng.uniform(2, 3.5)
    for k in range(1, len(nodes)):  # each ring joins its nearest earlier one
        (xa, ya) = nodes[k]
        xb, yb = min(nodes[:k], key=lambda p: math.dist(p, nodes[k]))
        d = math.hypot(xb - xa, yb - ya)
        ux, uy = (xb - xa) / d, (yb - ya) / d
        sk.line([(xa + r * ux, ya + r * uy), (xb - r * ux, yb - r * uy)], width, ink)
    for centre in nodes:
        sk.ellipse(centre, (r, r), ink, width=width)
    drawing = sk.finish()
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    parts = torch.zeros((h, w), dtype=torch.long)
    for k, (cx, cy) in enumerate(nodes, start=1):  # each ring, with its anti-aliased rim
        near = (((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() - r).abs() <= width / 2 + 1.5
        parts[near & drawing.ink] = k
    return replace(drawing, parts=parts)


def crowded(seed: int, size: tuple[int, int] = SIZE) -> Drawing:
    """A 5 x 5 grid of small outlines: a target with little free space anywhere."""
    rng = np.random.default_rng(seed)
    h, w = size
    sk = Sketch(size, (250, 250, 250))
    for i in range(25):
        cx, cy = (i % 5 + 0.5) * w / 5, (i // 5 + 0.5) * h / 5
        ink = tuple(int(c) for c in rng.integers(0, 120, 3))
        sk.polygon(
            (cx, cy), min(h, w) / 5 * rng.uniform(0.3, 0.4), int(rng.integers(3, 7)), 2.5, ink
        )
    return sk.finish()


def oversized_silhouette(seed: int, size: tuple[int, int] = SIZE) -> Drawing:
    """A horse silhouette filling a canvas 1.5-2x the given size: a sample larger than its target."""
    rng = np.random.default_rng(seed)
    grow = rng.uniform(1.5, 2.0)
    h, w = round(size[0] * grow), round(size[1] * grow)
    sk = Sketch((h, w), (250, 250, 250))
    ink = tuple(int(c) for c in rng.integers(0, 100, 3))
    for part in horse_points(0.05 * w, 0.05 * h, 0.9 * min(h, w)):
        sk.fill(part, ink)
    drawing = sk.finish()
    return replace(drawing, parts=drawing.ink.long())  # the horse is one part: cut, not whole
