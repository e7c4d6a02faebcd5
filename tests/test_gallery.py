import json

import pytest

from spectral_resnet.gallery import GALLERY, PAIRS, main


def test_gallery_inputs_are_committed():
    names = {n for target, sample, _ in PAIRS.values() for n in (target, sample)}
    assert len(PAIRS) >= 6
    assert all((GALLERY / "inputs" / f"{n}.png").exists() for n in names)


@pytest.mark.slow
def test_gallery_renders_every_pair_both_ways(tmp_path):
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(PAIRS)
    report = json.loads((tmp_path / "gallery.json").read_text())
    assert len(report) == 2 * len(PAIRS)
    assert all(r["pastes"] <= 6 for r in report.values())  # paste.max_pastes: no collage
    assert sum(r["pastes"] > 0 for r in report.values()) >= len(report) - 2
