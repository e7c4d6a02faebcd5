"""spectral_resnet: copy structure from a sample image onto a target through spectral attention."""

from spectral_resnet.config import (
    AttentionConfig,
    PasteConfig,
    ShaderConfig,
    ShadingConfig,
    SpectrumConfig,
)
from spectral_resnet.io import ImageError, load_image, save_image
from spectral_resnet.model import ShaderOutput, SpectralShader

__all__ = [
    "AttentionConfig",
    "ImageError",
    "PasteConfig",
    "ShaderConfig",
    "ShaderOutput",
    "ShadingConfig",
    "SpectralShader",
    "SpectrumConfig",
    "load_image",
    "save_image",
]
