"""Masks: target_mask says where pastes may land, sample_mask which sample shapes may be taken;
a mask that forbids everything leaves the target unchanged and says why for every seed."""

from pathlib import Path

import pytest
import torch

from spectral_resnet import ShaderConfig, SpectralShader, load_image
from spectral_resnet.context import Outcome
from spectral_resnet.segments import keep_components

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="module")
def shader():
    return SpectralShader.from_pretrained("default", ShaderConfig(pattern="cccc")).eval()


@pytest.fixture(scope="module")
def pair():
    return tuple(load_image(ASSETS / f"{name}.png")[None] for name in ("toof", "tone"))


def shade(shader, pair, **masks):
    with torch.no_grad():
        return shader(*pair, **masks)


def pasted(out) -> list[tuple[int, torch.Tensor]]:
    """(label, placed mask (H, W)) of every paste of the run."""
    return [
        (int(label), mask.float())
        for block in out.pastes
        for label, mask in zip(block.components[0], block.masks[0])
        if label > 0
    ]


def test_a_target_mask_of_the_left_half_puts_every_paste_there(shader, pair):
    target = pair[0]
    width = target.shape[-1]
    left = torch.zeros(target.shape[-2:], dtype=torch.bool)
    left[:, : width // 2] = True
    free = shade(shader, pair)
    assert any(m[:, width // 2 :].sum() > 0 for _, m in pasted(free))  # unmasked: some go right
    out = shade(shader, pair, target_mask=left)
    placed = pasted(out)
    assert placed and all(m[:, width // 2 :].sum() == 0 for _, m in placed)
    assert torch.equal(out.image[..., width // 2 :], target[..., width // 2 :])


def test_a_sample_mask_excluding_a_component_means_it_is_never_pasted(shader, pair):
    sample = pair[1]
    labels = shader.sample_components(sample)[0]  # (H_s, W_s)
    first = pasted(shade(shader, pair))[0][0]  # the component the unmasked run pastes first
    excluded = labels == first
    out = shade(shader, pair, sample_mask=~excluded)
    kept = keep_components(labels[None], ~excluded[None])[0]
    placed = pasted(out)
    assert placed  # the other components still go
    assert all(not (excluded & (kept == label)).any() for label, _ in placed)


@pytest.mark.parametrize(
    "which, outcome",
    [("target_mask", Outcome.NO_ROOM_IN_MASK), ("sample_mask", Outcome.MASKED_SAMPLE)],
)
def test_a_mask_forbidding_everything_changes_nothing_and_says_why(shader, pair, which, outcome):
    image = pair[0] if which == "target_mask" else pair[1]
    out = shade(shader, pair, **{which: torch.zeros(image.shape[-2:])})
    assert torch.equal(out.image, pair[0])
    seeds = torch.cat([b.seeds[0, :, 0] >= 0 for b in out.pastes])
    outcomes = torch.cat([b.outcomes[0] for b in out.pastes])
    assert seeds.any() and (outcomes[seeds] == outcome).all()
    assert which in outcome.reason(shader.config.paste)


def test_masks_of_the_wrong_size_or_range_are_refused(shader, pair):
    with pytest.raises(
        ValueError, match=r"target_mask has shape \(3, 3\); it must cover the image"
    ):
        shader(*pair, target_mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"sample_mask values must be in \[0, 1\]"):
        shader(*pair, sample_mask=torch.full(pair[1].shape[-2:], 255.0))


def test_keep_components_keeps_shapes_at_least_half_inside():
    labels = torch.tensor([[[1, 1, 0, 2, 2, 2, 2]]])
    allowed = torch.tensor([[[True, False, False, True, True, False, False]]])
    assert keep_components(labels, allowed).tolist() == [[[1, 1, 0, 2, 2, 2, 2]]]
    allowed[0, 0, 4] = False  # 2 keeps a quarter of itself: out, and nothing is renumbered
    assert keep_components(labels, allowed).tolist() == [[[1, 1, 0, 0, 0, 0, 0]]]
