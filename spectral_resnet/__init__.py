"""spectral_resnet: copy structure from a sample image onto a target through spectral attention."""

from spectral_resnet.config import (
    AttentionConfig,
    PasteConfig,
    ShaderConfig,
    ShadingConfig,
    SpectrumConfig,
    StackConfig,
    ViewConfig,
)
from spectral_resnet.io import ImageError, load_image, load_mask, save_image
from spectral_resnet.model import ShaderOutput, SpectralShader
from spectral_resnet.weights import WEIGHTS, Weights, get_weights

__all__ = [
    "AttentionConfig",
    "ImageError",
    "PasteConfig",
    "ShaderConfig",
    "ShaderOutput",
    "ShadingConfig",
    "SpectralShader",
    "SpectrumConfig",
    "StackConfig",
    "ViewConfig",
    "WEIGHTS",
    "Weights",
    "get_weights",
    "load_image",
    "load_mask",
    "save_image",
]
