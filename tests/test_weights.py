"""The shipped weights by name: hashes, aliases, recipes, and from_pretrained = infer.py's default."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from spectral_resnet import ShaderConfig, SpectralShader, load_image, save_image
from spectral_resnet.inference import cli_main
from spectral_resnet.weights import ALIASES, WEIGHTS, WeightsError, checkpoint_path, get_weights

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = str(ROOT / "configs")


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_every_registered_file_has_its_hash_and_a_recipe_that_composes(name):
    weights = get_weights(name)
    assert weights.verified() == weights.path
    assert weights.metrics and all(0 < v <= 1 for v in weights.metrics.values())
    args = weights.recipe.split()
    assert args[:2] == ["python", "train.py"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=args[2:])
    assert cfg.export in (name, *[a for a, n in ALIASES.items() if n == name])
    # the recipe's architecture is the file's
    assert SpectralShader.from_checkpoint(weights.path).config.to_dict()["stack"] == dict(
        cfg.model.stack
    )


def test_aliases_unknown_names_and_changed_bytes():
    assert get_weights("default") is WEIGHTS["stack"] is WEIGHTS[ALIASES["default"]]
    assert get_weights("pretrained") is WEIGHTS["linear"]
    assert checkpoint_path("some/file.pt") == Path("some/file.pt")
    with pytest.raises(WeightsError, match=r"no shipped weights called 'nope'; choose from"):
        get_weights("nope")
    with pytest.raises(WeightsError, match=r"called 'stme' and no such file; choose from \["):
        checkpoint_path("stme")
    tampered = replace(get_weights("stem"), sha256="0" * 64)
    with pytest.raises(WeightsError, match="the registry says 000000000000"):
        tampered.verified()


def test_from_pretrained_matches_infer_default_bit_for_bit(tmp_path, toof, tone):
    save_image(toof, tmp_path / "t.png")
    save_image(tone, tmp_path / "s.png")
    out = tmp_path / "out"
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(
            config_name="infer",
            overrides=[
                f"target={tmp_path / 't.png'}",
                f"sample={tmp_path / 's.png'}",
                f"output_dir={out}",
                "direction=forward",
                "progress=false",
            ],
        )
    assert cli_main(cfg) == 0
    shader = SpectralShader.from_pretrained("default", ShaderConfig()).eval()
    t, s = load_image(tmp_path / "t.png")[None], load_image(tmp_path / "s.png")[None]
    with torch.no_grad():
        image = shader(t, s).image[0]
    save_image(image, tmp_path / "python.png")
    assert (tmp_path / "python.png").read_bytes() == (out / "t_s_cccc.png").read_bytes()
