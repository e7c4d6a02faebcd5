"""Tokens: what each pixel looks like to attention, (n, d) per image.

- evecs: raw Laplacian eigenvectors (sign-dependent: the seed's baseline);
- hks, wks: heat / wave kernel signatures (spectral, sign-invariant);
- color, boundary: the pixel's own colour and graph boundary strength;
- context: mean colour and grey-level spread pooled at 3, 7, 15, 31 px;
- patch: normalised local colour patches (5 x 5 samples) at dilations 1, 2 and 4, each
  turned to the pixel's dominant gradient direction, so that a rotated copy of the image
  yields the same tokens (the SIFT idea, densely): the local structure that colour and
  pooled statistics discard, robust to rotation.

Everything but evecs is standardised per image (zero mean, unit variance per column), so
cosine scores compare structure, not brightness or image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spectral_resnet.config import FEATURES, LEARNED_FEATURES
from spectral_resnet.segments import gradient
from spectral_resnet.shading import gaussian_blur
from spectral_resnet.spectral import Spectrum

CONTEXT_SCALES = (3, 7, 15, 31)
PATCH_SIZE = 5  # samples per side
PATCH_DILATIONS = (1, 2, 4)  # sample spacing (pixels) of each scale
DESCRIPTORS = 8  # HKS / WKS columns


def feature_dim(kinds: tuple[str, ...], k: int, stem: int = 0) -> int:
    """Width of the tokens `kinds` for a spectrum with k eigenpairs and a `stem`-wide stem."""
    widths = dict(
        stem=stem,
        evecs=k,
        hks=DESCRIPTORS,
        wks=DESCRIPTORS,
        color=3,
        boundary=1,
        context=4 * len(CONTEXT_SCALES),
        patch=3 * PATCH_SIZE**2 * len(PATCH_DILATIONS),
    )
    return sum(widths[kind] for kind in kinds)


def dominant_orientation(grey: Tensor, sigma: float) -> Tensor:
    """Angle (radians) of the Gaussian-averaged intensity gradient around each pixel,
    (1, 1, H, W) -> (H, W); rotating the image by a turns it by a."""
    g = gaussian_blur(grey, 1.0)
    gy, gx = gradient(g[0, 0])
    mean = gaussian_blur(torch.stack([gx, gy])[None], sigma)[0]  # (2, H, W)
    return torch.atan2(mean[1], mean[0])


def oriented_patches(image: Tensor, dilation: int, angle: Tensor) -> Tensor:
    """PATCH_SIZE^2 colour samples around every pixel of (3, H, W), spaced `dilation` apart on
    a grid turned by `angle` (H, W), bilinear with reflection: (H W, 3 PATCH_SIZE^2)."""
    _, h, w = image.shape
    r = PATCH_SIZE // 2
    steps = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device) * dilation
    oy, ox = (t.reshape(-1) for t in torch.meshgrid(steps, steps, indexing="ij"))  # (P,)
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]  # (H, W, 1)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=image.dtype, device=image.device),
        torch.arange(w, dtype=image.dtype, device=image.device),
        indexing="ij",
    )
    px = xs[..., None] + cos * ox - sin * oy  # (H, W, P)
    py = ys[..., None] + sin * ox + cos * oy
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], -1)
    samples = F.grid_sample(
        image[None],
        grid.reshape(1, h, -1, 2),
        mode="bilinear",
        padding_mode="reflection",
        align_corners=True,
    )  # (1, 3, H, W P)
    return samples.reshape(3, h * w, -1).transpose(0, 1).reshape(h * w, -1)


def patch_tokens(image: Tensor) -> Tensor:
    """Normalised oriented patches at every dilation: (H W, 3 PATCH_SIZE^2 len(DILATIONS)).
    Each patch loses its mean (brightness) and is scaled to unit RMS (contrast), with a
    floor so flat regions stay small instead of amplifying noise."""
    grey = image.mean(0)[None, None]
    parts = []
    for d in PATCH_DILATIONS:
        smooth = gaussian_blur(image[None], 0.5 * d)[0] if d > 1 else image
        p = oriented_patches(smooth, d, dominant_orientation(grey, float(d)))  # (n, 3 P)
        p = p - p.mean(1, keepdim=True)
        parts.append(p / (p.pow(2).mean(1, keepdim=True) + 0.05**2).sqrt())
    return torch.cat(parts, 1)


def box_mean(x: Tensor, size: int) -> Tensor:
    """Mean over the size x size window around each pixel of (B, C, H, W), the window cut
    at the border: separably, rows then columns, so a 31-px window costs 62 reads, not 961."""
    x = F.avg_pool2d(x, (size, 1), 1, (size // 2, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, size), 1, (0, size // 2), count_include_pad=False)


def context_tokens(image: Tensor) -> Tensor:
    """Mean colour and grey-level spread pooled over CONTEXT_SCALES: (H W, 4 len(scales))."""
    grey = image.mean(0, keepdim=True)[None]
    pooled = []
    for s in CONTEXT_SCALES:
        mean = box_mean(image[None], s)[0]
        sq, g = box_mean(torch.cat([grey**2, grey], 1), s)[0]
        pooled += [mean, (sq - g**2).clamp_min(0).sqrt()[None]]
    return torch.cat(pooled).reshape(4 * len(CONTEXT_SCALES), -1).T


def token_features(spectrum: Spectrum, image: Tensor, kinds: tuple[str, ...]) -> Tensor:
    """Per-pixel tokens (n, d) float32 from a spectrum and its image (3, H, W): the hand-made
    kinds (the model runs its own 'stem')."""
    unknown = set(kinds) - set(FEATURES) | set(kinds) & set(LEARNED_FEATURES)
    if unknown:
        raise ValueError(f"unknown token features {sorted(unknown)}; choose from {FEATURES}")
    image = image.to(torch.float32)
    feats = []
    for kind in kinds:
        if kind == "evecs":
            feats.append(spectrum.evecs.to(torch.float32))
            continue
        part = {
            "hks": lambda: spectrum.hks(count=DESCRIPTORS),
            "wks": lambda: spectrum.wks(count=DESCRIPTORS),
            "color": lambda: image.reshape(3, -1).T,
            "boundary": lambda: spectrum.boundary[:, None],
            "context": lambda: context_tokens(image),
            "patch": lambda: patch_tokens(image),
        }[kind]().to(torch.float32)
        feats.append((part - part.mean(0)) / part.std(0).clamp_min(1e-6))
    return torch.cat(feats, dim=1)


def patch_columns(kinds: tuple[str, ...], k: int, stem: int = 0) -> slice | None:
    """Where the patch block sits in the tokens `kinds`, or None without it."""
    if "patch" not in kinds:
        return None
    start = feature_dim(kinds[: kinds.index("patch")], k, stem)
    return slice(start, start + feature_dim(("patch",), k))
