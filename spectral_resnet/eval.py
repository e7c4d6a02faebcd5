"""Correspondence evaluation: one table, spectral methods side by side with non-spectral
baselines, so the spectral machinery has to earn its keep.

    python -m spectral_resnet.eval ckpt=outputs/train/.../checkpoints/best.ckpt
    python -m spectral_resnet.eval pairs_dir=my_pairs     # a/NAME.png, b/NAME.png, flow/NAME.npy

A Hydra app composing the same `model` config as train.py and infer.py (configs/eval.yaml);
a checkpoint brings its own model config, so no model flags are needed.

Metrics on valid target pixels: PCK@0.01/0.05/0.1 (argmax match within alpha * max(H, W)
of the truth), end-point error, and segment-transfer mIoU (k-means segments of the sample
on colour + position, carried to the target through the match, compared with the labels
at the true positions), and component retrieval: for target ink pixels whose true match
lies on a sample ink component, is the component the method picks the true one? (The
shader picks as a paste does, by its attention row's mean over each component; a matcher
by the component under its match; "random component" is the expected accuracy of a
uniform pick, 1 / components.) flow/NAME.npy is (H, W, 2): for every pixel of a/NAME, the (x, y)
of its match in b/NAME; NaN where there is none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from spectral_resnet.cli import (
    UsageError,
    check_options,
    check_output_file,
    launch,
    set_threads,
    shader_config,
    write_json,
)
from spectral_resnet.data.pairs import SyntheticPairs
from spectral_resnet.data.real import photo_files, stereo_pair
from spectral_resnet.fmap import descriptor_functions
from spectral_resnet.io import load_image
from spectral_resnet.lit import PCK_ALPHAS
from spectral_resnet.model import CheckpointError, SpectralShader, index_to_xy
from spectral_resnet.segments import component_scores
from spectral_resnet.shading import ink_components, ink_mask
from spectral_resnet.spectral import compute_spectrum
from spectral_resnet.weights import checkpoint_path

RANDOM = "random component"
Matcher = Callable[[Tensor, Tensor], Tensor]  # (1,3,H,W), (1,3,Hs,Ws) -> (1,H,W,2) sample (x, y)


def nearest_neighbour(feat_t: Tensor, feat_s: Tensor, shape_s: tuple[int, int], chunk=2048):
    """For each target feature (n_t, d), the (x, y) of its Euclidean nearest sample feature."""
    ws = shape_s[1]
    idx = torch.cat(
        [torch.cdist(feat_t[i : i + chunk], feat_s).argmin(1) for i in range(0, len(feat_t), chunk)]
    )
    return index_to_xy(idx, ws)


def colour_nn(target: Tensor, sample: Tensor) -> Tensor:
    """Non-spectral baseline: nearest neighbour in RGB."""
    h, w = target.shape[-2:]
    xy = nearest_neighbour(target[0].flatten(1).T, sample[0].flatten(1).T, sample.shape[-2:])
    return xy.view(1, h, w, 2)


def patch_nn(target: Tensor, sample: Tensor, size: int = 7) -> Tensor:
    """The strongest plain baseline: nearest neighbour of size x size colour patches (SSD,
    reflect padding), the data term of PatchMatch and SIFT flow."""
    h, w = target.shape[-2:]

    def patches(img: Tensor) -> Tensor:
        padded = F.pad(img, (size // 2,) * 4, mode="reflect")
        return F.unfold(padded, size)[0].T  # (n, 3 size^2)

    return nearest_neighbour(patches(target), patches(sample), sample.shape[-2:]).view(1, h, w, 2)


def descriptor_nn(target: Tensor, sample: Tensor, k: int = 16) -> Tensor:
    """Baseline: nearest neighbour on [HKS, WKS, colour] (each column unit RMS)."""
    h, w = target.shape[-2:]
    feats = [
        descriptor_functions(compute_spectrum(img[0], k=k), img[0]).float()
        for img in (target, sample)
    ]
    xy = nearest_neighbour(feats[0], feats[1], sample.shape[-2:])
    return xy.view(1, h, w, 2)


def daisy_nn(target: Tensor, sample: Tensor) -> Tensor:
    """Classical dense baseline: nearest neighbour of scikit-image's DAISY descriptors (grey,
    every pixel, reflect padding so border pixels have one): SIFT-like orientation
    histograms on two rings, built for dense wide-baseline matching. Their radius is an
    eighth of the long side (8 px at 64, 16 at 128; scikit-image's default is 15)."""
    from skimage.feature import daisy

    h, w = target.shape[-2:]
    radius = max(4, round(max(h, w) / 8))

    def describe(img: Tensor) -> Tensor:
        grey = np.pad(img[0].mean(0).double().numpy(), radius, mode="reflect")
        d = daisy(grey, step=1, radius=radius, rings=2, histograms=6, orientations=8)
        return torch.from_numpy(d.reshape(-1, d.shape[-1])).float()  # (H W, 104)

    xy = nearest_neighbour(describe(target), describe(sample), sample.shape[-2:])
    return xy.view(1, h, w, 2)


Picker = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]  # t, s, seeds (n, 2), labels -> (n,)


def shader_matcher(shader: SpectralShader) -> Matcher:
    return lambda target, sample: shader.match(target, sample)


def shader_picker(shader: SpectralShader) -> Picker:
    """The component a paste seeded at each point would take (before the once-a-run rule):
    the best mean of its attention row over the sample's components."""

    def pick(target: Tensor, sample: Tensor, seeds: Tensor, labels: Tensor) -> Tensor:
        ctx = shader.pair_context(target, sample, ops=False)
        if tuple(ctx.work_shape) != tuple(target.shape[-2:]):
            raise ValueError("component retrieval needs pairs within model.work_size")
        index = seeds[:, 0] * ctx.work_shape[1] + seeds[:, 1]
        rows = ctx.cross.rows(index[None]).unflatten(-1, ctx.sample_shape).float()
        return component_scores(rows, labels[None])[0].argmax(-1)

    return pick


def component_seeds(target, sample, flow, valid, count: int = 64, seed: int = 0):
    """The sample's ink components (Hs, Ws), and up to `count` target ink pixels (n, 2) (y, x)
    whose true match lies on one, with that component (n,)."""
    labels = ink_components(ink_mask(sample[None]))[0]
    truth = lookup(labels, flow)  # (H, W)
    points = torch.nonzero(valid & ink_mask(target[None])[0] & (truth > 0))
    keep = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:count]
    points = points[keep.sort().values]
    return labels, points, truth[points[:, 0], points[:, 1]]


def kmeans_segments(image: Tensor, count: int = 6, iters: int = 20) -> Tensor:
    """Segments of a (3, H, W) image by k-means on colour + position: (H, W) labels."""
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.cat([image.reshape(3, -1), 0.5 * torch.stack([ys, xs]).reshape(2, -1)]).T  # (n, 5)
    centres = x[torch.linspace(0, len(x) - 1, count).long()]  # deterministic spread start
    for _ in range(iters):
        labels = torch.cdist(x, centres).argmin(1)
        for c in range(count):
            if (labels == c).any():
                centres[c] = x[labels == c].mean(0)
    return torch.cdist(x, centres).argmin(1).view(h, w)


def lookup(labels: Tensor, xy: Tensor) -> Tensor:
    """Labels (Hs, Ws) at rounded (x, y) points (..., 2)."""
    hs, ws = labels.shape
    x = xy[..., 0].round().long().clamp(0, ws - 1)
    y = xy[..., 1].round().long().clamp(0, hs - 1)
    return labels[y, x]


def pair_metrics(pred: Tensor, flow: Tensor, valid: Tensor, labels: Tensor) -> dict[str, float]:
    """PCK, EPE and segment-transfer mIoU of one pair. pred, flow: (H, W, 2); valid: (H, W)."""
    h, w = valid.shape
    dist = (pred - flow).norm(dim=-1)[valid]
    out = {f"pck@{a}": float((dist <= a * max(h, w)).float().mean()) for a in PCK_ALPHAS}
    out["epe"] = float(dist.mean())
    got, truth = lookup(labels, pred)[valid], lookup(labels, flow)[valid]
    ious = []
    for c in truth.unique():
        inter = ((got == c) & (truth == c)).sum()
        union = ((got == c) | (truth == c)).sum()
        ious.append(float(inter) / float(union))
    out["miou"] = float(np.mean(ious))
    return out


def flow_folder_pairs(root: Path):
    """Yield (target, sample, flow, valid) from a/NAME.png, b/NAME.png, flow/NAME.npy."""
    for flow_file in sorted((root / "flow").glob("*.npy")):
        name = flow_file.stem
        a = next((root / "a").glob(f"{name}.*"), None)
        b = next((root / "b").glob(f"{name}.*"), None)
        if a is None or b is None:
            raise ValueError(f"{flow_file}: missing a/{name}.* or b/{name}.*")
        target, sample = load_image(a), load_image(b)
        flow = torch.from_numpy(np.load(flow_file)).float()
        if flow.shape != (*target.shape[-2:], 2):
            raise ValueError(
                f"{flow_file}: shape {tuple(flow.shape)}, expected (H, W, 2) of a/{name}"
            )
        valid = torch.isfinite(flow).all(-1)
        yield target, sample, torch.nan_to_num(flow), valid


def synthetic_pairs(count: int, size: int, seed: int, **warp):
    """Held-out warped pairs: procedural images, or `files=` photos, with `warp` options."""
    data = SyntheticPairs(size=size, length=count, seed=seed, split="test", **warp)
    for i in range(count):
        item = data[i]
        yield item["target"], item["sample"], item["flow"], item["valid"]


def real_warp(degrees: float, scale: tuple[float, float]) -> dict:
    """A held-out real set: random crops of the test photos, rotated by exactly +-degrees."""
    return dict(
        files=photo_files("test"),
        crop=(0.4, 1.0),
        degrees=degrees,
        fixed_rotation=True,
        scale=scale,
        translate=0.05,
        perspective=0.0,
        elastic=0.0,
        jitter=0.0,
    )


SETS = {  # name: (size, warp); "stereo" is the real pair with its own geometry
    "procedural 64": (64, {}),
    **{
        f"real {size} {name}": (size, real_warp(degrees, scale))
        for size in (64, 128)
        for name, degrees, scale in (
            ("rot 0", 0.0, (0.9, 1.1)),
            ("rot 20", 20.0, (0.9, 1.1)),
            ("rot 45", 45.0, (0.9, 1.1)),
            ("scale 0.8", 0.0, (0.8, 0.8)),
            ("scale 1.25", 0.0, (1.25, 1.25)),
            ("scale 0.75", 0.0, (0.75, 0.75)),
            ("scale 1.33", 0.0, (1.33, 1.33)),
            ("rot 30 scale 0.8", 30.0, (0.8, 0.8)),
        )
    },
    "stereo 96 (motorcycle)": (96, None),
    "drawings 128 rot 20": (
        128,
        dict(drawings=True, degrees=20.0, fixed_rotation=True, perspective=0.0, elastic=0.0),
    ),
}


def set_pairs(name: str, count: int, seed: int):
    """The pairs of one named evaluation set (a name from SETS)."""
    size, warp = SETS[name]
    if warp is None:
        left, right, flow, valid = stereo_pair(size)
        return iter([(left, right, flow, valid)])
    return synthetic_pairs(count, size, seed, **warp)


def evaluate(
    methods: dict[str, Matcher], pairs, segments: int = 6, pickers: dict[str, Picker] | None = None
) -> dict[str, dict[str, float]]:
    """Mean metrics of every method over the pairs. Component retrieval ("component acc")
    counts over the pairs whose sample has two or more ink components."""
    pickers = pickers or {}
    totals: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    picks: dict[str, list[float]] = {name: [] for name in [*methods, RANDOM]}
    for i, (target, sample, flow, valid) in enumerate(pairs):
        if not valid.any():
            continue
        labels = kmeans_segments(sample, segments)
        ink, seeds, truth = component_seeds(target, sample, flow, valid, seed=i)
        scored = len(truth) > 0 and int(ink.max()) >= 2
        if scored:
            picks[RANDOM] += [1 / int(ink.max())] * len(truth)
        for name, match in methods.items():
            with torch.no_grad():
                pred = match(target[None], sample[None])[0]
                totals[name].append(pair_metrics(pred, flow, valid, labels))
                if not scored:
                    continue
                if name in pickers:
                    got = pickers[name](target[None], sample[None], seeds, ink)
                else:  # a matcher picks the component under its match
                    got = lookup(ink, pred[seeds[:, 0], seeds[:, 1]])
            picks[name] += (got == truth).float().tolist()
    out = {
        name: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        for name, rows in totals.items()
        if rows
    }
    for name, hits in picks.items():
        if hits:
            out.setdefault(name, {})["component acc"] = float(np.mean(hits))
    return out


def table(results: dict[str, dict[str, dict[str, float]]], metric: str = "pck@0.05") -> str:
    """One row per set, one column per method: `metric` (best per row in bold; "-" where a
    method has no such figure)."""
    methods = list(dict.fromkeys(m for rows in results.values() for m in rows))
    lines = ["| set | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for name, rows in results.items():
        values = {m: rows[m][metric] for m in methods if metric in rows.get(m, {})}
        if not values:
            continue
        best = max(values.values())
        cells = [
            "-"
            if m not in values
            else f"**{values[m]:.3f}**"
            if values[m] == best
            else f"{values[m]:.3f}"
            for m in methods
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_methods(cfg: DictConfig) -> tuple[dict[str, Matcher], dict[str, Picker]]:
    """The hand inits on the configured model, the checkpoint's model, any further named
    checkpoints (an ablation's rows), and the baselines; and the shaders' component pickers.
    `methods`, when set, keeps only the methods it names."""
    config = shader_config(cfg.model)
    wanted = set(cfg.methods) if cfg.methods else None
    named = dict(cfg.checkpoints or {})
    known = [*HAND_INITS, "learned", *named, *BASELINES]
    unknown = sorted((wanted or set()) - set(known))
    if unknown:
        raise UsageError(f"unknown method(s) {unknown} in methods=; choose from {known}")
    keep = (lambda name: True) if wanted is None else (lambda name: name in wanted)
    methods: dict[str, Matcher] = {}
    pickers: dict[str, Picker] = {}
    for name, init in HAND_INITS.items():
        if keep(name):
            hand = replace(config, attention=replace(config.attention, qk_init=init, features=None))
            shader = SpectralShader(hand).eval()
            methods[name], pickers[name] = shader_matcher(shader), shader_picker(shader)
    checkpoints = {"learned": cfg.ckpt, **named} if cfg.ckpt else named
    for name, ckpt in checkpoints.items():
        if keep(name):
            # the checkpoint's architecture with this run's runtime options (views, work_size)
            shader = SpectralShader.from_checkpoint(checkpoint_path(ckpt), config).eval()
            methods[name], pickers[name] = shader_matcher(shader), shader_picker(shader)
    baselines: dict[str, Matcher] = {
        "colour NN": colour_nn,
        "patch NN (7x7 SSD)": patch_nn,
        "DAISY NN": daisy_nn,
        "descriptor NN (HKS+WKS+colour)": lambda t, s: descriptor_nn(t, s, config.spectrum.k),
    }
    methods.update({name: m for name, m in baselines.items() if keep(name)})
    return methods, pickers


HAND_INITS = {
    "identity (seed baseline)": "identity",
    "fmap": "fmap",
    "descriptor": "descriptor",
    "patch (W = I)": "patch",
}
BASELINES = ("colour NN", "patch NN (7x7 SSD)", "DAISY NN", "descriptor NN (HKS+WKS+colour)")


def run(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Evaluate every method on the configured pairs; print the table, write the JSON."""
    check_options(cfg)
    if cfg.json:  # before the hour of work whose table it keeps
        check_output_file(Path(cfg.json), "json")
    set_threads(cfg.threads)
    methods, pickers = build_methods(cfg)
    if cfg.pairs_dir:
        sets = {str(cfg.pairs_dir): lambda: flow_folder_pairs(Path(cfg.pairs_dir))}
    else:
        names = list(SETS) if cfg.sets == "all" else list(cfg.sets)
        unknown = [name for name in names if name not in SETS]
        if unknown:  # before any work
            raise ValueError(f"unknown evaluation set(s) {unknown}; choose from {list(SETS)}")
        sets = {name: (lambda n=name: set_pairs(n, cfg.pairs, cfg.seed)) for name in names}
    results = {}
    for name, pairs in tqdm(sets.items(), desc="eval", unit="set", disable=not cfg.progress):
        results[name] = evaluate(methods, pairs(), cfg.segments, pickers)
    for metric in cfg.metrics:
        print(f"\n{metric}\n" + table(results, metric))
    if cfg.json:
        write_json(results, Path(cfg.json))
    return results


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (UsageError, CheckpointError, ValueError) as err:
        print(f"eval: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    launch("eval", main, "eval")
