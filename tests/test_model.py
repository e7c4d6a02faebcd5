from dataclasses import replace

import pytest
import torch

from spectral_resnet import (
    AttentionConfig,
    ShaderConfig,
    SpectralShader,
    SpectrumConfig,
    StackConfig,
)
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


STACK = dict(qk_init="learned", kernel="softmax", features=["stem", "hks", "patch"])


@pytest.mark.parametrize(
    "qk_init, layers, invariant",
    [
        ("fmap", "", True),
        ("descriptor", "", True),
        ("learned", "", True),
        ("stack", "sxs", True),  # the spectral filters see Phi g(Lambda) Phi^T only
        ("identity", "", False),
    ],
)
def test_sign_flips_change_only_the_identity_baseline(toof, tone, qk_init, layers, invariant):
    target, sample = tone[None], toof[None]
    options = STACK if qk_init == "stack" else dict(qk_init=qk_init, kernel="linear")
    cfg = replace(config("c", 8, **options), stack=StackConfig(layers=layers, width=16))
    torch.manual_seed(0)
    plain = SpectralShader(cfg)
    flipped = SignFlippedShader(cfg)
    flipped.load_state_dict(plain.state_dict())
    flipped.signs = torch.tensor([1, -1, 1, -1, -1, 1, -1, 1], dtype=torch.float32)
    flipped.sample = toof
    with torch.no_grad():
        a = plain.pair_context(target, sample).retrieved
        b = flipped.pair_context(target, sample).retrieved
    assert torch.allclose(a, b, atol=1e-4) == invariant
    if qk_init == "identity":  # the prototype's phi_t phi_s^T depends on arbitrary signs
        assert (a - b).abs().max() > 1e-2


def test_ops_with_no_seeds_leave_the_image_as_it_was(toof, tone):
    shader = SpectralShader(config("ctfh", 8, qk_init="fmap", threshold=2.0))
    out = run(shader, tone[None], toof[None])
    assert torch.equal(out.image, tone[None])


@pytest.mark.parametrize("layers, solves", [("", 0), ("x", 0), ("s", 2)])
def test_spectra_are_solved_only_where_tokens_stack_or_image_ops_read_them(
    toof, tone, monkeypatch, layers, solves
):
    """A stem-only (or 'x'-only) model matches and trains without an eigensolve; the image
    ops, and 's' layers, still get both images' spectra."""
    cfg = config("c", 6, qk_init="learned", kernel="softmax", features=["stem"])
    shader = SpectralShader(replace(cfg, stack=StackConfig(layers=layers, width=16)))
    calls = []
    spectrum = shader.spectrum
    monkeypatch.setattr(shader, "spectrum", lambda image: calls.append(1) or spectrum(image))
    ctx = shader.pair_context(tone[None], toof[None], ops=False)
    assert ctx.sample_boundary is None and ctx.cross.argmax().shape == (1, tone[0].numel())
    shader.match(tone[None], toof[None])
    assert len(calls) == 2 * solves
    calls.clear()
    run(shader, tone[None], toof[None])
    assert len(calls) == 2


def test_gradients_reach_every_weight_of_the_stack_only_when_learned(toof, tone):
    torch.manual_seed(0)
    cfg = replace(config("c", 6, **STACK), stack=StackConfig(layers="sx", width=16))
    learned = SpectralShader(cfg)
    ctx = learned.pair_context(tone[None], toof[None])
    ctx.cross.logits(torch.arange(0, 500, 7)[None]).logsumexp(-1).mean().backward()
    dead = [n for n, p in learned.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead and {n.split(".")[0] for n, _ in learned.named_parameters()} == {
        "stem",
        "stack",
        "qk",
    }
    frozen = SpectralShader(config("ctc", 6, qk_init="fmap"))
    assert not any(p.requires_grad for p in frozen.parameters())


def test_image_ops_hold_no_weights():
    shader = SpectralShader(config("cthf", 6, qk_init="learned", kernel="softmax"))
    assert {n.split(".")[0] for n, _ in shader.named_parameters()} == {"qk"}


@pytest.mark.parametrize("kernel", ["linear", "softmax"])
def test_shapes_batch_non_square_and_mismatched_sizes(kernel):
    target = torch.stack([scene((20, 28), seed=s) for s in (0, 1)])
    sample = torch.stack([scene((24, 18), seed=s) for s in (2, 3)])
    cfg = config("ctc", 6, qk_init="learned", kernel=kernel, features=["stem", "patch"])
    shader = SpectralShader(replace(cfg, work_size=16, stack=StackConfig(layers="sx", width=8)))
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
        (lambda: StackConfig(layers="sxc"), "stack.layers must be a string of"),
        (lambda: StackConfig(width=10, heads=4), "multiple of stack.heads"),
        (lambda: ShaderConfig(stack=StackConfig(layers="s")), "need attention.qk_init=learned"),
        (lambda: ShaderConfig(pattern=""), "non-empty"),
        (lambda: AttentionConfig(qk_init="eye"), "unknown qk_init"),
        (lambda: SpectrumConfig(k=1), "k must be an integer"),
        (lambda: SpectrumConfig(sigma=0.0), "spectrum.sigma must be a number in"),
        (lambda: AttentionConfig(kernel="cosine"), "unknown attention kernel"),
        (lambda: AttentionConfig(qk_init="identity", features=["hks"]), "raw eigenvectors"),
        (lambda: ShaderConfig(work_size=0), "work_size must be an integer in \\[2, 4096\\]"),
        (lambda: AttentionConfig(pyramid=0), "attention.pyramid must be an integer in \\[1, 4\\]"),
        (lambda: ShaderConfig(precision="half"), "precision must be one of"),
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


def test_image_memo_finds_each_image_once_and_misses_after_a_change():
    """A pair shaded both ways reads each image's ink twice; the memo computes it once per
    image (views of it included) and recomputes after an in-place edit."""
    from spectral_resnet.model import ImageMemo
    from spectral_resnet.shading import ink_mask

    image = torch.ones(3, 20, 20)
    image[:, 5:9, 5:15] = 0
    memo = ImageMemo(size=2)
    first = memo.ink(image[None], "auto")
    assert torch.equal(first, ink_mask(image[None]))
    assert memo.ink(image[None], "auto") is first  # a new view of the same pixels: a hit
    assert memo.ink(image[None], "dark") is not first  # other options: another entry
    image[:, 12:16, 5:15] = 0  # edited in place: the version moves on
    again = memo.ink(image[None], "auto")
    assert again is not first and torch.equal(again, ink_mask(image[None]))
    memo.ink(torch.zeros(1, 3, 4, 4), "auto"), memo.ink(torch.ones(1, 3, 4, 4), "auto")
    assert len(memo.entries) == 2  # bounded


def stem_shader(
    pyramid: int,
    layers: str = "",
    kernel: str = "softmax",
    stride: int = 1,
    precision: str = "float32",
) -> SpectralShader:
    """A small stem model (learned tied head), one view; float32 by default, as the dense
    references here are."""
    cfg = ShaderConfig.from_dict(
        {
            "precision": precision,
            "attention": dict(qk_init="learned", kernel=kernel, features=["stem"], tied=True)
            | {"pyramid": pyramid},
            "stack": {
                "layers": layers,
                "width": 16,
                "heads": 2,
                "stem_width": 16,
                "stride": stride,
            },
            "views": {"angles": [0.0], "scales": [1.0]},
            "spectrum": {"k": 6},
        }
    )
    torch.manual_seed(0)
    return SpectralShader(cfg).eval()


def test_the_pyramid_head_averages_the_cosines_of_both_levels():
    """Against a dense reference: the stem's maps at the working size and at half of it
    (area-downsampled images, bilinear maps back), each level's cosine of every pixel pair,
    averaged; match() takes the argmax of that."""
    import torch.nn.functional as F

    target, sample = scene((64, 72), seed=1)[None], scene((68, 64), seed=2)[None]
    shader = stem_shader(pyramid=2)

    def level(img, factor):
        small = F.interpolate(img, size=[-(-n // factor) for n in img.shape[-2:]], mode="area")
        maps = shader.stem.maps(small)
        maps = F.interpolate(maps, size=img.shape[-2:], mode="bilinear", align_corners=False)
        return F.normalize(maps.flatten(2).transpose(1, 2) @ shader.qk.w_q.T, dim=-1)

    with torch.no_grad():
        scores = sum(level(target, f) @ level(sample, f).transpose(1, 2) for f in (1, 2)) / 2
        ctx = shader.pair_context(target, sample, ops=False)
        logits = ctx.cross.logits(torch.arange(64 * 72)[None]) / shader.qk.scale
    assert ctx.cross.q.shape == (1, 64 * 72, 32)  # two levels of 16
    assert torch.allclose(logits, scores, atol=1e-5)
    best = scores.argmax(-1)[0]
    expected = torch.stack([best % 64, best // 64], -1).float().view(64, 72, 2)
    assert torch.equal(shader.match(target, sample)[0], expected)


def test_the_pyramid_leaves_out_levels_too_small_and_training():
    """A half level under 32 px is not scored (the head is the working level's), nor is any
    coarse level in training or under the linear kernel (its scores are no cosines); with
    room, the coarse level is appended."""
    small = scene((40, 40), seed=1)[None], scene((40, 40), seed=2)[None]
    large = scene((64, 64), seed=1)[None], scene((64, 64), seed=2)[None]
    one, two = stem_shader(pyramid=1, layers="sx"), stem_shader(pyramid=2, layers="sx")
    linear = stem_shader(pyramid=2, layers="sx", kernel="linear")
    with torch.no_grad():
        assert torch.equal(one.pair_context(*small).cross.q, two.pair_context(*small).cross.q)
        assert two.pair_context(*large).cross.q.shape[-1] == 32
        assert linear.pair_context(*large).cross.q.shape[-1] == 16
        two.train()
        assert two.pair_context(*large, ops=False).cross.q.shape[-1] == 16


def test_the_pyramid_scores_each_pair_of_a_batch_as_alone():
    """Three levels (128 px: 64 and 32 px below it) of a stack on a coarse grid, the samples
    under a turned and zoomed view, non-square images of other sizes, two pairs at once:
    each pair's Q and K are the ones it gets alone, to the batched convs' rounding (levels
    are resized, pooled, viewed and upsampled per image). One view for both: samples under
    different views share the whole-view canvas of the larger, which changes the fill of
    their cut-off places (docs/design.md)."""
    from spectral_resnet.views import View

    target = torch.stack([scene((128, 136), seed=s) for s in (0, 1)])
    sample = torch.stack([scene((132, 128), seed=s) for s in (2, 3)])
    views = [View(30.0, 1.15)] * 2
    shader = stem_shader(pyramid=3, layers="sx", stride=2)
    with torch.no_grad():
        both = shader.pair_context(target, sample, ops=False, views=views).cross
        alone = [
            shader.pair_context(
                target[i : i + 1], sample[i : i + 1], ops=False, views=views[i : i + 1]
            ).cross
            for i in range(2)
        ]
    assert both.q.shape == (2, 128 * 136, 48) and both.k.shape == (2, 132 * 128, 48)
    for part in ("q", "k"):
        together = getattr(both, part)
        assert torch.allclose(together, torch.cat([getattr(a, part) for a in alone]), atol=2e-3)


def test_bfloat16_runs_the_learned_layers_and_hands_on_float32_rows():
    """precision=bfloat16: the stem and the stack (its spectral layer too) run in bf16, so Q
    and K differ from float32's by bf16's rounding and no more; the rows the attention and
    the image ops read are float32; match() agrees on nearly every pixel; training runs
    float32 whatever is asked."""
    target, sample = scene((64, 72), seed=1)[None], scene((68, 64), seed=2)[None]
    exact = stem_shader(pyramid=2, layers="sx")
    fast = stem_shader(pyramid=2, layers="sx", precision="bfloat16")  # the same weights
    with torch.no_grad():
        a, b = (m.pair_context(target, sample, ops=False).cross for m in (exact, fast))
        for rows, ref in ((b.q, a.q), (b.k, a.k)):
            assert rows.dtype == torch.float32
            assert 1e-4 < (rows - ref).abs().max() / ref.abs().max() < 3e-2
        moved = (exact.match(target, sample) - fast.match(target, sample)).norm(dim=-1)
        assert (moved <= 1.0).float().mean() > 0.9
        exact.train(), fast.train()
        a, b = (m.pair_context(target, sample, ops=False).cross for m in (exact, fast))
    assert torch.equal(a.q, b.q) and torch.equal(a.k, b.k)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_where_the_device_has_bf16_units(monkeypatch, native):
    from spectral_resnet import model

    assert not model.native_bfloat16(torch.device("meta"))
    if not torch.cuda.is_available():
        assert not model.native_bfloat16(torch.device("cuda"))
    monkeypatch.setattr(model, "native_bfloat16", lambda device: native)
    shader = stem_shader(pyramid=1, precision="auto")
    with shader.arithmetic(torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") is native
    with stem_shader(pyramid=1, precision="bfloat16").arithmetic(torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")  # asked for: bf16, emulated or not
