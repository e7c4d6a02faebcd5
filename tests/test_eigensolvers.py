import warnings

import pytest
import torch

from spectral_resnet.spectral import eigenpairs, grid_laplacian


def subspace_sine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Sine of the largest principal angle between the column spaces of a and b."""
    cos = torch.linalg.svdvals(a.T @ b).min().clamp(max=1.0)
    return float((1 - cos**2).clamp_min(0).sqrt())


@pytest.fixture(params=["smooth_image", "photo"])
def operator(request):
    return grid_laplacian(request.getfixturevalue(request.param).double())


@pytest.mark.parametrize("method", ["arpack", "chebyshev"])
def test_solvers_match_dense_reference(operator, method):
    k = 12
    ref = eigenpairs(operator, k, "dense")
    got = eigenpairs(operator, k, method, tol=1e-10 if method == "chebyshev" else None)
    assert torch.allclose(got.evals, ref.evals, rtol=1e-6, atol=1e-12)
    assert subspace_sine(got.evecs, ref.evecs) <= 1e-4
    assert got.residuals.max() < 1e-8
    assert torch.allclose(got.evecs.T @ got.evecs, torch.eye(k, dtype=torch.float64), atol=1e-10)
    assert bool((got.evals[1:] >= got.evals[:-1]).all())
    # same canonical signs as the reference, column by column
    assert torch.allclose(got.evecs, ref.evecs, atol=1e-5)


@pytest.mark.parametrize("method", ["dense", "arpack", "chebyshev"])
def test_signs_are_deterministic_and_canonical(operator, method):
    a = eigenpairs(operator, 6, method)
    b = eigenpairs(operator, 6, method)
    assert torch.equal(a.evecs, b.evecs)
    mag = a.evecs.abs()
    first = (mag >= 0.999 * mag.max(0).values).to(torch.int8).argmax(0)
    assert bool((a.evecs.gather(0, first[None]) > 0).all())


def test_auto_picks_dense_for_tiny_and_arpack_for_larger():
    small = grid_laplacian(torch.rand(3, 10, 10))
    larger = grid_laplacian(torch.rand(3, 30, 30))
    assert eigenpairs(small, 4).method == "dense"
    assert eigenpairs(larger, 4).method == "arpack"


def test_constant_image_has_known_spectrum():
    # a constant 1 x N image is a uniform path graph: normalised lambda_j = 1 - cos(pi j / (N - 1))
    n = 16
    op = grid_laplacian(torch.full((3, 1, n), 0.5), sigma=1.0, floor=0.0)
    pairs = eigenpairs(op, 5, "dense")
    expected = 1 - torch.cos(torch.pi * torch.arange(5, dtype=torch.float64) / (n - 1))
    assert torch.allclose(pairs.evals, expected, atol=1e-12)
    arpack = eigenpairs(op, 5, "arpack")
    assert torch.allclose(arpack.evals, expected, atol=1e-10)


def test_degenerate_constant_square_image_converges():
    op = grid_laplacian(torch.full((3, 12, 12), 0.3), sigma=1.0)
    pairs = eigenpairs(op, 6, "arpack")
    assert pairs.residuals.max() < 1e-8
    assert float(pairs.evals[1]) == pytest.approx(float(pairs.evals[2]), abs=1e-10)  # x, y modes


def test_k_equal_n_dense_and_too_large_k_errors():
    op = grid_laplacian(torch.rand(3, 2, 3))
    assert eigenpairs(op, 6).evals.shape == (6,)
    with pytest.raises(ValueError, match="exceeds the number of pixels"):
        eigenpairs(op, 7)
    with pytest.raises(ValueError, match="needs k < n"):
        eigenpairs(op, 6, "arpack")


def test_unknown_method_and_bad_k():
    op = grid_laplacian(torch.rand(3, 5, 5))
    with pytest.raises(ValueError, match="unknown eigensolver"):
        eigenpairs(op, 3, "lanczos_v2")
    with pytest.raises(ValueError, match="positive integer"):
        eigenpairs(op, 0)


def test_non_convergence_warns_loudly(photo):
    op = grid_laplacian(photo)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = eigenpairs(op, 8, "chebyshev", max_iter=1, max_degree=8)
    assert any("did not converge" in str(w.message) for w in caught)
    assert pairs.residuals.max() > 1e-6


def test_nested_dissection_is_a_permutation_and_orderings_agree(photo):
    from spectral_resnet.spectral.eigensolvers import nested_dissection

    for h, w in [(1, 7), (5, 5), (32, 40)]:
        perm = nested_dissection(h, w, leaf=4)
        assert sorted(perm.tolist()) == list(range(h * w))
    op = grid_laplacian(photo.double())
    ref = eigenpairs(op, 8, "dense")
    for ordering in ["mmd", "nested_dissection", "scipy"]:
        got = eigenpairs(op, 8, "arpack", ordering=ordering)
        assert subspace_sine(got.evecs, ref.evecs) < 1e-6, ordering


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_chebyshev_runs_on_cuda_and_matches_arpack(photo):
    op = grid_laplacian(photo.double().cuda())
    got = eigenpairs(op, 8, "auto")
    assert got.method == "chebyshev" and got.evecs.is_cuda
    ref = eigenpairs(grid_laplacian(photo.double()), 8, "arpack")
    assert subspace_sine(got.evecs.cpu(), ref.evecs) <= 1e-4


def test_eigenpairs_unpack_and_pickle():
    import pickle

    pairs = eigenpairs(grid_laplacian(torch.rand(3, 6, 6)), 3)
    evals, evecs = pairs
    again = pickle.loads(pickle.dumps(pairs))
    assert torch.equal(again.evecs, evecs) and again.method == pairs.method
    assert torch.equal(again.residuals, pairs.residuals)
