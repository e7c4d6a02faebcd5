"""No tensor of the hot path is made on the CPU when the inputs are on a GPU.

Runs without a GPU: under FakeTensorMode, tensors carry a device and a shape but no data,
so a module built on "cuda" runs on any machine, and any op that mixes a cuda tensor with
a cpu one raises FakeTensorDeviceMismatchError. What reads values to the host cannot run
here at all; those are the model's documented host transfers (docs/design.md): the input
range check, the chosen view's index, the eigensolver and the ink labelling.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from spectral_resnet.attention import ProjectedAttention, QKProjection, SpectralAttention
from spectral_resnet.config import ShaderConfig
from spectral_resnet.context import PairContext
from spectral_resnet.model import SpectralShader
from spectral_resnet.spectral import Spectrum
from spectral_resnet.stack import ConvStem, ImageGraphs, PairGraphs, Stack
from spectral_resnet.views import View, pull_back, render

CUDA = "cuda"


@pytest.fixture
def fake():
    """A fake mode whose modules are built with cuda parameters; forward passes then run
    outside the device context, so a factory call without `device=` lands on the cpu."""
    with FakeTensorMode() as mode:
        yield mode


def on_cuda(build):
    with torch.device(CUDA):
        return build()


def graph(n: int, shape: tuple[int, int], device: str = CUDA) -> ImageGraphs:
    return ImageGraphs(torch.randn(2, n, 6, device=device), torch.rand(2, 6, device=device), shape)


@pytest.mark.parametrize("mixer, stride", [("spectral", 1), ("positional", 1), ("spectral", 2)])
def test_stack_layers_stay_on_the_inputs_device(fake, mixer, stride):
    stack = on_cuda(
        lambda: Stack(layers="sxs", dim=12, width=16, heads=2, mixer=mixer, stride=stride)
    )
    f_t, f_s = torch.randn(2, 48, 12, device=CUDA), torch.randn(2, 40, 12, device=CUDA)
    graphs = PairGraphs(graph(48, (6, 8)), graph(40, (5, 8)))
    out_t, out_s = stack(f_t, f_s, graphs, ((6, 8), (5, 8)))
    assert out_t.device.type == out_s.device.type == CUDA
    assert out_t.shape == (2, 48, 16) and out_s.shape == (2, 40, 16)


def test_a_cpu_tensor_in_the_stack_is_caught(fake):
    """The check can fail: a spectrum left on the cpu is a device mismatch."""
    stack = on_cuda(lambda: Stack(layers="s", dim=12, width=16, heads=2))
    f = torch.randn(2, 48, 12, device=CUDA)
    with pytest.raises(FakeTensorDeviceMismatchError):
        stack(f, f, PairGraphs(graph(48, (6, 8)), graph(48, (6, 8), device="cpu")), ((6, 8),) * 2)


def test_stem_and_views_stay_on_the_inputs_device(fake):
    stem = on_cuda(lambda: ConvStem(width=16))
    image = torch.rand(1, 3, 24, 32, device=CUDA)
    view = View(30.0, 0.8)
    maps = pull_back(stem.maps(render(image, view)), view, (24, 32))
    assert maps.device.type == CUDA and maps.shape == (1, 16, 24, 32)


@pytest.mark.parametrize(
    "kernel, positive, max_keys", [("softmax", False, 24), ("softmax", False, None), ("linear", True, None), ("linear", False, None)]
)  # fmt: skip
def test_head_stays_on_the_inputs_device(fake, kernel, positive, max_keys):
    qk = on_cuda(lambda: QKProjection(dim=16, init="learned", learnable=True, tied=True))
    attention = SpectralAttention(kernel=kernel, chunk=16, max_keys=max_keys, positive=positive)
    f_t, f_s = torch.randn(2, 40, 16, device=CUDA), torch.randn(2, 36, 16, device=CUDA)
    cross = ProjectedAttention(*qk(f_t, f_s), qk.scale, attention)
    boundary = torch.rand(2, 36, device=CUDA)
    index = torch.randint(0, 40, (2, 5), device=CUDA)
    outputs = [
        cross(torch.rand(2, 36, 4, device=CUDA), boundary),
        cross.rows(index),
        cross.logits(index),
        cross.argmax(),
        attention.confidence(cross.q, cross.k, cross.scale, boundary),
    ]
    assert all(o.device.type == CUDA for o in outputs)


@pytest.mark.parametrize("layers, height", [("", 20), ("x", 20), ("sx", 20), ("sx", 64)])
def test_match_stays_on_the_inputs_device(fake, monkeypatch, layers, height):
    """match() of a stem model, one view (choosing among several reads an index to the
    host), with the input range check (two floats read to the host) reduced to its cast.
    64 px high: the pyramid's half level (32 px) is scored too."""
    config = ShaderConfig.from_dict(
        {
            "attention": {"kernel": "softmax", "qk_init": "learned", "features": ["stem"]},
            "stack": {"layers": layers, "width": 16, "heads": 2, "stem_width": 16},
            "views": {"angles": [0.0], "scales": [1.0]},
        }
    )
    if "s" in layers:  # 's' layers read spectra: the eigensolver is a host step
        monkeypatch.setattr(
            SpectralShader,
            "spectrum",
            lambda self, image: fake_spectrum(image, self.config.spectrum.k),
        )
    monkeypatch.setattr(
        SpectralShader, "check_pair", staticmethod(lambda t, s: (t.float(), s.float()))
    )
    model = on_cuda(lambda: SpectralShader(config)).eval()
    target = torch.rand(1, 3, height, 24 + height, device=CUDA)
    sample = torch.rand(1, 3, height + 2, 22 + height, device=CUDA)
    flow = model.match(target, sample)
    assert flow.device.type == CUDA and flow.shape == (1, height, 24 + height, 2)
    levels = 2 if height >= 64 else 1  # Q's rows: 16 wide a level
    assert model.pair_context(target, sample, ops=False).cross.q.shape[-1] == 16 * levels


def fake_spectrum(image, k: int) -> Spectrum:
    """A spectrum of the image's shape on the image's device, as the cache hands it over."""
    h, w = image.shape[-2:]
    n, device = h * w, image.device
    return Spectrum(
        torch.rand(k, device=device, dtype=torch.float64),
        torch.randn(n, k, device=device),
        torch.rand(n, device=device),
        torch.rand(n, device=device),
        (h, w),
    )


@pytest.mark.parametrize("kernel", ["linear", "softmax"])
def test_the_image_ops_context_comes_to_the_host(fake, kernel):
    """The image ops read a host copy of the pair's context (their steps are data-dependent):
    every tensor on the CPU, the evidence computed where the head runs and brought over
    (softmax's confidence too: its cells in reach are masked there, not counted on the
    host)."""
    qk = on_cuda(lambda: QKProjection(dim=8, init="learned", learnable=True))
    f_t, f_s = torch.randn(1, 12, 8, device=CUDA), torch.randn(1, 10, 8, device=CUDA)
    cross = ProjectedAttention(*qk(f_t, f_s), qk.scale, SpectralAttention(kernel=kernel))
    ctx = PairContext(
        cross=cross,
        sample_values=torch.rand(1, 10, 4, device=CUDA),
        target_boundary=torch.rand(1, 12, device=CUDA),
        sample_boundary=torch.rand(1, 10, device=CUDA),
        work_shape=(3, 4),
        sample_shape=(2, 5),
        target=torch.rand(1, 3, 6, 8, device=CUDA),
        sample=torch.rand(1, 3, 4, 10, device=CUDA),
        sample_labels=torch.zeros(1, 4, 10, dtype=torch.long, device=CUDA),
        target_ink=torch.zeros(1, 1, 6, 8, dtype=torch.bool, device=CUDA),
    )
    host = ctx.on_host()
    tensors = [getattr(host, f.name) for f in fields(host)]
    assert all(t.device.type == "cpu" for t in tensors if isinstance(t, torch.Tensor))
    assert host.evidence.device.type == "cpu" and host.evidence.shape == (1, 12)
    rows = host.host_rows(torch.tensor([[0, 5]]))
    assert rows.device.type == "cpu" and rows.shape == (1, 2, 10)
