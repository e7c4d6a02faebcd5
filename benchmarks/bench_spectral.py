"""Eigensolver benchmark: seconds, residuals and subspace error, as a ratio against plain
scipy ARPACK shift-invert (`eigsh(L, k, sigma=-1e-5)`) measured in the same process.

    python benchmarks/bench_spectral.py                      # 128^2, 256^2, 512^2; k = 12, 16, 32
    python benchmarks/bench_spectral.py --sizes 512 --ks 16 --images camera photo.png
    python benchmarks/bench_spectral.py --localisation        # old graph beside new, held-out photos
    python benchmarks/bench_spectral.py --localisation --pck  # ... and fmap / descriptor PCK@0.05
    python benchmarks/bench_spectral.py --pck --sets "real 128 rot 20"  # the PCK table alone

--localisation: each held-out photo (the test and val splits, never trained on) at the
default working size (256 px long side), k = 16, on the graph without a weight floor
(1e-6, the old graph) and with the default floor: the share of each non-constant mode's
squared mass on its top 1% of pixels (median over the modes; near 1: specks), the
eigensolver's seconds and worst residual, and the ratio of the solve times in this run.
--pck: PCK@0.05 of the `fmap` and `descriptor` hand inits on the real rotated evaluation
sets (spectral_resnet.eval.SETS, 24 pairs each; `--sets` picks others) on both graphs.

Images: `scene` (procedural), the name of a bundled real photo (`camera`: the grey man
with a camera; `coffee`, ...), or a path.
"""

from __future__ import annotations

import argparse
import time

import torch

from spectral_resnet.data.procedural import scene
from spectral_resnet.io import load_image
from spectral_resnet.spectral import compute_spectrum, eigenpairs, grid_laplacian
from spectral_resnet.spectral.graph import FLOOR

GRAPHS = (("no floor (old)", 1e-6), (f"floor {FLOOR} (default)", FLOOR))
PCK_SETS = (
    "real 64 rot 20",
    "real 64 rot 45",
    "real 128 rot 20",
    "real 128 rot 45",
    "real 64 rot 0",
)

# (label, method, options); the first row is the reference every ratio divides by
SOLVERS = [
    ("scipy eigsh (reference)", "arpack", {"ordering": "scipy", "shift": -1e-5, "tol": 0.0}),
    ("arpack, MMD factor", "arpack", {"ordering": "mmd"}),
    ("arpack, nested dissection", "arpack", {"ordering": "nested_dissection"}),
    ("chebyshev (torch)", "chebyshev", {}),
]


def subspace_sine(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = torch.linalg.svdvals(a.T @ b).min().clamp(max=1.0)
    return float((1 - cos**2).clamp_min(0).sqrt())


def image_for(size: int, name: str) -> torch.Tensor:
    if name == "scene":
        return scene((size, size), seed=0)
    from spectral_resnet.data.real import PHOTOS, data_dir

    img = load_image(data_dir() / PHOTOS[name][0] if name in PHOTOS else name)
    return torch.nn.functional.interpolate(img[None], (size, size), mode="area")[0]


def held_out_photos(size: int = 256) -> dict[str, torch.Tensor]:
    """The test and val photos, area-resized so the long side is `size` (the working size)."""
    from spectral_resnet.data.real import PHOTOS, SPLITS, data_dir
    from spectral_resnet.model import resize, work_shape

    photos = {}
    for name in (*SPLITS["test"], *SPLITS["val"]):
        img = load_image(data_dir() / PHOTOS[name][0])
        photos[name] = resize(img[None], work_shape(img.shape[-2:], size))[0]
    return photos


def localisation_table(k: int) -> None:
    """Top-1% mass, seconds and residuals per held-out photo, old graph beside new."""
    photos = held_out_photos()
    print(
        "| photo | size | graph | top-1% mass (median of modes) | worst mode | seconds | residual |"
    )
    print("|---|---|---|---|---|---|---|")
    modes = {label: [] for label, _ in GRAPHS}
    seconds = {label: 0.0 for label, _ in GRAPHS}
    worst = {label: 0.0 for label, _ in GRAPHS}
    for name, image in photos.items():
        for label, floor in GRAPHS:
            spectrum = compute_spectrum(image, k=k, cache=False, floor=floor)
            mass = spectrum.localisation()
            modes[label].append(mass)
            seconds[label] += spectrum.seconds
            worst[label] = max(worst[label], float(mass.median()))
            print(
                f"| {name} | {image.shape[-1]}x{image.shape[-2]} | {label} | {mass.median():.3f} "
                f"| {mass.max():.3f} | {spectrum.seconds:.2f} | {spectrum.residuals.max():.1e} |",
                flush=True,
            )
    print("\n| graph | median over every mode | worst photo | eigensolver s (all photos) |")
    print("|---|---|---|---|")
    for label, _ in GRAPHS:
        every = torch.cat(modes[label])
        print(f"| {label} | {every.median():.3f} | {worst[label]:.3f} | {seconds[label]:.2f} |")
    (old, _), (new, _) = GRAPHS
    print(f"\neigensolver time, new / old graph, same run: {seconds[new] / seconds[old]:.2f}")


def pck_table(pairs: int, sets: list[str]) -> None:
    """PCK@0.05 of the fmap and descriptor hand inits on the real sets, on both graphs."""
    from spectral_resnet import AttentionConfig, ShaderConfig, SpectralShader, SpectrumConfig
    from spectral_resnet.eval import evaluate, set_pairs, shader_matcher

    print(
        "\n| set | " + " | ".join(f"{i} ({g})" for g, _ in GRAPHS for i in ("fmap", "descriptor"))
    )
    print("|---|" + "---|" * 2 * len(GRAPHS))
    for name in sets:
        cells = []
        for _, floor in GRAPHS:
            methods = {}
            for init in ("fmap", "descriptor"):
                config = ShaderConfig(
                    pattern="x",
                    spectrum=SpectrumConfig(floor=floor),
                    attention=AttentionConfig(qk_init=init, kernel="softmax"),
                )
                methods[init] = shader_matcher(SpectralShader(config).eval())
            result = evaluate(methods, set_pairs(name, pairs, 2000))
            cells += [f"{result[m]['pck@0.05']:.3f}" for m in ("fmap", "descriptor")]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--ks", type=int, nargs="+", default=[12, 16, 32])
    parser.add_argument("--images", nargs="+", default=["scene", "camera"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--chebyshev-max-n", type=int, default=128 * 128, help="skip the torch solver above this"
    )
    parser.add_argument("--device", default="cpu", help="device for the chebyshev solver")
    parser.add_argument("--localisation", action="store_true", help="old graph beside new")
    parser.add_argument("--pck", action="store_true", help="--localisation and hand-init PCK")
    parser.add_argument("--pairs", type=int, default=24, help="pairs per set for --pck")
    parser.add_argument("--sets", nargs="+", default=list(PCK_SETS), help="sets for --pck")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.localisation:
        localisation_table(16)
    if args.localisation or args.pck:
        if args.pck:
            pck_table(args.pairs, args.sets)
        return

    print("| image | size | k | method | seconds | max residual | subspace sine | ratio vs scipy |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size in ((n, s) for n in args.images for s in args.sizes):
        op = grid_laplacian(image_for(size, name).double())
        for k in args.ks:
            ref_time, ref_vecs = None, None
            for label, method, options in SOLVERS:
                if method == "chebyshev" and op.n > args.chebyshev_max_n:
                    continue
                solve_op = op
                if method == "chebyshev" and args.device != "cpu":
                    solve_op = grid_laplacian(image_for(size, name).double().to(args.device))
                start = time.perf_counter()
                pairs = eigenpairs(solve_op, k, method, check=None, **options)
                if solve_op.device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                vecs = pairs.evecs.cpu()
                if ref_time is None:
                    ref_time, ref_vecs = seconds, vecs
                sine = subspace_sine(vecs, ref_vecs)
                print(
                    f"| {name} | {size}² | {k} | {label} | {seconds:.2f} | {pairs.residuals.max():.1e} "
                    f"| {sine:.1e} | {seconds / ref_time:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
