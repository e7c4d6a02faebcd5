"""Eigensolver benchmark: seconds, residuals and subspace error, as a ratio against plain
scipy ARPACK shift-invert (`eigsh(L, k, sigma=-1e-5)`) measured in the same process.

    python benchmarks/bench_spectral.py                      # 128^2, 256^2, 512^2; k = 12, 16, 32
    python benchmarks/bench_spectral.py --sizes 512 --ks 16 --images camera photo.png

Images: `scene` (procedural), the name of a bundled real photo (`camera`: the grey man
with a camera; `coffee`, ...), or a path.
"""

from __future__ import annotations

import argparse
import time

import torch

from spectral_resnet.data.procedural import scene
from spectral_resnet.io import load_image
from spectral_resnet.spectral import eigenpairs, grid_laplacian

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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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
