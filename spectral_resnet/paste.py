"""Whole-shape pastes ('c'): the seed's segment retrieval, as four named steps.

    seeds      the activation's non-maximum-suppressed peaks, away from earlier seeds
    choose     one sample ink component per seed: the best mean of its attention row
    place      the nearest spot within reach where the rotated footprint fits clear of ink
    composite  each matted component warped into place and blended, in its own box

What became of each seed is an `Outcome`, with the reason text `run.json` reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet import segments, shading
from spectral_resnet.config import ShaderConfig
from spectral_resnet.context import BlockOutput, Carry, Outcome, PairContext, PasteReport

PLACEMENT_CELLS = 256  # placement searches a grid of at most this many cells a side
MAX_SPLITS = 3  # a shape with no room is cut at most this many times, keeping the seed's part


def unique_assignment(score: Tensor) -> Tensor:
    """A different component per seed from scores (B, S, N), strongest seed first, each
    taking its best component still free; 0 when none is left (-inf scores are not
    candidates). A loop over the S seed slots: each choice narrows the next."""
    score = score.clone()
    picked = torch.zeros(score.shape[:2], dtype=torch.long, device=score.device)
    for j in range(score.shape[1]):
        best, choice = score[:, j].max(1)  # (B,)
        picked[:, j] = torch.where(torch.isfinite(best), choice, 0)
        taken = F.one_hot(picked[:, j], score.shape[2]).bool() & torch.isfinite(best)[:, None]
        score = score.masked_fill(taken[:, None], -torch.inf)
    return picked


class SegmentPaste(nn.Module):
    """'c': the seed's retrieval. Activation -> seeds -> one whole sample component per seed
    -> rigid warp toward empty target space -> gated paste. Holds no weights: it reads the
    shader's cross attention from the context."""

    def __init__(self, config: ShaderConfig):
        super().__init__()
        self.paste, self.threshold = config.paste, config.attention.threshold

    @torch.no_grad()
    def forward(self, h: Tensor, ctx: PairContext, prev: BlockOutput | None):
        carry = prev.carry if prev is not None else Carry()
        shape = h.shape[-2:]
        seeds = self.seeds(ctx.evidence.unflatten(1, ctx.work_shape), carry.used_seeds, shape)
        valid = seeds[..., 0] >= 0  # (B, S)
        before = carry.pasted  # (B, P) labels pasted by earlier ops
        if before is None:
            before = seeds.new_zeros(seeds.shape[0], 0)
        picked, attention = self.choose(seeds, valid, ctx, shape, before)  # (B, S), 0: none left
        cutouts = [
            [cut_out(ctx, i, int(label)) if ok else None for label, ok in zip(row, ok_row)]
            for i, (row, ok_row) in enumerate(zip(picked, valid & (picked > 0)))
        ]  # [B][S] each seed's component in its own box; None: no component
        src = centroids(cutouts)  # (B, S, 2) sample (y, x)
        angle = self.angles(ctx.target_ink, seeds, cutouts)  # (B, S)

        def split(i: int, j: int, cut: Cutout) -> Cutout | None:
            """The part of `cut` cut along its own graph that seed j's attention favours."""
            pieces = segments.split_shape(cut.mask)
            if not pieces:
                return None
            row = attention[i, j]  # (h_s, w_s) the seed's attention over the sample
            height, width = ctx.sample_labels.shape[-2:]
            ys = segments.nearest_index(row.shape[0], height)[cut.box[0]]
            xs = segments.nearest_index(row.shape[1], width)[cut.box[1]]
            local = row[ys][:, xs].float()  # the row over the cutout's box
            best = max(pieces, key=lambda p: float((local * p).sum() / p.sum()))
            return Cutout(best, cut.box)

        dest, scale, outcome, splits = self.place(
            ctx.target_ink,
            seeds,
            cutouts,
            src,
            angle,
            before,
            carry.covered,
            ctx.target_allowed,
            split,
        )
        src = centroids(cutouts)  # a part's own centroid where a shape was split
        none_left = Outcome.NOTHING_LEFT
        if ctx.sample_allowed is not None:  # a sample mask that leaves nothing says so
            empty = ctx.sample_labels.flatten(1).amax(1) == 0  # (B,)
            none_left = torch.where(empty, Outcome.MASKED_SAMPLE, none_left)[:, None]
        outcome = torch.where(valid & (picked == 0), none_left, outcome)
        placed = outcome == Outcome.PLACED  # (B, S)
        cutouts = [[c if ok else None for c, ok in zip(*rows)] for rows in zip(cutouts, placed)]
        warped, out, alpha = self.composite(h, seeds, cutouts, src, dest, angle, scale, ctx)
        pasted = torch.where(placed, picked, torch.zeros_like(picked))  # (B, S)
        report = PasteReport(
            seeds=seeds,
            masks=warped,
            components=pasted,
            placements=torch.cat([src, dest, angle[..., None], scale[..., None]], -1),
            outcomes=outcome,
            splits=splits,
        )
        carry = Carry(
            alpha=alpha,
            used_seeds=seeds
            if carry.used_seeds is None
            else torch.cat([carry.used_seeds, seeds], 1),
            pasted=torch.cat([before, pasted], 1),
            covered=alpha if carry.covered is None else torch.maximum(carry.covered, alpha),
        )
        return out, BlockOutput("c", ctx.activation, alpha, None, carry, report)

    def seeds(self, act: Tensor, used: Tensor | None, shape: tuple[int, int]) -> Tensor:
        """Non-maximum-suppressed peaks of the activation (B, h, w) at the working
        resolution, away from every earlier seed, as stream pixels (B, S, 2) of `shape`
        (cell centres; -1 for no seed). The activation lives at the working resolution, so
        its peaks are found there: a phone photo costs what its working copy costs."""
        h, w = act.shape[-2:]
        ratio = torch.tensor([shape[0] / h, shape[1] / w])
        nms = max(1, round(self.paste.nms_radius * max(h, w)))
        for point in [] if used is None else used.unbind(1):  # (B, 2) one earlier seed each
            cell = (point / ratio).floor()
            near = shading.point_distances(cell[:, None], (h, w))[:, 0] <= nms
            act = act * ~(near & (point[:, 0] >= 0)[:, None, None])  # (B, h, w)
        seeds = segments.select_seeds(act, self.paste.seeds, nms, self.threshold)
        lifted = ((seeds + 0.5) * ratio).long().clamp_max(torch.tensor(shape) - 1)
        return torch.where(seeds >= 0, lifted, seeds)

    def choose(
        self, seeds: Tensor, valid: Tensor, ctx: PairContext, shape, pasted: Tensor
    ) -> Tensor:
        """One sample ink component per seed (B, S), and the seeds' attention rows over the
        sample (B, S, h_s, w_s): a component's score is the mean of the seed's row over it. A component is pasted once a run: those in `pasted` (B, P) and
        those a stronger seed took are out, and a seed left with none gets 0."""
        height, width = shape
        wh, ww = ctx.work_shape
        sy = (seeds[..., 0].clamp_min(0) * wh // height).clamp_max(wh - 1)
        sx = (seeds[..., 1].clamp_min(0) * ww // width).clamp_max(ww - 1)
        rows = ctx.host_rows(sy * ww + sx).unflatten(-1, ctx.sample_shape)  # (B, S, h_s, w_s)
        score = segments.component_scores(rows.float(), ctx.sample_labels)  # (B, S, N)
        done = torch.zeros_like(score[:, 0], dtype=torch.bool).scatter_(1, pasted, True)
        score = score.masked_fill(done[:, None], -torch.inf)  # (B, S, N) pasted already
        score = score.masked_fill(~valid[..., None], -torch.inf)  # unused slots bid nothing
        return unique_assignment(score), rows

    def angles(self, ink: Tensor, seeds: Tensor, cutouts: list[list[Cutout | None]]) -> Tensor:
        """Each paste's rotation (B, S) radians: fixed, or its principal axis along the
        target's line work at the seed ("align")."""
        if self.paste.rotation == "align":
            target_dir = segments.local_orientation(
                ink[:, 0].float(), seeds.clamp_min(0).float(), 4.0
            )
            own = [
                [0.0 if c is None else float(segments.mask_orientation(c.mask)) for c in row]
                for row in cutouts
            ]
            return target_dir - torch.tensor(own).reshape(seeds.shape[:2])
        return torch.full(seeds.shape[:2], math.radians(float(self.paste.rotation)))

    def place(
        self,
        ink,
        seeds,
        cutouts,
        src,
        angle,
        pasted: Tensor,
        covered: Tensor | None = None,
        allowed: Tensor | None = None,
        split: Callable[[int, int, Cutout], Cutout | None] | None = None,
    ):
        """Where each component lands: destination (B, S, 2), scale (B, S), outcome (B, S)
        (an Outcome: PLACED, NO_ROOM (NO_ROOM_IN_MASK), OVER_BUDGET, or UNUSED for empty slots).

        ink (B, 1, H, W) bool: the target's; cutouts [B][S]: each seed's component (None:
        nothing to place); src (B, S, 2) their centroids; angle (B, S); pasted (B, P): labels
        pasted by earlier blocks, which count against paste.max_pastes; allowed (B, 1, H, W)
        bool, the target_mask: a paste lands wholly inside it, as if the rest were pasted.
        split(i, j, cutout): a part of the cutout to try when no size of it fits (None: none),
        at most MAX_SPLITS times; cutouts[i][j] becomes the part that was tried last, and
        the fourth result (B, S) counts the cuts.

        A paste goes to the spot nearest its seed, within `reach`, where its exact rotated
        footprint covers at most 2% target ink (grown by a small clearance) or off-frame area
        and nothing of an earlier paste (grown likewise; earlier blocks' are `covered`
        (B, 1, H, W)); failing that it is tried smaller, down to `min_scale`, then skipped.
        Seeds go strongest first, each paste occupying its spot for the next: that order is
        the one sequential part, a loop over at most `seeds` slots.
        """
        b, s = seeds.shape[:2]
        height, width = ink.shape[-2:]
        side = max(height, width)
        clearance = max(1, round(0.01 * side))
        step = max(1, math.ceil(side / PLACEMENT_CELLS))  # pixels per placement cell
        ink = F.max_pool2d(ink.float(), step, step, ceil_mode=True).double()  # (B, 1, Hc, Wc)
        taken = None if covered is None else covered > 0.1  # earlier blocks' pastes
        if allowed is not None:  # outside the target_mask counts as taken
            taken = ~allowed if taken is None else taken | ~allowed
        if taken is not None:
            taken = F.max_pool2d(taken.float(), step, step, ceil_mode=True)
            ink = torch.maximum(ink, taken.double() * float(height * width))
        grow = math.ceil(clearance / step)  # the clearance, in cells
        framed = F.pad(ink, (1, 1, 1, 1), value=1.0)  # the frame is ink too
        ink = segments.max_filter(framed, grow)[:, 0, 1:-1, 1:-1]  # grown
        cells_h, cells_w = ink.shape[-2:]
        dest = seeds.new_zeros(b, s, 2, dtype=torch.float32)
        scale = torch.ones(b, s)
        outcome = torch.full((b, s), Outcome.UNUSED, dtype=torch.long)
        splits = torch.zeros((b, s), dtype=torch.long)  # how many cuts made each seed's part
        no_room = Outcome.NO_ROOM if allowed is None else Outcome.NO_ROOM_IN_MASK
        ys = (torch.arange(cells_h, dtype=torch.float32) * step + step // 2).view(-1, 1)
        xs = (torch.arange(cells_w, dtype=torch.float32) * step + step // 2).view(1, -1)
        for i in range(b):
            occupied, count = ink[i], int((pasted[i] > 0).sum())
            for j in range(s):
                cut = cutouts[i][j]
                if seeds[i, j, 0] < 0 or cut is None:
                    continue
                if count >= self.paste.max_pastes:  # strongest first: the rest go over budget
                    outcome[i, j] = Outcome.OVER_BUDGET
                    continue
                distance = ((ys - seeds[i, j, 0]) ** 2 + (xs - seeds[i, j, 1]) ** 2).sqrt()
                near = distance <= self.paste.reach * side  # (Hc, Wc)
                outcome[i, j] = no_room
                if not near.any():  # a reach shorter than half a cell
                    continue
                # the overlap is scored only in the box around the reachable cells
                window = tuple(slice(int(at.min()), int(at.max()) + 1) for at in near.nonzero().T)
                sizes = parts(cut, split, i, j, self.scales(), self.floor_scales())
                for part, cuts, factors in sizes:  # the shape, then parts (or smaller sizes)
                    centroid = src[i, j] if cuts == 0 else part.centroid
                    cutouts[i][j], splits[i, j] = part, cuts
                    # a shape larger than the frame is first fitted to it; min_scale from there
                    fit = min(
                        1.0, (min(height, width) - 2 * clearance - 2) / max(2 * part.extent, 1.0)
                    )
                    for factor in [fit * f for f in factors]:
                        r = math.ceil((math.ceil(part.extent * factor) + clearance + 1) / step)
                        centre = float(r * step + step // 2)
                        shape = segments.rigid_warp(
                            part.mask[None, None],
                            (centroid - part.corner)[None],
                            torch.tensor([[centre, centre]]),
                            angle[i, j][None],
                            ((2 * r + 1) * step,) * 2,
                            scale=factor,
                        )  # (1, 1, n, n) the paste, its centroid on the middle cell's centre
                        core = F.max_pool2d((shape > 0.25).double(), step, step)[0, 0]
                        cost = torch.full_like(occupied, torch.inf)  # (Hc, Wc), near only
                        cost[window] = segments.footprint_overlap(occupied, core, *window)
                        fits = (cost <= 0.02 * float(core.sum())) & near
                        if not fits.any():
                            continue
                        y, x = divmod(int(distance.masked_fill(~fits, torch.inf).argmin()), cells_w)
                        dest[i, j] = torch.tensor([float(ys[y, 0]), float(xs[0, x])])
                        scale[i, j], outcome[i, j] = factor, Outcome.PLACED
                        count += 1
                        # the paste occupies its spot: any later overlap costs more than all ink
                        grown = segments.max_filter(core, grow)
                        occupied = occupied + float(occupied.numel()) * self.stamp(
                            grown, (y, x), (cells_h, cells_w)
                        )
                        break
                    if outcome[i, j] == Outcome.PLACED:
                        break
        return dest, scale, outcome, splits

    def scales(self) -> list[float]:
        """The sizes a paste is tried at, largest first, relative to its size fitted to the
        target's frame: 1, then down to paste.min_scale."""
        m = self.paste.min_scale
        return [1.0] if m >= 1 else [1.0, math.sqrt(m), m]

    def floor_scales(self) -> list[float]:
        """Where a shape cannot be cut into parts (a silhouette, a blob, one stroke), the
        sizes it is tried at next: min_scale^1.5, then the floor min_scale^2."""
        m = self.paste.min_scale
        return [] if m >= 1 else [m**1.5, m**2]

    @staticmethod
    def stamp(footprint: Tensor, centre: tuple[int, int], shape: tuple[int, int]) -> Tensor:
        """`footprint` (2R+1, 2R+1) placed with its centre at `centre` on an empty (H, W) map."""
        r = footprint.shape[-1] // 2
        y, x = centre
        canvas = footprint.new_zeros(shape[0] + 2 * r, shape[1] + 2 * r)
        canvas[y : y + 2 * r + 1, x : x + 2 * r + 1] = footprint
        return canvas[r : r + shape[0], r : r + shape[1]]

    def composite(self, h, seeds, cutouts, src, dest, angle, scale, ctx: PairContext):
        """Warp each matted component into place and blend them over h, each paste computed
        only in its own box and the blend only in their union (time and memory follow the
        pastes, not the image): the placed alphas (B, S, H, W) float16, the new stream
        (B, 3, H, W) and the pasted alpha (B, 1, H, W)."""
        b, s = seeds.shape[:2]
        height, width = h.shape[-2:]
        radius = self.paste.radius * max(height, width)
        placed = torch.zeros(b, s, height, width, dtype=torch.float16, device=h.device)
        premult, weight = torch.zeros_like(h), torch.zeros_like(h[:, :1])
        alpha = torch.zeros_like(h[:, :1])
        y0, y1, x0, x1 = height, 0, width, 0  # the union of every paste's box
        for i, j in [(i, j) for i in range(b) for j in range(s) if cutouts[i][j] is not None]:
            cut = cutouts[i][j]
            crop = ctx.sample[i : i + 1, :, cut.box[0], cut.box[1]]
            m = cut.mask[None, None]  # (1, 1, h_c, w_c)
            labels = ctx.sample_labels[i : i + 1, cut.box[0], cut.box[1]]
            matte = segments.component_matte(crop, m, labels, ctx.sample_background[i : i + 1])
            layers = torch.cat([crop * matte, matte], 1)  # premultiplied colour (3) + alpha
            corner = cut.corner
            r = math.ceil(cut.extent * float(scale[i, j])) + 3
            top, left = max(int(dest[i, j, 0]) - r, 0), max(int(dest[i, j, 1]) - r, 0)
            bottom = min(int(dest[i, j, 0]) + r + 1, height)
            right = min(int(dest[i, j, 1]) + r + 1, width)
            if bottom <= top or right <= left:
                continue
            warped = segments.rigid_warp(
                layers,
                (src[i, j] - corner)[None],
                (dest[i, j] - torch.tensor([top, left], dtype=dest.dtype))[None],
                angle[i, j][None],
                (bottom - top, right - left),
                scale=scale[i, j],
            )[0]  # (4, h_b, w_b)
            # locality exp(-dist / radius) around the seed, relative to the paste's nearest
            # point: opaque where it lands, fading with distance beyond it
            seed_in_box = seeds[i, j] - torch.tensor([top, left], dtype=seeds.dtype)
            local = shading.locality_gate(seed_in_box, (bottom - top, right - left), radius)
            nearest = local.masked_fill(warped[3] <= 0.25, 0).amax()
            gate = (local / nearest.clamp_min(1e-6)).clamp_max(1)
            box = (i, slice(None), slice(top, bottom), slice(left, right))
            alpha[box] = torch.maximum(alpha[box], (warped[3] * gate).clamp(0, 1))
            premult[box] += gate * warped[:3]
            weight[box] += gate * warped[3]
            placed[i, j, top:bottom, left:right] = warped[3].half()
            y0, y1, x0, x1 = min(y0, top), max(y1, bottom), min(x0, left), max(x1, right)
        out = h.clone()
        region = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
        colour = premult[region] / weight[region].clamp_min(1e-6)
        out[region] = shading.blend(h[region], colour.clamp(0, 1), alpha[region])
        return placed, out, alpha


@dataclass(frozen=True)
class Cutout:
    """One sample component in its own box (with a 2-px margin for the matte's rim): what a
    paste reads, so it costs the component's size, not the sample's."""

    mask: Tensor  # (h, w) float, 1 on the component
    box: tuple[slice, slice]  # where the mask lies in the sample

    @property
    def corner(self) -> Tensor:
        return torch.tensor([float(self.box[0].start), float(self.box[1].start)])

    @cached_property
    def centroid(self) -> Tensor:
        """(y, x) in sample pixels."""
        return segments.mask_centroid(self.mask) + self.corner

    @cached_property
    def extent(self) -> float:
        """Farthest component pixel from the centroid, in sample pixels."""
        return float(segments.mask_extent(self.mask, self.centroid - self.corner))


def parts(cut: Cutout, split, i: int, j: int, scales: list[float], floor: list[float]):
    """(cutout, cuts, sizes) to try in turn, each only while asked for more (no size of the
    last fitted): the shape at `scales`, then up to MAX_SPLITS ever smaller parts of it as
    `split(i, j, cutout)` cuts them, each at `scales`; a shape with no cut is tried once more
    at the `floor` sizes instead."""
    yield cut, 0, scales
    for cuts in range(1, MAX_SPLITS + 1):
        part = split(i, j, cut) if split is not None else None
        if part is None:
            if cuts == 1 and floor:
                yield cut, 0, floor
            return
        cut = part
        yield cut, cuts, scales


def centroids(cutouts: list[list[Cutout | None]]) -> Tensor:
    """Sample (y, x) of each cutout's centroid, (B, S, 2); (0, 0) where there is none."""
    rows = [[[0.0, 0.0] if c is None else c.centroid.tolist() for c in row] for row in cutouts]
    return torch.tensor(rows).reshape(len(cutouts), -1, 2)


def cut_out(ctx: PairContext, i: int, label: int, margin: int = 2) -> Cutout:
    """Sample `i`'s component `label` in its bounding box grown by `margin`."""
    ys, xs = ctx.sample_boxes[i][label - 1]
    height, width = ctx.sample_labels.shape[-2:]
    box = (
        slice(max(ys.start - margin, 0), min(ys.stop + margin, height)),
        slice(max(xs.start - margin, 0), min(xs.stop + margin, width)),
    )
    return Cutout((ctx.sample_labels[i][box] == label).float(), box)
