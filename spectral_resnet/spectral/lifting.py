"""Lift a working-resolution spectrum to full resolution: joint bilateral upsampling guided by
the full-resolution image, then one Rayleigh-Ritz step on the full-resolution graph.

The shader solves at `work_size` and reads the image itself for everything at full
resolution (ink, components, pastes, outputs), so it never needs full-resolution
eigenvectors; `lift` is for users who do, at a fraction of a full solve's time
(`benchmarks/bench_lifting.py` measures both against each other).

The random-walk eigenvectors D^-1/2 phi are piecewise smooth (near-constant inside a
region, changing across the image's edges), so they are what gets interpolated: each
full-resolution pixel takes a mean of its 4 x 4 working-resolution neighbours weighted by
distance and by colour likeness to the full-resolution pixel (Kopf et al., joint bilateral
upsampling), so values do not bleed across edges the small copy blurred.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_resnet.spectral.eigensolvers import _orthonormal, _rayleigh_ritz
from spectral_resnet.spectral.graph import check_image, grid_laplacian
from spectral_resnet.spectral.spectrum import Spectrum

GRAPH_OPTIONS = ("connectivity", "sigma", "sigma_scale", "color", "floor")


def _neighbours(size: int, low: int) -> tuple[Tensor, Tensor]:
    """Working-resolution coordinate of each full-resolution row (or column), (size,), and
    the first of its 4 neighbours, (size,) long."""
    u = (torch.arange(size, dtype=torch.float64) + 0.5) * low / size - 0.5
    return u, u.floor().long() - 1


def joint_bilateral_upsample(
    values: Tensor,
    guide_low: Tensor,
    guide: Tensor,
    *,
    sigma_colour: float = 0.1,
    sigma_space: float = 1.0,
    rows: int = 512,
) -> Tensor:
    """values (C, h, w) on guide_low's grid (3, h, w) -> (C, H, W) on guide's grid (3, H, W).

    Each output pixel is the mean of its 4 x 4 nearest input pixels weighted by
    exp(-d^2 / 2 sigma_space^2) (d in input pixels) times exp(-|c - c'|^2 / 2 sigma_colour^2)
    (RGB distance between the guide pixel and the input pixel's guide). Done `rows` output
    rows at a time, so memory is C x rows x W, not C x H x W, beyond the result.
    """
    c, h, w = values.shape
    big_h, big_w = guide.shape[-2:]
    uy, y0 = _neighbours(big_h, h)
    ux, x0 = _neighbours(big_w, w)
    values, guide_low, guide = values.double(), guide_low.double(), guide.double()
    out = values.new_empty(c, big_h, big_w)
    for top in range(0, big_h, rows):
        band = slice(top, min(top + rows, big_h))
        total = values.new_zeros(c, band.stop - top, big_w)
        weight = values.new_zeros(band.stop - top, big_w)
        for dy in range(4):
            qy = y0[band] + dy
            wy = torch.exp(-((uy[band] - qy) ** 2) / (2 * sigma_space**2))  # (rows,)
            qy = qy.clamp(0, h - 1)
            for dx in range(4):
                qx = x0 + dx
                wx = torch.exp(-((ux - qx) ** 2) / (2 * sigma_space**2))  # (W,)
                qx = qx.clamp(0, w - 1)
                colour = guide_low[:, qy][:, :, qx]  # (3, rows, W)
                likeness = ((guide[:, band] - colour) ** 2).sum(0) / (2 * sigma_colour**2)
                wgt = wy[:, None] * wx[None] * torch.exp(-likeness)  # (rows, W)
                total += wgt * values[:, qy][:, :, qx]
                weight += wgt
        out[:, band] = total / weight.clamp_min(1e-300)
    return out


def lift(spectrum: Spectrum, small: Tensor, image: Tensor, *, refine: bool = True) -> Spectrum:
    """The spectrum of `image` (3, H, W) from `spectrum`, solved on `small` (3, h, w), its
    working-resolution copy: upsampled random-walk eigenvectors, and with `refine` one
    Rayleigh-Ritz step on `image`'s own graph (same graph options), which makes them the
    best approximations in their span, with honest eigenvalues and residuals."""
    image = check_image(image).double()
    op = grid_laplacian(image, **{k: spectrum.params[k] for k in GRAPH_OPTIONS})
    walk = spectrum.evecs.double() / spectrum.degrees.double().sqrt().clamp_min(1e-300)[:, None]
    up = joint_bilateral_upsample(spectrum.grid(walk).reshape(-1, *spectrum.shape), small, image[0])
    degrees = op.degrees()[0].flatten().double()
    x = _orthonormal(up.flatten(1).T * degrees.sqrt()[:, None])  # (n, k) back to phi's form
    if refine:
        evals, x, residuals = _rayleigh_ritz(op, x)
    else:
        lx = op.matvec(x)
        evals = (x * lx).sum(0)  # Rayleigh quotients
        residuals = (lx - x * evals).norm(dim=0)
    return Spectrum(
        evals=evals,
        evecs=x,
        degrees=degrees,
        boundary=op.boundary_strength()[0].flatten().double(),
        shape=(op.height, op.width),
        params=dict(spectrum.params, lifted_from=list(spectrum.shape), refined=refine),
        residuals=residuals,
        method=f"lifted:{spectrum.method}",
    )
