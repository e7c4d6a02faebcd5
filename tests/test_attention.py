import pytest
import torch

from spectral_resnet.attention import QKProjection, SpectralAttention
from spectral_resnet.fmap import descriptor_functions, fit_functional_map
from spectral_resnet.spectral import compute_spectrum
from spectral_resnet.tokens import token_features


def explicit_softmax(q, k, v, scale):
    qn, kn = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    return torch.softmax(scale * qn @ kn.transpose(1, 2), -1) @ v


def test_chunked_softmax_equals_full_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, d, generator=g) for n, d in [(50, 6), (37, 6), (37, 4)])
    scale = torch.tensor(7.0)
    attn = SpectralAttention(kernel="softmax", chunk=7)
    assert torch.allclose(attn(q, k, v, scale), explicit_softmax(q, k, v, scale), atol=1e-5)
    rows = attn.rows(q, k, scale, torch.tensor([[0, 5], [49, 3]]))
    full = torch.softmax(
        scale
        * torch.nn.functional.normalize(q, dim=-1)
        @ torch.nn.functional.normalize(k, dim=-1).transpose(1, 2),
        -1,
    )
    assert torch.allclose(rows[0], full[0, [0, 5]], atol=1e-6)
    assert torch.allclose(rows.sum(-1), torch.ones(2, 2), atol=1e-5)
    assert torch.equal(attn.argmax(q, k, scale), full.argmax(-1))
    assert torch.allclose(attn.confidence(q, k, scale, None), full.amax(-1), atol=1e-6)


@pytest.mark.parametrize("every", [False, True], ids=["cells picked (cpu)", "every cell (gpu)"])
def test_evidence_is_the_half_grid_confidence_upsampled_and_skips_cells_out_of_reach(
    monkeypatch, every
):
    """The softmax evidence: the confidence at each 2x2 cell's first pixel, upsampled
    bilinearly, times the target's boundary. Cells no boundary pixel reads count for
    nothing: NaN queries there leave it finite, whether the cells in reach are picked on
    the host (a CPU) or every cell is scored and masked (a GPU: no host sync)."""
    import torch.nn.functional as F

    from spectral_resnet import context
    from spectral_resnet.attention import ProjectedAttention
    from spectral_resnet.context import PairContext

    monkeypatch.setattr(context, "every_cell", lambda device: every)

    g = torch.Generator().manual_seed(3)
    h, w = 9, 12
    q, k = torch.randn(2, h * w, 5, generator=g), torch.randn(2, 20, 5, generator=g)
    boundary = torch.zeros(2, h, w)
    boundary[0, :4, :5] = torch.rand(4, 5, generator=g) + 0.1  # the top left corner only
    far = torch.zeros(h, w, dtype=torch.bool)
    far[:, 8:] = True  # cells 4 and 5 (pixels 8-11): two cells from any boundary
    q_nan = torch.where(far.flatten()[None, :, None], torch.nan, q)
    attn = SpectralAttention(kernel="softmax", chunk=8)
    ctx = PairContext(
        cross=ProjectedAttention(q_nan, k, torch.tensor(4.0), attn),
        **dict.fromkeys(["sample_values", "target", "sample"]),
        target_boundary=boundary.flatten(1),  # the second image flat: no evidence at all
        sample_boundary=torch.rand(2, 20, generator=g),
        work_shape=(h, w),
        sample_shape=(4, 5),
        sample_labels=None,
    )
    dense = attn.confidence(q, k, torch.tensor(4.0), None).unflatten(1, (h, w))  # (2, h, w)
    cells = dense[:, ::2, ::2]  # (2, 5, 6): each cell's first pixel
    up = F.interpolate(cells[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    act = (up * boundary).flatten(1)
    expected = act / act.amax(1, keepdim=True).clamp_min(1e-12)
    assert torch.isfinite(ctx.evidence).all()
    assert torch.allclose(ctx.evidence, expected, atol=1e-6)
    assert ctx.evidence[0].max() == 1 and (ctx.evidence[1] == 0).all()
    assert (ctx.evidence[0][boundary[0].flatten() == 0] == 0).all()


def test_linear_kernel_equals_explicit_product():
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(1, 20, 5, generator=g),
        torch.randn(1, 30, 5, generator=g),
        torch.randn(1, 30, 3, generator=g),
    )
    attn = SpectralAttention(kernel="linear")
    scale = torch.tensor(0.5)
    assert torch.allclose(attn(q, k, v, scale), 0.5 * (q @ k.transpose(1, 2)) @ v, atol=1e-5)
    positive = SpectralAttention(kernel="linear", positive=True)
    pq, pk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    weights = pq @ pk.transpose(1, 2)
    expected = (weights / weights.sum(-1, keepdim=True)) @ v
    assert torch.allclose(positive(q, k, v, scale), expected, atol=1e-5)


def test_key_subset_keeps_the_strongest_boundary_keys():
    k = torch.arange(10.0).reshape(1, 10, 1).expand(1, 10, 2)
    v = torch.arange(10.0).reshape(1, 10, 1)
    boundary = torch.tensor([[0, 9, 0, 0, 8, 0, 0, 7, 0, 0]], dtype=torch.float32)
    attn = SpectralAttention(kernel="softmax", max_keys=3)
    ks, vs = attn.select_keys(k, v, boundary)
    assert vs.flatten().tolist() == [1.0, 4.0, 7.0]


def test_projection_gradients_follow_learnable_flag():
    f_t, f_s = torch.randn(1, 8, 4), torch.randn(1, 9, 4)
    for learnable in (True, False):
        proj = QKProjection(dim=4, init="identity", learnable=learnable)
        q, k = proj(f_t, f_s)
        assert torch.equal(q, f_t) and torch.equal(k, f_s)
        assert all(p.requires_grad == learnable for p in proj.parameters())
    with pytest.raises(ValueError, match="unknown qk_init"):
        QKProjection(dim=4, init="eye")


def test_token_features_shapes_and_errors(photo):
    spec = compute_spectrum(photo, k=6, cache=False)
    kinds = ("evecs", "hks", "wks", "color", "boundary", "context", "patch")
    feats = token_features(spec, photo, kinds)
    assert feats.shape == (32 * 40, 6 + 8 + 8 + 3 + 1 + 16 + 225) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="unknown token features"):
        token_features(spec, photo, ("sift",))


def test_functional_map_of_an_image_with_itself_is_near_identity(photo):
    spec = compute_spectrum(photo, k=8, cache=False)
    funcs = descriptor_functions(spec, photo)
    c = fit_functional_map(spec, spec, funcs, funcs, commutativity=1e-3)
    assert torch.allclose(c, torch.eye(8, dtype=c.dtype), atol=0.05)
    # flipping a sample eigenvector's sign flips the matching column of C: Phi_s C^T is unchanged
    flipped = spec.to()
    flipped.evecs = spec.evecs * torch.tensor([1, -1, 1, 1, -1, 1, 1, 1], dtype=spec.evecs.dtype)
    c2 = fit_functional_map(flipped, spec, funcs, funcs, commutativity=1e-3)
    assert torch.allclose(flipped.evecs @ c2.T, spec.evecs @ c.T, atol=1e-8)


def test_patch_tokens_turn_with_the_image(photo):
    """Oriented patches: a pixel's token is the same after the image is rotated by 90 deg."""
    from spectral_resnet.tokens import patch_tokens

    image = photo[:, :32, :32]
    turned = torch.rot90(image, 1, (1, 2))  # (y, x) -> (31 - x, y)
    a, b = patch_tokens(image), patch_tokens(turned)
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    inner = (slice(8, -8), slice(8, -8))  # away from the reflected border
    same = torch.nn.functional.cosine_similarity(
        a[(ys * 32 + xs)[inner].flatten()], b[((31 - xs) * 32 + ys)[inner].flatten()]
    )
    assert float(same.median()) > 0.99


def test_patch_and_learned_inits_are_patch_matching_exactly(photo):
    from spectral_resnet.tokens import feature_dim, patch_columns

    kinds = ("patch", "color", "hks", "wks")
    dim, cols = feature_dim(kinds, 6), patch_columns(kinds, 6)
    f_t, f_s = torch.randn(1, 10, dim), torch.randn(1, 12, dim)
    for tied in (False, True):
        proj = QKProjection(dim=dim, init="learned", learnable=True, patch=cols, tied=tied)
        q, k = proj(f_t, f_s)
        assert torch.equal(q[..., cols], f_t[..., cols]) and not q[..., cols.stop :].any()
        assert torch.equal(k[..., cols], f_s[..., cols])
        assert len(list(proj.parameters())) == (2 if tied else 3)  # W (W_k) and temperature
