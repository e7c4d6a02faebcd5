"""Shading: gates (locality, activation), the soft blend, void seeking, thicken and shadow."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from spectral_resnet.spectral.graph import to_grey


def blend(target: Tensor, source: Tensor, alpha: Tensor) -> Tensor:
    """The seed's soft blend (1 - alpha) * target + alpha * source (= h + alpha (a - h))."""
    return target + alpha * (source - target)


def activation_gate(act: Tensor, threshold: float, softness: float = 0.1) -> Tensor:
    """Copies appear where act > threshold, shaped by the activation's contours."""
    return ((act - threshold) / softness).clamp(0, 1)


def point_distances(points: Tensor, shape: tuple[int, int]) -> Tensor:
    """Euclidean distance of every pixel to each point (..., 2) (y, x): (..., H, W)."""
    h, w = shape
    ys = torch.arange(h, dtype=torch.float32, device=points.device).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=points.device).view(1, w)
    p = points.float()
    return ((ys - p[..., 0, None, None]) ** 2 + (xs - p[..., 1, None, None]) ** 2).sqrt()


def locality_gate(points: Tensor, shape: tuple[int, int], radius: float) -> Tensor:
    """exp(-dist / radius) around each seed (..., 2); seeds marked (-1, -1) give zeros."""
    gate = torch.exp(-point_distances(points, shape) / radius)
    return gate * (points[..., 0] >= 0).float()[..., None, None]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W): the grid heat kernel at time sigma^2 / 2."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c
    )
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )


def ink_mask(image: Tensor, strength: Tensor, threshold: float = 0.5, ink: str = "dark") -> Tensor:
    """Boundary pixels on the ink side of their edge: (B, H, W) bool.

    The boundary marks both sides of every edge; the side darker ("dark") or lighter
    ("light") than its neighbourhood is the stroke, the other side is halo. "any" keeps both.
    """
    if ink not in ("dark", "light", "any"):
        raise ValueError(f"ink must be 'dark', 'light' or 'any', got {ink!r}")
    edge = strength > threshold
    if ink == "any":
        return edge
    luma = to_grey(image)
    local = F.avg_pool2d(luma, 5, 1, 2, count_include_pad=False)
    side = luma < local if ink == "dark" else luma > local
    return edge & side[:, 0]


def void_distance(ink: Tensor) -> Tensor:
    """Distance (pixels) from every pixel to the nearest ink pixel or the image border,
    (B, H, W): large in open space, so pastes land there and stay on the canvas."""
    out = []
    for m in ink.detach().cpu().numpy():  # one exact EDT per image (scipy)
        padded = np.pad(~m, 1, constant_values=False)  # the border counts as ink
        out.append(distance_transform_edt(padded)[1:-1, 1:-1])
    return torch.from_numpy(np.stack(out)).float().to(ink.device)


def toward_void(
    points: Tensor, void: Tensor, reach: float, footprint: Tensor | float = float("inf")
) -> Tensor:
    """Move each point (B, S, 2) toward empty space on its image's void map (B, H, W) (the
    seed's "translate toward empty target space"): within `reach`, the nearest spot where a
    disc of radius `footprint` (B, S) fits clear of ink, else the emptiest spot."""
    d = point_distances(points, void.shape[-2:])  # (B, S, H, W)
    room = torch.minimum(
        void[:, None], torch.as_tensor(footprint, device=void.device)[..., None, None]
    )
    score = torch.where(d <= reach, room - 1e-3 * d, torch.full_like(d, -1e9))
    idx = score.flatten(2).argmax(2)  # (B, S)
    dest = torch.stack([idx // void.shape[-1], idx % void.shape[-1]], -1)
    return torch.where(points >= 0, dest, points)


def thicken(image: Tensor, strokes: Tensor, time: float, level: float = 0.3) -> Tensor:
    """Heat-kernel dilation: diffuse the stroke mask (B, 1, H, W) for `time`, keep what stays
    above `level` of its peak, and paint it in the strokes' own (diffused) colour.

    A 1-px line's profile after time t is a Gaussian of sigma = sqrt(2 t), so the painted
    width grows like sqrt(t): visibly, and monotonically.
    """
    if time <= 0:
        return image
    sigma = math.sqrt(2 * time)
    m = strokes.float()
    u = gaussian_blur(m, sigma)
    alpha = (u / (level * u.amax((-2, -1), keepdim=True).clamp_min(1e-12))).clamp(0, 1)
    colour = gaussian_blur(image * m, sigma) / u.clamp_min(1e-6)
    return blend(image, colour.clamp(0, 1), alpha * (u > 1e-6))


def shadow(
    image: Tensor, alpha: Tensor, offset: tuple[int, int] = (3, 3), darkness=0.5, softness=1.5
) -> Tensor:
    """An offset, softened, darkened copy of the pasted content's alpha (B, 1, H, W), under it."""
    dy, dx = offset
    shifted = torch.roll(alpha, shifts=(dy, dx), dims=(-2, -1))
    if dy > 0:
        shifted[..., :dy, :] = 0
    elif dy < 0:
        shifted[..., dy:, :] = 0
    if dx > 0:
        shifted[..., :, :dx] = 0
    elif dx < 0:
        shifted[..., :, dx:] = 0
    cast = gaussian_blur(shifted, softness) * (1 - alpha)  # only where nothing was pasted
    return image * (1 - darkness * cast)
