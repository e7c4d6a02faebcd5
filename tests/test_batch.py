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


def pair_folders(tmp_path, names, size=(24, 24)):
    a, b = tmp_path / "T", tmp_path / "S"
    a.mkdir()
    b.mkdir()
    for name in names:
        small_png(a / name, size)
        small_png(b / name, (20, 28))
    return a, b


def test_both_directions_over_same_named_folders_write_every_picture(tmp_path):
    a, b = pair_folders(tmp_path, ["cat.png", "dog.png"])
    code, out = run_cli(tmp_path, f"target={a}", f"sample={b}", "model.pattern=c")
    assert code == 0
    for name in ("cat", "dog"):
        runs = json.loads((out / name / "run.json").read_text())["runs"]
        outputs = [r["output"] for r in runs]
        assert outputs == [f"{name}_{name}_forward_c.png", f"{name}_{name}_reverse_c.png"]
        pictures = sorted(p.name for p in (out / name).iterdir() if p.suffix == ".png")
        assert len(pictures) == 2 * 4, pictures  # output, activation, seeds, sheet: each way
    # a single run of two files with one name: both directions too
    code, single = run_cli(tmp_path / "one", f"target={a / 'cat.png'}", f"sample={b / 'cat.png'}")
    assert code == 0 and len([p for p in single.iterdir() if p.suffix == ".png"]) == 2 * 7


def test_pair_names_stay_inside_the_output_dir(tmp_path):
    from spectral_resnet.cli import safe_name

    for text, name in (
        ("..", "image"),
        ("../x", "_x"),
        ("a/b", "a_b"),
        ("猫", "猫"),
        (" .a. ", "a"),
    ):
        assert safe_name(text) == name
    a, b = pair_folders(tmp_path, ["...png", "..png", "grid.png.png"])
    out = tmp_path / "deep" / "out"
    out.parent.mkdir()
    code, _ = run_cli(
        tmp_path, f"target={a}", f"sample={b}", f"output_dir={out}", "model.pattern=c"
    )
    assert code == 0  # nothing beside the output dir, nothing above it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S", "T", "deep"]
    assert [p.name for p in out.parent.iterdir()] == ["out"]
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders) == 3 and not any(n.startswith(".") for n in folders), folders
    assert (out / "grid.png").is_file() and (out / "summary.json").is_file()


def test_a_thin_image_is_shaded_and_the_batch_goes_on(tmp_path):
    a, b = pair_folders(tmp_path, ["p0.png", "p1.png"])
    for shape in ((1, 300), (260, 1), (3, 100)):
        small_png(a / f"thin{shape[0]}x{shape[1]}.png", shape)
        small_png(b / f"thin{shape[0]}x{shape[1]}.png")
    code, out = run_cli(tmp_path, f"target={a}", f"sample={b}", "model.pattern=cc")
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["failed"] == [] and len(summary["done"]) == 5


def stop_at_second_pair(monkeypatch, error):
    """save_image raises `error` once the batch is writing its second pair."""
    import spectral_resnet.batch as batch

    real, seen = batch.save_image, set()

    def save(image, path):
        seen.add(path.parent)
        if len(seen) > 1:
            raise error
        return real(image, path)

    monkeypatch.setattr(batch, "save_image", save)


@pytest.mark.parametrize(
    "error, code, message",
    [
        (KeyboardInterrupt(), 130, "interrupted; 1 of 3 pairs done"),
        (OSError(28, "No space left on device"), 2, "No space left on device; 1 of 3 pairs done"),
    ],
)
def test_ctrl_c_or_a_full_disk_mid_batch_keeps_finished_pairs_and_the_summary(
    tmp_path, monkeypatch, capsys, error, code, message
):
    a, b = pair_folders(tmp_path, ["p0.png", "p1.png", "p2.png"])
    stop_at_second_pair(monkeypatch, error)
    got, out = run_cli(tmp_path, f"target={a}", f"sample={b}", "model.pattern=c")
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1 and message in err[0], err
    summary = json.loads((out / "summary.json").read_text())
    assert [d["name"] for d in summary["done"]] == ["p0"]
    assert summary["stopped"]["name"] == "p1" and summary["not_run"] == ["p2"]
    assert sorted(p.name for p in out.iterdir()) == ["p0", "summary.json"]  # no half pair
    assert len(list((out / "p0").iterdir())) == 2 * 4 + 1


@pytest.mark.slow
def test_a_real_ctrl_c_mid_batch_writes_the_summary(tmp_path, interrupt):
    import os
    import sys

    from test_infer import ROOT

    # the first run's tick: "| 1/24 [" cannot match a later one (as "2/12" matched "12/12")
    a, b = pair_folders(tmp_path, [f"p{i:02d}.png" for i in range(12)], size=(200, 200))
    out = tmp_path / "out"
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    code, text = interrupt(
        [sys.executable, str(ROOT / "infer.py"), f"target={a}", f"sample={b}"]
        + [f"output_dir={out}", "progress=true", "ckpt=null"],
        b"| 1/24 [",
        env,
    )
    assert code == 130 and "Traceback" not in text, text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"]["reason"] == "interrupted" and summary["not_run"]
    for pair in summary["done"]:  # every pair folder is whole
        assert len(json.loads((out / pair["name"] / "run.json").read_text())["runs"]) == 2
    folders = {p.name for p in out.iterdir() if p.is_dir()}
    assert folders == {d["name"] for d in summary["done"]}  # nothing hidden or half-written


def test_folder_pairing_names_every_file_it_cannot_pair(tmp_path, capsys):
    a, b = pair_folders(tmp_path, ["p0.png"])
    small_png(a / "twice.png")
    small_png(a / "twice.jpg")
    small_png(b / "twice.png")
    Image.open(small_png(tmp_path / "x.png")).save(a / "moving.gif")
    small_png(b / "moving.png")
    code, out = run_cli(tmp_path, f"target={a}", f"sample={b}", "model.pattern=c")
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and [d["name"] for d in summary["done"]] == ["moving", "p0"]
    (failure,) = summary["failed"]
    assert failure["name"] == "twice" and "2 files named twice.*" in failure["error"]
    assert "twice.jpg, twice.png" in failure["error"]


def test_a_pairs_csv_saved_by_a_spreadsheet_reads_its_header(tmp_path):
    a, b = pair_folders(tmp_path, ["p0.png"])
    listing = tmp_path / "pairs.csv"
    listing.write_bytes("target,sample\r\nT/p0.png,S/p0.png\r\n".encode("utf-8-sig"))
    assert [(p.name, p.error) for p in pairs_from_csv(listing)] == [("p0_p0", None)]


def test_an_output_dir_inside_an_input_folder_is_refused(tmp_path, capsys):
    a, b = pair_folders(tmp_path, ["p0.png"])
    for out in (a, a / "results"):
        code, _ = run_cli(tmp_path, f"target={a}", f"sample={b}", f"output_dir={out}")
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "inside the input folder" in err[0], err
    assert not (a / "results").exists() and sorted(p.name for p in a.iterdir()) == ["p0.png"]


def test_a_batch_where_every_pair_fails_says_so_on_stderr(tmp_path, capsys):
    a, b = pair_folders(tmp_path, [])
    (a / "x.png").write_text("not an image")
    small_png(b / "x.png")
    code, out = run_cli(tmp_path, f"target={a}", f"sample={b}")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"infer.py: error: every pair failed; see {out / 'summary.json'}"]


def test_one_sample_for_a_folder_of_targets_solves_its_spectrum_once(tmp_path, monkeypatch):
    """`target=DIR sample=FILE`: every frame with the same sample, whose spectrum is solved
    and whose ink components are found once for the whole folder."""
    import spectral_resnet.shading as shading
    import spectral_resnet.spectral.spectrum as spectrum

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        small_png(frames / f"f{i}.png", (24 + 4 * i, 24))  # three different frames
    sample = small_png(tmp_path / "style.png", (20, 20))
    solves, found = [], []
    eigenpairs, components = spectrum.eigenpairs, shading.ink_components
    monkeypatch.setattr(
        spectrum, "eigenpairs", lambda op, *a, **k: solves.append(op.n) or eigenpairs(op, *a, **k)
    )
    monkeypatch.setattr(
        shading, "ink_components", lambda ink, **k: found.append(ink.shape) or components(ink, **k)
    )
    monkeypatch.setenv("SPECTRAL_RESNET_CACHE", str(tmp_path / "cache"))  # nothing cached yet
    code, out = run_cli(
        tmp_path, f"target={frames}", f"sample={sample}", "direction=forward", "ckpt=default"
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [d["name"] for d in summary["done"]] == ["f0", "f1", "f2"]
    assert len(solves) == 4  # three frames and the sample, once
    assert found == [(1, 20, 20)]  # the sample's components, once
    assert all((out / f"f{i}" / f"f{i}_style_cccc.png").exists() for i in range(3))


def test_a_mask_folder_gives_each_target_its_own_mask(tmp_path):
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir()
    masks.mkdir()
    for i in range(2):
        small_png(frames / f"f{i}.png")
    Image.new("L", (24, 24), 0).save(masks / "f0.png")  # forbids every change to f0
    sample = small_png(tmp_path / "style.png")
    code, out = run_cli(
        tmp_path,
        f"target={frames}",
        f"sample={sample}",
        f"target_mask={masks}",
        "direction=forward",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [d["name"] for d in summary["done"]] == ["f0"]
    assert "no mask named f1.* for f1.png" in summary["failed"][0]["error"]
    result = Image.open(out / "f0" / "f0_style_cccc.png")
    assert result.tobytes() == Image.open(frames / "f0.png").convert("RGB").tobytes()


def test_a_pairs_csv_keeps_its_own_samples_beside_a_sample_file(tmp_path, folders):
    """pairs= wins over target=/sample=: a sample file on the same command line is not
    shared into the CSV's pairs."""
    from omegaconf import OmegaConf

    from spectral_resnet.batch import one_sample

    a, b = folders
    listing = tmp_path / "pairs.csv"
    listing.write_text("a/p00.png,b/p01.png\n")
    other = tmp_path / "other.png"
    Image.new("RGB", (30, 30), (20, 20, 20)).save(other)  # unlike every file of the CSV
    cfg = OmegaConf.create({"pairs": str(listing), "target": str(a), "sample": str(other)})
    assert one_sample(cfg) is None
    assert one_sample(OmegaConf.merge(cfg, {"pairs": None})) == other
    code, out = run_cli(tmp_path, f"pairs={listing}", "direction=forward")
    assert code == 0
    alone = (out / "p00_p01" / "p00_p01_cccc.png").read_bytes()
    code, out = run_cli(
        tmp_path, f"pairs={listing}", f"target={a}", f"sample={other}", "direction=forward"
    )
    assert code == 0
    assert (out / "p00_p01" / "p00_p01_cccc.png").read_bytes() == alone  # p01 shaded it
