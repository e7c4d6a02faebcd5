"""Spectral descriptors that do not depend on eigenvector signs or on the basis chosen inside
a degenerate eigenspace: they only see phi_k(x)^2 summed over eigenvalues. This makes them
safe inputs for learned projections, unlike raw eigenvectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _nonzero(evals: Tensor) -> Tensor:
    """Mask of eigenvalues above the numerical zero (the constant mode of each component)."""
    return evals > 1e-9 * evals.abs().max().clamp_min(1e-30)


def default_hks_times(evals: Tensor, count: int = 8) -> Tensor:
    """Log-spaced t over [4 ln10 / lambda_max, 4 ln10 / lambda_1] (lambda_1: first non-zero)."""
    positive = evals[_nonzero(evals)]
    if positive.numel() == 0:
        return torch.ones(count, dtype=evals.dtype, device=evals.device)
    lo, hi = 4 * math.log(10) / positive.max(), 4 * math.log(10) / positive.min()
    return torch.logspace(
        math.log10(lo), math.log10(hi), count, dtype=evals.dtype, device=evals.device
    )


def default_wks_energies(evals: Tensor, count: int = 8) -> tuple[Tensor, float]:
    """Energies evenly spaced over the log spectrum, and the Gaussian width sigma (7x spacing)."""
    positive = evals[_nonzero(evals)]
    if positive.numel() == 0:
        return torch.zeros(count, dtype=evals.dtype, device=evals.device), 1.0
    lo, hi = positive.min().log(), positive.max().log()
    energies = torch.linspace(
        float(lo), float(hi), count + 2, dtype=evals.dtype, device=evals.device
    )
    spacing = float(energies[1] - energies[0]) or 1.0
    return energies[1:-1], 7.0 * spacing


def heat_kernel_signature(evals: Tensor, evecs: Tensor, times: Tensor) -> Tensor:
    """HKS(x, t) = sum_k e^{-lambda_k t} phi_k(x)^2 / sum_k e^{-lambda_k t}; (n, T)."""
    decay = torch.exp(-evals[:, None] * times[None, :])  # (k, T)
    return (evecs.pow(2) @ decay) / decay.sum(0, keepdim=True)


def wave_kernel_signature(evals: Tensor, evecs: Tensor, energies: Tensor, sigma: float) -> Tensor:
    """WKS(x, e) = sum_k g_e(lambda_k) phi_k(x)^2 / sum_k g_e(lambda_k), g Gaussian in log lambda."""
    keep = _nonzero(evals)
    log_l = evals[keep].log()
    g = torch.exp(-((energies[None, :] - log_l[:, None]) ** 2) / (2 * sigma**2))  # (k', E)
    return (evecs[:, keep].pow(2) @ g) / g.sum(0, keepdim=True).clamp_min(1e-30)


def heat_diffusion(evals: Tensor, evecs: Tensor, signal: Tensor, t: float) -> Tensor:
    """Phi diag(e^{-t lambda}) Phi^T f: the low-pass heat flow of a signal (n,) or (n, m)."""
    coeffs = evecs.T @ signal
    decay = torch.exp(-t * evals)
    coeffs = coeffs * (decay if signal.dim() == 1 else decay[:, None])
    return evecs @ coeffs
