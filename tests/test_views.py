import pytest
import torch

from spectral_resnet import AttentionConfig, ShaderConfig, SpectralShader, ViewConfig
from spectral_resnet.views import View, ViewSearch, pull_back, render


def test_a_quarter_turn_is_rot90_on_screen_and_pulls_back_exactly():
    image = torch.rand(2, 3, 8, 8)
    turned = render(image, View(90.0))
    # counter-clockwise on screen: the top row becomes the left column, read upwards
    torch.testing.assert_close(turned, torch.rot90(image, 1, dims=(2, 3)))
    torch.testing.assert_close(pull_back(turned, View(90.0)), image)


def test_a_zoomed_view_pulls_back_to_the_image_where_it_stayed_in_view():
    image = torch.rand(1, 3, 16, 16)
    ramp = torch.linspace(0, 1, 16)
    smooth = (ramp[:, None] + 2 * ramp[None]).expand(1, 3, 16, 16)  # bilinear: exact on ramps
    back = pull_back(render(smooth, View(0.0, 0.5)), View(0.0, 0.5))
    torch.testing.assert_close(back[..., 2:-2, 2:-2], smooth[..., 2:-2, 2:-2])
    gone = pull_back(render(image, View(0.0, 2.0)), View(0.0, 2.0))  # zoomed in: corners leave
    assert gone[..., 0, 0].abs().max() == 0 and gone[..., 8, 8].abs().max() > 0


def test_the_view_search_tries_every_view_it_can_reach_once_identity_first():
    search = ViewSearch.of([45.0, -45.0, 0.0, 15.0, -15.0, 30.0, -30.0], [1.0, 0.75, 1.33])
    first = search.first()
    assert first[0] == View(0.0, 1.0) and len(first) == 3  # angles -30, 0, 30 at scale 1
    for best in first:  # each fine round: the best's grid neighbours, none tried before
        around = search.around(best)
        assert not set(around) & set(first) and len(set(around)) == len(around)
        for view in around:
            assert abs(view.angle - best.angle) <= 15 and view.scale in search.scales
    reached = set(first).union(*(search.around(v) for v in first))
    assert len(reached) == len(search) == 21  # every view is one round away from the first


def stem_model(angles) -> SpectralShader:
    torch.manual_seed(0)
    attention = AttentionConfig(qk_init="learned", kernel="softmax", features=["stem"])
    views = ViewConfig(angles=angles, scales=[1.0], size=24)
    return SpectralShader(ShaderConfig(pattern="c", attention=attention, views=views)).eval()


@pytest.mark.parametrize("angles, turn, ok", [([0, 90, 180, 270], 1, True), ([0], 1, False)])
def test_views_let_a_stem_match_a_turned_copy(angles, turn, ok):
    """Even untrained, a conv stem's features find an exact copy; not a turned one, unless
    the sample is also seen turned."""
    sample = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6), size=24, mode="bilinear")
    target = torch.rot90(sample, turn, dims=(2, 3))
    shader = stem_model(angles)
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    truth = torch.stack([xs, ys], -1).rot90(turn, dims=(0, 1))  # where each target pixel came from
    hits = (shader.match(target, sample)[0] - truth).norm(dim=-1) <= 1.5
    assert (hits.float().mean() > 0.9) == ok
    stats = {}
    shader.pair_context(target, sample, stats, ops=False)
    assert (stats["views"] == [(90.0, 1.0)]) == ok


def test_view_options_are_checked():
    with pytest.raises(ValueError, match="views.scales must be a number in"):
        ViewConfig(scales=[0.0])
    with pytest.raises(ValueError, match="need a value each"):
        ViewConfig(angles=[])
