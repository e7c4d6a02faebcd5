"""Components against a reference labelling: each drawing's clean half-coverage mask,
thresholded and labelled with 8-connectivity, is what a person calls its shapes."""

import pytest
import torch

from spectral_resnet import segments
from spectral_resnet.data.drawings import DRAWINGS, random_drawing
from spectral_resnet.shading import ink_mask


def matched(drawing, min_area: int = 12) -> tuple[int, int, int]:
    """(reference components, our components, references matched by one of ours to within
    10% of area)."""
    ref = drawing.components(min_area)
    ours = segments.annihilate_fuzz(
        segments.components(ink_mask(drawing.image[None])[0]), min_area=min_area
    )
    hits = 0
    for r in range(1, int(ref.max()) + 1):
        shape = ref == r
        under = ours[shape & (ours > 0)]
        if len(under):
            mine = ours == under.mode().values
            overlap, area = float((mine & shape).sum()), float(shape.sum())
            hits += overlap >= 0.9 * area and float(mine.sum()) <= 1.1 * area
    return int(ref.max()), int(ours.max()), hits


@pytest.mark.parametrize("name", sorted(DRAWINGS))
def test_every_shape_of_a_drawing_is_one_whole_component(name):
    """Anti-aliased outlines 2-4 px wide, words, arrows, hatching, silhouettes, both polarities."""
    n_ref, n_ours, hits = matched(DRAWINGS[name]())
    assert n_ref >= 1 and n_ours == n_ref and hits == n_ref


def test_random_drawings_match_the_reference_labelling():
    totals = torch.tensor([matched(random_drawing(seed, (128, 128))) for seed in range(8)])
    n_ref, n_ours, hits = totals.sum(0).tolist()
    assert n_ref >= 40 and abs(n_ours - n_ref) <= 0.05 * n_ref and hits >= 0.95 * n_ref


@pytest.mark.parametrize("ink, found", [("auto", 1), ("light", 1), ("dark", 0), ("any", 1)])
def test_ink_polarity_on_a_white_silhouette_on_black(ink, found):
    """auto takes the minority side: the horse, not the black ground ("dark" finds no ink
    darker than a black background, rather than calling the background ink)."""
    horse = DRAWINGS["horse"]()
    mask = ink_mask(horse.image[None], ink=ink)[0]
    labels = segments.annihilate_fuzz(segments.components(mask), min_area=12)
    assert int(labels.max()) == found
    if found:
        assert float((mask & horse.ink).sum()) >= 0.95 * float(horse.ink.sum())


def test_a_flat_or_noisy_image_has_no_ink():
    flat = torch.full((1, 3, 32, 32), 0.6)
    noisy = flat + 0.02 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not ink_mask(flat).any() and not ink_mask(noisy).any()


def test_max_filter_equals_max_pooling():
    """The ink mask's shifted-maxima filter is exactly a padded max pool, borders and thin
    images included."""
    import torch.nn.functional as F

    from spectral_resnet.segments import max_filter

    g = torch.Generator().manual_seed(0)
    for shape in [(1, 7, 9), (2, 1, 1), (1, 3, 30), (1, 40, 2), (2, 64, 50)]:
        x = torch.rand(*shape, generator=g, dtype=torch.float64)
        for r in (1, 2, 3, 5, 8, 20, 45):  # spans of every length, and windows past the image
            assert torch.equal(max_filter(x, r), F.max_pool2d(x[:, None], 2 * r + 1, 1, r)[:, 0])


def test_the_hard_drawings_are_what_bench_paste_says_they_are():
    from spectral_resnet.data.drawings import crowded, one_piece, oversized_silhouette

    for seed in range(3):
        assert int(one_piece(seed, (128, 128)).components().max()) == 1  # one connected shape
    assert int(crowded(0, (160, 160)).components(min_area=4).max()) == 25
    big = oversized_silhouette(0, (96, 96))
    assert min(big.image.shape[-2:]) >= 1.5 * 96 and int(big.components().max()) == 1


def test_one_piece_reference_parts_are_its_rings():
    """bench_paste judges a cut part against these: one label per ring, on the ring's ink
    only, each ring one 8-connected piece holding one hole; the links carry no label."""
    from spectral_resnet.data.drawings import big_horse, one_piece
    from spectral_resnet.segments import components, holes

    for seed in range(3):
        drawing = one_piece(seed, (128, 128))
        parts = drawing.parts
        assert not (parts > 0)[~drawing.ink].any()
        rings = int(parts.max())
        assert 4 <= rings <= 7 and (drawing.ink & (parts == 0)).any()  # links stay unlabelled
        for k in range(1, rings + 1):
            ring = parts == k
            assert int(components(ring).max()) == 1 and holes(ring.numpy()) == 1
    horse = big_horse()
    assert min(horse.image.shape[-2:]) > 192 and horse.parts is None
