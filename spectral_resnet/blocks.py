"""Blocks of the residual stack. Each maps (h, ctx, prev) -> (h, BlockOutput).

- SpectralResBlock ('c' cross, 's' self): attention -> FFN -> `h = h + gate * delta`; the
  cross block's `retrieval="segments"` mode is the seed's non-differentiable retrieval:
  activation -> seeds -> one sample component per seed -> rigid warp -> gated paste.
- Thicken ('t'), Shadow ('h'), Annihilate ('f'): shading ops in the same stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet import segments, shading
from spectral_resnet.attention import QKProjection, SpectralAttention
from spectral_resnet.spectral import grid_laplacian

RETRIEVALS = ("soft", "segments")


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
    target: Tensor  # (B, 3, H, W) the original target, full resolution
    sample: Tensor  # (B, 3, H_s, W_s) the sample, full resolution
    sample_labels: Tensor | None  # (B, H_s, W_s) ink components (0 = none); segment mode only
    used_seeds: Tensor | None = None  # (B, S', 2) seeds of earlier blocks, so later ones move on


@dataclass
class BlockOutput:
    """What one block did, for pictures and losses."""

    activation: Tensor  # (B, 1, H, W) in [0, 1]
    gate: Tensor  # (B, 1, H, W) in [0, 1]: how much of each pixel this block replaced
    retrieved: Tensor  # (B, 3, H, W) what the block blended towards
    seeds: Tensor | None = None  # (B, S, 2) (y, x) target seeds of segment retrieval, -1 unused
    masks: Tensor | None = None  # (B, S, H, W) warped sample segments placed near the seeds
    components: Tensor | None = None  # (B, S) the sample component label each seed pasted
    placements: Tensor | None = None  # (B, S, 5) src (y, x), dest (y, x), angle of each warp


def boundary_strength(image: Tensor, connectivity: int = 8) -> Tensor:
    """(B, 3, H, W) -> (B, H, W) graph boundary strength (adaptive sigma), batched stencil."""
    return grid_laplacian(image, connectivity=connectivity).boundary_strength()


class FFN(nn.Module):
    """A bank of per-pixel linear functions of [h, self_out, cross_out, act] -> (delta, gate logit).

    A linear path plus a zero-initialised MLP (1x1 convs), so the hand initialisation is
    exact: delta = a - h and a constant gate logit, i.e. h + g (a - h) = (1 - g) h + g a.
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
        first = 2 * c if source == "cross" else c  # where the blended-towards input starts
        with torch.no_grad():
            w = torch.zeros(c + 1, in_ch)
            w[:c, :c] = -torch.eye(c)  # - h
            w[:c, first : first + c] = torch.eye(c)  # + a
            self.linear.weight.copy_(w[:, :, None, None])
            self.linear.bias.zero_()
            self.linear.bias[c] = gate_bias
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)
        self.requires_grad_(learnable)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.linear(x) + self.mlp(x)  # (B, C + 1, H, W)
        return out[:, :-1], out[:, -1:]


def diverse_assignment(score: Tensor) -> Tensor:
    """Component per seed from scores (B, S, N): each component goes to the seed that wants
    it most; a seed that wins none keeps its own favourite. Batched, no loop over seeds."""
    best = score.argmax(2)  # (B, S) each seed's favourite
    winner = score.argmax(1)  # (B, N) the seed that wants each component most
    s_idx = torch.arange(score.shape[1], device=score.device)
    won = (winner[:, None, :] == s_idx[None, :, None]) & torch.isfinite(score)  # (B, S, N)
    won_score = score.masked_fill(~won, -torch.inf)
    has_win = won.any(2)
    return torch.where(has_win, won_score.argmax(2), best)


class SpectralResBlock(nn.Module):
    """One residual block: self/cross attention -> FFN -> `h = h + gate * delta`.

    Segment-retrieval lengths (nms_radius, radius, reach) are fractions of the target's
    long side, so the defaults suit any image size.
    """

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
        retrieval: str = "soft",
        seeds: int = 4,
        nms_radius: float = 0.08,
        radius: float = 1.0,
        reach: float = 0.25,
        rotation: float | str = 90.0,
        ink: str = "dark",
    ):
        super().__init__()
        if mode not in ("cross", "self"):
            raise ValueError(f"block mode must be 'cross' or 'self', got {mode!r}")
        if retrieval not in RETRIEVALS:
            raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
        if not (rotation == "align" or isinstance(rotation, (int, float))):
            raise ValueError(f"rotation must be degrees or 'align', got {rotation!r}")
        self.mode, self.threshold, self.retrieval = mode, threshold, retrieval
        self.num_seeds, self.nms_radius, self.radius, self.reach = seeds, nms_radius, radius, reach
        self.rotation, self.ink = rotation, ink
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
        self.ffn = FFN(hidden=hidden, source=mode, gate_bias=gate_bias, learnable=learnable)

    def cross(self, ctx: PairContext) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Cross-attention retrieval: (B, n_t, 3) sample colours, (B, n_t) activation in [0, 1],
        and the (Q, K) it used, for the seeds' lazy rows."""
        q, k = self.qk(ctx.f_t, ctx.f_s)
        out = self.attention(q, k, ctx.sample_values, self.qk.scale, ctx.sample_boundary)
        act = out[..., 3].clamp_min(0) * ctx.target_boundary  # seed: masked by target boundary
        act = act / act.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return out[..., :3], act, (q, k)

    def self_attend(self, h_work: Tensor, ctx: PairContext) -> Tensor:
        """Target self-attention over the residual stream: (B, n_t, C)."""
        q, k = self.self_qk(ctx.f_t, ctx.f_t)
        return self.self_attention(q, k, h_work, self.self_qk.scale, ctx.target_boundary)

    def forward(self, h: Tensor, ctx: PairContext, prev=None) -> tuple[Tensor, BlockOutput]:
        b, c, height, width = h.shape
        wh, ww = ctx.work_shape
        resized = (wh, ww) != (height, width)
        segment_mode = self.mode == "cross" and self.retrieval == "segments"
        if segment_mode:  # the paste needs no self-attention and no FFN
            self_out = h.new_zeros(b, wh * ww, c)
        else:
            h_work = F.interpolate(h, size=(wh, ww), mode="area") if resized else h
            self_out = self.self_attend(h_work.flatten(2).transpose(1, 2), ctx)  # (B, n_t, C)
        if self.mode == "cross":
            cross_out, act, qk = self.cross(ctx)
        else:
            cross_out, act = self_out, torch.ones_like(self_out[..., 0])
        maps = torch.cat([self_out, cross_out, act[..., None]], -1)  # (B, n_t, 2C + 1)
        maps = maps.transpose(1, 2).reshape(b, -1, wh, ww)
        if resized:
            maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
        self_map, cross_map, act_map = maps[:, :c], maps[:, c : 2 * c], maps[:, 2 * c :]
        if segment_mode:
            return self.paste_segments(h, act_map, ctx, qk)
        delta, gate_logit = self.ffn(torch.cat([h, self_map, cross_map, act_map], 1))
        gate = torch.sigmoid(gate_logit)
        if self.mode == "cross":
            gate = gate * shading.activation_gate(act_map, self.threshold)
        h = h + gate * delta
        return h, BlockOutput(activation=act_map, gate=gate, retrieved=cross_map)

    @torch.no_grad()
    def paste_segments(self, h: Tensor, act_map: Tensor, ctx: PairContext, qk):
        """Seeds -> one sample component each -> rigid warp toward void -> gated paste."""
        b, _, height, width = h.shape
        hs, ws = ctx.sample.shape[-2:]
        side = max(height, width)
        nms = max(1, round(self.nms_radius * side))
        radius, reach = self.radius * side, self.reach * side
        act = act_map[:, 0]
        if ctx.used_seeds is not None:  # later passes seed away from every earlier seed
            used = ctx.used_seeds
            near = shading.point_distances(used, (height, width)) <= nms  # (B, S', H, W)
            near = near & (used[..., 0] >= 0)[..., None, None]
            act = act * (~near.any(1)).float()
        seeds = segments.select_seeds(act, self.num_seeds, nms, self.threshold)
        valid = seeds[..., 0] >= 0  # (B, S)
        # lazy attention rows for the seeds only, at the working resolution
        wh, ww = ctx.work_shape
        sy = (seeds[..., 0].clamp_min(0) * wh // height).clamp_max(wh - 1)
        sx = (seeds[..., 1].clamp_min(0) * ww // width).clamp_max(ww - 1)
        q, k = qk
        rows = self.attention.rows(q, k, self.qk.scale, sy * ww + sx)  # (B, S, n_s)
        rows = rows.reshape(b, -1, *ctx.sample_shape)
        if tuple(ctx.sample_shape) != (hs, ws):
            rows = F.interpolate(rows, size=(hs, ws), mode="nearest")
        rows = rows.float()
        # boundary-weighted pick, per component: mean attention over each ink component
        labels = ctx.sample_labels  # (B, H_s, W_s), 0 = no ink
        count = int(labels.max()) + 1
        flat = labels.flatten(1)[:, None].expand(-1, rows.shape[1], -1)  # (B, S, n_s)
        zeros = rows.new_zeros(b, rows.shape[1], count)
        mass = zeros.scatter_add_(2, flat, rows.flatten(2))
        area = rows.new_zeros(b, 1, count).scatter_add_(
            2, flat[:, :1], torch.ones_like(rows[:, :1].flatten(2))
        )
        score = (mass / area.clamp_min(1)).masked_fill(area == 0, -torch.inf)
        score[..., 0] = -torch.inf  # background is never pasted
        score = score.masked_fill(~valid[..., None], -torch.inf)  # unused seed slots bid nothing
        picked = diverse_assignment(score)  # (B, S): ONE component per seed, spread over seeds
        masks = (segments.component_masks(labels, picked) & valid[..., None, None]).float()
        # rigid warp: rotate about the component's centroid, land it in nearby empty space
        src = segments.mask_centroid(masks)  # (B, S, 2)
        ink = shading.ink_mask(h, boundary_strength(h), ink=self.ink)
        extent = segments.mask_extent(masks, src) + 0.03 * side  # (B, S) radius + margin
        dest = shading.toward_void(seeds, shading.void_distance(ink), reach, extent).float()
        if self.rotation == "align":  # principal axis along the target's local line work
            target_dir = segments.local_orientation(ink.float(), seeds.clamp_min(0).float(), 4.0)
            angle = target_dir - segments.mask_orientation(masks)
        else:
            angle = torch.full_like(src[..., 0], math.radians(float(self.rotation)))
        matte = segments.component_matte(ctx.sample, masks, labels)  # (B, S, H_s, W_s) soft alpha
        layers = torch.cat([ctx.sample[:, None] * matte[:, :, None], matte[:, :, None]], 2)
        warped = segments.rigid_warp(
            layers.flatten(0, 1),
            src.flatten(0, 1),
            dest.flatten(0, 1),
            angle.flatten(),
            (height, width),
        ).view(b, -1, 4, height, width)  # premultiplied colour (3) + alpha (1)
        # locality exp(-dist / radius) around each seed, relative to the paste's nearest
        # point: opaque where it lands, fading with distance beyond it
        local = shading.locality_gate(seeds, (height, width), radius)  # (B, S, H, W)
        on = warped[:, :, 3] > 0.25
        nearest = local.masked_fill(~on, 0).amax((-2, -1), keepdim=True)
        gate_s = (local / nearest.clamp_min(1e-6)).clamp_max(1)
        alpha_s = warped[:, :, 3] * gate_s  # (B, S, H, W)
        alpha = alpha_s.amax(1, keepdim=True).clamp(0, 1)  # (B, 1, H, W)
        premult = (gate_s[:, :, None] * warped[:, :, :3]).sum(1)
        colour = premult / (gate_s * warped[:, :, 3]).sum(1, keepdim=True).clamp_min(1e-6)
        h = shading.blend(h, colour.clamp(0, 1), alpha)
        placements = torch.cat([src, dest, angle[..., None]], -1)
        picked = torch.where(valid, picked, torch.zeros_like(picked))
        return h, BlockOutput(
            act_map, alpha, colour, seeds, warped[:, :, 3], components=picked, placements=placements
        )


def op_output(h: Tensor, out: Tensor, prev: BlockOutput | None) -> tuple[Tensor, BlockOutput]:
    """An op's result: its gate is how much each pixel changed; the activation passes through."""
    gate = (out - h).abs().amax(1, keepdim=True).clamp(0, 1)
    act = prev.activation if prev is not None else gate
    return out, BlockOutput(activation=act, gate=gate, retrieved=out)


class Thicken(nn.Module):
    """Heat-kernel dilation of the ink the previous block touched or activated ('t')."""

    def __init__(
        self, *, time: float = 2.0, level: float = 0.3, threshold: float = 0.2, ink: str = "dark"
    ):
        super().__init__()
        self.time, self.level, self.threshold, self.ink = time, level, threshold, ink

    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None = None):
        ink = shading.ink_mask(h, boundary_strength(h), ink=self.ink)[:, None]
        if prev is not None:
            ink = ink & ((prev.gate > 0.5) | (prev.activation > self.threshold))
        return op_output(h, shading.thicken(h, ink, self.time, self.level), prev)


class Shadow(nn.Module):
    """Drop shadow under what the previous block pasted ('h')."""

    def __init__(self, *, offset: tuple[int, int] = (3, 3), darkness: float = 0.5, softness=1.5):
        super().__init__()
        self.offset, self.darkness, self.softness = tuple(offset), darkness, softness

    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None = None):
        alpha = prev.gate if prev is not None else torch.zeros_like(h[:, :1])
        return op_output(
            h, shading.shadow(h, alpha, self.offset, self.darkness, self.softness), prev
        )


class Annihilate(nn.Module):
    """Fuzz annihilator ('f'): revert transferred fragments smaller than `min_area` pixels."""

    def __init__(self, *, min_area: int = 12, tolerance: float = 0.05):
        super().__init__()
        self.min_area, self.tolerance = min_area, tolerance

    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None = None):
        changed = (h - ctx.target).abs().amax(1) > self.tolerance  # (B, H, W)
        keep = torch.stack(
            [
                segments.annihilate_fuzz(segments.components(m), min_area=self.min_area) > 0
                for m in changed
            ]
        )
        return op_output(h, torch.where((changed & ~keep)[:, None], ctx.target, h), prev)
