"""Shading: gates (locality, activation), the soft blend, the ink mask, thicken and shadow."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu
from torch import Tensor

from spectral_resnet.segments import annihilate_fuzz, background_colour, components, max_filter
from spectral_resnet.spectral.graph import to_grey


def blend(target: Tensor, source: Tensor, alpha: Tensor) -> Tensor:
    """The seed's soft blend (1 - alpha) * target + alpha * source (= h + alpha (a - h))."""
    return target + alpha * (source - target)


def point_distances(points: Tensor, shape: tuple[int, int]) -> Tensor:
    """Euclidean distance of every pixel to each point (..., 2) (y, x): (..., H, W)."""
    h, w = shape
    ys = torch.arange(h, dtype=torch.float32, device=points.device).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=points.device).view(1, w)
    p = points.float()
    return ((ys - p[..., 0, None, None]) ** 2 + (xs - p[..., 1, None, None]) ** 2).sqrt()


def locality_gate(points: Tensor, shape: tuple[int, int], radius: float) -> Tensor:
    """exp(-dist / radius) around each point (..., 2) (y, x): (..., H, W). A point may lie
    outside the map (a paste's seed above or left of the paste's box): its coordinates are
    then negative, and the gate still falls off from it."""
    return torch.exp(-point_distances(points, shape) / radius)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W): the grid heat kernel at time sigma^2 / 2.

    Hand-written because it is separable (2 (6 sigma + 1) taps a pixel): torchvision's
    `gaussian_blur`, a full 2-D kernel, gives the same values away from the border (1e-6) and
    is 1.3x-3.8x slower at the thicken and shadow widths (sigma 2-6; at sigma 1, 0.8x), as
    `benchmarks/bench_library.py` measures. The border replicates its pixels."""
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


def otsu_threshold(values: Tensor, bins: int = 128) -> Tensor:
    """Otsu's 2-class cut of each row of values (B, N): (B,), scikit-image's `threshold_otsu`
    over a `bins`-bin histogram of the row's range (values above it are the upper class)."""
    rows = values.detach().float().cpu().numpy()
    cuts = [threshold_otsu(row, nbins=bins) if row.max() > row.min() else row.max() for row in rows]
    return torch.tensor(cuts, dtype=values.dtype, device=values.device)


def ink_mask(image: Tensor, ink: str = "auto", floor: float = 0.08) -> Tensor:
    """The foreground a person would call the drawing's ink: (B, H, W) bool.

    The background is the image's median colour; ink is what lies far from it on the chosen
    side ("dark": darker than the background, "light": lighter, "any": either): a pixel
    within 2 px of a pixel beyond Otsu's threshold, and at least half as far from the
    background as that one. So an anti-aliased stroke of any colour keeps its half-coverage
    width, and a 2-px outline stays one closed shape. "auto" picks
    the side per image: the minority class of a 2-class (Otsu) split of the luminance, which
    is the strokes of line art either way round, a silhouette, or a photo's foreground.
    `floor` keeps flat images and sensor noise ink-free.
    """
    if ink not in ("auto", "dark", "light", "any"):
        raise ValueError(f"ink must be 'auto', 'dark', 'light' or 'any', got {ink!r}")
    background = background_colour(image)[..., None, None]  # (B, 3, 1, 1)
    dist = (image - background).square_().sum(1)  # (B, H, W)
    dist = dist.div_(image.shape[1]).sqrt_()  # RMS colour distance
    luma = to_grey(image)[:, 0]  # (B, H, W)
    darker = luma < to_grey(background)[:, 0]  # (B, 1, 1) broadcast
    if ink == "auto":
        cut = otsu_threshold(luma.flatten(1))[:, None, None]
        light_is_minority = (luma > cut).float().mean((-2, -1), keepdim=True) < 0.5
        side = torch.where(light_is_minority, ~darker, darker)
    else:
        side = {"dark": darker, "light": ~darker, "any": torch.ones_like(darker)}[ink]
    dist = dist * side  # (B, H, W) the wrong side counts as background
    near = max_filter(dist, 2)  # the strongest ink nearby
    strong = otsu_threshold(dist.flatten(1))[:, None, None].clamp_min(floor)
    return (near > strong) & (dist > 0.47 * near) & (dist > floor)  # half coverage, less rounding


def ink_components(ink: Tensor, min_area: int = 12) -> Tensor:
    """The shapes of ink masks (B, H, W) (`ink_mask`'s): their 8-connected pieces, pieces
    under `min_area` pixels dropped; (B, H, W) labels, 0 = no ink."""
    return torch.stack([annihilate_fuzz(components(m), min_area=min_area) for m in ink])


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
