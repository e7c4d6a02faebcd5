"""The shipped weights by name, torchvision-style: each file with its sha256, the command that
rebuilds it and its held-out figures. `SpectralShader.from_pretrained("default")`, `ckpt=default`.

Figures: PCK@0.05 of `match()`, default options (the view search and the pyramid head) with
the learned layers in float32, on the held-out real photos (24 warped pairs a set, seed 2000;
`python -m spectral_resnet.eval model.precision=float32`, see docs/eval.md), beside the best
classical matcher. In bfloat16 (`precision=auto` on a device with bf16 units) the default
weights score within 0.002 of them on every set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

HERE = Path(__file__).resolve().parent


class WeightsError(ValueError):
    """A weights name that is not in the registry, or a file whose bytes are not the ones shipped."""


@dataclass(frozen=True)
class Weights:
    """One shipped weight file and what is known about it."""

    file: str  # inside spectral_resnet/weights/
    sha256: str
    recipe: str  # the command that rebuilds the file
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return HERE / self.file

    def verified(self) -> Path:
        """The file's path, once its bytes hash to the registered sha256."""
        if not self.path.is_file():
            raise WeightsError(f"weights file {self.path} is missing; reinstall the package")
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise WeightsError(
                f"weights file {self.path} has sha256 {digest[:12]}..., the registry says "
                f"{self.sha256[:12]}...; reinstall, or register the file you trained"
            )
        return self.path


WEIGHTS = MappingProxyType(
    {
        "linear": Weights(
            file="linear.pt",
            sha256="63fd30de78fb777b82a7fea13caa5633ddad697a5466773291203ad8109b4b48",
            recipe="python train.py experiment=pretrained",
            summary="a learned linear metric (softmax, tied Q/K) over oriented patches and spectral "
            "features; 8 epochs on the bundled photos and procedural images (about 10 min on 2 CPU cores)",
            metrics={
                "real 64 rot 0": 0.823,
                "real 64 rot 45": 0.728,
                "real 64 scale 1.33": 0.631,
                "real 128 rot 0": 0.853,
                "stereo 96": 0.947,
            },
        ),
        "stem": Weights(
            file="stem.pt",
            sha256="3d5ce258e01f2447c6586483733ea3cc93428fc5c10ef037aeee06c7875f4b20",
            recipe="python train.py experiment=stem export=stem",
            summary="a learned conv stem (4 dilated 3x3 convs, 64-d) read under 35 turned and zoomed "
            "views of the sample (model.views); 2400 steps on the bundled photos (13 min on 2 CPU cores)",
            metrics={
                "real 64 rot 0": 0.978,
                "real 64 rot 45": 0.969,
                "real 64 scale 1.33": 0.991,
                "real 128 rot 0": 0.979,
                "real 128 rot 45": 0.971,
                "stereo 96": 0.997,
            },
        ),
        "stack": Weights(
            file="stack.pt",
            sha256="cc073a0221f82038c60f1dda388716f8a5f22549b518660b438ec707694862f8",
            recipe="python train.py experiment=depth_views export=stack",
            summary="the stem, then four layers (spectral self-attention and cross-attention, "
            "sxsx) on a grid twice as coarse as the tokens, grown on the stem and trained under "
            "the views they read; 1200 steps from the stem weights at an annealed rate "
            "(6-7 min on 2 CPU cores)",
            metrics={
                "real 64 rot 0": 0.983,
                "real 64 rot 45": 0.984,
                "real 64 scale 1.33": 0.993,
                "real 128 rot 0": 0.988,
                "real 128 rot 45": 0.982,
                "stereo 96": 0.996,
            },
        ),
    }
)
# other names for a registered file: "default" is what infer.py and from_pretrained() load
ALIASES = MappingProxyType({"default": "stack", "pretrained": "linear"})


def names() -> list[str]:
    return [*WEIGHTS, *ALIASES]


def get_weights(name: str) -> Weights:
    """The registered weights called `name` (an alias included)."""
    key = ALIASES.get(name, name)
    if key not in WEIGHTS:
        raise WeightsError(f"no shipped weights called {name!r}; choose from {names()}")
    return WEIGHTS[key]


def checkpoint_path(ckpt: str | Path) -> Path:
    """A registered name's verified file, or `ckpt` itself as a path. A bare word that is
    neither (`ckpt=stme`) is refused with the names to choose from."""
    if isinstance(ckpt, str) and ckpt in names():
        return get_weights(ckpt).verified()
    path = Path(ckpt)
    if not path.exists() and not path.suffix and len(path.parts) == 1:
        raise WeightsError(
            f"no shipped weights called {str(ckpt)!r} and no such file; choose from {names()} "
            "or give a checkpoint's path"
        )
    return path
