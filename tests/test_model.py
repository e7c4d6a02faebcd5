from dataclasses import replace

import pytest
import torch

from spectral_resnet import AttentionConfig, ShaderConfig, SpectralShader, SpectrumConfig
from spectral_resnet.blocks import FFN
from spectral_resnet.data.procedural import curves, diagram, scene


def config(pattern: str, k: int, **attention) -> ShaderConfig:
    return ShaderConfig(
        pattern=pattern, spectrum=SpectrumConfig(k=k), attention=AttentionConfig(**attention)
    )


class SignFlippedShader(SpectralShader):
    """Flips the signs of some of the sample's eigenvectors, as another solver might."""

    signs: torch.Tensor
    sample: torch.Tensor

    def spectrum(self, image):
        spec = super().spectrum(image)
        if torch.equal(image, self.sample):
            spec.evecs = spec.evecs * self.signs
        return spec


def run(shader, target, sample):
    with torch.no_grad():
        return shader(target, sample)


@pytest.mark.parametrize(
    "qk_init, invariant",
    [("fmap", True), ("descriptor", True), ("learned", True), ("identity", False)],
)
def test_sign_flips_change_only_the_identity_baseline(toof, tone, qk_init, invariant):
    target, sample = tone[None], toof[None]
    cfg = config("xx", 8, qk_init=qk_init, kernel="linear", threshold=0.0)
    plain = run(SpectralShader(cfg), target, sample)
    flipped = SignFlippedShader(cfg)
    flipped.signs = torch.tensor([1, -1, 1, -1, -1, 1, -1, 1], dtype=torch.float32)
    flipped.sample = toof
    other = run(flipped, target, sample)
    same = torch.allclose(plain.image, other.image, atol=1e-4)
    assert same == invariant
    if qk_init == "identity":  # the prototype's phi_t phi_s^T depends on arbitrary signs
        assert (plain.image - other.image).abs().max() > 1e-2


def test_hand_initialised_ffn_is_the_seed_soft_blend():
    ffn = FFN(channels=3, gate_bias=0.7)
    h, s, a, act = (
        torch.rand(2, 3, 5, 6),
        torch.rand(2, 3, 5, 6),
        torch.rand(2, 3, 5, 6),
        torch.rand(2, 1, 5, 6),
    )
    delta, logit = ffn(torch.cat([h, s, a, act], 1))
    assert torch.allclose(delta, a - h, atol=1e-6)
    assert torch.allclose(logit, torch.full_like(logit, 0.7))
    alpha = torch.sigmoid(logit)
    assert torch.allclose(h + alpha * delta, (1 - alpha) * h + alpha * a, atol=1e-6)


def test_block_output_is_the_blend_of_target_and_retrieved(toof, tone):
    shader = SpectralShader(config("x", 8, qk_init="descriptor"))
    out = run(shader, tone[None], toof[None])
    g, a = out.blocks[0].gate, out.blocks[0].retrieved
    expected = ((1 - g) * tone[None] + g * a).clamp(0, 1)
    assert torch.allclose(out.image, expected, atol=1e-5)
    assert float(g.max()) > 0.1  # something was copied


def test_zero_gate_is_the_identity(toof, tone):
    shader = SpectralShader(config("xsxs", 8, qk_init="fmap", threshold=2.0, gate_bias=-1e4))
    out = run(shader, tone[None], toof[None])
    assert torch.equal(out.image, tone[None])


def test_gradients_reach_projections_and_ffn_only_when_learnable(toof, tone):
    learned = SpectralShader(config("xs", 6, qk_init="learned", kernel="softmax", threshold=0.0))
    out = learned(tone[None], toof[None])
    (out.image.mean() + sum(b.retrieved.mean() for b in out.blocks)).backward()
    ffn = learned.blocks[0].ffn
    for p in (learned.qk.w_q, learned.qk.w_k, ffn.linear.weight, ffn.mlp[2].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    frozen = SpectralShader(config("xsc", 6, qk_init="fmap"))
    assert not any(p.requires_grad for p in frozen.parameters())


def test_each_block_holds_only_the_weights_it_uses():
    shader = SpectralShader(config("cxsthf", 6, qk_init="learned", kernel="softmax"))
    owners = {
        name.split(".")[1] for name, _ in shader.named_parameters() if name.startswith("blocks.")
    }
    assert owners == {"1", "2"}  # only the soft blocks ('x', 's') have an FFN
    paste_only = SpectralShader(config("cccc", 6, qk_init="learned"))
    assert {n.split(".")[0] for n, _ in paste_only.named_parameters()} == {"qk"}


@pytest.mark.parametrize("kernel", ["linear", "softmax"])
def test_shapes_batch_non_square_and_mismatched_sizes(kernel):
    target = torch.stack([scene((20, 28), seed=s) for s in (0, 1)])
    sample = torch.stack([scene((24, 18), seed=s) for s in (2, 3)])
    cfg = config("xsc", 6, qk_init="learned", kernel=kernel)
    shader = SpectralShader(replace(cfg, work_size=16))
    out = run(shader, target, sample)
    assert out.image.shape == (2, 3, 20, 28)
    assert len(out.activations) == 3 and out.activations[0].shape == (2, 1, 20, 28)
    assert set(out.timings) >= {"spectra", "blocks", "total"}
    match = shader.match(target, sample)
    assert match.shape == (2, 20, 28, 2)
    assert match[..., 0].max() <= 17.5 and match[..., 1].max() <= 23.5 and match.min() >= -0.5


def test_match_of_an_image_with_itself_finds_itself():
    img = scene((24, 24), seed=5)[None]
    shader = SpectralShader(config("c", 8, qk_init="learned", kernel="softmax", softmax_scale=50.0))
    match = shader.match(img, img)
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    err = (match[0] - torch.stack([xs, ys], -1)).norm(dim=-1)
    assert (err <= 1.0).float().mean() > 0.8


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ShaderConfig(pattern="cxz"), "unknown pattern letter"),
        (lambda: ShaderConfig(pattern=""), "non-empty"),
        (lambda: AttentionConfig(qk_init="eye"), "unknown qk_init"),
        (lambda: SpectrumConfig(k=1), "k must be an integer"),
        (lambda: SpectrumConfig(sigma=0.0), "spectrum.sigma must be a number in"),
        (lambda: AttentionConfig(kernel="cosine"), "unknown attention kernel"),
        (lambda: AttentionConfig(qk_init="identity", features=["hks"]), "raw eigenvectors"),
        (lambda: ShaderConfig(work_size=0), "work_size must be an integer in \\[2, 4096\\]"),
    ],
)
def test_bad_configuration_raises_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        SpectralShader(make())


def test_refresh_target_re_embeds_the_changed_target():
    """The second paste block must see the pasted-on target: its activation differs from the
    one computed on the original target, and from a run without refresh."""
    toof, tone = curves((96, 96), seed=3)[None], diagram((96, 96), seed=1)[None]
    cfg = config("cc", 8, qk_init="fmap")
    fixed = run(SpectralShader(cfg), toof, tone)
    refreshed = run(SpectralShader(replace(cfg, refresh_target=True)), toof, tone)
    assert torch.equal(fixed.activations[0], refreshed.activations[0])  # same first block
    assert not torch.equal(fixed.activations[1], refreshed.activations[1])  # re-embedded


def test_ink_memo_finds_each_image_once_and_misses_after_a_change():
    """A pair shaded both ways reads each image's ink twice; the memo computes it once per
    image (views of it included) and recomputes after an in-place edit."""
    from spectral_resnet.model import InkMemo
    from spectral_resnet.shading import ink_mask

    image = torch.ones(3, 20, 20)
    image[:, 5:9, 5:15] = 0
    memo = InkMemo(size=2)
    first = memo(image[None], "auto")
    assert torch.equal(first, ink_mask(image[None]))
    assert memo(image[None], "auto") is first  # a new view of the same pixels: a hit
    image[:, 12:16, 5:15] = 0  # edited in place: the version moves on
    again = memo(image[None], "auto")
    assert again is not first and torch.equal(again, ink_mask(image[None]))
    memo(torch.zeros(1, 3, 4, 4), "auto"), memo(torch.ones(1, 3, 4, 4), "auto")
    assert len(memo.entries) == 2  # bounded
