"""Batch inference: many pairs in one process, failures recorded and skipped."""

import json

import pytest
from PIL import Image
from test_infer import run_cli, small_png

from spectral_resnet.batch import grid, pairs_from_csv


@pytest.fixture
def folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i in range(3):
        small_png(a / f"p{i}.png")
        small_png(b / f"p{i}.png", (20, 28))
    (a / "broken.png").write_text("not an image")
    small_png(b / "broken.png")
    small_png(b / "lonely.png")  # no target of that name
    return a, b


def test_two_folders_pair_by_name_and_the_batch_goes_on_past_failures(tmp_path, folders, capsys):
    a, b = folders
    code, out = run_cli(tmp_path, f"target={a}", f"sample={b}", "num_workers=2")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 5 and [d["name"] for d in summary["done"]] == ["p0", "p1", "p2"]
    failed = {f["name"]: f for f in summary["failed"]}
    assert set(failed) == {"broken", "lonely"} and failed["lonely"]["target"] is None
    assert "not a readable image" in failed["broken"]["error"]
    for name in ("p0", "p1", "p2"):  # both directions, each pair in its own folder
        runs = json.loads((out / name / "run.json").read_text())["runs"]
        assert len(runs) == 2 and all((out / name / r["output"]).exists() for r in runs)
    assert Image.open(out / "grid.png").size[0] > 0
    assert "shaded 3 of 5 pairs" in capsys.readouterr().out
    assert run_cli(tmp_path, f"target={a}", f"sample={b}", "strict=true")[0] == 2


def test_a_pairs_csv_runs_its_rows_and_all_failing_is_exit_2(tmp_path, folders):
    a, b = folders
    listing = tmp_path / "pairs.csv"
    listing.write_text("target,sample\na/p0.png,b/p1.png\na/p0.png,b/p1.png\n")
    assert [n for n, _, _ in pairs_from_csv(listing)] == ["p0_p1", "p0_p1_2"]
    code, out = run_cli(tmp_path, f"pairs={listing}", "direction=forward")
    assert code == 0 and len(json.loads((out / "summary.json").read_text())["done"]) == 2
    listing.write_text("a/broken.png,b/p0.png\n")
    assert run_cli(tmp_path, f"pairs={listing}")[0] == 2


def test_a_bad_pairs_file_is_one_line_exit_2(tmp_path, capsys):
    listing = tmp_path / "pairs.csv"
    listing.write_text("only-one-column\n")
    code, _ = run_cli(tmp_path, f"pairs={listing}")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "expected target,sample" in err[0]


def test_grid_fits_every_output_in_its_tile():
    import torch

    sheet = grid([torch.zeros(3, 10, 40), torch.zeros(3, 50, 5)], size=16, columns=1)
    assert tuple(sheet.shape) == (3, 40, 20)
    assert float(sheet[:, :4, :16].max()) == 0.0  # the wide one: 16 x 4
