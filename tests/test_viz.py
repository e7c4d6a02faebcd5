import numpy as np
import pytest
import torch
from PIL import Image

from spectral_resnet import viz
from spectral_resnet.io import load_image, to_uint8


@pytest.mark.parametrize("seed", range(4))
def test_mask_box_is_the_bounding_box_of_the_positive_pixels(seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(40, 50, dtype=torch.float16)
    y0, x0 = torch.randint(0, 30, (2,), generator=g).tolist()
    mask[y0 : y0 + 7, x0 : x0 + 9] = torch.rand(7, 9, generator=g).half() * (seed % 2 * 2 - 1)
    ys, xs = torch.nonzero(mask > 0, as_tuple=True)
    box = viz.mask_box(mask)
    if len(ys) == 0:  # a negative (odd seeds) or empty mask has no box
        assert box is None
    else:
        assert box == (
            slice(int(ys.min()), int(ys.max()) + 1),
            slice(int(xs.min()), int(xs.max()) + 1),
        )


def test_overlay_tints_inside_the_masks_only():
    image = torch.rand(3, 30, 40)
    mask = torch.zeros(30, 40)
    mask[5:12, 20:31] = 1
    out = viz.overlay(image, [torch.zeros(30, 40), mask], seeds=None)  # an empty slot first
    assert out.dtype == torch.uint8 and out.shape == (3, 30, 40)
    changed = np.abs(to_uint8(out).astype(int) - to_uint8(image)).max(-1)  # (H, W)
    assert changed[mask == 0].max() == 0 and changed[mask > 0].min() > 2


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_load_then_to_uint8_round_trips_the_file_pixels(tmp_path, mode):
    pixels = (np.random.default_rng(0).random((17, 23, 3)) * 256).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(tmp_path / "img.png")
    expected = np.asarray(Image.open(tmp_path / "img.png").convert("RGB"))
    image = load_image(tmp_path / "img.png")
    assert torch.equal(image, torch.from_numpy(expected / np.float32(255)).permute(2, 0, 1))
    assert np.array_equal(to_uint8(image), expected)
