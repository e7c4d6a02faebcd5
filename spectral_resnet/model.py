"""SpectralShader: a ShaderConfig -> a stack of residual blocks; ShaderOutput; checkpoints."""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet import segments, shading
from spectral_resnet.attention import ProjectedAttention, QKProjection, SpectralAttention
from spectral_resnet.blocks import BLOCKS
from spectral_resnet.config import ARCHITECTURE, LEARNED_FEATURES, ShaderConfig
from spectral_resnet.context import BlockOutput, PairContext
from spectral_resnet.fmap import aligned_sample_basis
from spectral_resnet.io import write_atomic
from spectral_resnet.paste import PasteReport
from spectral_resnet.spectral import Spectrum
from spectral_resnet.spectral.graph import check_image
from spectral_resnet.stack import ConvStem, ImageGraphs, PairGraphs, Stack, coarse_shape, upsampled
from spectral_resnet.tokens import feature_dim, patch_columns, token_features
from spectral_resnet.views import View, ViewSearch, crops, pull_back, render, shown
from spectral_resnet.weights import checkpoint_path

CHECKPOINT_FORMAT = 2  # 2: encoder, stack and head; format 1 held one Q/K and soft RGB blocks
RANGE_SLACK = 1e-3  # rounding past [0, 1] that an image may carry (a resampled copy's overshoot)
BLOCK_LETTERS = {letter: block.__name__ for letter, block in BLOCKS.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this model; the message names the mismatch."""


@dataclass
class ShaderOutput:
    """The shaded image and what every block did."""

    image: Tensor  # (B, 3, H, W) in [0, 1]
    blocks: list[BlockOutput] = field(default_factory=list)  # one record per block
    timings: dict[str, float] = field(default_factory=dict)  # seconds: spectra, blocks, ...
    residuals: dict[str, float] = field(default_factory=dict)  # worst ||Lv - lambda v||
    views: list[tuple[float, float]] | None = None  # per pair, the sample's (angle, scale)

    @property
    def activations(self) -> list[Tensor]:
        """Per block (B, 1, H, W)."""
        return [b.activation for b in self.blocks]

    @property
    def pastes(self) -> list[PasteReport]:
        """The reports of the paste ('c') ops, in order."""
        return [b.paste for b in self.blocks if b.paste is not None]

    @property
    def seeds(self) -> Tensor | None:
        """Every paste block's seeds (B, S_total, 2) (y, x), -1 unused; None without pastes."""
        return torch.cat([b.seeds for b in self.pastes], 1) if self.pastes else None

    @property
    def masks(self) -> Tensor | None:
        """Every paste block's placed component masks (B, S_total, H, W); None without pastes.
        A copy: full-size pictures read `pastes[i].masks` block by block."""
        return torch.cat([b.masks for b in self.pastes], 1) if self.pastes else None


def work_shape(shape: tuple[int, int], work_size: int | None) -> tuple[int, int]:
    """(H, W) scaled so the long side is at most work_size (aspect kept)."""
    h, w = shape
    if work_size is None or max(h, w) <= work_size:
        return h, w
    s = work_size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def index_to_xy(index: Tensor, width: int) -> Tensor:
    """Flat pixel indices (...) of a width-`width` image -> (..., 2) float (x, y)."""
    return torch.stack([index % width, index // width], -1).float()


PYRAMID_MIN_SIDE = 32  # px: a coarser pyramid level than this sees too little to score
CPU_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's
VIEW_BATCH = 8  # most views encoded at once: 1.6x faster than one by one, and than 35 at once


def worst_residual(spectra: list[Spectrum]) -> float | None:
    """The largest ||L v - lambda v|| over spectra that carry their residuals (None: none do)."""
    known = [float(s.residuals.max()) for s in spectra if s.residuals is not None]
    return max(known, default=None)


def check_pattern(pattern: str) -> str:
    """A non-empty string of known block letters, or a ValueError naming the bad ones."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be a non-empty string of {sorted(BLOCKS)}, got {pattern!r}")
    bad = sorted(set(pattern) - set(BLOCKS))
    if bad:
        raise ValueError(
            f"unknown pattern letter(s) {bad} in {pattern!r}; known: "
            + ", ".join(f"{k}={v}" for k, v in BLOCK_LETTERS.items())
        )
    return pattern


def native_bfloat16(device: torch.device) -> bool:
    """Whether the device has bf16 arithmetic units (AVX512-BF16 or AMX on a CPU; Ampere and
    later on CUDA): there bf16 runs the learned layers faster; elsewhere it is emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, bool)() for probe in CPU_BF16_PROBES)  # absent: False
    return False


def resize(image: Tensor, shape: tuple[int, int]) -> Tensor:
    """Area-downsample (B, C, H, W) to `shape`, or return it as it is."""
    return F.interpolate(image, size=shape, mode="area") if shape != image.shape[-2:] else image


def working_spectrum(config: ShaderConfig, image: Tensor) -> Spectrum:
    """The spectrum the shader uses for one image (3, H, W): of its working-resolution copy,
    through the cache. Dataloader workers call it to warm the cache for the model."""
    small = resize(image[None], work_shape(image.shape[-2:], config.work_size))[0]
    return config.spectrum.compute(small.detach())


def check_mask(mask: Tensor | None, image: Tensor, name: str) -> Tensor | None:
    """A mask for `image` (B, 3, H, W) as (B, 1, H, W) bool (True: allowed): given as
    (H, W), (1 or B, H, W) or (1 or B, 1, H, W), bool or values in [0, 1] (>= 0.5 allows)."""
    if mask is None:
        return None
    b, _, height, width = image.shape
    m = torch.as_tensor(mask, device=image.device)
    m = m[None, None] if m.dim() == 2 else m[:, None] if m.dim() == 3 else m
    if (
        m.dim() != 4
        or m.shape[1] != 1
        or m.shape[0] not in (1, b)
        or m.shape[-2:] != (height, width)
    ):
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)}; it must cover the image, "
            f"(H, W) = ({height}, {width}), one channel"
        )
    if m.dtype != torch.bool:
        m = m.float()
        if float(m.min()) < 0 or float(m.max()) > 1:
            raise ValueError(f"{name} values must be in [0, 1] (or bool)")
        m = m >= 0.5
    return m.expand(b, 1, height, width)


class ImageMemo:
    """What was computed from the last few images (ink masks, ink components): a pair shaded
    both ways needs each image's ink twice (as target, as sample), a folder shaded with one
    sample needs its components once per frame, and at phone size each costs a second. An
    entry holds its image, so no other tensor can take its memory (and its key) while it is
    kept; an in-place change bumps the tensor's version, so it misses."""

    def __init__(self, size: int = 8):
        self.size, self.entries = size, OrderedDict()

    def __call__(self, image: Tensor, what: tuple, compute: Callable[[], Tensor]) -> Tensor:
        """`compute()`, the result for `image` and `what` (what it is, and its options)."""
        if image.is_inference():  # no version counter to key on (Lightning's test loop)
            return compute()
        key = (image.data_ptr(), image.shape, image.stride(), image.dtype, image.device)
        key += (image._version, *what)
        if key not in self.entries:
            self.entries[key] = (image, compute())
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        return self.entries[key][1]

    def ink(self, image: Tensor, ink: str) -> Tensor:
        """`shading.ink_mask(image, ink)`, (B, H, W) bool."""
        return self(image, ("ink", ink), lambda: shading.ink_mask(image, ink=ink))


class SpectralShader(nn.Module):
    """Copies structure from a sample onto a target: encoder -> stack -> head -> image ops.

    shader = SpectralShader(ShaderConfig(pattern="cccc"))
    out = shader(target, sample)        # (B, 3, H, W) tensors in [0, 1]; out.image

    The encoder turns each image into tokens (hand-made features of its spectrum and pixels,
    and a learned conv stem); the stack's layers refine both token streams; the head's Q/K
    projections score target tokens against sample tokens. The image ops of the pattern
    ('c' pastes, 't', 'h', 'f') read that one attention, so a checkpoint drives any pattern.
    """

    def __init__(self, config: ShaderConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else ShaderConfig()
        self.pattern = check_pattern(config.pattern)
        a, st = config.attention, config.stack
        self.features = a.token_features
        self.hand_features = tuple(f for f in self.features if f not in LEARNED_FEATURES)
        self.stem = None
        if "stem" in self.features:
            self.stem = ConvStem(width=st.stem_width, dilations=tuple(st.stem_dilations))
        dim = feature_dim(self.features, config.spectrum.k, st.stem_width)
        self.stack = None
        if st.layers:
            self.stack = Stack(
                layers=st.layers,
                dim=dim,
                width=st.width,
                heads=st.heads,
                mixer=st.self_attention,
                stride=st.stride,
            )
        raw = a.qk_init in ("identity", "fmap")  # the seed's low-rank form on eigenvectors
        scale = a.softmax_scale if a.kernel == "softmax" else 1.0
        kernel = dict(kernel=a.kernel, chunk=a.chunk, max_keys=a.max_keys)
        # the head starts as patch matching on the tokens (W = I on the patch columns), or as
        # plain cosine scores (W = I) on the stack's features
        patch = (
            None if self.stack else patch_columns(self.features, config.spectrum.k, st.stem_width)
        )
        self.qk = QKProjection(
            dim=st.width if self.stack else dim,
            init=a.qk_init,
            learnable=a.trains,
            scale=scale,
            patch=patch,
            tied=a.tied,
        )
        # a positive (averaging) feature map for tokens whose raw products are not a
        # transfer of functions; the raw form for eigenvector bases
        self.cross_kernel = SpectralAttention(**kernel, positive=a.kernel == "linear" and not raw)
        self.blocks = nn.ModuleList(BLOCKS[letter](config) for letter in self.pattern)
        self.memo = ImageMemo()

    # ------------------------------------------------------------------ spectra and context

    def spectrum(self, image: Tensor) -> Spectrum:
        """Spectrum of one (3, h, w) image, cached; float32 on the image's device (solved in
        float64, which autocast leaves alone)."""
        return self.config.spectrum.compute(image.detach()).to(image.device, torch.float32)

    def arithmetic(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Where the learned layers run: in bfloat16 at inference when `precision` asks for
        it (auto: where the device has bf16 units), 1.4-1.7x faster on such a CPU
        (benchmarks/bench_precision.py); in float32 in training."""
        precision = self.config.precision
        bf16 = precision == "bfloat16" or (precision == "auto" and native_bfloat16(device))
        if self.training or not bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def pair_context(
        self,
        target: Tensor,
        sample: Tensor,
        stats: dict | None = None,
        ops: bool = True,
        target_mask: Tensor | None = None,
        sample_mask: Tensor | None = None,
        views: list[View] | None = None,
    ) -> PairContext:
        """Spectra (cached), tokens and projected attention of a (target, sample) batch at the
        working resolution. stats, if given, collects timings and eigensolver residuals;
        ops=False leaves out what only the image ops read (boundaries, ink, components), and
        the spectra too where the tokens and the stack do not read them: training, match().
        Masks (B, 1, H, W) bool, checked (`check_mask`): where pastes may land, and which
        sample components may be taken. views: each sample's view where it is known
        (training on warped pairs); a stem model searches for them otherwise."""
        stats = {} if stats is None else stats
        t_img = resize(target, work_shape(target.shape[-2:], self.config.work_size))
        s_img = resize(sample, work_shape(sample.shape[-2:], self.config.work_size))
        t_specs = s_specs = None
        if ops or self.reads_spectra:  # a stem-only model trains without a single eigensolve
            start = time.perf_counter()
            t_specs = [self.spectrum(img) for img in t_img]
            s_specs = [self.spectrum(img) for img in s_img]
            stats["spectra"] = stats.get("spectra", 0.0) + time.perf_counter() - start
            stats["eigensolve"] = stats.get("eigensolve", 0.0) + sum(
                s.seconds for s in t_specs + s_specs
            )
            stats["residuals"] = {
                "target": worst_residual(t_specs),
                "sample": worst_residual(s_specs),
            }
        graphs = None  # what 's' layers run along; an 'x'-only stack reads none
        if t_specs is not None and "s" in self.config.stack.layers:
            graphs = PairGraphs(ImageGraphs.of(t_specs), ImageGraphs.of(s_specs))
        with self.arithmetic(t_img.device):
            views = self.choose_views(t_img, s_img) if views is None else views
            q, k = self.head_rows(t_img, s_img, t_specs, s_specs, graphs, views)
            q, k = self.pyramid(q, k, t_img, s_img, graphs, views)
        q, k = q.float(), k.float()  # the attention and the image ops read float32 rows
        stats["views"] = [(v.angle, v.scale) for v in views] if views else None
        pastes = ops and "c" in self.pattern
        boundary = dict.fromkeys(("sample_values", "target_boundary", "sample_boundary"))
        if ops:
            s_boundary = torch.stack([s.boundary for s in s_specs])  # (B, n_s)
            boundary = dict(
                sample_values=torch.cat([s_img.flatten(2), s_boundary[:, None]], 1).transpose(1, 2),
                target_boundary=torch.stack([s.boundary for s in t_specs]),
                sample_boundary=s_boundary,
            )
        return PairContext(
            cross=ProjectedAttention(q, k, self.qk.scale, self.cross_kernel),
            **boundary,
            work_shape=tuple(t_img.shape[-2:]),
            sample_shape=tuple(s_img.shape[-2:]),
            target=target,
            sample=sample,
            sample_labels=self.sample_components(sample, sample_mask) if pastes else None,
            target_ink=self.memo.ink(target, self.config.paste.ink)[:, None] if pastes else None,
            target_allowed=target_mask,
            sample_allowed=sample_mask,
        )

    def head_rows(
        self,
        t_img: Tensor,
        s_img: Tensor,
        t_specs: list[Spectrum] | None,
        s_specs: list[Spectrum] | None,
        graphs: PairGraphs | None,
        views: list[View] | None,
    ) -> tuple[Tensor, Tensor]:
        """One pyramid level's Q (B, n_t, d) and K (B, n_s, d): both images' tokens, the
        stack's layers and the head's projections."""
        f_t = self.encode(t_img, t_specs)  # (B, n_t, d)
        if self.config.attention.qk_init == "fmap":  # sample basis carried into the target's
            f_s = torch.stack(
                [
                    aligned_sample_basis(ss, ts, si, ti).float()
                    for ss, ts, si, ti in zip(s_specs, t_specs, s_img, t_img)
                ]
            )
        else:
            f_s = self.encode(s_img, s_specs, views)  # (B, n_s, d)
        return self.qk(*self.refine(f_t, f_s, graphs, (t_img.shape[-2:], s_img.shape[-2:])))

    def refine(
        self,
        f_t: Tensor,
        f_s: Tensor,
        graphs: PairGraphs | None,
        shapes: tuple[tuple[int, int], tuple[int, int]],
    ) -> tuple[Tensor, Tensor]:
        """The stack's layers on both token streams (tokens as they are without a stack);
        graphs: the two images' graphs on their token grids (None where no 's' layer reads
        them); shapes: the two token grids' (h, w)."""
        if self.stack is None:
            return f_t, f_s
        return self.stack(f_t, f_s, graphs, shapes)

    def pyramid(
        self,
        q: Tensor,
        k: Tensor,
        target: Tensor,
        sample: Tensor,
        graphs: PairGraphs | None,
        views: list[View] | None,
    ) -> tuple[Tensor, Tensor]:
        """Q (B, n_t, d) and K (B, n_s, d) of working-size images, with each coarser level of
        `attention.pyramid` appended: the pair again at half the size (and half again), its
        graphs pooled (no eigensolve), the sample in the same view, its unit rows upsampled
        onto the working grid: (B, n, d * levels). The head's cosine is then the mean of the
        levels' cosines, and a level twice as coarse sees twice the context through the same
        stem (docs/eval.md, "A pyramid head"). A training step reads the working level
        alone; validation, in eval mode, reads the pyramid as inference does. Hand-made
        tokens and the linear kernel, whose scores are not cosines, read one level."""
        a = self.config.attention
        if a.pyramid == 1 or self.training or self.hand_features or a.kernel != "softmax":
            return q, k
        shapes = (tuple(target.shape[-2:]), tuple(sample.shape[-2:]))
        qs, ks = [F.normalize(q, dim=-1)], [F.normalize(k, dim=-1)]
        for level in range(1, a.pyramid):
            small = [coarse_shape(shape, 2**level) for shape in shapes]
            if min(min(shape) for shape in small) < PYRAMID_MIN_SIDE:
                break
            t_img, s_img = resize(target, small[0]), resize(sample, small[1])
            coarse = None if graphs is None else graphs.pooled(2**level)
            q_c, k_c = self.head_rows(t_img, s_img, None, None, coarse, views)  # (B, n', d)
            qs.append(F.normalize(upsampled(q_c, small[0], shapes[0]), dim=-1))
            ks.append(F.normalize(upsampled(k_c, small[1], shapes[1]), dim=-1))
        if len(qs) == 1:
            return q, k
        return torch.cat(qs, -1), torch.cat(ks, -1)

    @torch.no_grad()
    def choose_views(self, target: Tensor, sample: Tensor) -> list[View] | None:
        """Per pair, the view of the sample (config.views) whose matches are most confident:
        the best mean, over a grid of target pixels, of each one's top score, compared at
        views.size px and searched coarse to fine (ViewSearch). The scores read the tokens
        without the layers (`unmixed`): the stem is local, so a place the view's frame cuts
        off only drops out of them, and the layers chose no better views on the held-out
        sets at 3.6x the cost (docs/eval.md). None (the sample as it is) in training and for
        models without a stem."""
        config = self.config.views
        search = ViewSearch.of(config.angles, config.scales)
        if self.stem is None or self.training or len(search) == 1:
            return None
        t = resize(target, work_shape(target.shape[-2:], config.size))
        s = resize(sample, work_shape(sample.shape[-2:], config.size))
        t_specs = s_specs = None
        if self.hand_features:  # tokens that read the spectra
            t_specs, s_specs = [self.spectrum(i) for i in t], [self.spectrum(i) for i in s]
        tokens_t = self.unmixed(self.encode(t, t_specs))  # (B, n, d)
        n = tokens_t.shape[1]
        queries = torch.arange(0, n, max(1, n // 256), device=t.device)

        def confidence(i: int, views: list[View]) -> Tensor:
            """Mean top score of pair i's queries under each view, (V,), in even batches."""
            scores = []
            step = math.ceil(len(views) / math.ceil(len(views) / VIEW_BATCH))  # 9: 5 + 4
            for j in range(0, len(views), step):
                batch = views[j : j + step]
                specs_s = None if s_specs is None else [s_specs[i]] * len(batch)
                image = s[i : i + 1].expand(len(batch), -1, -1, -1)
                f_s = self.unmixed(self.encode(image, specs_s, batch, whole=False))  # (V', n_s, d)
                f_t = tokens_t[i : i + 1].expand(len(batch), -1, -1)  # (V', n, d)
                cross = ProjectedAttention(*self.qk(f_t, f_s), self.qk.scale, self.cross_kernel)
                index = queries.expand(len(batch), -1)
                scores.append(cross.logits(index).amax(-1).mean(-1))  # (V',)
            return torch.cat(scores)

        best = []
        for i in range(len(t)):  # two indices per pair read to the host, one per round
            tried = search.first()
            scores = confidence(i, tried)
            finer = search.around(tried[int(scores.argmax())])
            if finer:
                tried, scores = tried + finer, torch.cat([scores, confidence(i, finer)])
            best.append(tried[int(scores.argmax())])  # the first (identity) wins ties
        return best

    def unmixed(self, tokens: Tensor) -> Tensor:
        """Tokens (B, n, d) as the matching head reads them without the stack's layers."""
        return tokens if self.stack is None else self.stack.unmixed(tokens)

    @property
    def reads_spectra(self) -> bool:
        """Whether the tokens or the stack read the images' spectra (the image ops always do)."""
        a = self.config.attention
        return (
            bool(self.hand_features)
            or a.qk_init in ("identity", "fmap")
            or "s" in self.config.stack.layers
        )

    def encode(
        self,
        images: Tensor,
        spectra: list[Spectrum] | None,
        views: list[View] | None = None,
        whole: bool = True,
    ) -> Tensor:
        """Tokens of working-resolution images (B, 3, h, w): the stem's, then the hand-made
        features', (B, h w, d). views: per image, the view its stem features are taken
        under, pulled back onto its own pixels (None: as it is). whole=False leaves the
        places a view's frame cuts off blank, and saves the second stem pass that fills them."""
        parts = []
        if self.stem is not None and (views is None or all(v.identity for v in views)):
            parts.append(self.stem(images.float()))
        elif self.stem is not None:  # one stem pass over the batch, each image in its view
            # in the image's own frame, as a warped copy shows it (the stem's norms see what
            # they saw in training); the places the frame cuts off, from the whole view
            shape = images.shape[-2:]
            maps = pull_back(self.stem.maps(render(images.float(), views)), views, shape)
            if whole and crops(views, shape):
                rest = pull_back(self.stem.maps(render(images.float(), views, True)), views, shape)
                kept = shown(views, shape, len(images), images.device)[:, None]  # (B, 1, h, w)
                maps = torch.where(kept, maps, rest)
            parts.append(maps.flatten(2).transpose(1, 2))
        if self.hand_features:
            hand = [token_features(s, img, self.hand_features) for s, img in zip(spectra, images)]
            parts.append(torch.stack(hand))
        return torch.cat(parts, -1)

    def sample_components(self, sample: Tensor, allowed: Tensor | None = None) -> Tensor:
        """Ink components of each sample (B, H_s, W_s), specks annihilated: one component =
        one shape = one paste. allowed (B, 1, H_s, W_s) bool, the sample_mask: a component
        stays a candidate when at least half of it lies where the mask allows."""
        paste = self.config.paste
        labels = self.memo(
            sample,
            ("components", paste.ink, paste.min_area),
            lambda: shading.ink_components(
                self.memo.ink(sample, paste.ink), min_area=paste.min_area
            ),
        )
        return labels if allowed is None else segments.keep_components(labels, allowed[:, 0])

    @staticmethod
    def check_pair(target: Tensor, sample: Tensor) -> tuple[Tensor, Tensor]:
        """Both images as float32 (B, 3, H, W): any float dtype (numpy's float64, half,
        bfloat16) is converted, and values outside [0, 1] (0..255 pixels) are refused."""
        checked = []
        for name, img in (("target", target), ("sample", sample)):
            img = check_image(img)
            if img.shape[1] != 3:
                raise ValueError(f"{name} must have 3 channels (RGB), got {img.shape[1]}")
            img = img.float()
            low, high = (float(v) for v in img.aminmax())
            if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
                raise ValueError(
                    f"{name} values span [{low:g}, {high:g}], the shader takes images in [0, 1]"
                    + ("; divide 0..255 pixels by 255" if high > 1.5 else "; clamp them")
                )
            checked.append(img)
        target, sample = checked
        if target.shape[0] != sample.shape[0]:
            raise ValueError(
                f"batch sizes differ: target {target.shape[0]}, sample {sample.shape[0]}"
            )
        return target, sample

    # ------------------------------------------------------------------ forward and match

    def forward(
        self,
        target: Tensor,
        sample: Tensor,
        progress=None,
        context: PairContext | None = None,
        target_mask: Tensor | None = None,
        sample_mask: Tensor | None = None,
    ) -> ShaderOutput:
        """target (B, 3, H, W), sample (B, 3, H_s, W_s) in [0, 1] -> ShaderOutput.

        progress: called with the block index after each block (progress bars).
        context: a PairContext from `self.pair_context(target, sample)`, to reuse it.
        target_mask: (B, 1, H, W) (or (H, W)), bool or [0, 1]: where the ops may change the
            target (pastes land only there); sample_mask: which sample components may be
            taken (those at least half inside it). None: everywhere.
        """
        target, sample = self.check_pair(target, sample)
        target_mask = check_mask(target_mask, target, "target_mask")
        sample_mask = check_mask(sample_mask, sample, "sample_mask")
        masks = dict(target_mask=target_mask, sample_mask=sample_mask)
        began = time.perf_counter()
        stats: dict = {"spectra": 0.0, "eigensolve": 0.0, "residuals": {}, "views": None}
        ctx = context if context is not None else self.pair_context(target, sample, stats, **masks)
        device, ctx = target.device, ctx.on_host()  # the image ops are data-dependent: host
        h = ctx.target  # (B, 3, H, W) the image the ops shade
        record: BlockOutput | None = None
        records, block_time = [], 0.0
        for i, block in enumerate(self.blocks):
            if i > 0 and self.config.refresh_target:  # the target changed: re-embed it
                ctx = self.pair_context(h.clamp(0, 1).to(device), sample, stats, **masks)
                ctx = replace(ctx, target=target).on_host()
            t0 = time.perf_counter()
            h, record = block(h, ctx, record)
            block_time += time.perf_counter() - t0
            records.append(record)
            if progress is not None:
                progress(i)
        if ctx.target_allowed is not None:  # whatever an op changed outside the mask goes back
            h = torch.where(ctx.target_allowed, h, ctx.target)
        h = h.to(device)
        total = time.perf_counter() - began
        timings = dict(spectra=stats["spectra"], eigensolve=stats["eigensolve"])
        timings.update(blocks=block_time, total=total, rest=total - stats["spectra"] - block_time)
        return ShaderOutput(h.clamp(0, 1), records, timings, stats["residuals"], stats["views"])

    @torch.no_grad()
    def match(self, target: Tensor, sample: Tensor) -> Tensor:
        """For every target pixel, the (x, y) sample pixel of its cross-attention argmax:
        (B, H_t, W_t, 2), in full-resolution sample coordinates, at any input size."""
        target, sample = self.check_pair(target, sample)
        ctx = self.pair_context(target, sample, ops=False)
        index = ctx.cross.argmax()  # (B, n_t)
        hs, ws = ctx.sample_shape
        xy = index_to_xy(index, ws)  # (B, n_t, 2) work-resolution sample (x, y)
        scale = torch.tensor([sample.shape[-1] / ws, sample.shape[-2] / hs], device=xy.device)
        grid = ((xy + 0.5) * scale - 0.5).reshape(-1, *ctx.work_shape, 2)
        if tuple(ctx.work_shape) != tuple(target.shape[-2:]):
            grid = F.interpolate(grid.permute(0, 3, 1, 2), size=target.shape[-2:], mode="nearest")
            grid = grid.permute(0, 2, 3, 1)
        return grid

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | Path) -> Path:
        """Write the config and the weights (kilobytes), atomically: what from_checkpoint reads."""
        path = Path(path)
        blob = {"format": CHECKPOINT_FORMAT, "shader_config": self.config.to_dict()}
        blob["state_dict"] = self.state_dict()
        buffer = io.BytesIO()
        torch.save(blob, buffer)
        return write_atomic(buffer.getvalue(), path)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, config: ShaderConfig | None = None, overrides=()
    ) -> SpectralShader:
        """Rebuild the model a checkpoint (train.py's, or `save()`'s) was trained with.

        config: runtime options to use instead of the checkpoint's (pattern, work_size,
        paste, ...); its ARCHITECTURE fields are replaced by the checkpoint's. overrides:
        the dotted option names the caller set explicitly: an architecture option among
        them that differs from the checkpoint's value is a CheckpointError.
        """
        saved, state = read_checkpoint(path)
        if config is None:
            config = saved
        else:
            merged = config.to_dict()
            for name in ARCHITECTURE:
                group, key = name.split(".")
                value = saved.get(name)
                if name in overrides and config.get(name) != value:
                    raise CheckpointError(
                        f"model.{name}={config.get(name)!r} changes the architecture of checkpoint "
                        f"{path} (trained with {name}={value!r}); drop the override or retrain"
                    )
                merged[group][key] = value
            config = ShaderConfig.from_dict(merged)
        model = cls(config)
        model.load_weights(state, path)
        return model

    @classmethod
    def from_pretrained(
        cls, name: str = "default", config: ShaderConfig | None = None, overrides=()
    ) -> SpectralShader:
        """The shipped weights called `name` (spectral_resnet.weights: "default", "linear",
        "stem"), checked against their sha256; config and overrides as in from_checkpoint."""
        return cls.from_checkpoint(checkpoint_path(name), config, overrides)

    def warm_start(self, path: str | Path) -> list[str]:
        """Start from another model's weights (train.py's init_from): every weight both models
        have, in the same shape, is copied; the stack's layers the source lacks start as
        identities (Stack.pass_through), so training grows depth on what already matches.
        Returns the names copied; a CheckpointError when the two share nothing."""
        _, state = read_checkpoint(path)
        own = self.state_dict()
        shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if all(v.numel() == 1 for v in shared.values()):  # a temperature alone is no start
            raise CheckpointError(
                f"init_from={path} shares no weights with this model (its architecture differs: "
                "compare stack.stem_width, stack.width and attention.features)"
            )
        self.load_state_dict(shared, strict=False)
        if self.stack is not None:  # a layer not copied whole starts as an identity
            fresh = [
                i
                for i, layer in enumerate(self.stack.layers)
                if any(f"stack.layers.{i}.{name}" not in shared for name in layer.state_dict())
            ]
            self.stack.pass_through(fresh, embed="stack.embed.weight" not in shared)
        return sorted(shared)

    def load_weights(self, state: dict[str, Tensor], path) -> None:
        """Load a checkpoint's weights: every weight this model has must be in it, in shape."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        reshaped = sorted(k for k in own if k in state and own[k].shape != state[k].shape)
        if missing or reshaped:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: missing {missing[:3]}, "
                f"wrong shape {reshaped[:3]}"
            )
        self.load_state_dict({k: state[k] for k in own}, strict=True)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file's contents, unpickled safely (weights only) and holding a state_dict;
    one-line CheckpointError else."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass the .ckpt file in it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # torch's note on a raw pickle's protocol: ours says it
            warnings.simplefilter("ignore", UserWarning)
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} has no state_dict; expected one from train.py")
    return blob


def read_checkpoint(
    path: str | Path, blob: dict | None = None
) -> tuple[ShaderConfig, dict[str, Tensor]]:
    """A checkpoint's ShaderConfig and model weights, checked; one-line CheckpointError else.
    blob: `load_checkpoint(path)`'s contents, when the caller has read them already."""
    path = Path(path)
    blob = load_checkpoint(path) if blob is None else blob
    if not isinstance(blob.get("shader_config"), dict):
        raise CheckpointError(
            f"checkpoint {path} carries no shader_config (written by an older version); retrain it"
        )
    if blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is format {blob.get('format', 1)}, from before the learned "
            f"stack (this version reads format {CHECKPOINT_FORMAT}); retrain it with train.py"
        )
    saved = blob["shader_config"]
    try:
        config = ShaderConfig.from_dict(saved)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid shader_config: {err}") from None
    state = blob["state_dict"]
    if any(k.startswith("model.") for k in state):  # a Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"checkpoint {path} has non-finite weights ({bad[0]}): the run diverged; "
            "use an earlier checkpoint or retrain with a lower learning rate"
        )
    return config, state
