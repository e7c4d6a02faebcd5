"""The image ops of a pattern: one class per letter, registered in BLOCKS. They act on the
image and read the head's attention between the stack's final features (the PairContext).

Every op maps (h, ctx, prev) -> (h, BlockOutput): h is the image being shaded (B, 3, H, W),
ctx the immutable PairContext, prev the previous op's record (None for the first). What
flows forward (the latest copy's alpha, the seeds and components used so far) is the
record's Carry, which every op passes on; no op mutates shared state.

    c  SegmentPaste    whole-shape pastes (paste.py): seeds -> choose -> place -> composite
    t  Thicken         heat-kernel dilation of the ink that was copied or activated
    h  Shadow          drop shadow under what was copied
    f  FuzzAnnihilator revert transferred fragments smaller than paste.min_area
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spectral_resnet import segments, shading
from spectral_resnet.config import ShaderConfig
from spectral_resnet.context import BlockOutput, Carry, PairContext
from spectral_resnet.paste import SegmentPaste


def passed_on(prev: BlockOutput | None) -> Carry:
    """The carry an op hands on unchanged when it neither copies nor seeds."""
    return prev.carry if prev is not None else Carry()


def op_output(letter: str, h: Tensor, out: Tensor, prev: BlockOutput | None):
    """A shading op's result: its gate is how much each pixel changed; the activation, the
    latest copy's alpha and the seeds pass through."""
    gate = (out - h).abs().amax(1, keepdim=True).clamp(0, 1)
    act = prev.activation if prev is not None else gate
    return out, BlockOutput(letter, act, gate, out, passed_on(prev))


class Thicken(nn.Module):
    """'t': heat-kernel dilation of the ink that was copied or activated."""

    def __init__(self, config: ShaderConfig):
        super().__init__()
        self.time, self.threshold = config.shading.thicken_time, config.attention.threshold
        self.ink = config.paste.ink

    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None):
        ink = shading.ink_mask(h, ink=self.ink)[:, None]
        if prev is not None:
            alpha = prev.carry.alpha
            copied = alpha > 0.5 if alpha is not None else torch.zeros_like(ink)
            ink = ink & (copied | (prev.activation > self.threshold))
        return op_output("t", h, shading.thicken(h, ink, self.time), prev)


class Shadow(nn.Module):
    """'h': drop shadow under what was copied."""

    def __init__(self, config: ShaderConfig):
        super().__init__()
        self.offset = tuple(config.shading.shadow_offset)
        self.darkness = config.shading.shadow_darkness

    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None):
        alpha = passed_on(prev).alpha
        alpha = alpha if alpha is not None else h[:, :1] * 0
        return op_output("h", h, shading.shadow(h, alpha, self.offset, self.darkness), prev)


class FuzzAnnihilator(nn.Module):
    """'f': revert transferred fragments smaller than `min_area` pixels, so what stays is crisp."""

    def __init__(self, config: ShaderConfig):
        super().__init__()
        self.min_area = config.paste.min_area

    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None):
        changed = (h - ctx.target).abs().amax(1) > 0.05  # (B, H, W) transferred pixels
        keep = torch.stack(
            [
                segments.annihilate_fuzz(segments.components(m), min_area=self.min_area) > 0
                for m in changed
            ]
        )
        return op_output("f", h, torch.where((changed & ~keep)[:, None], ctx.target, h), prev)


BLOCKS: dict[str, type[nn.Module]] = {
    "c": SegmentPaste,
    "t": Thicken,
    "h": Shadow,
    "f": FuzzAnnihilator,
}
