"""SpectralResBlock: attention -> FFN -> gated residual update, `h = h + gate * delta`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet.attention import QKProjection, SpectralAttention


@dataclass
class PairContext:
    """Everything a block needs about the (target, sample) pair, computed once per forward."""

    f_t: Tensor  # (B, n_t, d) target tokens (at the working resolution)
    f_s: Tensor  # (B, n_s, d) sample tokens, already aligned to the target basis for fmap
    sample_values: Tensor  # (B, n_s, 4) sample colour (3) and boundary strength (1)
    target_boundary: Tensor  # (B, n_t) boundary strength of the target
    sample_boundary: Tensor  # (B, n_s)
    work_shape: tuple[int, int]  # (h, w) the attention runs at
    sample_shape: tuple[int, int]  # (h_s, w_s) of the sample tokens


@dataclass
class BlockOutput:
    """What one block did, for pictures and losses."""

    activation: Tensor  # (B, 1, H, W) in [0, 1]
    gate: Tensor  # (B, 1, H, W) in [0, 1]
    retrieved: Tensor  # (B, 3, H, W) the attention output the block blended towards
    seeds: Tensor | None = None  # (B, S, 2) (y, x) target pixels of segment retrieval
    masks: Tensor | None = None  # (B, S, H, W) warped sample segments pasted at the seeds


class FFN(nn.Module):
    """A bank of per-pixel linear functions of [h, self_out, cross_out, act] -> (delta, gate logit).

    A linear path plus a zero-initialised MLP (1x1 convs), so the hand initialisation is
    exact: delta = a - h and a constant gate logit, i.e. h + a(a - h) = (1 - a) h + a a.
    """

    def __init__(
        self,
        *,
        channels: int = 3,
        hidden: int = 32,
        source: str = "cross",
        gate_bias: float = 2.0,
        learnable: bool = False,
    ):
        super().__init__()
        c = channels
        in_ch = 3 * c + 1  # h, self_out, cross_out, activation
        self.linear = nn.Conv2d(in_ch, c + 1, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1), nn.GELU(), nn.Conv2d(hidden, c + 1, 1)
        )
        with torch.no_grad():
            w = torch.zeros(c + 1, in_ch)
            eye = torch.eye(c)
            w[:c, :c] = -eye  # - h
            w[:c, (2 if source == "cross" else 1) * c : (3 if source == "cross" else 2) * c] = eye
            self.linear.weight.copy_(w[:, :, None, None])
            self.linear.bias.zero_()
            self.linear.bias[c] = gate_bias
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)
        self.requires_grad_(learnable)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.linear(x) + self.mlp(x)  # (B, C + 1, H, W)
        return out[:, :-1], out[:, -1:]


def activation_gate(act: Tensor, threshold: float, softness: float = 0.1) -> Tensor:
    """Copies appear where act > threshold, shaped by the activation's contours."""
    return ((act - threshold) / softness).clamp(0, 1)


class SpectralResBlock(nn.Module):
    """One residual block: self/cross attention -> FFN -> `h = h + gate * delta`."""

    def __init__(
        self,
        *,
        mode: str = "cross",
        dim: int,
        qk_init: str = "identity",
        learnable: bool = False,
        kernel: str = "linear",
        scale: float = 1.0,
        chunk: int = 4096,
        max_keys: int | None = None,
        hidden: int = 32,
        gate_bias: float = 2.0,
        threshold: float = 0.2,
        ffn_learnable: bool | None = None,
    ):
        super().__init__()
        if mode not in ("cross", "self"):
            raise ValueError(f"block mode must be 'cross' or 'self', got {mode!r}")
        self.mode, self.threshold = mode, threshold
        self.qk = QKProjection(dim=dim, init=qk_init, learnable=learnable, scale=scale)
        self.self_qk = QKProjection(dim=dim, init=qk_init, learnable=learnable, scale=scale)
        # the seed's raw low-rank form for eigenvector bases; an averaging (positive) map for
        # descriptor tokens, whose raw products are not a transfer of functions
        raw = qk_init in ("identity", "fmap")
        self.attention = SpectralAttention(
            kernel=kernel, chunk=chunk, max_keys=max_keys, positive=kernel == "linear" and not raw
        )
        self.self_attention = SpectralAttention(
            kernel=kernel, chunk=chunk, max_keys=max_keys, positive=kernel == "linear"
        )
        self.ffn = FFN(
            hidden=hidden,
            source=mode,
            gate_bias=gate_bias,
            learnable=learnable if ffn_learnable is None else ffn_learnable,
        )

    def cross(self, ctx: PairContext) -> tuple[Tensor, Tensor]:
        """Cross-attention retrieval: (B, n_t, 3) sample colours, (B, n_t) activation in [0, 1]."""
        q, k = self.qk(ctx.f_t, ctx.f_s)
        out = self.attention(q, k, ctx.sample_values, self.qk.scale, ctx.sample_boundary)
        act = out[..., 3].clamp_min(0) * ctx.target_boundary  # seed: masked by target boundary
        act = act / act.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return out[..., :3], act

    def self_attend(self, h_work: Tensor, ctx: PairContext) -> Tensor:
        """Target self-attention over the residual stream: (B, n_t, C)."""
        q, k = self.self_qk(ctx.f_t, ctx.f_t)
        return self.self_attention(q, k, h_work, self.self_qk.scale, ctx.target_boundary)

    def forward(self, h: Tensor, ctx: PairContext) -> tuple[Tensor, BlockOutput]:
        b, c, height, width = h.shape
        wh, ww = ctx.work_shape
        h_work = F.interpolate(h, size=(wh, ww), mode="area") if (wh, ww) != (height, width) else h
        tokens = h_work.flatten(2).transpose(1, 2)  # (B, n_t, C)
        self_out = self.self_attend(tokens, ctx)
        if self.mode == "cross":
            cross_out, act = self.cross(ctx)
        else:
            cross_out, act = self_out, torch.ones_like(self_out[..., 0])
        maps = torch.cat([self_out, cross_out, act[..., None]], -1)  # (B, n_t, 2C + 1)
        maps = maps.transpose(1, 2).reshape(b, -1, wh, ww)
        if (wh, ww) != (height, width):
            maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
        self_map, cross_map, act_map = maps[:, :c], maps[:, c : 2 * c], maps[:, 2 * c :]
        delta, gate_logit = self.ffn(torch.cat([h, self_map, cross_map, act_map], 1))
        gate = torch.sigmoid(gate_logit)
        if self.mode == "cross":
            gate = gate * activation_gate(act_map, self.threshold)
        h = h + gate * delta
        return h, BlockOutput(activation=act_map, gate=gate, retrieved=cross_map)
