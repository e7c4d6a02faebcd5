import numpy as np
import pytest
import torch

from spectral_resnet.spectral import grid_laplacian


@pytest.mark.parametrize("connectivity", [4, 8])
def test_laplacian_symmetric_psd_and_zero_row_sums(photo, connectivity):
    op = grid_laplacian(photo.double(), connectivity=connectivity)
    lap = op.to_scipy()
    assert abs(lap - lap.T).max() < 1e-12
    assert np.linalg.eigvalsh(lap.toarray()).min() > -1e-10
    unnormalised = op.to_scipy(normalized=False)
    assert np.abs(np.asarray(unnormalised.sum(axis=1))).max() < 1e-10
    # sqrt(D) 1 spans the null space of the normalised form
    root_d = np.sqrt(op.degrees()[0].double().flatten().numpy())
    assert np.abs(lap @ root_d).max() < 1e-10


@pytest.mark.parametrize("connectivity", [4, 8])
def test_stencil_equals_sparse_exports(photo, connectivity):
    op = grid_laplacian(photo.double(), connectivity=connectivity)
    x = torch.randn(op.n, 5, dtype=torch.float64)
    stencil = op.matvec(x)
    torch_sparse = op.to_sparse() @ x
    scipy_csr = torch.from_numpy(op.to_scipy() @ x.numpy())
    assert torch.allclose(stencil, torch_sparse, atol=1e-12)
    assert torch.allclose(stencil, scipy_csr, atol=1e-12)


def test_connectivity_changes_edge_count():
    img = torch.rand(3, 6, 7)
    nnz4 = grid_laplacian(img, connectivity=4).to_scipy().nnz
    nnz8 = grid_laplacian(img, connectivity=8).to_scipy().nnz
    edges4, edges8 = 6 * 6 + 5 * 7, 6 * 6 + 5 * 7 + 2 * 5 * 6
    assert nnz4 == 6 * 7 + 2 * edges4
    assert nnz8 == 6 * 7 + 2 * edges8


def test_batched_matvec_matches_per_image():
    imgs = torch.rand(3, 3, 8, 9, dtype=torch.float64)
    op = grid_laplacian(imgs)
    x = torch.randn(3, 72, 2, dtype=torch.float64)
    batched = op.matvec(x)
    for b in range(3):
        single = grid_laplacian(imgs[b])
        assert torch.allclose(batched[b], single.matvec(x[b]), atol=1e-12)


def test_weights_follow_colour_distance_and_sigma():
    img = torch.zeros(1, 1, 2)
    img[0, 0, 1] = 0.5  # two pixels, distance^2 = 0.25
    op = grid_laplacian(img, sigma=0.5, floor=0.0)
    assert op.weights[0].item() == pytest.approx(np.exp(-1.0))
    adaptive = grid_laplacian(img, sigma=None, floor=0.0)
    assert adaptive.sigma.item() == pytest.approx(0.5)  # RMS neighbour difference


def test_grey_option_uses_luminance():
    red = torch.zeros(3, 1, 2)
    red[0, 0, 1] = 1.0
    colour = grid_laplacian(red, sigma=1.0, floor=0.0).weights[0].item()
    grey = grid_laplacian(red, sigma=1.0, floor=0.0, color=False).weights[0].item()
    assert colour == pytest.approx(np.exp(-1.0))
    assert grey == pytest.approx(np.exp(-(0.299**2)))


def test_boundary_marks_edges(toof):
    strength = grid_laplacian(toof).boundary_strength()[0]
    assert strength.max() > 0.9 and strength.median() < 0.1


@pytest.mark.parametrize(
    "image, kwargs, message",
    [
        (torch.rand(3, 4, 4), {"sigma": 0.0}, "sigma must be a positive"),
        (torch.rand(3, 4, 4), {"sigma": -1.0}, "sigma must be a positive"),
        (torch.rand(3, 4, 4), {"connectivity": 6}, "connectivity must be 4 or 8"),
        (torch.full((3, 4, 4), float("nan")), {}, "NaN or Inf"),
        (torch.rand(3, 1, 1), {}, "at least 2 pixels"),
        (torch.randint(0, 255, (3, 4, 4)), {}, "float tensor"),
        (torch.rand(4, 4), {}, "must be (C, H, W)"),
    ],
)
def test_bad_inputs_raise_clear_errors(image, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        grid_laplacian(image, **kwargs)
