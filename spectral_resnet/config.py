"""Every option and its one default: typed dataclasses, registered with Hydra's ConfigStore.

    config = ShaderConfig(pattern="cc", spectrum=SpectrumConfig(k=12))
    shader = SpectralShader(config)

`configs/` never repeats a default: `model: shader` in a defaults list is this ShaderConfig,
and the data module takes the model's SpectrumConfig, so the spectra its workers cache are
the ones the model looks up. A checkpoint stores the whole ShaderConfig; the fields in
ARCHITECTURE are fixed by it, the rest stay overridable at inference. InferConfig,
EvalConfig and TrainConfig type the programs' own options (`configs/*.yaml` start from them),
so `max_pixels=abc` is refused when the command line is read.

Every number has a finite range: a value outside it is a ValueError naming the option.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from torch import Tensor

from spectral_resnet.spectral import Spectrum, compute_spectrum
from spectral_resnet.spectral.graph import FLOOR
from spectral_resnet.stack import LAYERS, MIXERS

QK_INITS = ("identity", "fmap", "descriptor", "patch", "random", "learned")
KERNELS = ("linear", "softmax")
FEATURES = ("stem", "evecs", "hks", "wks", "color", "boundary", "context", "patch")
LEARNED_FEATURES = ("stem",)  # made by the model's own layers, so they need qk_init=learned
MAX_K = 512  # eigenpairs a spectrum may ask for: a memory guard, far above any use here
MAX_SEEDS = 64
MAX_WORK_SIZE = 4096  # spectra and attention at 4096^2 take minutes and gigabytes already
INKS = ("auto", "dark", "light", "any")
PRECISIONS = ("auto", "float32", "bfloat16")  # the learned layers' arithmetic at inference
# the fields a checkpoint's weights were trained with; overriding one is an error
ARCHITECTURE = (
    "spectrum.k",
    "spectrum.connectivity",
    "spectrum.sigma",
    "spectrum.sigma_scale",
    "spectrum.floor",
    "attention.qk_init",
    "attention.kernel",
    "attention.features",
    "attention.learnable",
    "attention.tied",
    "attention.softmax_scale",
    "stack.layers",
    "stack.width",
    "stack.heads",
    "stack.self_attention",
    "stack.stride",
    "stack.stem_width",
    "stack.stem_dilations",
)


def check_range(name: str, value, low: float, high: float, integer: bool = False) -> None:
    """The one numeric-option check: the right type, finite, and within [low, high]."""
    kind = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kind)
    if not (ok and math.isfinite(value) and low <= value <= high):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} in [{low:g}, {high:g}], got {value!r}")


LR_INTERVALS = ("epoch", "step")  # when a training run's scheduler steps (module.lr_interval)


def check_lr_interval(value) -> str:
    """module.lr_interval: the scheduler steps once an epoch, or once an optimizer step."""
    if value not in LR_INTERVALS:
        raise ValueError(f"module.lr_interval must be one of {LR_INTERVALS}, got {value!r}")
    return value


def _positive(name: str, value, integer: bool = False, high: float = 1e6) -> None:
    """check_range for options that must be above zero (the smallest integer is 1)."""
    check_range(name, value, 1 if integer else 1e-12, high, integer)


@dataclass
class SpectrumConfig:
    """How an image becomes a graph and its k lowest eigenpairs."""

    k: int = 16  # eigenpairs per image
    eigensolver: str = "auto"  # auto | dense | arpack | chebyshev
    connectivity: int = 4  # 4 or 8 neighbours
    sigma: float | None = None  # colour scale of the edge weights; null: adaptive
    sigma_scale: float = 1.0  # adaptive sigma = sigma_scale x RMS neighbour difference
    floor: float = FLOOR  # least edge weight: low modes on regions, not specks (graph.py)
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
        if self.connectivity not in (4, 8):
            raise ValueError(f"spectrum.connectivity must be 4 or 8, got {self.connectivity!r}")
        if self.sigma is not None:
            _positive("spectrum.sigma", self.sigma, high=100.0)
        _positive("spectrum.sigma_scale", self.sigma_scale, high=100.0)
        check_range("spectrum.floor", self.floor, 0.0, 0.5)

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
            floor=self.floor,
        )


@dataclass
class AttentionConfig:
    """Tokens, the matching head's Q/K projections and the attention kernel."""

    qk_init: str = (
        "fmap"  # identity (the seed's baseline) | fmap | descriptor | patch | random | learned
    )
    kernel: str = "linear"  # linear (low rank, full resolution) | softmax (exact, chunked)
    features: list[str] | None = None  # token features; null: the qk_init's own
    learnable: bool | None = None  # null: only qk_init=learned trains
    tied: bool = False  # one projection for both sides (W_k = W_q): a learned metric
    softmax_scale: float = 10.0  # initial temperature of the cosine scores (softmax kernel)
    threshold: float = 0.2  # activation threshold of gates and seeds
    chunk: int = 4096  # softmax query chunk
    max_keys: int | None = 1024  # evidence: keys kept (strongest boundary pixels); null: all
    # levels of an image pyramid the pair is scored at, outside training, where the tokens
    # are the stem's alone and the kernel softmax (cosine scores): 1 the working size; 2 also
    # half of it; 3 a quarter too; each more halves again (the levels' cosines averaged); a
    # level where either image's smaller side would be under 32 px is left out
    pyramid: int = 3

    def __post_init__(self):
        if self.qk_init not in QK_INITS:
            raise ValueError(f"unknown qk_init {self.qk_init!r}; choose one of {QK_INITS}")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {self.kernel!r}; choose one of {KERNELS}")
        if self.features is not None:
            self.features = sorted(self.features, key=lambda kind: kind != "stem")  # stem first
            unknown = sorted(set(self.features) - set(FEATURES))
            if unknown or not self.features:
                raise ValueError(f"unknown token features {unknown}; choose from {FEATURES}")
        if self.qk_init in ("identity", "fmap") and self.token_features != ("evecs",):
            raise ValueError(
                f"qk_init={self.qk_init!r} works on raw eigenvectors: features=['evecs']"
            )
        _positive("attention.softmax_scale", self.softmax_scale, high=1000.0)
        _positive("attention.chunk", self.chunk, integer=True, high=2**20)
        check_range("attention.threshold", self.threshold, 0.0, 2.0)  # over 1: no copies
        if self.max_keys is not None:
            _positive("attention.max_keys", self.max_keys, integer=True, high=2**24)
        _positive("attention.pyramid", self.pyramid, integer=True, high=4)

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
class StackConfig:
    """The learned stack between the tokens and the head: stream layers in order ('s' along
    each image's own graph, 'x' across the pair; spectral_resnet.stack) and the conv stem
    that the 'stem' token feature runs."""

    layers: str = ""  # e.g. "sxsx"; "": the tokens go straight to the head
    width: int = 64  # token width inside the layers
    heads: int = 4
    # what an 's' layer mixes with: spectral (Phi g(Lambda) Phi^T along the image's graph) or
    # positional (linear self-attention over tokens with a 2-D position code: the control)
    self_attention: str = "spectral"
    stride: int = 1  # the layers run on a grid this many times coarser (1: every token)
    stem_width: int = 64  # channels of the conv stem ('stem' in attention.features)
    stem_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])

    def __post_init__(self):
        if not isinstance(self.layers, str) or set(self.layers) - set(LAYERS):
            raise ValueError(
                f"stack.layers must be a string of {tuple(LAYERS)} (s: spectral self-attention, "
                f"x: cross-attention), got {self.layers!r}"
            )
        if self.self_attention not in MIXERS:
            raise ValueError(
                f"stack.self_attention must be one of {tuple(MIXERS)}, got {self.self_attention!r}"
            )
        _positive("stack.width", self.width, integer=True, high=4096)
        _positive("stack.heads", self.heads, integer=True, high=64)
        _positive("stack.stride", self.stride, integer=True, high=16)
        if self.width % self.heads:
            raise ValueError(
                f"stack.width={self.width} must be a multiple of stack.heads={self.heads}"
            )
        _positive("stack.stem_width", self.stem_width, integer=True, high=4096)
        self.stem_dilations = list(self.stem_dilations)
        if not self.stem_dilations:
            raise ValueError("stack.stem_dilations must name at least one layer, e.g. [1, 2, 4, 8]")
        for d in self.stem_dilations:
            check_range("stack.stem_dilations", d, 1, 64, integer=True)

    @property
    def learned(self) -> bool:
        return bool(self.layers)


@dataclass
class PasteConfig:
    """Segment paste ('c'): seeds, component choice, placement. Lengths are fractions of the
    target's long side, so the defaults suit any image size."""

    seeds: int = 4  # seeds per paste block
    max_pastes: int = 6  # most pastes of one run, over all paste blocks (strongest seeds first)
    nms_radius: float = 0.08  # seed spacing
    radius: float = 1.0  # locality gate radius
    reach: float = 0.25  # how far a paste may move toward empty space
    # a paste with no room at full size is tried down to this scale (of its size once fitted
    # to the target's frame: a shape larger than the target is first shrunk to fit it)
    min_scale: float = 0.5
    rotation: Any = 90.0  # degrees, or "align" (principal axis along the target's lines)
    ink: str = "auto"  # the foreground: auto (minority side, per image) | dark | light | any
    min_area: int = 12  # smallest sample component (and transferred fragment) kept, pixels

    def __post_init__(self):
        # each seed holds full-size masks: 64 keeps a phone photo's run within memory
        _positive("paste.seeds", self.seeds, integer=True, high=MAX_SEEDS)
        _positive("paste.max_pastes", self.max_pastes, integer=True, high=4 * MAX_SEEDS)
        _positive("paste.nms_radius", self.nms_radius, high=1.0)
        _positive("paste.radius", self.radius, high=100.0)
        _positive("paste.reach", self.reach, high=1.0)
        _positive("paste.min_scale", self.min_scale, high=1.0)
        if self.rotation != "align":
            try:
                check_range("paste.rotation", self.rotation, -360.0, 360.0)
            except ValueError:
                raise ValueError(
                    f"paste.rotation must be degrees in [-360, 360] or 'align', "
                    f"got {self.rotation!r}"
                ) from None
        if self.ink not in INKS:
            raise ValueError(f"paste.ink must be one of {INKS}, got {self.ink!r}")
        _positive("paste.min_area", self.min_area, integer=True, high=2**24)


@dataclass
class ShadingConfig:
    """The shading ops: thicken ('t') and shadow ('h')."""

    thicken_time: float = 2.0  # heat-kernel dilation time
    shadow_offset: list[int] = field(default_factory=lambda: [3, 3])  # (dy, dx) pixels
    shadow_darkness: float = 0.5  # 0: no shadow, 1: black

    def __post_init__(self):
        # t = 200 is a Gaussian of sigma 20 px: far past a visible thickening
        check_range("shading.thicken_time", self.thicken_time, 0.0, 200.0)
        offset = list(self.shadow_offset)
        if len(offset) != 2:
            raise ValueError(f"shading.shadow_offset must be [dy, dx], got {offset!r}")
        for value in offset:
            check_range("shading.shadow_offset", value, -256, 256, integer=True)
        check_range("shading.shadow_darkness", self.shadow_darkness, 0.0, 1.0)


@dataclass
class ViewConfig:
    """The turns and zooms of the sample a stem model also tries (spectral_resnet.views): per
    pair it keeps the most confident, compared at `size` px. Models without the 'stem'
    feature ignore them (their oriented patches are rotation-invariant already)."""

    angles: list[float] = field(default_factory=lambda: [float(a) for a in range(-45, 46, 15)])
    scales: list[float] = field(default_factory=lambda: [0.75, 0.87, 1.0, 1.15, 1.33])
    size: int = 64  # long side (px) of the copies the views are compared at

    def __post_init__(self):
        if not list(self.angles) or not list(self.scales):
            raise ValueError(
                "views.angles and views.scales need a value each, e.g. [0.0] and [1.0]"
            )
        for a in self.angles:
            check_range("views.angles", a, -360.0, 360.0)
        for s in self.scales:
            check_range("views.scales", s, 0.25, 4.0)
        self.angles, self.scales = [float(a) for a in self.angles], [float(s) for s in self.scales]
        check_range("views.size", self.size, 8, MAX_WORK_SIZE, integer=True)


@dataclass
class ShaderConfig:
    """The whole shader: a pattern of block letters and the options of each part."""

    pattern: str = "cccc"  # block letters, see spectral_resnet.blocks.BLOCKS
    # long side (px) the spectra and attention run at; larger images are area-downsampled for
    # them (pastes stay full resolution). 256 keeps softmax attention at 65k^2 scores and the
    # patch tokens near the scale they were trained at; null: full resolution
    work_size: int | None = 256
    refresh_target: bool = False  # recompute the target's spectrum between blocks
    # the learned layers' arithmetic at inference (training and the spectra are float32);
    # auto: bfloat16 on a device with native bf16 units (docs/design.md, "Precision")
    precision: str = "auto"
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    paste: PasteConfig = field(default_factory=PasteConfig)
    shading: ShadingConfig = field(default_factory=ShadingConfig)

    def __post_init__(self):
        for name, kind in (
            ("spectrum", SpectrumConfig),
            ("attention", AttentionConfig),
            ("stack", StackConfig),
            ("views", ViewConfig),
            ("paste", PasteConfig),
            ("shading", ShadingConfig),
        ):  # plain dicts (from a checkpoint) become their dataclass
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, kind(**value))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.work_size is not None:
            check_range("work_size", self.work_size, 2, MAX_WORK_SIZE, integer=True)
        learned = set(self.attention.token_features) & set(LEARNED_FEATURES)
        if (self.stack.layers or learned) and self.attention.qk_init != "learned":
            raise ValueError(
                f"stack.layers={self.stack.layers!r} and the 'stem' feature are learned: they "
                f"need attention.qk_init=learned, not {self.attention.qk_init!r}"
            )

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


DIRECTIONS = ("forward", "reverse", "both")


def _threads(threads) -> None:
    if threads is not None:
        check_range("threads", threads, 1, 1024, integer=True)


@dataclass
class InferConfig:
    """`python infer.py`: what to shade, where the pictures go, and on what."""

    model: ShaderConfig = field(default_factory=ShaderConfig)
    target: str | None = None  # null: the bundled demo pair, assets/toof.png ...; a folder: batch
    # ... and assets/tone.png; a folder: paired with target's by name; a file beside a target
    # folder: the one sample of every target in it
    sample: str | None = None
    # grey or alpha images (white / opaque: allowed), each following its image: as the target,
    # where pastes may land; as the sample, which shapes may be taken. A folder in batch mode:
    # one mask per image, by the image's name
    target_mask: str | None = None
    sample_mask: str | None = None
    pairs: str | None = None  # batch mode from a CSV of target,sample rows (paths relative to it)
    num_workers: int = 0  # batch mode: dataloader workers that read images and warm spectra
    strict: bool = False  # batch mode: exit 2 if any pair fails (default: only if all do)
    direction: str = "both"  # forward (paste sample onto target), reverse (the other way), both
    # shipped weights by name (spectral_resnet.weights: default, stack, stem, linear; a hand init given
    # as model.attention.qk_init=... skips them); a train.py checkpoint path; or null: the
    # configured model as it is
    ckpt: str | None = "default"
    output_dir: str | None = None  # null: Hydra's run dir, outputs/infer/<time>
    device: str = "cpu"  # cpu | cuda | cuda:N
    max_pixels: int = 4096 * 4096  # decompression-bomb guard (pixels per input image)
    threads: int | None = None  # torch CPU threads; null: torch's default
    # direction=both on a Linux CPU with 2 or 3 threads: the reverse runs on one of them, in
    # a process forked beside the forward (spectral_resnet.directions)
    parallel: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        check_range("num_workers", self.num_workers, 0, 64, integer=True)
        check_range("max_pixels", self.max_pixels, 2, 2**31, integer=True)
        _threads(self.threads)


@dataclass
class EvalConfig:
    """`python -m spectral_resnet.eval`: which pairs, which metrics, where the table goes."""

    model: ShaderConfig = field(default_factory=ShaderConfig)
    ckpt: str | None = "default"  # the learned row: shipped weights by name, a checkpoint, or null
    sets: Any = "all"  # or a list of names from spectral_resnet.eval.SETS
    pairs: int = 24  # pairs per warped set
    seed: int = 2000  # seed of the held-out pairs
    pairs_dir: str | None = None  # a folder with a/, b/, flow/ instead of the sets
    segments: int = 6  # k-means segments of the sample for the mIoU
    json: str | None = None  # also write the results here
    metrics: list[str] = field(default_factory=lambda: ["pck@0.05", "miou"])  # a table each
    # further checkpoints, each a row by its name: e.g. an ablation, {no_spectral: PATH}
    checkpoints: Any = None
    methods: list[str] | None = None  # only these rows (names as in the table); null: all
    progress: bool = True
    threads: int | None = 2  # torch CPU threads

    def __post_init__(self):
        check_range("pairs", self.pairs, 1, 100_000, integer=True)
        check_range("segments", self.segments, 2, 64, integer=True)
        named = self.checkpoints or {}
        if not isinstance(named, dict) or not all(isinstance(v, str) for v in named.values()):
            raise ValueError(f"checkpoints must be {{name: path, ...}}, got {self.checkpoints!r}")
        _threads(self.threads)


@dataclass
class TrainConfig:
    """`python train.py`: the run's own options; the groups (data, trainer, ...) are Hydra's
    configs of the classes they instantiate, checked when they are built."""

    model: ShaderConfig = field(default_factory=ShaderConfig)
    data: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    optim: Any = None
    module: Any = None
    seed: int = 0
    ckpt_path: str | None = None  # resume from this Lightning checkpoint (train.py's last.ckpt)
    # start a new run from these weights (a shipped name, e.g. stem, or a checkpoint): the
    # weights both models share are copied, layers the source lacks start as identities
    init_from: str | None = None
    optimized_metric: str = "val/pck@0.05"
    test: bool = True  # run the test split after fitting
    threads: int | None = None  # torch CPU threads per process; null: torch's default
    # also save the best model (config + weights) here; a shipped name (default, stack): its file
    export: str | None = None
    output_dir: str = "${hydra:runtime.output_dir}"

    def __post_init__(self):
        _threads(self.threads)


ConfigStore.instance().store(group="model", name="shader", node=ShaderConfig)
ConfigStore.instance().store(name="infer_options", node=InferConfig)
ConfigStore.instance().store(name="eval_options", node=EvalConfig)
ConfigStore.instance().store(name="train_options", node=TrainConfig)
