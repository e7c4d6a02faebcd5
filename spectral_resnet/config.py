"""Every shader option and its one default: typed dataclasses, registered with Hydra's ConfigStore.

    config = ShaderConfig(pattern="cc", spectrum=SpectrumConfig(k=12))
    shader = SpectralShader(config)

`configs/` never repeats a default: `model: shader` in a defaults list is this ShaderConfig,
and the data module takes the model's SpectrumConfig, so the spectra its workers cache are
the ones the model looks up. A checkpoint stores the whole ShaderConfig; the fields in
ARCHITECTURE are fixed by it, the rest stay overridable at inference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from torch import Tensor

from spectral_resnet.spectral import Spectrum, compute_spectrum

QK_INITS = ("identity", "fmap", "descriptor", "patch", "random", "learned")
KERNELS = ("linear", "softmax")
FEATURES = ("evecs", "hks", "wks", "color", "boundary", "context", "patch")
MAX_K = 512  # eigenpairs a spectrum may ask for: a memory guard, far above any use here
INKS = ("auto", "dark", "light", "any")
# the fields a checkpoint's weights were trained with; overriding one is an error
ARCHITECTURE = (
    "spectrum.k",
    "spectrum.connectivity",
    "spectrum.sigma",
    "spectrum.sigma_scale",
    "attention.qk_init",
    "attention.kernel",
    "attention.features",
    "attention.learnable",
    "attention.tied",
    "attention.softmax_scale",
    "attention.hidden",
    "attention.gate_bias",
)


def _positive(name: str, value, integer: bool = False) -> None:
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(
            f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}"
        )


@dataclass
class SpectrumConfig:
    """How an image becomes a graph and its k lowest eigenpairs."""

    k: int = 16  # eigenpairs per image
    eigensolver: str = "auto"  # auto | dense | arpack | chebyshev
    connectivity: int = 4  # 4 or 8 neighbours
    sigma: float | None = None  # colour scale of the edge weights; null: adaptive
    sigma_scale: float = 1.0  # adaptive sigma = sigma_scale x RMS neighbour difference
    cache: bool = True  # memory + disk spectrum cache

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"spectrum.k must be an integer >= 2, got {self.k!r}")
        if self.k > MAX_K:  # k eigenvectors of a 256^2 working image: 0.5 MB each
            raise ValueError(
                f"spectrum.k={self.k} is over {MAX_K}: {self.k} eigenvectors of a 256x256 "
                f"working image need {self.k * 65536 * 8 / 2**30:.1f} GB and the shader uses "
                "a few dozen; pick k <= 64"
            )
        if self.sigma is not None:
            _positive("spectrum.sigma", self.sigma)

    def compute(self, image: Tensor) -> Spectrum:
        """Spectrum of one (3, H, W) image through the cache: the model and the data both
        call this, so what a dataloader worker caches is what the model looks up."""
        return compute_spectrum(
            image,
            k=self.k,
            method=self.eigensolver,
            cache=self.cache,
            connectivity=self.connectivity,
            sigma=self.sigma,
            sigma_scale=self.sigma_scale,
        )


@dataclass
class AttentionConfig:
    """Tokens, Q/K projections and the attention kernel, plus the soft blocks' FFN."""

    qk_init: str = (
        "fmap"  # identity (the seed's baseline) | fmap | descriptor | patch | random | learned
    )
    kernel: str = "linear"  # linear (low rank, full resolution) | softmax (exact, chunked)
    features: list[str] | None = None  # token features; null: the qk_init's own
    learnable: bool | None = None  # null: only qk_init=learned trains
    tied: bool = False  # one projection for both sides (W_k = W_q): a learned metric
    softmax_scale: float = 10.0  # initial temperature of the cosine scores (softmax kernel)
    hidden: int = 32  # FFN hidden width of the soft blocks
    gate_bias: float = 2.0  # initial gate logit of the soft blocks
    threshold: float = 0.2  # activation threshold of gates and seeds
    chunk: int = 4096  # softmax query chunk
    max_keys: int | None = 4096  # softmax: keys kept (the strongest boundary pixels); null: all

    def __post_init__(self):
        if self.qk_init not in QK_INITS:
            raise ValueError(f"unknown qk_init {self.qk_init!r}; choose one of {QK_INITS}")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {self.kernel!r}; choose one of {KERNELS}")
        if self.features is not None:
            self.features = list(self.features)
            unknown = sorted(set(self.features) - set(FEATURES))
            if unknown or not self.features:
                raise ValueError(f"unknown token features {unknown}; choose from {FEATURES}")
        if self.qk_init in ("identity", "fmap") and self.token_features != ("evecs",):
            raise ValueError(
                f"qk_init={self.qk_init!r} works on raw eigenvectors: features=['evecs']"
            )
        _positive("attention.softmax_scale", self.softmax_scale)
        _positive("attention.chunk", self.chunk, integer=True)
        _positive("attention.hidden", self.hidden, integer=True)
        if self.max_keys is not None:
            _positive("attention.max_keys", self.max_keys, integer=True)

    @property
    def token_features(self) -> tuple[str, ...]:
        if self.features is not None:
            return tuple(self.features)
        return {
            "identity": ("evecs",),
            "fmap": ("evecs",),
            "descriptor": ("hks", "wks"),
            "patch": ("patch",),
        }.get(self.qk_init, ("patch", "color", "hks", "wks", "boundary", "context"))

    @property
    def trains(self) -> bool:
        return self.qk_init == "learned" if self.learnable is None else bool(self.learnable)


@dataclass
class PasteConfig:
    """Segment paste ('c'): seeds, component choice, placement. Lengths are fractions of the
    target's long side, so the defaults suit any image size."""

    seeds: int = 4  # seeds per paste block
    max_pastes: int = 6  # most pastes of one run, over all paste blocks (strongest seeds first)
    nms_radius: float = 0.08  # seed spacing
    radius: float = 1.0  # locality gate radius
    reach: float = 0.25  # how far a paste may move toward empty space
    min_scale: float = 0.5  # a paste with no room at full size is tried down to this scale
    rotation: Any = 90.0  # degrees, or "align" (principal axis along the target's lines)
    ink: str = "auto"  # the foreground: auto (minority side, per image) | dark | light | any
    min_area: int = 12  # smallest sample component (and transferred fragment) kept, pixels

    def __post_init__(self):
        _positive("paste.seeds", self.seeds, integer=True)
        _positive("paste.max_pastes", self.max_pastes, integer=True)
        _positive("paste.nms_radius", self.nms_radius)
        _positive("paste.radius", self.radius)
        _positive("paste.reach", self.reach)
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"paste.min_scale must be in (0, 1], got {self.min_scale!r}")
        rotation_ok = self.rotation == "align" or (
            isinstance(self.rotation, (int, float)) and not isinstance(self.rotation, bool)
        )
        if not rotation_ok:
            raise ValueError(f"paste.rotation must be degrees or 'align', got {self.rotation!r}")
        if self.ink not in INKS:
            raise ValueError(f"paste.ink must be one of {INKS}, got {self.ink!r}")
        if (
            isinstance(self.min_area, bool)
            or not isinstance(self.min_area, int)
            or self.min_area < 1
        ):
            raise ValueError(f"paste.min_area must be an integer >= 1, got {self.min_area!r}")


@dataclass
class ShadingConfig:
    """The shading ops: thicken ('t') and shadow ('h')."""

    thicken_time: float = 2.0  # heat-kernel dilation time
    shadow_offset: list[int] = field(default_factory=lambda: [3, 3])  # (dy, dx) pixels
    shadow_darkness: float = 0.5


@dataclass
class ShaderConfig:
    """The whole shader: a pattern of block letters and the options of each part."""

    pattern: str = "cccc"  # block letters, see spectral_resnet.blocks.BLOCKS
    # long side (px) the spectra and attention run at; larger images are area-downsampled for
    # them (pastes stay full resolution). 256 keeps softmax attention at 65k^2 scores and the
    # patch tokens near the scale they were trained at; null: full resolution
    work_size: int | None = 256
    refresh_target: bool = False  # recompute the target's spectrum between blocks
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    paste: PasteConfig = field(default_factory=PasteConfig)
    shading: ShadingConfig = field(default_factory=ShadingConfig)

    def __post_init__(self):
        for name, kind in (
            ("spectrum", SpectrumConfig),
            ("attention", AttentionConfig),
            ("paste", PasteConfig),
            ("shading", ShadingConfig),
        ):  # plain dicts (from a checkpoint) become their dataclass
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, kind(**value))
        if self.work_size is not None:
            _positive("work_size", self.work_size, integer=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ShaderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def get(self, dotted: str):
        value = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


ConfigStore.instance().store(group="model", name="shader", node=ShaderConfig)
