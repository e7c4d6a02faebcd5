"""What the image ops share: the pair's attention and images (PairContext), what each op
hands to the next (Carry) beside its own record (BlockOutput), and a paste's report
(PasteReport, with each seed's Outcome)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from spectral_resnet import segments
from spectral_resnet.attention import ProjectedAttention
from spectral_resnet.config import PasteConfig
from spectral_resnet.stack import coarse_shape, upsampled

EVIDENCE_STRIDE = 2  # the confidence's grid: every other target row and column


@dataclass(frozen=True)
class PairContext:
    """Everything the blocks need about the (target, sample) pair, computed once per forward."""

    cross: ProjectedAttention  # target queries against sample keys
    # what only the image ops read; None in a context built with ops=False (training)
    sample_values: Tensor | None  # (B, n_s, 4) sample colour (3) and boundary strength (1)
    target_boundary: Tensor | None  # (B, n_t) boundary strength of the target
    sample_boundary: Tensor | None  # (B, n_s)
    work_shape: tuple[int, int]  # (h, w) the attention runs at
    sample_shape: tuple[int, int]  # (h_s, w_s) of the sample tokens
    target: Tensor  # (B, 3, H, W) the original target, full resolution
    sample: Tensor  # (B, 3, H_s, W_s) the sample, full resolution
    sample_labels: Tensor | None  # (B, H_s, W_s) ink components (0 = none); 'c' blocks only
    target_ink: Tensor | None = None  # (B, 1, H, W) bool: the target's ink; 'c' blocks only
    target_allowed: Tensor | None = None  # (B, 1, H, W) bool: the target_mask; None: anywhere
    sample_allowed: Tensor | None = None  # (B, 1, H_s, W_s) bool: the sample_mask

    def on_host(self) -> PairContext:
        """This context with the images, ink, labels and masks on the CPU, and the evidence
        computed where the head runs and brought over: the image ops' steps are data-
        dependent (labelling, Otsu, the room search), so they run on the host, one transfer
        a pass. The head (`cross`) stays where it is; `host_rows` reads it. On a CPU model
        the context itself."""
        if self.target.device.type == "cpu":
            return self
        moved = {
            f.name: getattr(self, f.name).cpu()
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        host = replace(self, **moved)
        host.__dict__["evidence"] = self.evidence.cpu()  # cached_property: computed once, here
        return host

    def host_rows(self, index: Tensor) -> Tensor:
        """Lazy attention rows of target tokens `index` (B, m), computed where the head runs,
        on the host: (B, m, n_s)."""
        return self.cross.rows(index.to(self.cross.q.device)).to(self.target.device)

    @cached_property
    def retrieved(self) -> Tensor:
        """Cross-attention retrieval of the sample's colours and boundary strength for every
        target token, (B, n_t, 4); computed once per context, only when read (the low-rank
        kernel's evidence is its boundary channel)."""
        return self.cross(self.sample_values, self.sample_boundary)

    @cached_property
    def evidence(self) -> Tensor:
        """How clearly each target token matches one sample place, (B, n_t) in [0, 1], masked
        by the target's boundary and scaled to a peak of 1. For the low-rank kernel it is
        the seed's retrieved boundary strength; for softmax, whose averages retrieve some
        boundary everywhere, the attention's confidence (its largest weight), so seeds go
        where one sample structure matches clearly."""
        c = self.cross
        if c.kernel.kernel == "softmax":
            evidence = self.confidence_map()
        else:
            evidence = self.retrieved[..., 3].clamp_min(0)
        act = evidence * self.target_boundary
        return act / act.amax(dim=1, keepdim=True).clamp_min(1e-12)

    def confidence_map(self) -> Tensor:
        """The softmax attention's confidence for every target token, (B, n_t): computed on
        every other row and column (at each coarse cell's first pixel), and only in cells
        that a boundary pixel's bilinear read reaches, then upsampled bilinearly. It varies
        over the stem's reach, not pixel to pixel, and the scores against every key are
        the pass's largest product: a quarter of them (docs/benchmarks.md)."""
        c, (h, w) = self.cross, self.work_shape
        coarse = coarse_shape((h, w), EVIDENCE_STRIDE)
        on = (self.target_boundary > 0).unflatten(1, (h, w))[:, None].float()  # (B, 1, h, w)
        cells = F.max_pool2d(on, EVIDENCE_STRIDE, ceil_mode=True)  # cells holding boundary
        cells = F.max_pool2d(cells, 3, stride=1, padding=1)[:, 0].flatten(1) > 0  # + the ring
        rows = torch.arange(0, h, EVIDENCE_STRIDE, device=on.device)  # (h',)
        cols = torch.arange(0, w, EVIDENCE_STRIDE, device=on.device)
        pixel = (rows[:, None] * w + cols).flatten()  # (h' w',) each cell's first token
        if every_cell(c.q.device):
            grid = c.kernel.confidence(c.q[:, pixel], c.k, c.scale, self.sample_boundary)
            grid = torch.where(cells, grid, 0.0)  # (B, h' w')
        else:
            grid = torch.zeros(cells.shape, dtype=c.q.dtype)
            for i, cell in enumerate(cells):
                if cell.any():
                    q = c.q[i : i + 1, pixel[cell]]  # (1, m, d)
                    boundary = self.sample_boundary[i : i + 1]
                    grid[i, cell] = c.kernel.confidence(q, c.k[i : i + 1], c.scale, boundary)[0]
        return upsampled(grid[..., None], coarse, (h, w))[..., 0]

    @cached_property
    def activation(self) -> Tensor:
        """The evidence at the target's resolution (B, 1, H, W): one tensor for every block
        of the pass, not one copy each."""
        return to_stream(self.evidence[..., None], self, tuple(self.target.shape[-2:]))

    @cached_property
    def sample_background(self) -> Tensor:
        """The sample's background colour (B, 3), the mattes' reference: once a pass."""
        return segments.background_colour(self.sample)

    @cached_property
    def sample_boxes(self) -> list[list[tuple[slice, slice] | None]]:
        """Each sample component's bounding box: boxes[i][label - 1] (find it once a pass)."""
        return [segments.component_boxes(labels) for labels in self.sample_labels]


def every_cell(device: torch.device) -> bool:
    """Whether the evidence scores every coarse cell and masks it (a GPU: no count of cells
    is read to the host mid-pass) or scores only the cells picked on the host (a CPU: line
    art lights a few cells in ten)."""
    return device.type != "cpu"


class Outcome(IntEnum):
    """What became of one seed slot."""

    PLACED = 0
    NO_ROOM = 1  # no spot within reach clear of ink, frame and other pastes
    OVER_BUDGET = 2  # the run had made paste.max_pastes pastes already
    UNUSED = 3  # an empty slot: the activation had fewer peaks
    NOTHING_LEFT = 4  # every component the seed matches was pasted already
    NO_ROOM_IN_MASK = 5  # NO_ROOM, with a target_mask that also rules places out
    MASKED_SAMPLE = 6  # the sample_mask leaves no component to take

    def reason(self, paste: PasteConfig) -> str:
        """Why this seed made no paste, in words (empty for PLACED and UNUSED)."""
        return {
            Outcome.NO_ROOM: "no room within paste.reach clear of ink, frame and other pastes, "
            f"down to paste.min_scale={paste.min_scale} (min_scale^2 for a shape with no cut)",
            Outcome.OVER_BUDGET: f"over paste.max_pastes={paste.max_pastes}",
            Outcome.NOTHING_LEFT: "every sample component it matches was pasted already "
            "(once per run)",
            Outcome.NO_ROOM_IN_MASK: "no room inside target_mask within paste.reach, clear of "
            f"ink, frame and other pastes, down to paste.min_scale={paste.min_scale}",
            Outcome.MASKED_SAMPLE: "sample_mask leaves no sample component to take",
        }.get(self, "")


@dataclass(frozen=True)
class PasteReport:
    """One 'c' op's seeds and what became of each: for pictures, run.json and benchmarks."""

    seeds: Tensor  # (B, S, 2) (y, x), -1 unused
    masks: Tensor  # (B, S, H, W) float16: the warped sample components, as placed
    components: Tensor  # (B, S) the sample component label each seed pasted (0: none)
    placements: Tensor  # (B, S, 6) src (y, x), dest (y, x), angle, scale of each warp
    outcomes: Tensor  # (B, S) Outcome values
    splits: Tensor | None = None  # (B, S) cuts that made each paste a part of its shape

    @property
    def skipped(self) -> Tensor:
        """(B, S) seeds whose component found no room within reach."""
        return (self.outcomes == Outcome.NO_ROOM) | (self.outcomes == Outcome.NO_ROOM_IN_MASK)

    @property
    def over_budget(self) -> Tensor:
        return self.outcomes == Outcome.OVER_BUDGET

    @property
    def repeats(self) -> Tensor:
        return self.outcomes == Outcome.NOTHING_LEFT


@dataclass(frozen=True)
class Carry:
    """The run's state so far, handed from op to op: what later ops read and add to."""

    alpha: Tensor | None = None  # (B, 1, H, W) coverage of the latest copy
    used_seeds: Tensor | None = None  # (B, S', 2) every seed so far
    pasted: Tensor | None = None  # (B, P) sample labels pasted so far (0: none)
    covered: Tensor | None = None  # (B, 1, H, W) coverage of every paste so far


@dataclass(frozen=True)
class BlockOutput:
    """What one op did (for pictures) and what it hands on: the carry, and a paste's report."""

    letter: str
    activation: Tensor  # (B, 1, H, W) in [0, 1]; shading ops pass the last one on
    gate: Tensor  # (B, 1, H, W) in [0, 1]: how much of each pixel this op changed
    retrieved: Tensor | None  # (B, 3, H, W) what it moved towards; pastes: None (see masks)
    carry: Carry = field(default_factory=Carry)
    paste: PasteReport | None = None  # 'c' ops only


def to_stream(tokens: Tensor, ctx: PairContext, shape: tuple[int, int]) -> Tensor:
    """Per-token maps (B, n_t, C) at the working resolution -> (B, C, H, W) stream resolution."""
    b, _, c = tokens.shape
    maps = tokens.transpose(1, 2).reshape(b, c, *ctx.work_shape)
    if tuple(ctx.work_shape) != tuple(shape):
        maps = F.interpolate(maps, size=shape, mode="bilinear", align_corners=False)
    return maps
