"""The learned stack's layers against dense references, and their invariances."""

import pytest
import torch
import torch.nn.functional as F

from spectral_resnet.stack import (
    ConvStem,
    CrossLayer,
    ImageGraphs,
    LinearCrossAttention,
    PairGraphs,
    PositionalSelfAttention,
    SpectralFilter,
    SpectralLayer,
    Stack,
    grid_encoding,
    pooled,
    positive_features,
    upsampled,
)


def orthonormal(n: int, k: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))[0]


def graphs(evecs, evals, shape) -> ImageGraphs:
    return ImageGraphs(evecs, evals, shape)


def filter_and_inputs(n=40, k=6, width=8, heads=2):
    torch.manual_seed(0)
    layer = SpectralFilter(width=width, heads=heads).double()
    with torch.no_grad():
        layer.g.normal_()  # a filter with a different band per head
    f = torch.randn(2, n, width, dtype=torch.float64)
    evecs = torch.stack([orthonormal(n, k, 1), orthonormal(n, k, 2)])
    evals = torch.tensor([[0.0, 0.1, 0.3, 0.3, 0.7, 1.2], [0.0, 0.2, 0.2, 0.5, 0.9, 1.0]])
    return layer, f, evecs, evals.double()


def test_spectral_filter_matches_the_dense_operator():
    layer, f, evecs, evals = filter_and_inputs()
    got = layer(f, graphs(evecs, evals, (5, 8)))
    gains = layer.response(evals)  # (B, H, k)
    v = layer.v(f).unflatten(-1, (layer.heads, -1))
    want = []
    for b in range(f.shape[0]):
        heads = []
        for h in range(layer.heads):
            dense = evecs[b] @ torch.diag(gains[b, h]) @ evecs[b].T  # (n, n)
            heads.append(dense @ v[b, :, h])
        want.append(layer.out(torch.cat(heads, -1)))
    torch.testing.assert_close(got, torch.stack(want))


def test_spectral_filter_is_blind_to_eigenvector_signs_and_bases():
    layer, f, evecs, evals = filter_and_inputs()
    run = lambda basis: layer(f, graphs(basis, evals, (5, 8)))  # noqa: E731
    base = run(evecs)
    signs = torch.tensor([1.0, -1, 1, -1, -1, 1], dtype=torch.float64)
    torch.testing.assert_close(run(evecs * signs), base)
    # rotate each image's basis inside its repeated eigenvalue (columns 2, 3 and 1, 2)
    rotated = evecs.clone()
    c, s = torch.cos(torch.tensor(0.7)), torch.sin(torch.tensor(0.7))
    turn = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    rotated[0, :, 2:4] = evecs[0, :, 2:4] @ turn
    rotated[1, :, 1:3] = evecs[1, :, 1:3] @ turn
    torch.testing.assert_close(run(rotated), base)
    # a rotation across *different* eigenvalues is a different operator: the test can fail
    mixed = evecs.clone()
    mixed[0, :, 0:2] = evecs[0, :, 0:2] @ turn
    assert not torch.allclose(run(mixed), base)


def test_linear_cross_attention_matches_the_dense_average():
    torch.manual_seed(0)
    attn = LinearCrossAttention(width=8, heads=2).double()
    f, other = torch.randn(1, 30, 8).double(), torch.randn(1, 50, 8).double()
    got = attn(f, other)
    q = (F.elu(attn.q(f)) + 1).unflatten(-1, (2, -1))
    k = (F.elu(attn.k(other)) + 1).unflatten(-1, (2, -1))
    v = attn.v(other).unflatten(-1, (2, -1))
    heads = []
    for h in range(2):
        a = q[0, :, h] @ k[0, :, h].T  # (n, m) positive scores
        heads.append((a / a.sum(1, keepdim=True)) @ v[0, :, h])  # rows sum to 1
    torch.testing.assert_close(got, attn.out(torch.cat(heads, -1))[None])


def test_positive_features_are_elu_plus_one_with_its_gradient():
    x = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([0.0, -1e-8, 1e-8])]).double()
    x.requires_grad_(True)
    got, want = positive_features(x), F.elu(x) + 1
    torch.testing.assert_close(got, want)
    assert (got > 0).all()
    (g_got,) = torch.autograd.grad(got.sum(), x)
    (g_want,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_got, g_want)


def test_cross_layer_ignores_the_order_of_the_other_images_tokens():
    torch.manual_seed(0)
    layer = CrossLayer(width=8, heads=2)
    f_t, f_s = torch.randn(1, 20, 8), torch.randn(1, 30, 8)
    perm = torch.randperm(30)
    t1, s1 = layer(f_t, f_s, None)
    t2, s2 = layer(f_t, f_s[:, perm], None)
    torch.testing.assert_close(t1, t2)
    torch.testing.assert_close(s1[:, perm], s2)


def test_conv_stem_ignores_brightness_and_contrast():
    torch.manual_seed(0)
    stem = ConvStem(width=16, dilations=(1, 2))
    image = torch.rand(1, 3, 24, 20) * 0.5 + 0.2
    feats = stem(image)
    assert feats.shape == (1, 24 * 20, 16)
    torch.testing.assert_close(stem(0.8 * image + 0.1), feats, atol=1e-4, rtol=1e-4)


def test_every_stack_parameter_learns():
    torch.manual_seed(0)
    n, k = 12 * 10, 5
    stack = Stack(layers="sxs", dim=7, width=16, heads=4)
    evals = torch.linspace(0, 1, k)[None]
    spectra = PairGraphs(
        graphs(orthonormal(n, k, 1).float()[None], evals, (12, 10)),
        graphs(orthonormal(n, k, 2).float()[None], evals, (12, 10)),
    )
    f_t, f_s = stack(torch.randn(1, n, 7), torch.randn(1, n, 7), spectra, ((12, 10),) * 2)
    assert f_t.shape == f_s.shape == (1, n, 16)
    (f_t * torch.randn_like(f_t)).sum().backward()
    dead = [name for name, p in stack.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


def test_positional_control_sees_where_tokens_are():
    """The non-spectral 's': shuffling the tokens changes its output (positions matter),
    and its position code is sines and cosines in [-1, 1]."""
    torch.manual_seed(0)
    attn = PositionalSelfAttention(width=8, heads=2)
    f = torch.randn(1, 6 * 5, 8)
    grid = graphs(None, None, (6, 5))
    perm = torch.randperm(30)
    assert not torch.allclose(attn(f, grid)[:, perm], attn(f[:, perm], grid), atol=1e-4)
    code = grid_encoding((6, 5), 8)
    assert code.shape == (30, 8) and code.abs().max() <= 1
    with pytest.raises(ValueError, match="divisible by 4"):
        PositionalSelfAttention(width=6, heads=2)


@pytest.mark.parametrize("mixer", ["spectral", "positional"])
def test_both_self_attentions_fit_the_stack(mixer):
    stack = Stack(layers="sx", dim=5, width=8, heads=2, mixer=mixer)
    evecs, evals = orthonormal(20, 3).float()[None], torch.tensor([[0.0, 0.5, 1.0]])
    g = graphs(evecs, evals, (4, 5))
    f_t, f_s = stack(torch.randn(1, 20, 5), torch.randn(1, 20, 5), PairGraphs(g, g), ((4, 5),) * 2)
    assert f_t.shape == (1, 20, 8) and torch.isfinite(f_s).all()


@pytest.mark.parametrize("layer", [SpectralLayer, CrossLayer])
def test_layers_are_residual_and_prenorm(layer):
    """Zeroing a layer's output projections leaves the stream as it was: f = f + mix(norm(f))."""
    torch.manual_seed(0)
    block = layer(width=8, heads=2)
    with torch.no_grad():
        block.attn.out.weight.zero_(), block.attn.out.bias.zero_()
        block.ffn.down.weight.zero_(), block.ffn.down.bias.zero_()
    f_t, f_s = 100 * torch.randn(1, 16, 8), torch.randn(1, 16, 8)
    evecs, evals = orthonormal(16, 3).float()[None], torch.tensor([[0.0, 0.5, 1.0]])
    spectra = PairGraphs(graphs(evecs, evals, (4, 4)), graphs(evecs, evals, (4, 4)))
    t, s = block(f_t, f_s, spectra)
    torch.testing.assert_close(t, f_t)
    torch.testing.assert_close(s, f_s)


def test_a_coarse_stack_adds_its_cells_change_to_every_token():
    """stride 2 on a 7 x 6 grid (odd rows: a partial cell): with every layer an identity, the
    tokens are the embedding's, normed; a layer's change reaches every token, smoothly."""
    torch.manual_seed(0)
    shape, n = (7, 6), 42
    evecs, evals = orthonormal(n, 4).float()[None], torch.tensor([[0.0, 0.3, 0.6, 1.0]])
    g = PairGraphs(graphs(evecs, evals, shape), graphs(evecs, evals, shape))
    stack = Stack(layers="sx", dim=8, width=8, heads=2, stride=2)
    f = torch.randn(1, n, 8)
    stack.pass_through([0, 1], embed=True)
    out_t, out_s = stack(f, f, g, (shape, shape))
    torch.testing.assert_close(out_t, stack.norm(f))
    torch.manual_seed(1)
    stack = Stack(layers="sx", dim=8, width=8, heads=2, stride=2)
    with torch.no_grad():
        stack.norm.weight.fill_(1.0), stack.norm.bias.zero_()
        embedded = stack.embed(f)
        moved = stack(f, f, g, (shape, shape))[0] - stack.norm(embedded)
    assert moved.shape == (1, n, 8) and moved.abs().amax(-1).min() > 1e-3  # every token
    cell = moved[0].unflatten(0, shape)[:2, :2].flatten(0, 1)  # one 2 x 2 cell's tokens
    assert (cell - cell[0]).abs().amax() > 1e-4  # bilinear: not one blocky copy


@pytest.mark.parametrize("shape", [(8, 6), (7, 6), (5, 9)])
def test_pooling_and_upsampling_the_tokens_match_the_grid_ops(shape):
    """Cells of a grid whose sides the stride may not divide are adaptive pooling's (evenly
    spread), and the way back is a bilinear resize, both on the (B, d, h, w) grid."""
    f = torch.randn(2, shape[0] * shape[1], 5)
    grid = f.transpose(1, 2).unflatten(-1, shape)  # (B, d, h, w)
    coarse = (-(-shape[0] // 2), -(-shape[1] // 2))
    want = F.adaptive_avg_pool2d(grid, coarse).flatten(2).transpose(1, 2)
    torch.testing.assert_close(pooled(f, shape, 2), want)
    back = F.interpolate(want.transpose(1, 2).unflatten(-1, coarse), size=shape, mode="bilinear")
    torch.testing.assert_close(upsampled(want, coarse, shape), back.flatten(2).transpose(1, 2))


def test_pooled_modes_keep_their_norm_and_sign_symmetry():
    """A smooth mode pooled 2 x 2 keeps unit norm; flipping a mode's sign flips its pooled
    copy, so the spectral filter on the coarse grid is still sign-invariant."""
    h, w = 8, 10
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    smooth = torch.stack([torch.ones(h, w), torch.cos(torch.pi * xs)], -1).reshape(1, h * w, 2)
    smooth = smooth / smooth.norm(dim=1, keepdim=True)
    g = ImageGraphs(smooth, torch.tensor([[0.0, 1.0]]), (h, w)).pooled(2)
    assert g.shape == (4, 5) and g.evecs.shape == (1, 20, 2)
    torch.testing.assert_close(g.evecs.norm(dim=1), torch.ones(1, 2), atol=0.02, rtol=0)
    flipped = ImageGraphs(smooth * torch.tensor([1.0, -1.0]), g.evals, (h, w)).pooled(2)
    torch.testing.assert_close(flipped.evecs, g.evecs * torch.tensor([1.0, -1.0]))
    torch.manual_seed(0)
    f = torch.randn(1, 20, 8)
    layer = SpectralFilter(width=8, heads=2)
    torch.testing.assert_close(layer(f, flipped), layer(f, g))
