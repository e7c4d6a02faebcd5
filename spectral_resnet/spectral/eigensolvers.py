"""The k lowest eigenpairs of a grid Laplacian, behind one call: `eigenpairs(op, k, method=...)`.

Methods
- dense:     torch.linalg.eigh on the assembled matrix; the reference for small n.
- arpack:    scipy ARPACK in shift-invert mode. The factorisation and the solves are the
             whole cost, so we factor L - shift*I ourselves (SuperLU with a symmetric
             MMD ordering of A^T + A and diagonal pivots: 17 M non-zeros at 512^2 against
             31 M for the default COLAMD) and hand the solve to ARPACK as OPinv; and we
             shift at -1e-6 rather than -1e-5, closer to the tiny eigenvalues of image
             graphs, which cuts the solves from ~51 to ~34 at k=16. A geometric
             nested-dissection order is available too (faster factor, denser factors: a
             tie at k=16). benchmarks/bench_spectral.py measures all of them.
- chebyshev: pure torch, runs where the operator lives (CUDA included). A block
             Chebyshev-filtered subspace iteration (Zhou & Saad): a polynomial-accelerated
             block Krylov method whose memory is O(n * block) whatever polynomial degree
             the tiny eigenvalue gaps of image graphs (1e-6..1e-4) demand; block Lanczos
             would have to store thousands of basis vectors for the same filter.

Every method returns ascending eigenvalues, orthonormal eigenvectors with a deterministic
sign (see `canonical_signs`) and the residual ||L v - lambda v|| of every pair.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

from spectral_resnet.spectral.graph import GridLaplacian

METHODS = ("auto", "dense", "arpack", "chebyshev")
DENSE_MAX_N = 8192  # eigh on an 8192^2 float64 matrix needs 0.5 GB and a minute on 2 cores
AUTO_DENSE_N = 400  # below this, dense beats ARPACK's setup on CPU (benchmarks/bench_spectral.py)


class Eigenpairs(tuple):
    """`(evals (k,), evecs (n, k))`, carrying `.residuals`, `.method` and `.info` as attributes."""

    def __new__(cls, evals: Tensor, evecs: Tensor, residuals: Tensor, method: str, info: dict):
        self = super().__new__(cls, (evals, evecs))
        self.evals, self.evecs, self.residuals, self.method, self.info = (
            evals,
            evecs,
            residuals,
            method,
            info,
        )
        return self

    def __getnewargs__(self):  # pickle / deepcopy rebuild through __new__
        return self.evals, self.evecs, self.residuals, self.method, self.info


def canonical_signs(evecs: Tensor) -> Tensor:
    """Flip each column so its first near-largest-magnitude entry is positive (deterministic)."""
    mag = evecs.abs()
    near_max = mag >= 0.999 * mag.max(dim=0, keepdim=True).values
    first = near_max.to(torch.int8).argmax(dim=0)  # first index within 0.1% of the column max
    signs = torch.sign(evecs.gather(0, first.unsqueeze(0))).squeeze(0)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return evecs * signs


def residual_norms(op: GridLaplacian, evals: Tensor, evecs: Tensor) -> Tensor:
    """||L v_i - lambda_i v_i|| for every column, (k,)."""
    lv = op.matvec(evecs.to(op.dtype).to(op.device))
    return (lv - evecs * evals).norm(dim=0)


def _dense(op: GridLaplacian, k: int) -> tuple[Tensor, Tensor, dict]:
    if op.n > DENSE_MAX_N:
        raise ValueError(
            f"method='dense' assembles an n x n matrix; n={op.n} > {DENSE_MAX_N}. "
            "Use method='arpack' or 'auto'."
        )
    mat = op.to_sparse().to_dense().double()
    evals, evecs = torch.linalg.eigh(mat)
    return evals[:k], evecs[:, :k], {}


def nested_dissection(height: int, width: int, leaf: int = 16) -> np.ndarray:
    """Fill-reducing elimination order for a pixel grid: halves first, separating line last.

    One full row (or column) separates a grid graph under 4- and 8-connectivity alike, so
    geometric bisection gives the classic O(n log n) fill without a graph partitioner.
    """
    ids = np.arange(height * width).reshape(height, width)
    order: list[np.ndarray] = []
    stack = [(0, height, 0, width, False)]
    while stack:  # iterative post-order: push (separator, right half, left half)
        r0, r1, c0, c1, is_separator = stack.pop()
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            continue
        if is_separator or h * w <= leaf:
            order.append(ids[r0:r1, c0:c1].ravel())
        elif h >= w:
            m = (r0 + r1) // 2
            stack += [(m, m + 1, c0, c1, True), (m + 1, r1, c0, c1, False), (r0, m, c0, c1, False)]
        else:
            m = (c0 + c1) // 2
            stack += [(r0, r1, m, m + 1, True), (r0, r1, m + 1, c1, False), (r0, r1, c0, m, False)]
    return np.concatenate(order)


def _arpack(
    op: GridLaplacian,
    k: int,
    *,
    shift: float = -1e-6,
    tol: float = 1e-6,
    ordering: str = "mmd",
) -> tuple[Tensor, Tensor, dict]:
    """Shift-invert ARPACK. ordering: "nested_dissection" (ours), "mmd" (SuperLU's MMD on
    A^T + A) or "scipy" (plain `eigsh(L, k, sigma=shift)`, the benchmark's reference)."""
    if k >= op.n:
        raise ValueError(f"method='arpack' needs k < n, got k={k}, n={op.n}; use method='dense'")
    lap = op.to_scipy()
    v0 = np.random.default_rng(0).standard_normal(op.n)
    if ordering == "scipy":
        evals, evecs = spla.eigsh(lap, k=k, sigma=shift, which="LM", tol=tol, v0=v0)
        info = {"ordering": ordering}
    elif ordering in ("nested_dissection", "mmd"):
        nested = ordering == "nested_dissection"
        perm = nested_dissection(op.height, op.width) if nested else np.arange(op.n)
        if nested:
            lap = lap[perm][:, perm]
        shifted = (lap - shift * sp.identity(op.n, format="csr")).tocsc()
        lu = spla.splu(
            shifted,
            permc_spec="NATURAL" if nested else "MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,  # L - shift*I is SPD: diagonal pivots are stable
            options={"SymmetricMode": True},
        )
        opinv = spla.LinearOperator(lap.shape, matvec=lu.solve, dtype=np.float64)
        evals, evecs_p = spla.eigsh(
            lap, k=k, sigma=shift, which="LM", OPinv=opinv, tol=tol, v0=v0[perm]
        )
        evecs = np.empty_like(evecs_p)
        evecs[perm] = evecs_p
        info = {"ordering": ordering, "factor_nnz": int(lu.L.nnz + lu.U.nnz)}
    else:
        raise ValueError(f"unknown ordering {ordering!r}; use nested_dissection, mmd or scipy")
    order = np.argsort(evals)
    return torch.from_numpy(evals[order]), torch.from_numpy(evecs[:, order]), info


def _orthonormal(x: Tensor) -> Tensor:
    return torch.linalg.qr(x).Q


def _rayleigh_ritz(op: GridLaplacian, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Ritz values, Ritz vectors and their residual norms for the subspace spanned by x."""
    ax = op.matvec(x)
    h = x.T @ ax
    theta, v = torch.linalg.eigh((h + h.T) / 2)
    x, ax = x @ v, ax @ v
    return theta, x, (ax - x * theta).norm(dim=0)


def _chebyshev_filter(op: GridLaplacian, x: Tensor, degree: int, a: float, b: float, a0: float):
    """Scaled Chebyshev polynomial of L applied to x: damps [a, b], keeps ~1 near a0 (< a)."""
    e, c = (b - a) / 2, (b + a) / 2
    sigma = e / (a0 - c)
    tau = 2 / sigma
    y = (op.matvec(x) - c * x) * (sigma / e)
    for _ in range(2, degree + 1):
        sigma_new = 1 / (tau - sigma)
        y_new = (op.matvec(y) - c * y) * (2 * sigma_new / e) - (sigma * sigma_new) * x
        x, y, sigma = y, y_new, sigma_new
    return y


def _chebyshev(
    op: GridLaplacian,
    k: int,
    *,
    tol: float = 1e-8,
    max_iter: int = 100,
    block: int | None = None,
    max_degree: int = 4000,
    seed: int = 0,
) -> tuple[Tensor, Tensor, dict]:
    n = op.n
    block = min(n, block or k + max(8, k))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, block, generator=gen, dtype=torch.float64).to(op.device)
    theta, x, res = _rayleigh_ritz(op, _orthonormal(x))
    upper = 2.0  # spectrum of the normalised Laplacian lies in [0, 2]
    matvecs, iterations = 0, 0
    while res[:k].max() > tol and iterations < max_iter:
        iterations += 1
        cut = float(theta[-1])
        lam_k = float(theta[k - 1])
        # degree so that one pass amplifies lambda_k by ~1e4 against the damped interval
        x_k = (upper + cut - 2 * lam_k) / (upper - cut)
        degree = max(
            8, min(max_degree, math.ceil(math.acosh(1e4) / math.acosh(max(x_k, 1 + 1e-12))))
        )
        x = _chebyshev_filter(op, x, degree, cut, upper, float(theta[0]))
        matvecs += degree
        theta, x, res = _rayleigh_ritz(op, _orthonormal(x))
    return theta[:k], x[:, :k], {"iterations": iterations, "matvecs": matvecs, "block": block}


def eigenpairs(
    op: GridLaplacian,
    k: int,
    method: str = "auto",
    *,
    tol: float | None = None,
    check: float | None = 1e-6,
    **options,
) -> Eigenpairs:
    """The k lowest eigenpairs of `op` (a batch of one): ascending, orthonormal, canonical signs.

    check: warn (RuntimeWarning) when any residual ||L v - lambda v|| exceeds this.
    options: passed to the solver (arpack: shift, ordering; chebyshev: max_iter, block, ...).
    """
    if not isinstance(op, GridLaplacian):
        raise TypeError(f"eigenpairs expects a GridLaplacian, got {type(op).__name__}")
    if op.batch != 1:
        raise ValueError(f"eigenpairs solves one image at a time; select one of {op.batch}")
    if method not in METHODS:
        raise ValueError(f"unknown eigensolver {method!r}; choose one of {METHODS}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > op.n:
        raise ValueError(f"k={k} exceeds the number of pixels n={op.n}; use k <= {op.n}")
    if method == "auto":
        if op.device.type == "cuda":
            method = "chebyshev"
        else:
            method = "dense" if (op.n <= AUTO_DENSE_N or k >= op.n - 1) else "arpack"
    if method != "dense" and k >= op.n:
        raise ValueError(f"method={method!r} needs k < n (k={k}, n={op.n}); use method='dense'")
    work = GridLaplacian(
        [w.double() for w in op.weights], op.offsets, op.height, op.width, op.sigma, op.params
    )
    if method == "dense":
        evals, evecs, info = _dense(work, k)
    elif method == "arpack":
        evals, evecs, info = _arpack(work, k, **({} if tol is None else {"tol": tol}), **options)
    else:
        evals, evecs, info = _chebyshev(work, k, tol=tol or 1e-8, **options)
    evals, evecs = evals.to(op.device), canonical_signs(evecs.to(op.device))
    residuals = residual_norms(work, evals, evecs)
    worst = float(residuals.max())
    if check is not None and not worst <= check:
        warnings.warn(
            f"eigensolver {method!r} did not converge: max residual ||Lv - lambda v|| = {worst:.2e}"
            f" > {check:.0e} (n={op.n}, k={k}, {info}); raise max_iter or use method='arpack'",
            RuntimeWarning,
            stacklevel=2,
        )
    return Eigenpairs(evals, evecs, residuals, method, info)
