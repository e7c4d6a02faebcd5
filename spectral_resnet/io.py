"""Validated image I/O: every way a file can be wrong becomes one `ImageError` sentence.

Every PIL mode a user is likely to have (16-bit, palette, grey, grey+alpha, RGBA, CMYK) is
converted to RGB float32 in [0, 1]; alpha is composited over white, as line art expects.
Writes are atomic, so a failed run never leaves half a file.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

DEFAULT_MAX_PIXELS = 4096 * 4096
# what batch folders pair: every format a single run reads that people keep pictures in
IMAGE_SUFFIXES = (
    *(".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"),
    *(".ppm", ".pgm", ".pbm", ".pnm", ".tga"),
)
STALE_SECONDS = 600.0  # a temp file this old was left by a killed writer, not a live one


def remove_stale_temps(directory: Path, pattern: str, age: float = STALE_SECONDS) -> int:
    """Delete the temp files (or folders) matching `pattern` in `directory` that are older
    than `age` seconds: what a killed run left behind (a live writer's temp file is seconds
    old). Returns how many went."""
    now, removed = time.time(), 0
    for tmp in Path(directory).glob(pattern):
        try:
            if now - tmp.stat().st_mtime > age:
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
                removed += 1
        except OSError:  # gone already, or not ours to delete
            pass
    return removed


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the fix."""


def float_scale(values: np.ndarray) -> float:
    """What a float image's values are fractions of: 1, 255 (8-bit values saved as floats,
    e.g. a float TIFF) or 65535, whichever its brightest pixel fits; else that pixel."""
    peak = float(values.max(initial=0.0))
    return next((s for s in (1.0, 255.0, 65535.0) if peak <= s), peak)


def _to_rgb(img: Image.Image, path: Path) -> Tensor:
    """Any PIL mode -> (3, H, W) float32 in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / scale, 0, 1).astype(np.float32)
        return torch.from_numpy(grey).expand(3, -1, -1).contiguous()
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ImageError(f"{path}: has NaN or infinite pixels; replace them and re-export")
        grey = np.clip(values / float_scale(values), 0, 1).astype(np.float32)
        return torch.from_numpy(grey).expand(3, -1, -1).contiguous()
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA", "PA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # over white
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    rgb = torch.from_numpy(np.array(img.convert("RGB")))  # (H, W, 3) uint8
    return torch.empty(3, *rgb.shape[:2]).copy_(rgb.permute(2, 0, 1)).div_(255.0)  # one pass


def _to_mask(img: Image.Image, path: Path) -> Tensor:
    """A mask file -> (H, W) bool, True where allowed: its alpha if it has one (transparent =
    forbidden), else its grey level (black = forbidden, white = allowed), cut at half."""
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA", "PA"):
        return torch.from_numpy(np.asarray(img.getchannel("A")) >= 128)
    return _to_rgb(img, path).mean(0) >= 0.5


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Read an image file as a (3, H, W) float32 tensor in [0, 1]; raise ImageError if unusable."""
    return read_image(Path(path), max_pixels, _to_rgb)


def load_mask(path: str | os.PathLike, shape: tuple[int, int], option: str = "mask") -> Tensor:
    """Read a grey or alpha mask file for an image of `shape` (H, W) as (H, W) bool (True:
    allowed). A mask of another size with the image's aspect ratio is resized (nearest)."""
    path = Path(path)
    mask = read_image(path, DEFAULT_MAX_PIXELS, _to_mask)
    if tuple(mask.shape) != tuple(shape):
        (h, w), (height, width) = mask.shape, shape
        if abs(h * width - w * height) > 0.02 * h * width:
            raise ImageError(
                f"{option} {path}: {w}x{h}, but the image is {width}x{height}; give a mask of "
                "the image's size (or of its aspect ratio)"
            )
        mask = torch.nn.functional.interpolate(mask[None, None].float(), size=shape)[0, 0] > 0.5
    return mask


def image_mask(mask: str | None, image: Path, shape: tuple[int, int], option: str) -> Tensor | None:
    """The mask option's mask for `image` (of `shape`): the file itself, or in a folder the
    file named like the image (`cat.png`'s mask is `masks/cat.*`); None without one."""
    if not mask:
        return None
    path = Path(mask)
    if path.is_dir():
        found = [
            p
            for p in sorted(path.glob(f"{glob.escape(image.stem)}.*"))
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not found:
            raise ImageError(
                f"{option}={path}: no mask named {image.stem}.* for {image.name}; add one"
            )
        path = found[0]
    return load_mask(path, shape, option)


def read_image(path: Path, max_pixels: int, convert) -> Tensor:
    """Open, check and decode an image file, then `convert(img, path)` it; every way the file
    can be wrong is an ImageError."""
    if not path.exists():
        raise ImageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty (0 bytes); re-export the image")
    bomb_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max(max_pixels, bomb_limit or 0)  # ours is the limit that counts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h < 2:
                    raise ImageError(f"{path}: a {w}x{h} image; it needs at least 2 pixels")
                if w * h > max_pixels:
                    raise ImageError(
                        f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}; "
                        "downscale it or raise max_pixels"
                    )
                img.load()
                image = convert(ImageOps.exif_transpose(img), path)  # phone photos stand upright
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path}: declares more pixels than the limit of {max_pixels} (a decompression "
            "bomb, or a huge image); raise max_pixels if you trust it"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (PNG, JPEG, ...); check the file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(
            f"{path}: image data is truncated or corrupt ({err}); re-export it"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit
    return image


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) / (1, 3, H, W) / (H, W) float in [0, 1], or uint8 already -> (H, W[, 3])
    uint8."""
    image = image.detach().cpu()
    if image.dim() == 4:
        image = image[0]
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if image.dtype == torch.uint8:  # e.g. viz.overlay's picture: a view of its pixels
        return (image.permute(1, 2, 0) if image.dim() == 3 else image).numpy()
    image = image.float()
    scaled = torch.mul(image, 255).add_(0.5).clamp_(0.5, 255.5)  # = clamp(0, 1) * 255 + 0.5
    if image.dim() == 2:
        return scaled.to(torch.uint8).numpy()
    out = torch.empty(*image.shape[1:], image.shape[0], dtype=torch.uint8)  # (H, W, C)
    out.permute(2, 0, 1).copy_(scaled)  # cast and interleave the channels in one pass
    return out.numpy()


def encode_image(image: Tensor | np.ndarray, suffix: str = ".png") -> bytes:
    """A float image (3, H, W) in [0, 1], or to_uint8's (H, W, 3) array, as the bytes of an
    image file in the suffix's format. Separate from writing so it can run in a thread while
    the next picture is being made (the encoders release the GIL)."""
    pil = Image.fromarray(image if isinstance(image, np.ndarray) else to_uint8(image))
    kind = Image.registered_extensions().get(suffix.lower(), "PNG")
    options = {"compress_level": 1} if kind == "PNG" else {}  # 3-5x faster, files ~1.3x
    buffer = io.BytesIO()
    pil.save(buffer, format=kind, **options)
    return buffer.getvalue()


def save_image(image: Tensor | np.ndarray | bytes, path: str | os.PathLike) -> Path:
    """Write a float image (3, H, W) in [0, 1], to_uint8's (H, W, 3) array, or encode_image's
    bytes, atomically; format from the suffix."""
    path = Path(path)
    return write_atomic(
        image if isinstance(image, bytes) else encode_image(image, path.suffix), path
    )


def write_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """The one way every file of the project is written: into a temp file beside `path`
    (`.<name>.*.tmp`, with normal permissions), then renamed over it, so a reader never sees
    half a file and a failed write leaves the old one. Temps a killed writer left go first."""
    path = Path(path)
    remove_stale_temps(path.parent, f".{glob.escape(path.name)}.*.tmp")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
