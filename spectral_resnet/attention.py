"""Spectral attention: token features, Q/K projections and kernels that never build n_t x n_s.

The partial graph spectral transform *is* an attention operation: with Q = phi_t and
K = phi_s the seed's activation phi_t (phi_s^T v) is linear attention. Putting a linear
projection in front of each side (Q = W_q f_t, K = W_k f_s) makes it a literal
cross-attention lookup that can be hand-initialised or learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet.config import KERNELS, QK_INITS
from spectral_resnet.stack import positive_features

CONFIDENCE_SCORES = 2**20  # scores per block of the evidence's confidence


class QKProjection(nn.Module):
    """Q = f_t W_q^T, K = f_s W_k^T, plus a log-temperature; hand-initialised or learnable.

    patch: the columns of the patch tokens. `patch` and `learned` start from W = I on them
    and zero elsewhere (patch matching, exactly); `learned` then trains every column, so
    the spectral features enter only as far as they help.
    tied: one W for both sides (W_k = W_q): the scores are a learned metric, symmetric in
    the two images, which generalised better to held-out photos than two free maps.
    """

    def __init__(
        self,
        *,
        dim: int,
        init: str = "identity",
        learnable: bool = False,
        scale: float = 1.0,
        patch: slice | None = None,
        tied: bool = False,
    ):
        super().__init__()
        if init not in QK_INITS:
            raise ValueError(f"unknown qk_init {init!r}; choose one of {QK_INITS}")
        if init == "random":
            gen = torch.Generator().manual_seed(0)
            w_q = torch.randn(dim, dim, generator=gen) / math.sqrt(dim)
            w_k = torch.randn(dim, dim, generator=gen) / math.sqrt(dim)
        elif init in ("patch", "learned") and patch is not None:
            w_q = torch.zeros(dim, dim)
            w_q[patch, patch] = torch.eye(patch.stop - patch.start)
            w_k = w_q.clone()
        else:  # identity / fmap / descriptor start from W = I on their features
            w_q, w_k = torch.eye(dim), torch.eye(dim)
        self.w_q = nn.Parameter(w_q, requires_grad=learnable)
        self.w_k = None if tied else nn.Parameter(w_k, requires_grad=learnable)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learnable)

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def forward(self, f_t: Tensor, f_s: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n_t, d), (B, n_s, d) -> Q (B, n_t, d), K (B, n_s, d)."""
        w_k = self.w_q if self.w_k is None else self.w_k
        return f_t @ self.w_q.T, f_s @ w_k.T


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x (B, n, d) at rows index (B, m): (B, m, d)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class SpectralAttention(nn.Module):
    """Attention between target queries and source keys: `linear` (low rank) or `softmax`.

    linear:  out = scale * Q (K^T V), the seed's form, O(n d d_v) at full resolution;
             with `positive=True` a positive feature map and normaliser make it an average.
    softmax: exact softmax(scale * q^ k^T) V over L2-normalised rows, query-chunked through
             F.scaled_dot_product_attention. Peak score memory is chunk * n_keys floats,
             never n_t * n_s; `max_keys` caps the keys (the top boundary pixels) when the
             sample is large.
    Holds no parameters: the projections (and the temperature) are QKProjection's.
    """

    def __init__(
        self,
        *,
        kernel: str = "linear",
        chunk: int = 4096,
        max_keys: int | None = None,
        positive: bool = False,
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; choose one of {KERNELS}")
        self.kernel, self.chunk, self.max_keys, self.positive = kernel, chunk, max_keys, positive

    def select_keys(self, k: Tensor, v: Tensor, boundary: Tensor | None) -> tuple[Tensor, Tensor]:
        """Restrict keys/values to the `max_keys` strongest boundary pixels of each sample."""
        if self.max_keys is None or k.shape[1] <= self.max_keys or boundary is None:
            return k, v
        idx = boundary.topk(self.max_keys, dim=1).indices.sort(dim=1).values  # (B, m)
        return gather_rows(k, idx), gather_rows(v, idx)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, scale: Tensor, boundary: Tensor | None = None
    ) -> Tensor:
        """q (B, n_t, d), k (B, n_s, d), v (B, n_s, d_v) -> (B, n_t, d_v)."""
        if self.kernel == "linear":
            if self.positive:
                q, k = positive_features(q), positive_features(k)
                kv = k.transpose(1, 2) @ torch.cat([v, torch.ones_like(v[..., :1])], -1)
                out = q @ kv  # (B, n_t, d_v + 1)
                return out[..., :-1] / out[..., -1:].clamp_min(1e-12)
            return scale * (q @ (k.transpose(1, 2) @ v))
        k, v = self.select_keys(k, v, boundary)
        q, k = F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)  # scale: a learnable tensor
        # CPU SDPA takes its fast kernel only for head dims >= 32: zero-padding q, k (scores
        # unchanged) and v (extra outputs dropped) to 32 made it 5x faster here for d = 16,
        # d_v = 4 (0.25 -> 1.3 G scores/s on 2 cores); wider heads pad to a multiple of 16
        d_v = v.shape[-1]
        width = max(32, -(-max(q.shape[-1], d_v) // 16) * 16)
        q = F.pad(q, (0, width - q.shape[-1]))
        k4 = F.pad(k, (0, width - k.shape[-1]))[:, None].contiguous()  # (B, 1, n_s, P): 4-D
        v4 = F.pad(v, (0, width - d_v))[:, None].contiguous()
        outs = [
            F.scaled_dot_product_attention(
                q[:, None, i : i + self.chunk].contiguous(), k4, v4, dropout_p=0.0, scale=1.0
            )
            for i in range(0, q.shape[1], self.chunk)
        ]
        return torch.cat(outs, dim=2)[:, 0, :, :d_v]

    def features(self, x: Tensor) -> Tensor:
        """Rows (..., d) as the scores compare them: unit length (softmax), positive (the
        positive linear kernel) or as they are."""
        if self.kernel == "softmax":
            return F.normalize(x, dim=-1)
        return positive_features(x) if self.positive else x

    def scores(self, q: Tensor, keys: Tensor, scale: Tensor) -> Tensor:
        """Attention logits of a few queries against every key: q (B, m, d) -> (B, m, n_s);
        keys: `features(k)`, mapped once by the caller for all its queries."""
        return scale * (self.features(q) @ keys.transpose(1, 2))

    def weights(self, logits: Tensor) -> Tensor:
        """Attention rows from their logits: each summing to 1 (softmax), or the raw low-rank
        scores (linear)."""
        return logits.softmax(-1) if self.kernel == "softmax" else logits

    def rows(self, q: Tensor, k: Tensor, scale: Tensor, index: Tensor) -> Tensor:
        """Lazy attention rows for target pixels `index` (B, m): (B, m, n_s)."""
        return self.weights(self.scores(gather_rows(q, index), self.features(k), scale))

    def confidence(self, q: Tensor, k: Tensor, scale: Tensor, boundary: Tensor | None) -> Tensor:
        """Each query's largest attention weight over the (selected) keys, (B, n_t) in (0, 1]:
        high where one sample place matches clearly, low where many match alike. The largest
        softmax weight is 1 / sum_j exp(s_j - max s), computed in place on each chunk's scores."""
        k, _ = self.select_keys(k, k[..., :1], boundary)
        # blocks of about a million scores stay in cache through the passes over them: 1.5x
        # faster than 4096 rows against 1024 keys, and the same numbers
        rows = min(self.chunk, max(256, CONFIDENCE_SCORES // k.shape[1]))
        keys, out = self.features(k), []
        for i in range(0, q.shape[1], rows):
            s = self.scores(q[:, i : i + rows], keys, scale)  # (B, m, n_s)
            s = s.sub_(s.detach().amax(-1, keepdim=True)).exp_()  # the max cancels: no gradient
            out.append(s.sum(-1).reciprocal())
        return torch.cat(out, dim=1)

    def argmax(self, q: Tensor, k: Tensor, scale: Tensor) -> Tensor:
        """Index of each query's best key, (B, n_t), chunked like the softmax kernel."""
        keys = self.features(k)
        return torch.cat(
            [
                self.scores(q[:, i : i + self.chunk], keys, scale).argmax(-1)
                for i in range(0, q.shape[1], self.chunk)
            ],
            dim=1,
        )


@dataclass(frozen=True)
class ProjectedAttention:
    """One pair's projected queries and keys with their kernel: the one way to get attention
    outputs, logits, lazy rows and argmax matches (blocks, training and `match()` share it)."""

    q: Tensor  # (B, n_t, d)
    k: Tensor  # (B, n_s, d)
    scale: Tensor  # () temperature
    kernel: SpectralAttention

    def __call__(self, v: Tensor, boundary: Tensor | None = None) -> Tensor:
        """Attention output for every query: v (B, n_s, d_v) -> (B, n_t, d_v)."""
        return self.kernel(self.q, self.k, v, self.scale, boundary)

    @cached_property
    def keys(self) -> Tensor:
        """The keys as the kernel compares them (B, n_s, d): mapped once for the pair's many
        lazy rows, not once a row."""
        return self.kernel.features(self.k)

    def logits(self, index: Tensor) -> Tensor:
        """Logits of target pixels `index` (B, m) against every key: (B, m, n_s)."""
        return self.kernel.scores(gather_rows(self.q, index), self.keys, self.scale)

    def rows(self, index: Tensor) -> Tensor:
        """Lazy attention rows of target pixels `index` (B, m): (B, m, n_s)."""
        return self.kernel.weights(self.logits(index))

    def argmax(self) -> Tensor:
        """Each query's best key, (B, n_t)."""
        return self.kernel.argmax(self.q, self.k, self.scale)
