"""Real photographs available offline: the ones that ship inside scikit-image's wheel.

Nothing is fetched at run time: the files are read from the installed `skimage/data`
folder. Each entry below was checked against the licence note in scikit-image's own
docstring (`skimage.data.<name>`); images whose licence is not stated there (moon, page,
logo, color) are left out. The stereo pair (motorcycle_left / motorcycle_right, Middlebury
2014, with its disparity map) is kept apart as the real-geometry test.

Splits are by source image, so no image, nor any crop or warp of it, is in two splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_resnet.io import load_image

# name: (file, licence as scikit-image states it)
PHOTOS = {
    "astronaut": ("astronaut.png", "public domain (NASA)"),
    "brick": ("brick.png", "CC0 (CC0Textures)"),
    "camera": ("camera.png", "CC0 (Lav Varshney)"),
    "cell": ("cell.png", "CC0"),
    "chelsea": ("chelsea.png", "CC0 (Stefan van der Walt)"),
    "clock_motion": ("clock_motion.png", "public domain (Stefan van der Walt)"),
    "coffee": ("coffee.png", "CC0 (Rachel Michetti)"),
    "coins": ("coins.png", "no known copyright restrictions (Brooklyn Museum)"),
    "grass": ("grass.png", "CC0 (DeviantArt, linolafett)"),
    "gravel": ("gravel.png", "CC0 (CC0Textures)"),
    "hubble_deep_field": ("hubble_deep_field.jpg", "public domain (NASA)"),
    "ihc": ("ihc.png", "no known copyright restrictions"),
    "microaneurysms": ("microaneurysms.png", "CC0 (Andreas Maier)"),
    "retina": ("retina.jpg", "CC0 (Wikimedia Commons)"),
    "rocket": ("rocket.jpg", "public domain (SpaceX)"),
    "text": ("text.png", "public domain (Wikipedia, Corner.png)"),
}
SPLITS = {
    "test": ("astronaut", "chelsea", "coffee", "coins", "rocket"),
    "val": ("brick", "camera"),
    "train": (
        "cell",
        "clock_motion",
        "grass",
        "gravel",
        "hubble_deep_field",
        "ihc",
        "microaneurysms",
        "retina",
        "text",
    ),
}


def data_dir() -> Path:
    """The installed skimage/data folder (scikit-image is a dependency)."""
    try:
        import skimage.data
    except ImportError:
        raise ValueError(
            "the real-photo corpus needs scikit-image: pip install scikit-image"
        ) from None
    return Path(skimage.data.__file__).parent


def photo_files(split: str) -> list[Path]:
    """The photo files of one split, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    folder = data_dir()
    return [folder / PHOTOS[name][0] for name in SPLITS[split]]


def stereo_pair(height: int = 96) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The Middlebury motorcycle pair at `height` px high: left (target) and right (sample)
    (3, H, W), the flow (H, W, 2) of each left pixel to its right-image (x, y), and where it
    is known (H, W). Real geometry and real photometric change, not a synthetic warp."""
    folder = data_dir()
    left, right = (load_image(folder / f"motorcycle_{side}.png") for side in ("left", "right"))
    disparity = torch.from_numpy(np.load(folder / "motorcycle_disp.npz")["arr_0"]).float()
    h, w = left.shape[-2:]
    size = (height, round(w * height / h))
    scale = size[1] / w

    def shrink(x: Tensor) -> Tensor:
        return torch.nn.functional.interpolate(x[None], size=size, mode="area")[0]

    known = torch.isfinite(disparity) & (disparity > 0)
    d = torch.where(known, disparity, torch.zeros_like(disparity))
    d_small = shrink(d[None])[0] * scale  # disparity in small-image pixels
    coverage = shrink(known[None].float())[0]
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    # average only over known pixels: d_small / coverage is the mean known disparity
    disp = d_small / coverage.clamp_min(1e-6)
    flow = torch.stack([xs - disp, ys.float()], -1)
    valid = (coverage > 0.999) & (flow[..., 0] >= 0)
    return shrink(left).clamp(0, 1), shrink(right).clamp(0, 1), flow, valid
