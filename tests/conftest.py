"""Shared fixtures: small deterministic images, and a private spectrum cache per test session."""

import pytest
import torch

from spectral_resnet.data.procedural import curves, diagram, scene


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the tests' spectra out of the user's cache directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECTRAL_RESNET_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture
def smooth_image():
    """(3, 24, 24): blurred noise, distinct eigenvalues, so subspaces are well defined."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 30, 30, generator=g)
    return torch.nn.functional.avg_pool2d(noise, 7, 1, 0)[0]


@pytest.fixture
def toof():
    return curves((48, 48), seed=3)


@pytest.fixture
def tone():
    return diagram((48, 48), seed=1)


@pytest.fixture
def photo():
    return scene((32, 40), seed=2)
