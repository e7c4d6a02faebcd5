"""Views: the sample seen turned and zoomed, so that features which are not rotation- or
scale-invariant (the conv stem's) still match a target that turned or zoomed.

The encoder runs on the sample rendered under a view, and its features are pulled back
onto the sample's own pixels, so every view scores the same sample places. The model keeps,
per pair, the view whose matches are most confident: global orientation and scale selection,
as the steerers keep the best of a descriptor's rotations. Views cost nothing in training,
where the stem learns the small turns and zooms between two views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class View:
    """A turn (degrees, counter-clockwise on screen) and a zoom (> 1: larger) of an image
    about its centre."""

    angle: float = 0.0
    scale: float = 1.0

    @property
    def identity(self) -> bool:
        return self.angle % 360 == 0 and self.scale == 1

    def theta(self, shape: tuple[int, int], device=None) -> Tensor:
        """(2, 3) map of a pixel's normalised (x, y) to its place in the view, for
        F.affine_grid; the aspect ratio is undone, so a turn is a turn on screen."""
        h, w = shape
        a = math.radians(self.angle)
        c, s = math.cos(a) * self.scale, math.sin(a) * self.scale
        return torch.tensor([[c, s * h / w, 0.0], [-s * w / h, c, 0.0]], device=device)


@dataclass(frozen=True)
class ViewSearch:
    """The grid of views tried in two rounds, coarse to fine: every other angle and scale
    (counted from the ones nearest the identity), then the untried neighbours of the best.
    Confidence varies smoothly with the turn and the zoom, so the default 7 x 5 grid is
    searched with 9 + 8 scores instead of 35."""

    angles: tuple[float, ...]  # ascending
    scales: tuple[float, ...]

    @classmethod
    def of(cls, angles: list[float], scales: list[float]) -> ViewSearch:
        return cls(
            tuple(sorted({float(a) for a in angles})), tuple(sorted({float(s) for s in scales}))
        )

    def __len__(self) -> int:
        return len(self.angles) * len(self.scales)

    def first(self) -> list[View]:
        """The coarse round, the identity (or the view nearest it) first: it wins ties."""
        a0 = min(range(len(self.angles)), key=lambda i: abs(self.angles[i]))
        s0 = min(range(len(self.scales)), key=lambda j: abs(math.log(self.scales[j])))
        return [
            View(self.angles[i], self.scales[j])
            for i in sorted(range(a0 % 2, len(self.angles), 2), key=lambda i: i != a0)
            for j in sorted(range(s0 % 2, len(self.scales), 2), key=lambda j: j != s0)
        ]

    def around(self, best: View) -> list[View]:
        """The fine round: best's neighbours on the grid that the coarse round left out."""
        i, j = self.angles.index(best.angle), self.scales.index(best.scale)
        near = [
            View(a, s)
            for a in self.angles[max(0, i - 1) : i + 2]
            for s in self.scales[max(0, j - 1) : j + 2]
        ]
        tried = set(self.first())
        return [v for v in near if v != best and v not in tried]


def thetas(views: View | list[View], shape: tuple[int, int], batch: int, device=None) -> Tensor:
    """(B, 2, 3) per-image maps: one view for the whole batch, or one view per image."""
    if isinstance(views, View):
        return views.theta(shape, device).expand(batch, -1, -1)
    if len(views) != batch:
        raise ValueError(f"{len(views)} views for a batch of {batch} images")
    return torch.stack([v.theta(shape, device) for v in views])


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def render(images: Tensor, views: View | list[View]) -> Tensor:
    """(B, C, H, W) as seen under the view (or each image under its own); zeros where the
    view looks past the image."""
    theta = thetas(views, images.shape[-2:], images.shape[0], images.device)  # (B, 2, 3)
    row = theta.new_tensor([0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 3)
    return _warp(images, torch.linalg.inv(torch.cat([theta, row], 1))[:, :2])


def pull_back(features: Tensor, views: View | list[View]) -> Tensor:
    """Feature maps (B, C, H, W) of `render(images, views)` -> at each image's own pixels;
    zeros where a pixel left the view (so it matches nothing)."""
    return _warp(features, thetas(views, features.shape[-2:], features.shape[0], features.device))
