"""Image pairs for training and evaluation.

- `SyntheticPairs`: a source image (from a folder of the user's images, or the procedural
  generator) and a random warp of it (torchvision transforms.v2: affine, perspective,
  elastic, then colour jitter). The warp is applied to a coordinate grid with the same
  random parameters, which yields the ground-truth flow: for every target pixel, the
  (x, y) sample pixel it came from, plus a validity mask. Deterministic given a seed.
- `FolderPairs`: `a/xxx.png` + `b/xxx.png` pairs without labels (stereo, video frames) for
  the self-supervised reconstruction loss.
- `SizeBatches`: training batches at several sizes (`data.sizes`), each batch at one.
- `PairDataModule`: train / val / test splits with a fixed held-out split.

Spectra are computed in `__getitem__` (so in the dataloader workers) through the spectrum
cache: epochs after the first do no eigensolves.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from spectral_resnet.config import SpectrumConfig, check_range
from spectral_resnet.data.drawings import random_drawing
from spectral_resnet.data.procedural import curves, diagram, scene
from spectral_resnet.data.real import photo_files
from spectral_resnet.io import IMAGE_SUFFIXES, load_image

GENERATORS = (scene, scene, curves, diagram)  # mostly photo-like, some line art
SPLITS = ("train", "val", "test")
# bilinear warps: photos without nearest-neighbour jaggies, and sub-pixel ground-truth flow
BILINEAR = dict(interpolation=v2.InterpolationMode.BILINEAR)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    readable = [p for p in files if readable_image(p)]
    for p in sorted(set(files) - set(readable)):
        warnings.warn(f"skipping {p}: not a readable image", stacklevel=2)
    if not readable:
        raise ValueError(
            f"image folder {folder} has no readable images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return readable


def readable_image(path: Path) -> bool:
    """Whether Pillow can parse the file's structure (cheap: no full decode)."""
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:
        return False


def split_files(files: list[Path], split: str, root: Path | None = None) -> list[Path]:
    """This split's share of the files, disjoint by construction: files ordered by a hash of
    their name, the first 10% (at least one) test, the next 10% (at least one) val, the rest
    train. Stable when files are added, and never an empty or shared split."""
    if len(files) < 3:
        raise ValueError(
            f"need at least 3 images to split into train/val/test, got {len(files)}"
            + (f" in {root}" if root else "")
        )
    key = (lambda p: str(p.relative_to(root))) if root else (lambda p: p.name)
    ordered = sorted(files, key=lambda p: (zlib.crc32(key(p).encode()), key(p)))
    n_held = max(1, round(0.1 * len(files)))
    bounds = {"test": (0, n_held), "val": (n_held, 2 * n_held), "train": (2 * n_held, None)}
    lo, hi = bounds[split]
    return ordered[lo:hi]


def fit(image: Tensor, size: int, crop: float = 1.0, where: tuple[float, float] = (0.5, 0.5)):
    """A square of side `crop` x the short side of a (3, H, W) image, at relative position
    `where` (0.5, 0.5: centred), resized to size x size."""
    h, w = image.shape[-2:]
    s = max(2, round(crop * min(h, w)))
    top, left = round(where[0] * (h - s)), round(where[1] * (w - s))
    image = image[:, top : top + s, left : left + s]
    mode = "area" if s > size else "bilinear"
    return F.interpolate(image[None], size=(size, size), mode=mode)[0].clamp(0, 1)


class SyntheticPairs(Dataset):
    """(target = warp(sample), sample, flow target->sample, valid) with known correspondence.

    Sources: procedural images (or random drawings, `drawings`), or image files (`files`, or a split of `folder`) mixed with a
    `procedural` share of procedural ones. A source is a random square crop (side `crop`
    of the short side), warped by rotation (up to +-degrees, or exactly +-degrees with
    `fixed_rotation`), scale, translation, perspective, elastic and colour jitter.
    """

    def __init__(
        self,
        *,
        size: int = 64,
        sizes: tuple[int, ...] | None = None,
        length: int = 256,
        seed: int = 0,
        folder: str | None = None,
        files: list[Path] | None = None,
        procedural: float = 0.0,
        drawings: bool = False,
        split: str = "train",
        crop: tuple[float, float] = (1.0, 1.0),
        degrees: float = 20.0,
        fixed_rotation: bool = False,
        scale: tuple[float, float] = (0.9, 1.1),
        translate: float = 0.05,
        perspective: float = 0.15,
        elastic: float = 10.0,
        jitter: float = 0.1,
        spectrum: SpectrumConfig | None = None,
    ):
        """spectrum: the model's SpectrumConfig, so what the workers cache is what the model
        looks up; None computes no spectra here. sizes: each pair is drawn at one of these
        sides, fixed by its index (SizeBatches keeps a batch at one size); None: `size`."""
        self.sizes = tuple(sizes) if sizes else (size,)
        self.length, self.seed = length, seed
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 <= procedural <= 1.0:
            raise ValueError(f"procedural must be a share in [0, 1], got {procedural}")
        self.files = list(files) if files else None
        if folder:  # a fixed held-out split of the files (see split_files)
            self.files = split_files(list_images(folder), split, Path(folder))
        self.procedural = procedural if self.files else 1.0
        self.drawings = drawings  # procedural sources are random drawings (data.drawings)
        self.crop, self.degrees, self.fixed_rotation = tuple(crop), degrees, fixed_rotation
        self.affine = dict(translate=(translate, translate), scale=tuple(scale))
        self.deform = v2.Compose(
            [
                v2.RandomPerspective(
                    distortion_scale=perspective, p=1.0 if perspective > 0 else 0.0, **BILINEAR
                ),
                v2.ElasticTransform(alpha=elastic, sigma=5.0, **BILINEAR)
                if elastic > 0
                else v2.Identity(),
            ]
        )
        self.colour = v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter)
        self.spectrum = spectrum
        self._photos: dict[Path, Tensor] = {}  # decoded files, per worker

    def __len__(self) -> int:
        return self.length

    def size_of(self, index: int) -> int:
        """The side (px) pair `index` is drawn at: by a hash of the index, so no source or
        generator (chosen by index modulo their count) keeps to one size."""
        return self.sizes[zlib.crc32(f"{self.seed}:{index}".encode()) % len(self.sizes)]

    def source(self, index: int) -> Tensor:
        """The index-th source image; call under the item's seed (crops are random)."""
        draw = torch.rand(4) if self.files is not None else None
        side = self.size_of(index)
        if draw is None or draw[0] < self.procedural:
            seed, size = self.seed * 100_003 + index, (side, side)
            if self.drawings:
                return random_drawing(seed, size).image
            return GENERATORS[index % len(GENERATORS)](size, seed=seed)
        path = self.files[index % len(self.files)]
        if path not in self._photos:
            self._photos[path] = load_image(path)
        lo, hi = self.crop
        crop = lo + (hi - lo) * float(draw[1])
        where = (float(draw[2]), float(draw[3])) if hi > lo or lo < 1 else (0.5, 0.5)
        return fit(self._photos[path], side, crop, where)

    def geometry(self) -> v2.Transform:
        """This item's warp (call under the item's seed)."""
        d = self.degrees
        if self.fixed_rotation:  # exactly +-d
            d = (d, d) if torch.rand(()) < 0.5 else (-d, -d)
        return v2.Compose([v2.RandomAffine(degrees=d, **self.affine, **BILINEAR), self.deform])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed * 1_000_003 + index)  # same pair every epoch, every worker
        try:
            sample = self.source(index)
            h, w = sample.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
            coords = torch.stack([xs, ys, torch.ones_like(xs)])  # (3, H, W): x, y, validity
            target, warped = self.geometry()(tv_tensors.Image(sample), tv_tensors.Image(coords))
            target = self.colour(target).clamp(0, 1)
        finally:
            torch.random.set_rng_state(state)
        valid = warped[2] > 0.999
        flow = torch.where(
            valid[None], warped[:2] / warped[2:].clamp_min(1e-6), torch.zeros(2, h, w)
        )
        item = {
            "target": target.as_subclass(Tensor).contiguous(),
            "sample": sample,
            "flow": flow.permute(1, 2, 0).contiguous(),  # (H, W, 2) sample (x, y) per target pixel
            "valid": valid,
        }
        if self.spectrum is not None:  # warm the spectrum cache here, in the worker
            for key in ("target", "sample"):
                self.spectrum.compute(item[key])
        return item


class FolderPairs(Dataset):
    """Unlabelled pairs `root/a/NAME` and `root/b/NAME` (same NAME), for reconstruction."""

    def __init__(self, *, root: str, size: int = 64, spectrum: SpectrumConfig | None = None):
        root = Path(root)
        a_files = {p.name: p for p in list_images(root / "a")}
        b_files = {p.name: p for p in list_images(root / "b")}
        names = sorted(a_files.keys() & b_files.keys())
        if not names:
            raise ValueError(f"no matching names in {root / 'a'} and {root / 'b'}")
        self.pairs = [(a_files[n], b_files[n]) for n in names]
        self.size, self.spectrum = size, spectrum

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        a, b = self.pairs[index]
        target, sample = fit(load_image(a), self.size), fit(load_image(b), self.size)
        if self.spectrum is not None:
            self.spectrum.compute(target)
            self.spectrum.compute(sample)
        h, w = target.shape[-2:]
        return {
            "target": target,
            "sample": sample,
            "flow": torch.zeros(h, w, 2),
            "valid": torch.zeros(h, w, dtype=torch.bool),  # no labels: reconstruction only
        }


class SizeBatches(torch.utils.data.Sampler):
    """Shuffled training batches whose pairs share one size, so each stacks into one tensor:
    each size's pairs shuffled and cut into batches, then the batches of every size
    shuffled together, in an order fixed by the seed and the epoch (`epoch()`: the
    trainer's, so a resumed run goes on where it stopped; None: counted here)."""

    def __init__(
        self,
        dataset: SyntheticPairs,
        batch_size: int,
        seed: int = 0,
        epoch: Callable[[], int] | None = None,
    ):
        self.groups: dict[int, list[int]] = {}
        for i in range(len(dataset)):
            self.groups.setdefault(dataset.size_of(i), []).append(i)
        self.batch_size, self.seed, self.epoch, self.count = batch_size, seed, epoch, 0

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch() if self.epoch is not None else self.count
        self.count += 1
        gen = torch.Generator().manual_seed(self.seed * 1_009 + epoch)
        batches = []
        for pairs in self.groups.values():
            order = [pairs[j] for j in torch.randperm(len(pairs), generator=gen).tolist()]
            batches += [
                order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)
            ]
        return iter([batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()])

    def __len__(self) -> int:
        return sum(-(-len(pairs) // self.batch_size) for pairs in self.groups.values())


class PairDataModule(L.LightningDataModule):
    """Train / val / test pair datasets; val and test use seeds disjoint from train."""

    def __init__(
        self,
        *,
        size: int = 64,
        sizes: list[int] | None = None,
        train_pairs: int = 256,
        val_pairs: int = 32,
        test_pairs: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        folder: str | None = None,
        real: bool = False,
        procedural: float = 0.0,
        real_pairs: str | None = None,
        spectrum: SpectrumConfig | None = None,
        warp: dict | None = None,
        seed: int = 0,
    ):
        """real: the bundled photo corpus (spectral_resnet.data.real), split by source image;
        procedural: the share of training pairs drawn by the procedural generator instead.
        sizes: the sides (px) training pairs are drawn at, a batch at a time, e.g. [64, 128]
        (None: `size`); validation and test stay at `size`.
        spectrum: the model's SpectrumConfig (train.py passes it), so the spectra the
        workers cache are the ones the model looks up, by construction."""
        super().__init__()
        self.save_hyperparameters(ignore=["spectrum"])
        if spectrum is not None and not isinstance(spectrum, SpectrumConfig):
            spectrum = SpectrumConfig(**spectrum)  # hydra.utils.instantiate passes a dict
        if real and folder:
            raise ValueError("choose one source of images: data.real=true or data.folder=DIR")
        for name, value, low, high in (
            ("data.size", size, 8, 1024),
            ("data.train_pairs", train_pairs, 1, 10**7),
            ("data.val_pairs", val_pairs, 1, 10**7),
            ("data.test_pairs", test_pairs, 1, 10**7),
            ("data.batch_size", batch_size, 1, 4096),
            ("data.num_workers", num_workers, 0, 64),
        ):
            check_range(name, value, low, high, integer=True)
        check_range("data.procedural", procedural, 0.0, 1.0)
        sizes = list(sizes) if sizes else None
        for side in sizes or []:
            check_range("data.sizes", side, 8, 1024, integer=True)
        if sizes and real_pairs:
            raise ValueError(
                "data.sizes and data.real_pairs do not combine (folder pairs have one size): "
                "drop one of them"
            )
        common = dict(size=size, folder=folder, spectrum=spectrum, **dict(warp or {}))
        files = {split: photo_files(split) if real else None for split in SPLITS}
        self.train_set: Dataset = SyntheticPairs(
            length=train_pairs,
            seed=seed,
            files=files["train"],
            procedural=procedural,
            sizes=sizes,
            **common,
        )
        if real_pairs:
            self.train_set = torch.utils.data.ConcatDataset(
                [self.train_set, FolderPairs(root=real_pairs, size=size, spectrum=spectrum)]
            )
        self.val_set = SyntheticPairs(
            length=val_pairs, seed=seed + 1_000, split="val", files=files["val"], **common
        )
        self.test_set = SyntheticPairs(
            length=test_pairs, seed=seed + 2_000, split="test", files=files["test"], **common
        )

    def epoch(self) -> int:
        """The trainer's epoch (0 without a trainer): what orders SizeBatches."""
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    @property
    def several_sizes(self) -> bool:
        """Whether training pairs come at more than one size (data.sizes): batched by size."""
        return len(getattr(self.train_set, "sizes", ())) > 1

    def _loader(self, dataset: Dataset, shuffle: bool, by_size: bool = False) -> DataLoader:
        """Batches of `batch_size`, shuffled or in order; by_size: each batch at one size."""
        batching: dict = dict(batch_size=self.hparams.batch_size, shuffle=shuffle)
        if by_size:
            batching = dict(
                batch_sampler=SizeBatches(
                    dataset, self.hparams.batch_size, self.hparams.seed, self.epoch
                )
            )
        return DataLoader(
            dataset,
            **batching,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True, by_size=self.several_sizes)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
