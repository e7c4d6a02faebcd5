"""Image -> weighted pixel-grid graph, and its symmetric normalised Laplacian as a stencil.

The operator never builds a sparse matrix: `matvec` shifts (H, W) tensors, so it runs
unchanged on CPU and CUDA and batches over images. `to_sparse` / `to_scipy` export the
same matrix for factorisation-based solvers and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

# Half-stencils: each undirected edge is stored once, at its first pixel p, pointing to p + (dy, dx).
OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((0, 1), (1, 0)),
    8: ((0, 1), (1, 0), (1, 1), (1, -1)),
}


def _edge_slices(dy: int, dx: int, height: int, width: int) -> tuple[tuple, tuple]:
    """(rows, cols) slices of the first and second pixel of every in-bounds edge (dy >= 0)."""
    rows_p, rows_q = slice(0, height - dy), slice(dy, height)
    if dx >= 0:
        cols_p, cols_q = slice(0, width - dx), slice(dx, width)
    else:
        cols_p, cols_q = slice(-dx, width), slice(0, width + dx)
    return (rows_p, cols_p), (rows_q, cols_q)


def check_image(image: Tensor) -> Tensor:
    """Validate an image tensor and return it as (B, C, H, W); one clear error per problem."""
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise ValueError(f"image must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")
    if image.shape[0] == 0:
        raise ValueError("the batch is empty (0 images); pass at least one (B, C, H, W) image")
    if image.shape[-2] * image.shape[-1] < 2:
        raise ValueError(
            f"image must have at least 2 pixels, got {image.shape[-2]}x{image.shape[-1]}"
        )
    if not torch.isfinite(image.sum()) and not torch.isfinite(image).all():  # sum: one pass
        raise ValueError("image contains NaN or Inf pixels; replace them before building the graph")
    return image


def to_grey(image: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 1, H, W) luminance (Rec. 601 for RGB, channel mean otherwise)."""
    if image.shape[1] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
        return (image * luma.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return image.mean(1, keepdim=True)


def _edge_distances(image: Tensor, offsets) -> list[Tensor]:
    """Squared colour distance ||c_p - c_q||^2 per edge direction, each (B, h_e, w_e)."""
    _, _, height, width = image.shape
    out = []
    for dy, dx in offsets:
        p, q = _edge_slices(dy, dx, height, width)
        diff = image[..., p[0], p[1]] - image[..., q[0], q[1]]
        out.append(diff.pow(2).sum(dim=1))
    return out


@dataclass
class GridLaplacian:
    """L = I - D^-1/2 W D^-1/2 of a batch of pixel-grid graphs, stored as per-direction edge maps."""

    weights: list[Tensor]  # per offset: (B, h_e, w_e) edge weights
    offsets: tuple[tuple[int, int], ...]
    height: int
    width: int
    sigma: Tensor  # (B,) the colour scale actually used
    params: dict  # every graph parameter, for cache keys and reports

    @property
    def n(self) -> int:
        return self.height * self.width

    @property
    def batch(self) -> int:
        return self.weights[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def degrees(self) -> Tensor:
        """Weighted degree of every pixel, (B, H, W)."""
        deg = self.weights[0].new_zeros(self.batch, self.height, self.width)
        for (dy, dx), w in zip(self.offsets, self.weights):
            p, q = _edge_slices(dy, dx, self.height, self.width)
            deg[:, p[0], p[1]] += w
            deg[:, q[0], q[1]] += w
        return deg

    def boundary_strength(self) -> Tensor:
        """1 - (weight of the pixel's weakest edge), (B, H, W): high where an edge is cut."""
        weakest = self.weights[0].new_ones(self.batch, self.height, self.width)
        for (dy, dx), w in zip(self.offsets, self.weights):
            p, q = _edge_slices(dy, dx, self.height, self.width)
            weakest[:, p[0], p[1]] = torch.minimum(weakest[:, p[0], p[1]], w)
            weakest[:, q[0], q[1]] = torch.minimum(weakest[:, q[0], q[1]], w)
        return 1.0 - weakest

    def _inv_sqrt_degrees(self) -> Tensor:
        deg = self.degrees()
        return torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))

    def adjacency_matvec(self, x: Tensor) -> Tensor:
        """W x for x of shape (B, H, W, m)."""
        out = torch.zeros_like(x)
        for (dy, dx), w in zip(self.offsets, self.weights):
            p, q = _edge_slices(dy, dx, self.height, self.width)
            we = w.unsqueeze(-1)
            out[:, p[0], p[1]] += we * x[:, q[0], q[1]]
            out[:, q[0], q[1]] += we * x[:, p[0], p[1]]
        return out

    def matvec(self, x: Tensor) -> Tensor:
        """L x. Accepts (n,), (n, m) when B == 1, or (B, n, m); returns the same shape."""
        shape = x.shape
        if x.dim() == 1:
            x = x.reshape(1, -1, 1)
        elif x.dim() == 2:
            x = x.unsqueeze(0)
        if x.shape[0] != self.batch or x.shape[1] != self.n:
            raise ValueError(f"matvec expects (B={self.batch}, n={self.n}, m), got {tuple(shape)}")
        grid = x.reshape(self.batch, self.height, self.width, -1)
        dinv = self._inv_sqrt_degrees().unsqueeze(-1)
        out = grid - dinv * self.adjacency_matvec(dinv * grid)
        return out.reshape(shape)

    def _coo(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Upper-triangle (row, col, weight) of image `index`'s adjacency."""
        ids = np.arange(self.n).reshape(self.height, self.width)
        rows, cols, vals = [], [], []
        for (dy, dx), w in zip(self.offsets, self.weights):
            p, q = _edge_slices(dy, dx, self.height, self.width)
            rows.append(ids[p[0], p[1]].ravel())
            cols.append(ids[q[0], q[1]].ravel())
            vals.append(w[index].detach().cpu().double().numpy().ravel())
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

    def to_scipy(self, index: int = 0, normalized: bool = True) -> sp.csr_matrix:
        """The Laplacian of image `index` as scipy CSR (float64); `normalized=False` gives D - W."""
        r, c, v = self._coo(index)
        adj = sp.coo_matrix((np.r_[v, v], (np.r_[r, c], np.r_[c, r])), shape=(self.n, self.n))
        adj = adj.tocsr()
        deg = np.asarray(adj.sum(axis=1)).ravel()
        if not normalized:
            return (sp.diags(deg) - adj).tocsr()
        dinv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
        return (sp.identity(self.n, format="csr") - sp.diags(dinv) @ adj @ sp.diags(dinv)).tocsr()

    def to_sparse(self, index: int = 0, normalized: bool = True) -> Tensor:
        """The Laplacian of image `index` as a coalesced torch sparse COO tensor."""
        coo = self.to_scipy(index, normalized).tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        values = torch.from_numpy(coo.data).to(self.dtype)
        return (
            torch.sparse_coo_tensor(indices, values, (self.n, self.n), check_invariants=False)
            .coalesce()
            .to(self.device)
        )


FLOOR = 0.05  # the weight of a full colour edge: the low modes stay regions, not specks


def grid_laplacian(
    image: Tensor,
    *,
    connectivity: int = 4,
    sigma: float | None = None,
    sigma_scale: float = 1.0,
    color: bool = True,
    floor: float = FLOOR,
) -> GridLaplacian:
    """Symmetric normalised Laplacian of the image's pixel grid, with edge weights
    w = floor + (1 - floor) exp(-||c_p - c_q||^2 / sigma^2).

    image: (C, H, W) or (B, C, H, W) float in [0, 1].
    sigma: fixed colour scale; None picks it per image as `sigma_scale` x the RMS neighbour
        difference (robust for line art, where the median difference is 0).
    floor: the least weight of an edge. With a floor near 0, the texture of a photo cuts
        single pixels and small specks almost free of the grid, and the lowest eigenvectors
        of the normalised Laplacian sit on those specks (98% of a mode's mass on 1% of the
        pixels, eigenvalues ~ the floor); a floor of a few percent keeps every pixel tied to
        its neighbours, so the low modes describe regions, while a colour edge still weighs
        1/20 of a flat one (benchmarks/bench_spectral.py --localisation measures both).
        0 may leave the graph disconnected.
    """
    image = check_image(image)
    if connectivity not in OFFSETS:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number (or None for adaptive), got {sigma}")
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}")
    if not 0 <= floor < 1:
        raise ValueError(f"floor must be in [0, 1), got {floor}")
    if not color and image.shape[1] > 1:
        image = to_grey(image)
    offsets = OFFSETS[connectivity]
    _, _, height, width = image.shape
    dist2 = _edge_distances(image, offsets)
    if sigma is None:
        flat = torch.cat([d.flatten(1) for d in dist2], dim=1)
        scale = sigma_scale * flat.mean(dim=1).sqrt()
        sigma_t = scale.clamp_min(1e-3)
    else:
        sigma_t = torch.full(
            (image.shape[0],), float(sigma), dtype=image.dtype, device=image.device
        )
    inv_s2 = sigma_t.pow(-2).view(-1, 1, 1)
    weights = [torch.exp(-d * inv_s2).mul_(1 - floor).add_(floor) for d in dist2]
    params = dict(
        connectivity=connectivity,
        sigma=sigma,
        sigma_scale=sigma_scale,
        color=color,
        floor=floor,
    )
    return GridLaplacian(weights, offsets, height, width, sigma_t, params)
