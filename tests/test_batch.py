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
    for i in range(18):
        small_png(a / f"p{i:02d}.png")
        small_png(b / f"p{i:02d}.png", (20, 28))
    (a / "broken.png").write_text("not an image")
    small_png(b / "broken.png")
    small_png(b / "lonely.png")  # no target of that name
    return a, b


def test_twenty_pairs_two_broken_give_eighteen_results_and_name_the_two(tmp_path, folders, capsys):
    a, b = folders
    code, out = run_cli(tmp_path, f"target={a}", f"sample={b}", "num_workers=2")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    done = [d["name"] for d in summary["done"]]
    assert summary["pairs"] == 20 and done == [f"p{i:02d}" for i in range(18)]
    failed = {f["name"]: f for f in summary["failed"]}
    assert set(failed) == {"broken", "lonely"} and failed["lonely"]["target"] is None
    assert "not a readable image" in failed["broken"]["error"]
    for name in done:  # both directions, each pair in its own folder
        runs = json.loads((out / name / "run.json").read_text())["runs"]
        assert len(runs) == 2 and all((out / name / r["output"]).exists() for r in runs)
    assert Image.open(out / "grid.png").size[0] > 0
    assert "shaded 18 of 20 pairs" in capsys.readouterr().out


def test_a_pairs_csv_runs_its_rows_and_all_failing_is_exit_2(tmp_path, folders):
    a, b = folders
    listing = tmp_path / "pairs.csv"
    listing.write_text("target,sample\na/p00.png,b/p01.png\na/p00.png,b/p01.png\n")
    assert [p.name for p in pairs_from_csv(listing)] == ["p00_p01", "p00_p01_2"]
    code, out = run_cli(tmp_path, f"pairs={listing}", "direction=forward")
    assert code == 0 and len(json.loads((out / "summary.json").read_text())["done"]) == 2
    listing.write_text("a/p00.png,b/p01.png\na/broken.png,b/p00.png\n")
    assert run_cli(tmp_path, f"pairs={listing}", "direction=forward")[0] == 0  # one of two
    assert run_cli(tmp_path, f"pairs={listing}", "direction=forward", "strict=true")[0] == 2
    listing.write_text("a/broken.png,b/p00.png\n")
    assert run_cli(tmp_path, f"pairs={listing}")[0] == 2  # every pair failed


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


def test_a_thumbnail_makes_the_same_grid_as_its_full_size_output():
    import torch

    from spectral_resnet.batch import thumbnail

    outputs = [torch.rand(3, 300, 420), torch.rand(3, 90, 60)]
    small = [thumbnail(o, size=40) for o in outputs]
    assert [tuple(t.shape) for t in small] == [(3, 29, 40), (3, 40, 27)]
    assert torch.equal(grid(small, size=40), grid(outputs, size=40))
