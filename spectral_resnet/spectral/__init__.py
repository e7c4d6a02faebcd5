"""Spectral core: image -> grid graph -> Laplacian eigenpairs -> descriptors, with a cache."""

from spectral_resnet.spectral.eigensolvers import Eigenpairs, canonical_signs, eigenpairs
from spectral_resnet.spectral.graph import GridLaplacian, grid_laplacian
from spectral_resnet.spectral.lifting import joint_bilateral_upsample, lift
from spectral_resnet.spectral.spectrum import Spectrum, SpectrumCache, compute_spectrum

__all__ = [
    "Eigenpairs",
    "GridLaplacian",
    "Spectrum",
    "SpectrumCache",
    "canonical_signs",
    "compute_spectrum",
    "eigenpairs",
    "grid_laplacian",
    "joint_bilateral_upsample",
    "lift",
]
