import math
from pathlib import Path

import pytest
import torch

from spectral_resnet import PasteConfig, ShaderConfig, SpectralShader, SpectrumConfig, blocks
from spectral_resnet.blocks import BLOCKS
from spectral_resnet.data.procedural import curves, diagram
from spectral_resnet.io import load_image
from spectral_resnet.segments import (
    annihilate_fuzz,
    component_areas,
    component_matte,
    component_scores,
    components,
    flood_fill,
    footprint_overlap,
    mask_centroid,
    mask_orientation,
    nearest_index,
    rigid_warp,
    select_seeds,
)
from spectral_resnet.shading import locality_gate, shadow, thicken

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def test_touching_squares_split_under_4_and_merge_under_8():
    m = torch.zeros(10, 10, dtype=torch.bool)
    m[1:4, 1:4] = True
    m[4:7, 4:7] = True  # touches the first only at a corner
    assert int(components(m, connectivity=4).max()) == 2
    assert int(components(m, connectivity=8).max()) == 1


def test_ring_is_one_component_and_its_hole_is_not_counted():
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    r = ((yy - 10) ** 2 + (xx - 10) ** 2).sqrt()
    ring = (r > 5) & (r < 8)
    labels = components(ring, connectivity=4)
    assert int(labels.max()) == 1
    assert int(component_areas(labels)[1]) == int(ring.sum())
    assert int(labels[10, 10]) == 0


def test_thin_diagonal_line_needs_8_connectivity():
    line = torch.eye(12, dtype=torch.bool)
    assert int(components(line, connectivity=8).max()) == 1
    assert int(components(line, connectivity=4).max()) == 12


def test_flood_fill_returns_exactly_one_component_per_point():
    labels = torch.tensor([[1, 1, 0, 2], [0, 1, 0, 2], [3, 0, 0, 2]])
    masks = flood_fill(torch.tensor([[0, 0], [2, 3], [1, 2]]), labels)
    assert masks[0].tolist() == (labels == 1).tolist()
    assert masks[1].tolist() == (labels == 2).tolist()
    assert not masks[2].any()  # a point on background fills nothing


def test_fuzz_annihilator_removes_specks_and_keeps_strokes():
    m = torch.zeros(20, 20, dtype=torch.bool)
    m[10, 2:18] = True  # a stroke of 16 px
    m[2, 2] = m[5, 15] = True  # specks
    m[17:19, 17:19] = True  # a 4-px speck
    kept = annihilate_fuzz(components(m), min_area=8)
    assert int(kept.max()) == 1
    assert (kept > 0).tolist() == [
        [bool(v) for v in row] for row in (m & (torch.arange(20)[:, None] == 10))
    ]


def ellipse(h, w, cy, cx, a, b, angle):
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    dx, dy = xx - cx, yy - cy
    u = math.cos(angle) * dx + math.sin(angle) * dy
    v = -math.sin(angle) * dx + math.cos(angle) * dy
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).float()


@pytest.mark.parametrize("angle", [0.0, 0.4, -0.9, 1.2])
def test_centroid_and_orientation_of_rotated_ellipses(angle):
    m = ellipse(60, 70, 31.0, 33.5, 20, 6, angle)
    c = mask_centroid(m[None])[0]
    assert torch.allclose(c, torch.tensor([31.0, 33.5]), atol=0.2)
    got = float(mask_orientation(m[None])[0])
    diff = (got - angle + math.pi / 2) % math.pi - math.pi / 2  # axes are defined mod pi
    assert abs(diff) < 0.03


@pytest.mark.parametrize("theta", [0.3, math.pi / 2, 2.0])
def test_warp_round_trip_recovers_the_mask(theta):
    m = ellipse(64, 64, 30, 34, 18, 7, 0.2)[None, None]
    c = mask_centroid(m[:, 0])
    there = rigid_warp(m, c, c, torch.tensor([theta]), (64, 64))
    back = rigid_warp(there, c, c, torch.tensor([-theta]), (64, 64))
    assert iou(back[0, 0], m[0, 0]) >= 0.95
    rotated_axis = float(mask_orientation(there[:, 0])[0])
    diff = (rotated_axis - (0.2 + theta) + math.pi / 2) % math.pi - math.pi / 2
    assert abs(diff) < 0.05


def test_warp_translates_centroid_to_destination():
    m = ellipse(40, 50, 10, 12, 5, 3, 0.0)[None, None]
    out = rigid_warp(
        m, torch.tensor([[10.0, 12.0]]), torch.tensor([[25.0, 30.0]]), torch.zeros(1), (40, 50)
    )
    assert torch.allclose(mask_centroid(out[:, 0])[0], torch.tensor([25.0, 30.0]), atol=0.1)


def dense_overlap(occupied: torch.Tensor, footprint: torch.Tensor) -> torch.Tensor:
    """The sum under the footprint at every pixel, off-frame counting 1, by loops."""
    r = footprint.shape[-1] // 2
    padded = torch.nn.functional.pad(occupied, (r, r, r, r), value=1.0)
    h, w = occupied.shape
    rows = [
        [float((padded[y : y + 2 * r + 1, x : x + 2 * r + 1] * footprint).sum()) for x in range(w)]
        for y in range(h)
    ]
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("r", [0, 2, 7])
def test_footprint_overlap_is_the_sum_under_the_footprint_off_frame_counting_as_ink(r):
    gen = torch.Generator().manual_seed(r)
    occupied = (torch.rand(13, 17, generator=gen) < 0.3).double() * 1000  # big weights: exact
    footprint = (torch.rand(2 * r + 1, 2 * r + 1, generator=gen) < 0.5).double()
    dense = dense_overlap(occupied, footprint)
    window = (slice(3, 9), slice(4, 17))  # to the far edge
    assert torch.equal(footprint_overlap(occupied, footprint), dense)  # whole numbers: exact
    assert torch.equal(footprint_overlap(occupied, footprint, *window), dense[window])
    as_mask = footprint_overlap(occupied > 0, footprint > 0, slice(None, 4))  # bools, open slice
    assert torch.equal(as_mask, dense_overlap((occupied > 0).double(), footprint)[:4])
    fractions = occupied / 7000 + 0.1  # not whole numbers: as the FFT gives them, unrounded
    torch.testing.assert_close(
        footprint_overlap(fractions, footprint, *window),
        dense_overlap(fractions, footprint)[window],
    )


def test_seeds_respect_the_suppression_radius():
    g = torch.Generator().manual_seed(0)
    act = torch.rand(1, 40, 40, generator=g)
    act[0, 5:8, 5:8] = 2.0  # a plateau: one seed, not nine
    seeds = select_seeds(act, 12, radius=4)
    s = seeds[0].float()
    d = (s[:, None] - s[None]).abs().amax(-1) + torch.eye(len(s)) * 99
    assert bool((d > 4).all())
    assert s[0].tolist() == [5.0, 5.0]
    none = select_seeds(torch.zeros(1, 10, 10), 3, radius=2, threshold=0.1)
    assert bool((none == -1).all())


def stroke_width(image):
    """Pixels darker than mid-grey in the middle column."""
    return int((image[0, 0, :, image.shape[-1] // 2] < 0.5).sum())


def test_thicken_widens_a_1px_line_monotonically():
    img = torch.ones(1, 3, 41, 41)
    img[..., 20, 5:36] = 0.0
    strokes = img[:, :1] < 0.5
    widths = [stroke_width(thicken(img, strokes, t)) for t in [0.0, 0.5, 2.0, 6.0, 15.0]]
    assert widths[0] == 1
    assert all(b >= a for a, b in zip(widths, widths[1:]))
    assert widths[-1] >= 5  # a visible effect, unlike the prototype's


def test_shadow_falls_down_right_of_the_paste():
    img = torch.ones(1, 3, 30, 30)
    alpha = torch.zeros(1, 1, 30, 30)
    alpha[..., 10:15, 10:15] = 1.0
    out = shadow(img, alpha, offset=(3, 3), darkness=0.6, softness=0.5)
    dark = (img - out)[0, 0]
    assert dark[16, 16] > 0.3  # below-right of the paste
    assert dark[8, 8] < 0.01  # not above-left
    assert dark[12, 12] == 0  # not on the pasted content itself


def test_locality_gate_decays_with_distance_even_from_outside_the_map():
    """A paste's seed can lie above or left of the paste's box: negative coordinates are a
    place, not a missing seed (the gate once read them as one, and such pastes vanished)."""
    gate = locality_gate(torch.tensor([[5, 5], [-4, 5]]), (11, 11), radius=2.0)
    assert gate[0, 5, 5] == 1.0 and gate[0, 5, 9] == pytest.approx(math.exp(-2.0))
    assert gate[1, 0, 5] == pytest.approx(math.exp(-2.0)) and gate[1, 10, 5] < gate[1, 0, 5]


def test_every_placed_paste_shows_in_the_output():
    """The gallery's ring tree <- house with the shipped weights: under each placed mask the
    output changes. Two of its three pastes land below their seeds' rows, where the gate
    once read the seed as missing and left them invisible though counted."""
    target, sample = (
        load_image(ASSETS / "gallery" / "inputs" / f"{name}.png")[None]
        for name in ("ringtree", "house")
    )
    shader = SpectralShader.from_pretrained("default").eval()
    with torch.no_grad():
        out = shader(target, sample)
    changed = (out.image - target).abs().amax(1)[0] > 0.1  # (H, W)
    masks = [m > 0.5 for block in out.pastes for m in block.masks[0] if (m > 0.5).any()]
    assert len(masks) >= 2
    for mask in masks:
        assert changed[mask].float().mean() > 0.9, int(mask.sum())


def test_seed_failure_case_every_paste_is_exactly_one_sample_component():
    """toof -> tone of the seed: a diagram of disconnected arrows and boxes as the sample."""
    target, sample = curves((96, 96), seed=3)[None], diagram((96, 96), seed=1)[None]
    radius = 0.5
    shader = SpectralShader(
        ShaderConfig(pattern="cc", spectrum=SpectrumConfig(k=12), paste=PasteConfig(radius=radius))
    )
    with torch.no_grad():
        out = shader(target, sample)
        labels = shader.sample_components(sample)[0]
    assert int(labels.max()) == 7  # 4 boxes and 3 arrows apart; dashes (< 12 px here) are specks
    pasted = checked = 0
    for block in out.pastes:
        for warped, label, (sy, sx, dy, dx, angle, scale) in zip(
            block.masks[0].float(), block.components[0], block.placements[0]
        ):
            if label <= 0:
                continue
            pasted += 1
            # undo the rigid motion: the paste lands back on exactly one sample component
            back = rigid_warp(
                warped[None, None],
                torch.tensor([[dy, dx]]),
                torch.tensor([[sy, sx]]),
                -angle[None],
                tuple(labels.shape),
                scale=1 / scale,
            )[0, 0]
            under = labels[(back > 0.5) & (labels > 0)]
            assert float((under == label).float().mean()) >= 0.95  # nothing merged in
            component = (labels == label).float()
            matte = component_matte(sample, component[None, None], labels[None])[0, 0]
            half_extent = float(
                ((torch.nonzero(component) - torch.tensor([sy, sx])).norm(dim=1)).max()
            )
            inside = min(dy, dx, 95 - dy, 95 - dx) > half_extent * scale + 1
            if inside:  # bilinear warps preserve mass: the whole component and nothing else
                checked += 1
                expected = float(matte.sum()) * float(scale) ** 2  # a shrunk paste: scale^2
                rel = 0.05 if scale == 1 else 0.15  # bilinear shrinking of thin strokes aliases
                assert float(warped.sum()) == pytest.approx(expected, rel=rel)
    assert pasted >= 2 and checked >= 1
    changed = (out.image - target).abs().amax(1)[0] > 0.05
    ys, xs = torch.nonzero(changed, as_tuple=True)
    seeds = out.seeds[0].float()
    seeds = seeds[seeds[:, 0] >= 0]
    dist = ((ys[:, None] - seeds[None, :, 0]) ** 2 + (xs[:, None] - seeds[None, :, 1]) ** 2).sqrt()
    # exp(-d / R) > 0.05 only within 3 R: every transferred pixel is inside the gate
    assert float(dist.min(1).values.max()) <= 3 * radius * 96


@pytest.mark.parametrize("pattern", ["cccc", "ctfh", "chc", "cfht"])
def test_segment_patterns_run_in_both_directions(pattern):
    """The demo pair: curves <- diagram pastes; diagram <- curves pastes or records why not."""
    toof, tone = (load_image(ASSETS / f"{name}.png") for name in ("toof", "tone"))
    shader = SpectralShader(ShaderConfig(pattern=pattern, spectrum=SpectrumConfig(k=8)))
    for target, sample in [(toof, tone), (tone, toof)]:
        with torch.no_grad():
            out = shader(target[None], sample[None])
        assert out.image.shape == target[None].shape
        assert len(out.activations) == len(pattern)
        changed = (out.image - target).abs().max() > 0.05
        skipped = sum(int(b.skipped.sum()) for b in out.pastes)
        assert changed or (target is tone and skipped > 0)
        if target is toof:
            assert changed  # the box lands in the curves' open space


def test_pastes_land_clear_of_ink_inside_the_frame_or_are_skipped():
    """Shipped weights, diagram <- curves: every placed paste lies on no target ink, fully
    inside the frame, apart from the other pastes, each sample component at most once."""
    from spectral_resnet.shading import ink_mask

    target, sample = (load_image(ASSETS / f"{name}.png")[None] for name in ("tone", "toof"))
    shader = SpectralShader.from_pretrained("default", ShaderConfig(pattern="cccc"))
    with torch.no_grad():
        out = shader(target, sample)
    ink = ink_mask(target)[0]
    placed, labels = [], []
    for block in out.pastes:
        placed += [m for label, m in zip(block.components[0], block.masks[0]) if label > 0]
        labels += [int(label) for label in block.components[0] if label > 0]
    assert placed and len(set(labels)) == len(labels)
    for mask in placed:
        on = mask > 0.5
        assert float((on & ink).sum()) <= 0.02 * float(on.sum())  # clear of the target's ink
        border = on[0].sum() + on[-1].sum() + on[1:-1, 0].sum() + on[1:-1, -1].sum()
        assert float(border) <= 0.02 * float(on.sum())  # inside the frame
    for a in range(len(placed)):
        for b in range(a + 1, len(placed)):
            assert not ((placed[a] > 0.5) & (placed[b] > 0.5)).any()


def test_pattern_letters_are_documented():
    """Every block letter is in the blocks module's docstring, the README and infer's help."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    help_text = (root / "configs" / "infer.yaml").read_text()
    for letter, block in BLOCKS.items():
        assert f"{letter}  {block.__name__}" in blocks.__doc__
        assert f"`{letter}`" in readme and f"{letter} " in help_text


def test_state_flows_forward_as_named_fields(toof, tone):
    """Seeds accumulate through every block, shading ops included; ops pass the copy's alpha on."""
    shader = SpectralShader(ShaderConfig(pattern="cthc", spectrum=SpectrumConfig(k=8)))
    with torch.no_grad():
        out = shader(toof[None], tone[None])
    first, thick, shadow, second = (b.carry for b in out.blocks)
    one, two = out.pastes
    assert torch.equal(thick.used_seeds, one.seeds) and torch.equal(shadow.alpha, first.alpha)
    assert torch.equal(second.used_seeds, torch.cat([one.seeds, two.seeds], 1))
    near = (two.seeds[0, :, None].float() - one.seeds[0, None].float()).norm(dim=-1)
    valid = (two.seeds[0, :, None, 0] >= 0) & (one.seeds[0, None, :, 0] >= 0)
    assert (near[valid] > round(0.08 * 48)).all()  # later seeds keep away from earlier ones
    assert torch.equal(out.seeds, second.used_seeds)  # the run's views: paste ops in order
    assert torch.equal(out.masks, torch.cat([one.masks, two.masks], 1))
    assert [b.paste is not None for b in out.blocks] == [True, False, False, True]


def test_place_takes_the_nearest_clear_spot_then_shrinks_then_skips():
    """The exact footprint (an 11 px square, 1 px clearance) lands nearest its seed clear of
    the ink; in a 9 px cell only the half-size paste fits; out of reach it is skipped."""
    from spectral_resnet.context import Outcome
    from spectral_resnet.paste import Cutout, SegmentPaste

    mask = torch.zeros(1, 1, 60, 60)
    mask[0, 0, 10:21, 10:21] = 1
    src, angle, none = mask_centroid(mask), torch.zeros(1, 1), torch.zeros(1, 0, dtype=torch.long)
    cutouts = [[Cutout(mask[0, 0], (slice(0, 60), slice(0, 60)))]]

    def place(ink, seed, **paste):
        block = SegmentPaste(ShaderConfig(paste=PasteConfig(**paste)))
        return block.place(ink, torch.tensor([[seed]]), cutouts, src, angle, none)[:3]

    one_line = torch.zeros(1, 1, 60, 60, dtype=torch.bool)
    one_line[..., 20] = True  # a vertical stroke at x = 20
    dest, scale, outcome = place(one_line, [30, 20], reach=0.5)
    assert int(outcome) == Outcome.PLACED and float(scale) == 1.0
    assert dest[0, 0].tolist() == [30.0, 13.0]  # 5 px half-width + 1 clearance + 1 off the ink
    grid = torch.zeros(1, 1, 60, 60, dtype=torch.bool)
    grid[..., [20, 30], :] = True
    grid[..., [20, 30]] = True  # 9 px cells
    dest, scale, outcome = place(grid, [25, 20], reach=0.1, min_scale=0.5)
    assert int(outcome) == Outcome.PLACED and float(scale) == 0.5
    y, x = dest[0, 0].tolist()
    assert 22 <= y <= 28 and abs(x - 20) >= 3  # between the lines, within reach
    assert int(place(grid, [25, 20], reach=0.1, min_scale=1.0)[2]) == Outcome.NO_ROOM
    block = SegmentPaste(ShaderConfig(paste=PasteConfig(max_pastes=2)))
    full = torch.tensor([[3, 5]])  # two components pasted already
    outcome = block.place(one_line, torch.tensor([[[30, 20]]]), cutouts, src, angle, full)[2]
    assert int(outcome) == Outcome.OVER_BUDGET


def test_a_shape_larger_than_the_target_is_fitted_to_its_frame_then_placed_whole():
    """A 50 px disc on an empty 30 px target: shrunk to fit the frame first, so it lands at
    full (fitted) size inside the frame, not skipped for room."""
    from spectral_resnet.context import Outcome
    from spectral_resnet.paste import Cutout, SegmentPaste

    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(60.0), indexing="ij")
    disc = (((yy - 30) ** 2 + (xx - 30) ** 2) <= 25**2).float()[None, None]  # radius 25
    cutouts = [[Cutout(disc[0, 0], (slice(0, 60), slice(0, 60)))]]
    block = SegmentPaste(ShaderConfig(paste=PasteConfig(min_scale=1.0)))
    empty = torch.zeros(1, 1, 30, 30, dtype=torch.bool)
    dest, scale, outcome, _ = block.place(
        empty,
        torch.tensor([[[15, 15]]]),
        cutouts,
        mask_centroid(disc),
        torch.zeros(1, 1),
        torch.zeros(1, 0, dtype=torch.long),
    )
    assert int(outcome) == Outcome.PLACED
    radius = 25 * float(scale)
    assert radius <= 15 - 1 and radius >= 10  # fitted: inside the frame, not shrunk further
    y, x = dest[0, 0].tolist()
    assert radius <= y <= 30 - radius and radius <= x <= 30 - radius


def test_a_run_that_pastes_nothing_says_so_in_one_line():
    from spectral_resnet.runs import notice

    reason = "no room within paste.reach clear of ink, frame and other pastes, down to 0.5"
    entry = {
        "output": "a_b_cccc.png",
        "pastes": [0, 0],
        "skipped": [{"seed": [1, 2], "reason": reason}] * 3,
    }
    line = notice(entry)
    assert line.startswith("a_b_cccc.png: nothing pasted, 3 seeds skipped, mostly: no room")
    assert "model.paste.min_scale" in line and "\n" not in line
    assert notice(dict(entry, pastes=[1, 0])) is None and notice(dict(entry, skipped=[])) is None


def drawn(kind: str) -> torch.Tensor:
    """Reference shapes on a 60 x 140 canvas: rings joined by a line, a chain of three rings,
    one ring, a disc, two discs joined by a bar."""
    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(140.0), indexing="ij")

    def ring(cx, r, w=3):
        d = ((yy - 30) ** 2 + (xx - cx) ** 2).sqrt()
        return (d <= r) & (d >= r - w)

    def disc(cx, r):
        return ((yy - 30) ** 2 + (xx - cx) ** 2) <= r**2

    shape = {
        "rings": lambda: ring(25, 20) | ring(115, 20),
        "chain": lambda: ring(20, 12) | ring(70, 12) | ring(120, 12),
        "ring": lambda: ring(70, 25),
        "disc": lambda: disc(70, 25),
        "dumbbell": lambda: disc(30, 20) | disc(110, 20),
    }[kind]()
    links = {"rings": [(44, 97)], "chain": [(31, 59), (81, 109)], "dumbbell": [(49, 91)]}
    for a, b in links.get(kind, []):
        shape[29:32, a:b] = True  # a thin link between two shapes
    return shape.float()


@pytest.mark.parametrize(
    "kind, parts", [("rings", 2), ("chain", 2), ("dumbbell", 2), ("ring", 0), ("disc", 0)]
)
def test_split_shape_cuts_thin_links_never_a_closed_outline_or_a_blob(kind, parts):
    from spectral_resnet.segments import holes, split_shape

    shape = drawn(kind)
    found = split_shape(shape)
    assert len(found) == parts
    if found:
        assert torch.equal(sum(found), shape)  # the parts tile the shape
        assert sum(holes(p.numpy() > 0) for p in found) == holes(shape.numpy() > 0)
        for part in found:  # each part is one piece, cut inside the link (x in 30..112)
            assert int(components(part.bool()).max()) == 1
        first = min(found, key=lambda p: int(torch.nonzero(p.sum(0))[0]))
        assert 30 <= int(torch.nonzero(first.sum(0))[-1]) <= 110  # the cut lies in a link


def test_a_shape_with_no_room_is_split_until_a_part_fits():
    """Two rings joined by a line cannot fit in the target's one free square, nor can a ring
    with half the line: cut twice, one ring lands there."""
    from spectral_resnet.context import Outcome
    from spectral_resnet.paste import Cutout, SegmentPaste
    from spectral_resnet.segments import holes, split_shape

    shape = drawn("rings")
    cutouts = [[Cutout(shape, (slice(0, 60), slice(0, 140)))]]
    ink = torch.ones(1, 1, 150, 150, dtype=torch.bool)
    ink[..., 47:103, 47:103] = False  # one free 56 px square: a 41 px ring fits
    block = SegmentPaste(ShaderConfig(paste=PasteConfig(min_scale=1.0, reach=0.5)))
    args = (ink, torch.tensor([[[85, 75]]]), cutouts, mask_centroid(shape[None, None]))
    args += (torch.zeros(1, 1), torch.zeros(1, 0, dtype=torch.long))
    assert int(block.place(*args)[2]) == Outcome.NO_ROOM  # whole, it does not fit
    cutouts[0][0] = Cutout(shape, (slice(0, 60), slice(0, 140)))
    split = lambda i, j, cut: Cutout(split_shape(cut.mask)[0], cut.box)  # noqa: E731
    dest, scale, outcome, splits = block.place(*args, split=split)
    assert int(outcome) == Outcome.PLACED and int(splits) == 2 and float(scale) == 1.0
    part = cutouts[0][0].mask
    assert holes(part.numpy() > 0) == 1 and part.sum() < shape.sum() / 2  # a ring, whole
    assert all(47 < float(v) < 103 for v in dest[0, 0])


def test_max_pastes_caps_the_run_and_drops_the_weakest_seeds():
    target, sample = (load_image(ASSETS / f"{name}.png")[None] for name in ("toof", "tone"))
    runs = {}
    for cap in (8, 3):
        config = ShaderConfig(pattern="cccc", paste=PasteConfig(max_pastes=cap))
        with torch.no_grad():
            runs[cap] = SpectralShader.from_pretrained("default", config)(target, sample)
    count = {
        cap: sum(int((b.components > 0).sum()) for b in out.pastes) for cap, out in runs.items()
    }
    assert count[3] == 3 < count[8] <= 8
    assert int((runs[3].blocks[-1].carry.pasted[0] > 0).sum()) == 3
    first_pastes = runs[8].pastes[0].components[0] > 0
    kept = runs[3].pastes[0].components[0] > 0
    assert torch.equal(kept, first_pastes & (first_pastes.long().cumsum(0) <= 3))  # strongest first
    assert sum(int(b.over_budget.sum()) for b in runs[3].pastes) >= count[8] - 3


def test_unique_assignment_gives_each_seed_a_different_component_strongest_first():
    from spectral_resnet.paste import unique_assignment

    inf = float("inf")
    score = torch.tensor([[[-inf, 0.9, 0.5, 0.1], [-inf, 0.8, 0.7, -inf], [-inf, 0.9, -inf, -inf]]])
    assert unique_assignment(score).tolist() == [[1, 2, 0]]  # the third seed has none left


@pytest.mark.parametrize("shape", [(12, 17), (40, 33), (64, 51)])
def test_component_scores_read_low_resolution_rows_as_their_nearest_upsampling(shape):
    g = torch.Generator().manual_seed(shape[0])
    labels = torch.randint(0, 6, (2, *shape), generator=g)  # every pixel some component
    labels[0, labels[0] == 4] = 0  # label 4 absent from the first image
    rows = torch.rand(2, 3, 12, 17, generator=g)
    dense = torch.nn.functional.interpolate(rows, size=shape, mode="nearest")
    area = torch.stack([torch.bincount(x.flatten(), minlength=6) for x in labels])
    mass = torch.stack(
        [torch.stack([dense[i, :, labels[i] == c].sum(-1) for c in range(6)], -1) for i in range(2)]
    )  # (B, S, 6) the sum of each row over each component, by masks
    expected = (mass / area[:, None].clamp_min(1)).masked_fill(area[:, None] == 0, -math.inf)
    expected[..., 0] = -math.inf
    assert torch.allclose(component_scores(rows, labels), expected, atol=1e-6)
    assert component_scores(rows, labels)[0, :, 4].eq(-math.inf).all()


def test_nearest_index_is_the_resampling_of_f_interpolate():
    rows = torch.rand(1, 1, 7, 10)
    up = torch.nn.functional.interpolate(rows, size=(23, 31), mode="nearest")
    assert torch.equal(rows[0, 0][nearest_index(7, 23)][:, nearest_index(10, 31)], up[0, 0])


def test_every_skipped_seed_has_a_reason_naming_its_option():
    from spectral_resnet.context import Outcome

    paste = PasteConfig(max_pastes=3)
    reasons = {outcome: outcome.reason(paste) for outcome in Outcome}
    assert not reasons[Outcome.PLACED] and not reasons[Outcome.UNUSED]
    assert "paste.reach" in reasons[Outcome.NO_ROOM]
    assert "paste.max_pastes=3" in reasons[Outcome.OVER_BUDGET]
    assert "pasted already" in reasons[Outcome.NOTHING_LEFT]


def test_a_silhouette_is_never_cut_and_is_tried_down_to_the_floor():
    """A solid shape keeps its legs (each as thick as the cut across it): split_shape finds
    no cut, and a paste with no room at min_scale is tried at min_scale^1.5 and ^2."""
    from spectral_resnet.context import Outcome
    from spectral_resnet.data.drawings import oversized_silhouette
    from spectral_resnet.paste import Cutout, SegmentPaste
    from spectral_resnet.segments import split_shape

    horse = oversized_silhouette(3, (96, 96)).ink.float()
    assert split_shape(horse) == []
    disc = drawn("disc")  # radius 25: 51 px across
    cutouts = [[Cutout(disc, (slice(0, 60), slice(0, 140)))]]
    ink = torch.ones(1, 1, 150, 150, dtype=torch.bool)
    ink[..., 61:89, 61:89] = False  # a 28 px square: too small for the disc at 0.64 (33 px)
    block = SegmentPaste(ShaderConfig(paste=PasteConfig(min_scale=0.64, reach=0.5)))
    args = (ink, torch.tensor([[[75, 75]]]), cutouts, mask_centroid(disc[None, None]))
    args += (torch.zeros(1, 1), torch.zeros(1, 0, dtype=torch.long))
    split = lambda i, j, cut: None  # noqa: E731  (no cut, as split_shape finds for a disc)
    dest, scale, outcome, splits = block.place(*args, split=split)
    assert int(outcome) == Outcome.PLACED and int(splits) == 0
    assert float(scale) in (pytest.approx(0.64**1.5), pytest.approx(0.64**2))
