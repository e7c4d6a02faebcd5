"""spectral_resnet: copy structure from a sample image onto a target through spectral attention."""

from pathlib import Path

from spectral_resnet.config import (
    AttentionConfig,
    PasteConfig,
    ShaderConfig,
    ShadingConfig,
    SpectrumConfig,
    StackConfig,
    ViewConfig,
)
from spectral_resnet.io import ImageError, load_image, save_image
from spectral_resnet.model import ShaderOutput, SpectralShader

# the shipped weights: `python train.py experiment=pretrained` rebuilds them
PRETRAINED = Path(__file__).resolve().parent / "weights" / "pretrained.pt"

__all__ = [
    "PRETRAINED",
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
    "load_image",
    "save_image",
]
