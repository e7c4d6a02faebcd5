"""SpectralShader: a pattern string -> a stack of spectral residual blocks; ShaderOutput."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet import segments, shading
from spectral_resnet.attention import INVARIANT_FEATURES, QK_INITS, feature_dim, token_features
from spectral_resnet.blocks import (
    Annihilate,
    BlockOutput,
    PairContext,
    Shadow,
    SpectralResBlock,
    Thicken,
)
from spectral_resnet.fmap import aligned_sample_basis
from spectral_resnet.spectral import Spectrum, compute_spectrum
from spectral_resnet.spectral.graph import check_image, grid_laplacian

BLOCK_LETTERS = {
    "c": "cross",  # cross-attention block: copy from the sample
    "s": "self",  # self-attention block: smooth along the target's own graph
    "t": "thicken",  # heat-kernel dilation of the active ink
    "h": "shadow",  # drop shadow under what the previous block pasted
    "f": "fuzz",  # fuzz annihilator: revert specks of transferred content
}
DEFAULT_FEATURES = {
    "identity": ("evecs",),
    "fmap": ("evecs",),
    "descriptor": ("hks", "wks"),
    "random": INVARIANT_FEATURES,
    "learned": INVARIANT_FEATURES,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this model; the message names the mismatch."""


@dataclass
class ShaderOutput:
    """The shaded image and what every block did."""

    image: Tensor  # (B, 3, H, W) in [0, 1]
    activations: list[Tensor] = field(default_factory=list)  # per block (B, 1, H, W)
    gates: list[Tensor] = field(default_factory=list)  # per block (B, 1, H, W)
    retrieved: list[Tensor] = field(default_factory=list)  # per block (B, 3, H, W)
    seeds: list[Tensor | None] = field(default_factory=list)  # per block (B, S, 2) or None
    masks: list[Tensor | None] = field(default_factory=list)  # per block (B, S, H, W) or None
    components: list[Tensor | None] = field(default_factory=list)  # per block (B, S) labels
    placements: list[Tensor | None] = field(default_factory=list)  # per block (B, S, 5)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: spectra, attention, ...
    residuals: dict[str, float] = field(default_factory=dict)  # worst ||Lv - lambda v||


def work_shape(shape: tuple[int, int], work_size: int | None) -> tuple[int, int]:
    """(H, W) scaled so the long side is at most work_size (aspect kept)."""
    h, w = shape
    if work_size is None or max(h, w) <= work_size:
        return h, w
    s = work_size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def check_pattern(pattern: str, letters) -> str:
    """A non-empty string of known block letters, or a ValueError naming the bad ones."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(
            f"pattern must be a non-empty string of {sorted(letters)}, got {pattern!r}"
        )
    bad = sorted(set(pattern) - set(letters))
    if bad:
        raise ValueError(
            f"unknown pattern letter(s) {bad} in {pattern!r}; known: "
            + ", ".join(f"{k}={v}" for k, v in letters.items())
        )
    return pattern


class SpectralShader(nn.Module):
    """Copies structure from a sample onto a target through a stack of spectral residual blocks.

    shader = SpectralShader(pattern="cccc", qk_init="fmap", kernel="linear", k=16)
    out = shader(target, sample)        # (B, 3, H, W) tensors in [0, 1]; out.image
    """

    def __init__(
        self,
        *,
        pattern: str = "cccc",
        qk_init: str = "fmap",
        kernel: str = "linear",
        k: int = 16,
        learnable: bool | None = None,
        features: tuple[str, ...] | None = None,
        eigensolver: str = "auto",
        connectivity: int = 4,
        sigma: float | None = None,
        sigma_scale: float = 1.0,
        work_size: int | None = None,
        chunk: int = 4096,
        max_keys: int | None = None,
        hidden: int = 32,
        gate_bias: float = 2.0,
        threshold: float = 0.2,
        softmax_scale: float = 10.0,
        refresh_target: bool = False,
        cache: bool = True,
        retrieval: str = "segments",
        seeds: int = 4,
        nms_radius: float = 0.08,
        radius: float = 1.0,
        reach: float = 0.25,
        rotation: float | str = 90.0,
        ink: str = "dark",
        min_area: int = 12,
        thicken_time: float = 2.0,
        shadow_offset: tuple[int, int] = (3, 3),
        shadow_darkness: float = 0.5,
    ):
        super().__init__()
        self.pattern = check_pattern(pattern, BLOCK_LETTERS)
        if qk_init not in QK_INITS:
            raise ValueError(f"unknown qk_init {qk_init!r}; choose one of {QK_INITS}")
        if not isinstance(k, int) or k < 2:
            raise ValueError(f"k must be an integer >= 2, got {k!r}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive (or None for adaptive), got {sigma}")
        self.qk_init, self.kernel, self.k = qk_init, kernel, k
        self.features = tuple(features) if features is not None else DEFAULT_FEATURES[qk_init]
        if qk_init in ("identity", "fmap") and self.features != ("evecs",):
            raise ValueError(f"qk_init={qk_init!r} works on raw eigenvectors: features=('evecs',)")
        self.learnable = (qk_init == "learned") if learnable is None else learnable
        self.eigensolver, self.work_size = eigensolver, work_size
        self.graph_options = dict(connectivity=connectivity, sigma=sigma, sigma_scale=sigma_scale)
        self.refresh_target, self.cache = refresh_target, cache
        self.ink, self.min_area = ink, min_area
        self.needs_components = retrieval == "segments" and "c" in self.pattern
        block_options = dict(
            dim=feature_dim(self.features, k),
            qk_init=qk_init,
            learnable=self.learnable,
            kernel=kernel,
            scale=softmax_scale if kernel == "softmax" else 1.0,
            chunk=chunk,
            max_keys=max_keys,
            hidden=hidden,
            gate_bias=gate_bias,
            threshold=threshold,
            retrieval=retrieval,
            seeds=seeds,
            nms_radius=nms_radius,
            radius=radius,
            reach=reach,
            rotation=rotation,
            ink=ink,
        )
        makers = {
            "c": lambda: SpectralResBlock(mode="cross", **block_options),
            "s": lambda: SpectralResBlock(mode="self", **block_options),
            "t": lambda: Thicken(time=thicken_time, threshold=threshold, ink=ink),
            "h": lambda: Shadow(offset=shadow_offset, darkness=shadow_darkness),
            "f": lambda: Annihilate(min_area=min_area),
        }
        self.blocks = nn.ModuleList(makers[letter]() for letter in self.pattern)

    # ------------------------------------------------------------------ spectra and tokens

    def spectrum(self, image: Tensor) -> Spectrum:
        """Spectrum of one (3, h, w) image, cached; float32 on the image's device."""
        spec = compute_spectrum(
            image.detach(),
            k=self.k,
            method=self.eigensolver,
            cache=self.cache,
            **self.graph_options,
        )
        return spec.to(image.device, torch.float32)

    def context(self, target: Tensor, sample: Tensor, timings: dict) -> tuple[PairContext, dict]:
        """Spectra (cached) and tokens of a (target, sample) batch at the working resolution."""
        t_shape = work_shape(target.shape[-2:], self.work_size)
        s_shape = work_shape(sample.shape[-2:], self.work_size)
        t_img = (
            F.interpolate(target, size=t_shape, mode="area")
            if t_shape != target.shape[-2:]
            else target
        )
        s_img = (
            F.interpolate(sample, size=s_shape, mode="area")
            if s_shape != sample.shape[-2:]
            else sample
        )
        start = time.perf_counter()
        t_specs = [self.spectrum(img) for img in t_img]
        s_specs = [self.spectrum(img) for img in s_img]
        timings["spectra"] = timings.get("spectra", 0.0) + time.perf_counter() - start
        timings["eigensolve"] = timings.get("eigensolve", 0.0) + sum(
            s.seconds for s in t_specs + s_specs
        )
        f_t, f_s = [], []
        for ts, ss, ti, si in zip(t_specs, s_specs, t_img, s_img):
            f_t.append(token_features(ts, ti, self.features))
            if self.qk_init == "fmap":
                f_s.append(aligned_sample_basis(ss, ts, si, ti).float())
            else:
                f_s.append(token_features(ss, si, self.features))
        sample_values = torch.cat(
            [s_img.flatten(2), torch.stack([s.boundary for s in s_specs])[:, None]], 1
        ).transpose(1, 2)
        ctx = PairContext(
            f_t=torch.stack(f_t),
            f_s=torch.stack(f_s),
            sample_values=sample_values,
            target_boundary=torch.stack([s.boundary for s in t_specs]),
            sample_boundary=torch.stack([s.boundary for s in s_specs]),
            work_shape=tuple(t_shape),
            sample_shape=tuple(s_shape),
            target=target,
            sample=sample,
            sample_labels=self.sample_components(sample) if self.needs_components else None,
        )
        residuals = {
            "target": max(float(s.residuals.max()) for s in t_specs),
            "sample": max(float(s.residuals.max()) for s in s_specs),
        }
        return ctx, residuals

    def sample_components(self, sample: Tensor) -> Tensor:
        """Ink components of each sample (B, H_s, W_s): strokes split from their halo by
        cutting weak graph edges, specks annihilated. One component = one paste."""
        op = grid_laplacian(sample, connectivity=8)
        ink = shading.ink_mask(sample, op.boundary_strength(), ink=self.ink)
        labels = []
        for i in range(sample.shape[0]):
            weights = [w[i] for w in op.weights]
            raw = segments.components(ink[i], connectivity=8, edge_weights=weights, min_weight=0.5)
            labels.append(segments.annihilate_fuzz(raw, min_area=self.min_area))
        return torch.stack(labels)

    @staticmethod
    def check_pair(target: Tensor, sample: Tensor) -> tuple[Tensor, Tensor]:
        target, sample = check_image(target), check_image(sample)
        for name, img in (("target", target), ("sample", sample)):
            if img.shape[1] != 3:
                raise ValueError(f"{name} must have 3 channels (RGB), got {img.shape[1]}")
        if target.shape[0] != sample.shape[0]:
            raise ValueError(
                f"batch sizes differ: target {target.shape[0]}, sample {sample.shape[0]}"
            )
        return target, sample

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        target: Tensor,
        sample: Tensor,
        progress=None,
        start: Tensor | None = None,
        context: PairContext | None = None,
    ) -> ShaderOutput:
        """target (B, 3, H, W), sample (B, 3, H_s, W_s) in [0, 1] -> ShaderOutput.

        start: the residual stream's initial value (default: the target itself); training
        starts from a degraded target so the blocks must restore it from the sample.
        progress: called with the block index after each block (progress bars).
        context: a PairContext from `self.context(target, sample, ...)`, to reuse it.
        """
        target, sample = self.check_pair(target, sample)
        began = time.perf_counter()
        timings: dict[str, float] = {}
        if context is None:
            ctx, residuals = self.context(target, sample, timings)
        else:
            ctx, residuals = context, {}
            timings.update(spectra=0.0, eigensolve=0.0)
        out = ShaderOutput(image=target, timings=timings, residuals=residuals)
        h = target if start is None else start  # (B, 3, H, W) residual stream
        attention_time, info, used = 0.0, None, None
        for i, block in enumerate(self.blocks):
            if i > 0 and self.refresh_target:  # the target changed: re-embed it
                ctx, _ = self.context(h.clamp(0, 1), sample, timings)
                ctx.target = target
            ctx.used_seeds = used
            t0 = time.perf_counter()
            h, info = block(h, ctx, info)
            if info.seeds is not None:
                used = info.seeds if used is None else torch.cat([used, info.seeds], 1)
            attention_time += time.perf_counter() - t0
            self._record(out, info)
            if progress is not None:
                progress(i)
        out.image = h.clamp(0, 1)
        timings["blocks"] = attention_time
        timings["total"] = time.perf_counter() - began
        timings["rest"] = timings["total"] - timings["spectra"] - attention_time
        return out

    @staticmethod
    def _record(out: ShaderOutput, info: BlockOutput) -> None:
        out.activations.append(info.activation)
        out.gates.append(info.gate)
        out.retrieved.append(info.retrieved)
        out.seeds.append(info.seeds)
        out.masks.append(info.masks)
        out.components.append(info.components)
        out.placements.append(info.placements)

    def load_checkpoint(self, path: str | Path) -> None:
        """Load learned weights from a train.py (Lightning) checkpoint, with strict key checks."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} not found")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file") from None
        state = blob.get("state_dict") if isinstance(blob, dict) else None
        if not isinstance(state, dict):
            raise CheckpointError(
                f"checkpoint {path} has no state_dict; expected one from train.py"
            )
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or reshaped:
            parts = [
                f"{label} {keys[:3]}{'...' if len(keys) > 3 else ''}"
                for label, keys in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape", reshaped),
                )
                if keys
            ]
            raise CheckpointError(
                f"checkpoint {path} was trained for another architecture than pattern="
                f"{self.pattern!r}, qk_init={self.qk_init!r}, k={self.k}: {'; '.join(parts)}. "
                "Pass the model options it was trained with."
            )
        self.load_state_dict(state, strict=True)

    @torch.no_grad()
    def match(self, target: Tensor, sample: Tensor) -> Tensor:
        """For every target pixel, the (x, y) sample pixel of its attention argmax in the first
        cross block: (B, H_t, W_t, 2), in full-resolution sample coordinates."""
        target, sample = self.check_pair(target, sample)
        blocks = [b for b in self.blocks if getattr(b, "mode", None) == "cross"]
        if not blocks:
            raise ValueError(f"pattern {self.pattern!r} has no cross block to match with")
        ctx, _ = self.context(target, sample, {})
        block = blocks[0]
        q, k = block.qk(ctx.f_t, ctx.f_s)
        index = block.attention.argmax(q, k, block.qk.scale)  # (B, n_t)
        hs, ws = ctx.sample_shape
        xy = torch.stack([index % ws, index // ws], -1).float()  # (B, n_t, 2) work-res sample
        scale = torch.tensor([sample.shape[-1] / ws, sample.shape[-2] / hs], device=xy.device)
        xy = (xy + 0.5) * scale - 0.5
        h, w = ctx.work_shape
        grid = xy.reshape(-1, h, w, 2)
        if (h, w) != tuple(target.shape[-2:]):
            grid = F.interpolate(grid.permute(0, 3, 1, 2), size=target.shape[-2:], mode="nearest")
            grid = grid.permute(0, 2, 3, 1)
        return grid
