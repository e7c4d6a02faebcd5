"""Functional maps: hand-designed Q/K that make two images' eigenvectors comparable.

phi_t phi_s^T compares eigenvectors of two different graphs coordinate by coordinate, but
each eigenvector's sign (and its rotation inside a near-degenerate eigenspace) is arbitrary
per image, so the prototype's scores were noise. A functional map C (k_t x k_s) with
C A ~ B, where A = Phi_s^T F_s and B = Phi_t^T F_t are the spectral coefficients of
matching descriptor functions, absorbs those signs and rotations: Q = Phi_t, K = Phi_s C^T
gives Q K^T = Phi_t C Phi_s^T, the map that carries sample functions onto the target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_resnet.spectral import Spectrum


def descriptor_functions(spectrum: Spectrum, image: Tensor, count: int = 8) -> Tensor:
    """Sign/rotation-invariant functions that should correspond across images: HKS, WKS, colour.

    image: (3, H, W). Returns (n, 2 * count + 3), each column scaled to unit RMS.
    """
    colour = image.reshape(image.shape[0], -1).T.to(spectrum.evecs.dtype)
    funcs = torch.cat([spectrum.hks(count=count), spectrum.wks(count=count), colour], 1)
    return funcs / funcs.pow(2).mean(0, keepdim=True).sqrt().clamp_min(1e-12)


def fit_functional_map(
    source: Spectrum,
    target: Spectrum,
    source_funcs: Tensor,
    target_funcs: Tensor,
    *,
    commutativity: float = 1e-1,
) -> Tensor:
    """Least-squares C (k_t, k_s) with C A ~ B and a Laplacian-commutativity penalty.

    Row i solves min_c ||c A - B_i||^2 + mu * sum_j c_j^2 (lambda_t,i - lambda_s,j)^2, closed
    form c = B_i A^T (A A^T + mu diag(delta_i^2))^-1. Eigenvalues are normalised by each
    spectrum's largest, since two graphs' spectra live on very different scales.
    """
    a = source.project(source_funcs.to(source.evecs.dtype))  # (k_s, m)
    b = target.project(target_funcs.to(target.evecs.dtype))  # (k_t, m)
    lam_s = source.evals.to(a.dtype) / source.evals.max().clamp_min(1e-30)
    lam_t = target.evals.to(a.dtype) / target.evals.max().clamp_min(1e-30)
    delta2 = (lam_t[:, None] - lam_s[None, :]).pow(2)  # (k_t, k_s)
    gram = a @ a.T  # (k_s, k_s)
    mu = commutativity * gram.diagonal().mean()  # penalty relative to the data term's scale
    systems = gram[None] + mu * torch.diag_embed(delta2)  # (k_t, k_s, k_s)
    rhs = (b @ a.T).unsqueeze(-1)  # (k_t, k_s, 1)
    ridge = 1e-8 * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=a.dtype, device=a.device)
    c = torch.linalg.solve(systems + ridge, rhs)
    return c.squeeze(-1)  # (k_t, k_s)


def aligned_sample_basis(source: Spectrum, target: Spectrum, image_s: Tensor, image_t: Tensor):
    """The sample eigenvectors carried into the target's basis, Phi_s C^T: (n_s, k_t)."""
    c = fit_functional_map(
        source,
        target,
        descriptor_functions(source, image_s),
        descriptor_functions(target, image_t),
    )
    return source.evecs @ c.T
