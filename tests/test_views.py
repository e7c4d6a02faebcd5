import pytest
import torch
from torch import Tensor

from spectral_resnet import (
    AttentionConfig,
    ShaderConfig,
    SpectralShader,
    StackConfig,
    ViewConfig,
)
from spectral_resnet.stack import Stack
from spectral_resnet.views import View, ViewSearch, crops, fitted_view, pull_back, render, shown


def test_a_quarter_turn_is_rot90_on_screen_and_pulls_back_exactly():
    image = torch.rand(2, 3, 8, 8)
    turned = render(image, View(90.0))
    # counter-clockwise on screen: the top row becomes the left column, read upwards
    torch.testing.assert_close(turned, torch.rot90(image, 1, dims=(2, 3)))
    torch.testing.assert_close(pull_back(turned, View(90.0), (8, 8)), image)


def ramp(h: int, w: int) -> Tensor:
    """A smooth image: bilinear sampling is exact on it."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return (ys + 2 * xs).expand(1, 3, h, w)


def test_a_zoomed_view_pulls_back_to_the_image_where_its_frame_shows_it():
    smooth = ramp(16, 16)
    back = pull_back(render(smooth, View(0.0, 0.5)), View(0.0, 0.5), (16, 16))
    torch.testing.assert_close(back[..., 2:-2, 2:-2], smooth[..., 2:-2, 2:-2])
    zoomed = View(0.0, 2.0)  # the frame cuts off the image's rim
    gone = pull_back(render(torch.rand(1, 3, 16, 16), zoomed), zoomed, (16, 16))
    kept = shown(zoomed, (16, 16), 1)
    assert kept[0, 0, 0].item() is False and kept[0, 8, 8].item() is True
    assert gone[..., 0, 0].abs().max() == 0 and gone[..., 8, 8].abs().max() > 0
    assert (gone.abs().amax(1) > 0)[0, 1:-1, 1:-1].equal(kept[0, 1:-1, 1:-1])


@pytest.mark.parametrize(
    "view, box", [(View(0.0, 0.5), (16, 24)), (View(0.0, 2.0), (32, 48)), (View(45.0), (16, 16))]
)
def test_a_whole_view_crops_nothing_and_pulls_back_everywhere(view, box):
    """The canvas holds the turned and zoomed image (never smaller than its frame, and of the
    same parity), so every pixel comes back, the ones the frame would cut off too."""
    h, w = (16, 24) if view.angle == 0 else (10, 10)
    smooth = ramp(h, w)
    seen = render(smooth, view, whole=True)
    assert seen.shape[-2:] == box == view.canvas((h, w))
    assert crops(view, (h, w)) == (view.scale > 1 or view.angle != 0)
    back = pull_back(seen, view, (h, w))
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    tolerance = 0.05 if view.scale < 1 else 0.02  # zoomed out: fewer samples
    assert (back[inner] - smooth[inner]).abs().max() < tolerance
    assert (back[inner] > 0).all()  # nothing left out


def test_a_batch_of_views_shares_the_largest_canvas():
    image = torch.rand(2, 3, 10, 10)
    views = [View(0.0, 1.0), View(30.0, 1.33)]
    seen = render(image, views, whole=True)
    assert seen.shape[-2:] == View(30.0, 1.33).canvas((10, 10)) == (20, 20)
    torch.testing.assert_close(pull_back(seen, views, (10, 10))[0], image[0])  # identity: exact


def test_a_cropping_view_leaves_no_sample_place_blank():
    """Where the frame shows the sample, its tokens are the frame's own (the stem's norms see
    a warped copy, as in training); where it cuts the sample off, the whole view's."""
    torch.manual_seed(0)
    attention = AttentionConfig(qk_init="learned", kernel="softmax", features=["stem"])
    shader = SpectralShader(ShaderConfig(pattern="c", attention=attention)).eval()
    view, image = [View(30.0, 1.33)], torch.rand(1, 3, 16, 16)
    kept = shown(view, (16, 16), 1).flatten(1)[..., None]  # (1, n, 1)
    assert 0.2 < kept.float().mean() < 0.8
    tokens = shader.encode(image, None, view)  # (1, n, d)
    framed = pull_back(shader.stem.maps(render(image, view)), view, (16, 16))
    whole = pull_back(shader.stem.maps(render(image, view, whole=True)), view, (16, 16))
    torch.testing.assert_close(tokens, torch.where(kept, framed.flatten(2).mT, whole.flatten(2).mT))
    assert (tokens.abs().amax(-1) > 0).all()
    assert not torch.allclose(framed, whole)  # the stem's norms differ on the larger canvas


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


def test_the_view_search_reads_the_tokens_without_the_layers(monkeypatch):
    """A stack model scores its views on the embedded tokens alone: it finds a turned copy
    under its turn without running a layer or solving a spectrum, and the layers may be
    narrower than the stem."""
    torch.manual_seed(0)
    sample = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6), size=24, mode="bilinear")
    target = torch.rot90(sample, 1, dims=(2, 3))
    config = ShaderConfig(
        pattern="c",
        attention=AttentionConfig(qk_init="learned", kernel="softmax", features=["stem"]),
        views=ViewConfig(angles=[0, 90, 180, 270], scales=[1.0], size=24),
        stack=StackConfig(layers="sx", width=32),
    )
    shader = SpectralShader(config).eval()

    def refused(*args, **kwargs):
        raise AssertionError("the view search ran the layers or solved a spectrum")

    monkeypatch.setattr(Stack, "forward", refused)
    monkeypatch.setattr(SpectralShader, "spectrum", refused)
    assert shader.choose_views(target, sample) == [View(90.0, 1.0)]


def test_a_view_scores_the_same_whatever_shares_its_batch():
    """The search's tokens (`encode(..., whole=False)`) render each view in the image's own
    frame, never on a canvas sized for its batch, so a view's score does not depend on
    the views beside it."""
    shader = stem_model([0.0])
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 7), size=(20, 28), mode="bilinear")
    views = [View(30.0, 1.33), View(-45.0, 0.75), View(15.0, 1.0)]
    together = shader.encode(image.expand(3, -1, -1, -1), None, views, whole=False)
    alone = torch.cat([shader.encode(image, None, [v], whole=False) for v in views])
    torch.testing.assert_close(together, alone)


def test_view_options_are_checked():
    with pytest.raises(ValueError, match="views.scales must be a number in"):
        ViewConfig(scales=[0.0])
    with pytest.raises(ValueError, match="need a value each"):
        ViewConfig(angles=[])


@pytest.mark.parametrize("view", [View(30.0, 1.2), View(-45.0, 0.8), View(0.0, 1.33)])
def test_the_view_fitted_to_a_known_warp_is_that_warp(view, view_pair):
    """The flow of a target rendered under a view gives back that view (translation is left
    out: the flow is shifted), and the grid's nearest to it."""
    target, sample, flow, valid = view_pair(view)
    grid = torch.stack([(flow[..., 0] + 0.5) / 16 - 1, (flow[..., 1] + 0.5) / 12 - 1], -1)
    along = torch.nn.functional.grid_sample(sample[None], grid[None], align_corners=False)[0]
    torch.testing.assert_close(along[:, valid], target[:, valid])  # the flow is render's own
    fitted = fitted_view(flow + 3.0, valid)
    assert fitted.angle == pytest.approx(view.angle, abs=1e-3)
    assert fitted.scale == pytest.approx(view.scale, rel=1e-4)
    search = ViewSearch.of([-45, -30, -15, 0, 15, 30, 45], [0.75, 0.87, 1.0, 1.15, 1.33])
    nearest = {1.2: 1.15, 0.8: 0.75}.get(view.scale, view.scale)
    assert search.nearest(fitted) == View(view.angle, nearest)
