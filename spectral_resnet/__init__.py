"""spectral_resnet: copy structure from a sample image onto a target through spectral attention."""

from spectral_resnet.io import ImageError, load_image, save_image
from spectral_resnet.model import ShaderOutput, SpectralShader

__all__ = ["ImageError", "ShaderOutput", "SpectralShader", "load_image", "save_image"]
