"""Views: the sample seen turned and zoomed, so that features which are not rotation- or
scale-invariant (the conv stem's) still match a target that turned or zoomed.

The encoder runs on the sample rendered under a view as a warped copy would show it (in the
image's own frame, so the parts turned or zoomed out of it are cut off), and its features
are pulled back onto the sample's own pixels, so every view scores the same sample places.
The places the frame cuts off take their features from the same view rendered whole, on a
canvas that holds it: no sample place is blank, so each can still be matched and the layers
mix no empty tokens. The model keeps, per pair, the view whose matches are most confident:
global orientation and scale selection, as the steerers keep the best of a descriptor's
rotations. Views cost nothing in training, where the stem learns the small turns and zooms
between two views."""

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
        """(2, 3) map of a pixel's normalised (x, y) to its place in the view, in units of the
        image's half sides, for F.affine_grid; the aspect ratio is undone, so a turn is a
        turn on screen."""
        h, w = shape
        a = math.radians(self.angle)
        c, s = math.cos(a) * self.scale, math.sin(a) * self.scale
        return torch.tensor([[c, s * h / w, 0.0], [-s * w / h, c, 0.0]], device=device)

    def canvas(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(H, W) px of the box that holds the turned and zoomed image, never smaller than
        its frame: the view crops nothing. Each side keeps the image's parity, so an unzoomed
        image sits on the canvas's pixels."""
        h, w = shape
        a = math.radians(self.angle)
        c, s = abs(math.cos(a)) * self.scale, abs(math.sin(a)) * self.scale

        def side(extent: float, parity: int) -> int:
            n = max(parity, math.ceil(extent - 1e-6))
            return n + (n - parity) % 2

        return side(s * w + c * h, h), side(s * h + c * w, w)


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

    def nearest(self, view: View) -> View:
        """The grid's view closest to `view` in turn and in log zoom."""
        a = min(self.angles, key=lambda x: abs((x - view.angle + 180) % 360 - 180))
        s = min(self.scales, key=lambda x: abs(math.log(x / view.scale)))
        return View(a, s)

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


def fitted_view(flow: Tensor, valid: Tensor) -> View:
    """The turn and zoom that best carry the sample onto the target, fitted to a pair's true
    flow (H, W, 2) (sample x, y per target pixel; valid (H, W) bool): the least-squares
    similarity between the two point sets, translation left out. What a perfect view search
    would find; training reads the sample under it."""
    h, w = valid.shape
    ys, xs = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    z_t = torch.complex(xs, ys)[valid.cpu()].to(torch.complex128)
    z_s = torch.complex(flow[..., 0], flow[..., 1]).cpu()[valid.cpu()].to(torch.complex128)
    if len(z_t) < 2:
        return View()
    z_t, z_s = z_t - z_t.mean(), z_s - z_s.mean()
    # target = scale * e^{-i angle} * sample, in screen (y-down) coordinates (View.theta)
    a = complex((z_t * z_s.conj()).sum() / (z_s.abs() ** 2).sum().clamp_min(1e-12))
    return View(-math.degrees(math.atan2(a.imag, a.real)), abs(a))


def _warp(x: Tensor, theta: Tensor, size: tuple[int, int]) -> Tensor:
    """x (B, C, h, w) sampled at affine_grid(theta) onto (B, C, *size); zeros outside x."""
    grid = F.affine_grid(theta, [*x.shape[:2], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def canvas(views: View | list[View], shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) px one batch renders on: large enough for every image's view."""
    boxes = [v.canvas(shape) for v in ([views] if isinstance(views, View) else views)]
    return max(b[0] for b in boxes), max(b[1] for b in boxes)


def thetas(
    views: View | list[View], shape: tuple[int, int], box: tuple[int, int], batch: int, device=None
) -> Tensor:
    """(B, 2, 3) per-image maps of an image pixel to its place on the (H, W) canvas `box`,
    normalised as affine_grid's are: one view for the whole batch, or one per image."""
    if isinstance(views, View):
        views = [views] * batch
    if len(views) != batch:
        raise ValueError(f"{len(views)} views for a batch of {batch} images")
    to_box = torch.tensor([[shape[1] / box[1]], [shape[0] / box[0]]], device=device)  # (2, 1)
    return torch.stack([to_box * v.theta(shape, device) for v in views])


def render(images: Tensor, views: View | list[View], whole: bool = False) -> Tensor:
    """(B, C, H, W) as seen under the view (or each image under its own), in the images'
    own frame (zeros where the view looks past the image; cut off where it leaves the frame),
    or whole, on the canvas that holds every image's view."""
    box = canvas(views, images.shape[-2:]) if whole else images.shape[-2:]
    theta = thetas(views, images.shape[-2:], box, images.shape[0], images.device)  # (B, 2, 3)
    row = theta.new_tensor([0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 3)
    return _warp(images, torch.linalg.inv(torch.cat([theta, row], 1))[:, :2], box)


def pull_back(features: Tensor, views: View | list[View], shape: tuple[int, int]) -> Tensor:
    """Feature maps (B, C, h, w) of `render(images, views, whole)` -> (B, C, *shape), at each
    image's own pixels (shape: the images' (H, W)); zeros where a pixel left the frame."""
    theta = thetas(views, shape, features.shape[-2:], features.shape[0], features.device)
    return _warp(features, theta, shape)


def shown(views: View | list[View], shape: tuple[int, int], batch: int, device=None) -> Tensor:
    """(B, H, W) bool: the pixels of each image its view keeps in the image's own frame
    (where pull_back reads them: the same grid)."""
    grid = F.affine_grid(thetas(views, shape, shape, batch, device), [batch, 1, *shape], False)
    return (grid.abs() <= 1).all(-1)  # grid: (B, H, W, 2), each pixel's place in the frame


def crops(views: View | list[View], shape: tuple[int, int]) -> bool:
    """Whether any view leaves part of its image out of the image's frame."""
    return any(b > s for b, s in zip(canvas(views, shape), shape))
