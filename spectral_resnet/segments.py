"""Segment operations: components, flood fill, fuzz annihilator, moments, rigid warps, seeds.

A component is what a person calls one shape: a connected piece of the ink mask (the
foreground, `shading.ink_mask`) under 8-connectivity, so an anti-aliased outline thresholded
at half coverage is one component exactly as its clean drawing is. scipy.ndimage.label does
the labelling (exact, linear-time, C). Everything else is torch, batched
over pixels (a few loops run over the handful of seeds).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.fft import next_fast_len
from torch import Tensor

STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), dtype=bool)}


def components(mask: Tensor, connectivity: int = 8) -> Tensor:
    """Label the connected components of a binary map (H, W): 0 = background, 1..N, ordered
    by first pixel in row-major order (deterministic)."""
    if connectivity not in STRUCTURE:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    on = mask.detach().cpu().bool().numpy()
    labels, _ = ndimage.label(on, structure=STRUCTURE[connectivity])
    return torch.from_numpy(labels.astype(np.int64)).to(mask.device)


def component_areas(labels: Tensor) -> Tensor:
    """Pixel count of every label 0..N, (N + 1,)."""
    return torch.bincount(labels.flatten(), minlength=int(labels.max()) + 1)


def annihilate_fuzz(labels: Tensor, min_area: int = 8) -> Tensor:
    """Drop specks (area < min_area) so transferred content is crisp; survivors are
    relabelled 1..M in their order."""
    keep = component_areas(labels) >= min_area
    keep[0] = False
    new_ids = torch.cumsum(keep.long(), 0) * keep.long()
    return new_ids[labels]


def keep_components(labels: Tensor, allowed: Tensor, share: float = 0.5) -> Tensor:
    """Labels (B, H, W) with only the components of which at least `share` lies where
    `allowed` (B, H, W) bool is set (a user's rough brush stroke keeps or drops a whole
    shape), relabelled 1..M in their order."""
    kept = []
    for lab, ok in zip(labels, allowed):
        total = component_areas(lab)
        inside = torch.bincount(lab[ok].flatten(), minlength=total.numel())
        keep = inside >= share * total
        keep[0] = False
        kept.append((torch.cumsum(keep.long(), 0) * keep.long())[lab])
    return torch.stack(kept)


def holes(mask: np.ndarray) -> int:
    """Closed outlines of a binary (h, w) shape: background pieces that do not reach its box."""
    labels, count = ndimage.label(~np.pad(mask, 1), structure=STRUCTURE[4])
    return count - 1  # the outside, padded, is one piece


def split_shape(
    mask: Tensor, cells: int = 48, candidates: int = 24, max_cost: float = 0.6
) -> list[Tensor]:
    """Cut a shape (h, w) into its parts where it is weakest, along its own pixel graph: the
    normalised sweep cut of its Fiedler vector (the second eigenvector of the graph's
    normalised Laplacian, on a grid of at most `cells` cells a side). A cut that opens a
    closed outline is refused (the parts keep every hole the shape has), and a solid shape
    (one without holes) is cut only into pieces at least twice as thick as the cut is
    long: rings or discs joined by lines come apart at the lines, while a silhouette keeps
    its legs (a leg is as thick as the cut across it) and stays whole. A cut is thin when its normalised cut times the square
    root of the cell count (blind to the shape's size) stays under `max_cost`: about 2 for a
    disc cut through its middle, 0.2 for a line joining two rings; a thick cut is refused. Returns the
    connected parts, (h, w) float masks each, or [] when the shape has no such cut."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    on = mask.detach().cpu().numpy() > 0.5
    step = max(1, math.ceil(max(on.shape) / cells))
    h, w = math.ceil(on.shape[0] / step), math.ceil(on.shape[1] / step)
    coarse = np.zeros((h * step, w * step), bool)
    coarse[: on.shape[0], : on.shape[1]] = on
    coarse = coarse.reshape(h, step, w, step).any((1, 3))  # (h, w) cells the shape touches
    index = -np.ones(coarse.shape, np.int64)
    index[coarse] = np.arange(int(coarse.sum()))
    n = int(coarse.sum())
    if n < 8:
        return []
    right, down = coarse[:, :-1] & coarse[:, 1:], coarse[:-1] & coarse[1:]  # 4-neighbours
    first = np.concatenate([index[:, :-1][right], index[:-1][down]])
    second = np.concatenate([index[:, 1:][right], index[1:][down]])
    rows, cols = np.concatenate([first, second]), np.concatenate([second, first])
    weights = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    degree = np.asarray(weights.sum(1)).ravel()
    if (degree == 0).any():
        return []
    scale = sp.diags(1 / np.sqrt(degree))
    laplacian = sp.eye(n) - scale @ weights @ scale
    start = np.random.default_rng(0).random(n)  # a fixed start: the same cut every run
    _, vectors = eigsh(laplacian.tocsc(), k=2, sigma=-1e-3, which="LM", v0=start)
    fiedler = vectors[:, 1] / np.sqrt(degree)
    whole, scored = holes(on), []
    levels = np.quantile(fiedler, np.linspace(0.1, 0.9, candidates))
    sides = fiedler > levels[:, None]  # (candidates, n): each cut's side of every cell
    cuts = (sides[:, first] != sides[:, second]).sum(1)  # edges each cut crosses
    total = degree.sum()
    for on_side, cut, volume in zip(sides, cuts, sides @ degree):
        if 0 < volume < total:
            cost = (cut / volume + cut / (total - volume)) * math.sqrt(n)
            side = np.zeros(coarse.shape, bool)
            side[coarse] = on_side
            scored.append((cost, float(cut) * step, side))  # the cut's length in px
    best = None
    for cost, width, side in sorted(scored, key=lambda c: c[0]):  # cheapest first, stably
        if cost > max_cost:
            break
        full = np.kron(side, np.ones((step, step), bool))[: on.shape[0], : on.shape[1]] & on
        pieces = []
        for part in (full, on & ~full):
            labels, count = ndimage.label(part, structure=STRUCTURE[8])
            pieces += [labels == k for k in range(1, count + 1)]
        kept = [holes(p) for p in pieces]
        if len(pieces) < 2 or sum(kept) != whole:
            continue
        if whole or all(ndimage.distance_transform_edt(p).max() >= width for p in pieces):
            best = pieces  # the thinnest cut that keeps every hole (of a solid: thick pieces)
            break
    if best is None:
        return []
    return [torch.from_numpy(p).float().to(mask.device) for p in best]


def component_scores(rows: Tensor, labels: Tensor) -> Tensor:
    """How much each seed's attention row (B, S, h, w) favours each component of labels
    (B, H, W): the row's mean over the component, (B, S, N + 1), the row read
    nearest-neighbour at the labels' resolution; -inf for the background (label 0) and for
    labels with no pixels. Mean, not sum, so a big shape does not win by size alone. Only
    ink pixels are read, each through its row cell: a phone-sized sample costs its ink, not
    an upsampled copy of every row."""
    b, s, h, w = rows.shape
    count = int(labels.max()) + 1
    ys, xs = nearest_index(h, labels.shape[-2]), nearest_index(w, labels.shape[-1])
    score = rows.new_full((b, s, count), -torch.inf)
    for i in range(b):
        y, x = torch.nonzero(labels[i], as_tuple=True)  # ink pixels, in raster order
        label = labels[i, y, x]
        mass = rows.new_zeros(s, count).index_add_(
            1, label, rows[i].flatten(1)[:, ys[y] * w + xs[x]]
        )
        area = torch.bincount(label, minlength=count).to(rows.dtype)
        score[i] = (mass / area.clamp_min(1)).masked_fill(area == 0, -torch.inf)
    score[..., 0] = -torch.inf
    return score


def nearest_index(size: int, out: int) -> Tensor:
    """Which of `size` cells nearest-neighbour resampling to `out` reads for each output,
    (out,) long: F.interpolate's own rule, so a gather through it equals its resampling."""
    grid = torch.arange(size, dtype=torch.float32)[None, None]  # exact below 2^24 cells
    return F.interpolate(grid, size=out, mode="nearest")[0, 0].long()


def component_masks(labels: Tensor, picked: Tensor) -> Tensor:
    """Masks of the picked component labels: labels (..., H, W), picked (..., S) ->
    (..., S, H, W) bool; label 0 (background) gives an empty mask."""
    picked = picked[..., None, None]
    return (labels[..., None, :, :] == picked) & (picked > 0)


def component_boxes(labels: Tensor) -> list[tuple[slice, slice] | None]:
    """Bounding box of each label 1..N of (H, W) labels: boxes[label - 1] (None if absent)."""
    return ndimage.find_objects(labels.cpu().numpy())


def flood_fill(points: Tensor, labels: Tensor) -> Tensor:
    """Fill from points (S, 2) (y, x) along the labelled graph: (S, H, W) masks, each exactly
    the one component its point lies in (empty if the point is on background)."""
    return component_masks(labels, labels[points[:, 0].long(), points[:, 1].long()])


def background_colour(image: Tensor, pixels: int = 1 << 20) -> Tensor:
    """The colour most of an image (B, 3, H, W) shows: its per-channel median, (B, 3), over
    an even grid of at most about `pixels` pixels (a phone photo needs no 12 M-way median)."""
    step = max(1, math.isqrt(image.shape[-2] * image.shape[-1] // pixels))
    return image[..., ::step, ::step].flatten(2).median(2).values


def component_matte(
    image: Tensor, masks: Tensor, labels: Tensor, background: Tensor | None = None
) -> Tensor:
    """Soft alpha of each component (B, S, H, W) over its image (B, 3, H, W).

    The component's core pixels plus a 1-px rim (never another component's pixels, from
    `labels` (B, H, W)), each weighted by how far its colour lies
    from the background (B, 3) (default: the image's median colour; pass the whole image's
    when `image` is a crop) toward the component's ink colour: the
    anti-aliased edge keeps its partial coverage and the halo's background colour is not
    carried along, so pasted strokes stay crisp and solid.
    """
    if background is None:
        background = background_colour(image)
    background = background[:, None, :, None, None]  # (B, 1, 3, 1, 1)
    area = masks.sum((-2, -1)).clamp_min(1)  # (B, S)
    ink = (image[:, None] * masks[:, :, None]).sum((-2, -1)) / area[..., None]  # (B, S, 3)
    direction = ink[..., None, None] - background  # (B, S, 3, 1, 1)
    along = ((image[:, None] - background) * direction).sum(2) / direction.pow(2).sum(2).clamp_min(
        1e-6
    )
    others = ((labels > 0)[:, None] & (masks == 0)).float()
    rim = F.max_pool2d(masks, 3, 1, 1) * (1 - others)
    return rim * along.clamp(0, 1) * (masks.sum((-2, -1)) > 0)[..., None, None]


def mask_centroid(masks: Tensor) -> Tensor:
    """Centre of mass (y, x) of (..., H, W) non-negative masks: (..., 2)."""
    h, w = masks.shape[-2:]
    ys = torch.arange(h, dtype=masks.dtype, device=masks.device)
    xs = torch.arange(w, dtype=masks.dtype, device=masks.device)
    mass = masks.sum((-2, -1)).clamp_min(1e-12)
    cy = (masks.sum(-1) * ys).sum(-1) / mass
    cx = (masks.sum(-2) * xs).sum(-1) / mass
    return torch.stack([cy, cx], -1)


def mask_extent(masks: Tensor, centre: Tensor) -> Tensor:
    """Largest distance of a mask pixel (> 0.5) from `centre` (..., 2): (...,), 0 if empty.
    Measured over each mask's pixels only, so a phone-sized mask costs one comparison pass."""
    centre = centre.expand(*masks.shape[:-2], 2)
    extent = masks.new_zeros(masks.shape[:-2], dtype=centre.dtype)
    for index in itertools.product(*map(range, masks.shape[:-2])):
        points = torch.nonzero(masks[index] > 0.5).to(centre.dtype)  # (n, 2) (y, x)
        if len(points):
            extent[index] = (points - centre[index]).norm(dim=-1).max()
    return extent


def mask_orientation(masks: Tensor) -> Tensor:
    """Angle (radians, in (-pi/2, pi/2]) of each mask's principal axis from the +x axis,
    measured with y pointing down (image convention), from second central moments."""
    h, w = masks.shape[-2:]
    c = mask_centroid(masks)
    ys = torch.arange(h, dtype=masks.dtype, device=masks.device)
    xs = torch.arange(w, dtype=masks.dtype, device=masks.device)
    dy = ys.view(h, 1) - c[..., 0, None, None]
    dx = xs.view(1, w) - c[..., 1, None, None]
    mass = masks.sum((-2, -1)).clamp_min(1e-12)
    mxx = (masks * dx * dx).sum((-2, -1)) / mass
    myy = (masks * dy * dy).sum((-2, -1)) / mass
    mxy = (masks * dx * dy).sum((-2, -1)) / mass
    return 0.5 * torch.atan2(2 * mxy, mxx - myy)


def rigid_warp(
    image: Tensor,
    src_center: Tensor,
    dst_center: Tensor,
    angle: Tensor,
    out_shape: tuple[int, int],
    scale: Tensor | float = 1.0,
    mode: str = "bilinear",
) -> Tensor:
    """Rotate `image` (S, C, H_s, W_s) by `angle` (S,) radians and scale it by `scale` (S,)
    about src_center (S, 2) (y, x), moving that point to dst_center (S, 2) on an (H_t, W_t)
    canvas, with grid_sample.

    Each output pixel p samples the source at R(-angle) (p - dst) / scale + src; outside is
    zero.
    """
    ht, wt = out_shape
    hs, ws = image.shape[-2:]
    ys = torch.arange(ht, dtype=image.dtype, device=image.device).view(1, ht, 1)
    xs = torch.arange(wt, dtype=image.dtype, device=image.device).view(1, 1, wt)
    scale = torch.as_tensor(scale, dtype=image.dtype, device=image.device).expand(len(angle))
    px = (xs - dst_center[:, 1, None, None]) / scale[:, None, None]  # (S, 1, W_t)
    py = (ys - dst_center[:, 0, None, None]) / scale[:, None, None]  # (S, H_t, 1)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    sx = cos * px + sin * py + src_center[:, 1, None, None]  # inverse rotation
    sy = -sin * px + cos * py + src_center[:, 0, None, None]
    grid = torch.stack([(2 * sx + 1) / ws - 1, (2 * sy + 1) / hs - 1], -1)  # align_corners=False
    return F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=False)


def footprint_overlap(
    occupied: Tensor, footprint: Tensor, rows: slice | None = None, cols: slice | None = None
) -> Tensor:
    """Sum of `occupied` (H, W) under `footprint` (2R+1, 2R+1) centred on every pixel of the
    window rows x cols (default: the whole map): (h, w), the window's size.

    A cross-correlation by FFT (float64, so large weights stay exact), with everything
    outside the frame counting as occupied (weight 1), so a paste that would be cropped
    scores like one on ink. Only the window and the footprint's reach around it are
    transformed, at sizes the FFT factors well (a paste searches a disc near its seed);
    whole-number maps give whole-number sums, rounded so that no size's rounding moves one.
    """
    r = footprint.shape[-1] // 2
    occupied, footprint = occupied.double(), footprint.double()
    h, w = occupied.shape
    rows = slice(*(rows or slice(None)).indices(h)[:2])  # plain (start, stop) in the frame
    cols = slice(*(cols or slice(None)).indices(w)[:2])
    canvas = F.pad(occupied, (r, r, r, r), value=1.0)  # (H + 2R, W + 2R)
    canvas = canvas[rows.start : rows.stop + 2 * r, cols.start : cols.stop + 2 * r]
    kernel = footprint.flip(-2, -1)
    out_h, out_w = rows.stop - rows.start, cols.stop - cols.start
    # linear, not circular, correlation: at least (h + 4R) a side
    size = (next_fast_len(out_h + 4 * r), next_fast_len(out_w + 4 * r, real=True))
    full = torch.fft.irfft2(
        torch.fft.rfft2(canvas, s=size) * torch.fft.rfft2(kernel, s=size), s=size
    )
    sums = full[2 * r : 2 * r + out_h, 2 * r : 2 * r + out_w]
    whole = bool((occupied == occupied.round()).all() and (footprint == footprint.round()).all())
    return sums.round() if whole else sums


def max_filter(values: Tensor, radius: int) -> Tensor:
    """Max over the (2 radius + 1)^2 window around each pixel of (..., H, W) values, the
    window cut at the border (exactly a -inf-padded max pool): shifted maxima, rows then
    columns, 4 radius elementwise passes (0.2 s on a 12 Mpx photo where max_pool2d took 0.9 s)."""
    out = values
    for dim in (-2, -1):
        src, out = out, out.clone()
        n = src.shape[dim]
        for shift in range(1, radius + 1):
            if shift >= n:
                break
            ahead, behind = src.narrow(dim, shift, n - shift), src.narrow(dim, 0, n - shift)
            out.narrow(dim, 0, n - shift).copy_(torch.maximum(out.narrow(dim, 0, n - shift), ahead))
            out.narrow(dim, shift, n - shift).copy_(
                torch.maximum(out.narrow(dim, shift, n - shift), behind)
            )
    return out


def select_seeds(activation: Tensor, count: int, radius: int, threshold: float = 0.0) -> Tensor:
    """Top-`count` activation peaks (B, H, W) -> (B, count, 2) (y, x), no two seeds within
    `radius` (Chebyshev) of each other: non-maximum suppression by max-pooling. Slots with
    no peak above `threshold` get (-1, -1)."""
    b, h, w = activation.shape
    # make every value distinct (float64, a tie-break that favours the first pixel in
    # row-major order), so a plateau yields one seed; then a pixel is a peak when it equals
    # the max of its (2r+1)^2 window (`max_filter`, separable: O(r) a pixel)
    n = h * w
    ramp = 1e-9 * (1 - torch.arange(n, device=activation.device, dtype=torch.float64) / n)
    act = activation.double() + ramp.view(1, h, w)
    is_peak = (act == max_filter(act, radius)) & (activation > threshold)
    peaks = torch.where(is_peak, act, torch.zeros_like(act))
    k = min(count, h * w)
    values, index = peaks.flatten(1).topk(k, dim=1)
    seeds = torch.stack([index // w, index % w], -1)
    seeds = torch.where(values[..., None] > 0, seeds, torch.full_like(seeds, -1))
    if k < count:
        seeds = torch.cat([seeds, seeds.new_full((b, count - k, 2), -1)], 1)
    return seeds


def gradient(maps: Tensor) -> tuple[Tensor, Tensor]:
    """(d/dy, d/dx) of maps (..., H, W) by central differences (one-sided at the edges); zero
    along a side one pixel long, where torch.gradient, which needs two, raises."""
    gy = torch.gradient(maps, dim=-2)[0] if maps.shape[-2] > 1 else torch.zeros_like(maps)
    gx = torch.gradient(maps, dim=-1)[0] if maps.shape[-1] > 1 else torch.zeros_like(maps)
    return gy, gx


def local_orientation(strength: Tensor, points: Tensor, radius: float) -> Tensor:
    """Dominant line direction (radians) of maps (..., H, W) around points (..., S, 2), from
    the Gaussian-weighted structure tensor: lines run across the intensity gradient."""
    h, w = strength.shape[-2:]
    gy, gx = gradient(strength)
    ys = torch.arange(h, dtype=strength.dtype, device=strength.device).view(h, 1)
    xs = torch.arange(w, dtype=strength.dtype, device=strength.device).view(1, w)
    d2 = (ys - points[..., 0, None, None]) ** 2 + (xs - points[..., 1, None, None]) ** 2
    wgt = torch.exp(-d2 / (2 * radius**2))  # (..., S, H, W)
    jxx, jyy, jxy = ((wgt * t.unsqueeze(-3)).sum((-2, -1)) for t in (gx * gx, gy * gy, gx * gy))
    return 0.5 * torch.atan2(2 * jxy, jxx - jyy) + math.pi / 2
