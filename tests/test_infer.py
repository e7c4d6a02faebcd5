"""infer.py: the demo run, the pictures it writes, and one clear error per bad input."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from spectral_resnet.inference import cli_main
from spectral_resnet.io import load_image

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = str(ROOT / "configs")


def config(overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="infer", overrides=overrides)


def run_cli(tmp_path, *overrides):
    out = tmp_path / "out"
    base = [f"output_dir={out}", "progress=false", "model.spectrum.k=8"]
    if not any(o.startswith("ckpt=") for o in overrides):  # the hand-init pipeline
        base.append("ckpt=null")
    cfg = config([*base, *overrides])
    return cli_main(cfg), out


def small_png(path, size=(24, 24), mode="RGB"):
    rng = np.random.default_rng(0)
    arr = (rng.random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path, format=Image.registered_extensions()[path.suffix])
    return path


def test_demo_run_writes_every_picture_and_a_report(tmp_path):
    code, out = run_cli(tmp_path)
    assert code == 0
    names = {p.name for p in out.iterdir()}
    for direction in ("toof_tone", "tone_toof"):
        assert f"{direction}_cccc.png" in names
        assert f"{direction}_cccc_sheet.png" in names
        assert f"{direction}_cccc_seeds.png" in names
        assert {f"{direction}_cccc_act{i}_c.png" for i in range(4)} <= names
    report = json.loads((out / "run.json").read_text())
    assert len(report["runs"]) == 2
    assert report["runs"][0]["timings_s"]["total"] > 0
    assert report["runs"][0]["eigensolver_residuals"]["target"] < 1e-6
    result = load_image(out / "toof_tone_cccc.png")
    assert (result - load_image(ROOT / "assets" / "toof.png")).abs().max() > 0.2  # it did paste


@pytest.mark.parametrize("cache", ["true", "false"])
def test_both_directions_beside_each_other_write_what_one_after_the_other_does(tmp_path, cache):
    """parallel=true (the reverse in a forked child, on one thread) and parallel=false (one
    after the other, on two) write the same files, seeds and pastes, and outputs within
    1/255 (the thread counts round differently); with the spectrum cache or without. The
    heatmaps, drawn from bfloat16 layers where the CPU has bf16 units, move by a few levels
    in a few places (9/255 at most, on 1% of the pixels, on this machine)."""
    runs = {}
    for parallel in ("true", "false"):
        out = tmp_path / parallel
        cfg = config(
            [f"output_dir={out}", "progress=false", "threads=2", f"parallel={parallel}"]
            + [f"model.spectrum.cache={cache}"]
        )
        assert cli_main(cfg) == 0
        runs[parallel] = out
    a, b = runs["true"], runs["false"]
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    reports = [json.loads((d / "run.json").read_text())["runs"] for d in (a, b)]
    for key in ("output", "seeds", "pastes", "splits", "sample_view"):
        assert [r[key] for r in reports[0]] == [r[key] for r in reports[1]], key
    for file in a.glob("*.png"):
        diff = np.abs(np.asarray(Image.open(file), int) - np.asarray(Image.open(b / file.name)))
        if "_act" in file.name or "_sheet" in file.name:
            assert diff.max() <= 16 and (diff > 1).mean() < 0.03, file.name
        else:
            assert diff.max() <= 1, file.name


def test_forward_only_and_names_follow_the_inputs(tmp_path):
    t = small_png(tmp_path / "left.png")
    s = small_png(tmp_path / "right.jpg")
    code, out = run_cli(
        tmp_path, f"target={t}", f"sample={s}", "direction=forward", "model.pattern=c"
    )
    assert code == 0
    assert (out / "left_right_c.png").exists() and not (out / "right_left_c.png").exists()


@pytest.mark.parametrize("mode", ["I;16", "P", "L", "LA", "RGBA", "CMYK"])
def test_unusual_modes_are_converted_not_rejected(tmp_path, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"img{suffix}"
    rgb = (np.random.default_rng(1).random((20, 22, 3)) * 255).astype(np.uint8)
    if mode == "I;16":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)  # a 16-bit grey PNG
        assert Image.open(path).mode.startswith("I")
    else:
        Image.fromarray(rgb).convert(mode).save(path)
    img = load_image(path)
    assert img.shape == (3, 20, 22) and img.dtype == torch.float32
    assert 0 <= float(img.min()) and float(img.max()) <= 1
    if mode == "I;16":  # 16-bit scaled by 65535, not clipped at 255
        assert torch.allclose(img[0], torch.from_numpy(rgb[..., 0] / 255.0).float(), atol=1e-3)
    if mode == "CMYK":  # colours survive the round trip approximately
        assert (img - torch.from_numpy(rgb / 255.0).permute(2, 0, 1).float()).abs().mean() < 0.1
    code, _ = run_cli(
        tmp_path, f"target={path}", f"sample={path}", "direction=forward", "model.pattern=c"
    )
    assert code == 0


def bad_inputs(tmp_path):
    good = small_png(tmp_path / "good.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((small_png(tmp_path / "full.png", (64, 64))).read_bytes()[:200])
    truncated_jpg = tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "full.jpg", quality=95)
    truncated_jpg.write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    one = small_png(tmp_path / "one.png", (1, 1))
    big = small_png(tmp_path / "big.png", (60, 60))
    tiny = small_png(tmp_path / "tiny.png", (16, 16))  # 256 pixels
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_bytes(b"\x00garbage")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permission bits; /proc refuses even root
        readonly = Path("/proc/spectral_resnet_test")
    return {
        "missing": ([f"target={tmp_path / 'nope.png'}", f"sample={good}"], "file not found"),
        "zero bytes": ([f"target={empty}", f"sample={good}"], "empty"),
        "text as png": ([f"target={text}", f"sample={good}"], "not a readable image"),
        "truncated png": ([f"target={truncated}", f"sample={good}"], "truncated or corrupt"),
        "truncated jpeg": ([f"target={truncated_jpg}", f"sample={good}"], "truncated or corrupt"),
        "1x1": ([f"target={one}", f"sample={good}"], "at least 2 pixels"),
        "pixel limit": (
            [f"target={big}", f"sample={good}", "max_pixels=1000"],
            "exceeds the limit",
        ),
        "pattern": (
            [f"target={good}", f"sample={good}", "model.pattern=cqz"],
            "unknown pattern letter",
        ),
        "k too large": (
            [f"target={tiny}", f"sample={tiny}", "model.spectrum.k=300"],
            "exceeds the number of pixels",
        ),
        "k huge": (
            [f"target={good}", f"sample={good}", "model.spectrum.k=12000"],
            "need 5.9 GB",
        ),
        "raw pickle ckpt": ([f"target={good}", f"sample={good}", f"ckpt={raw}"], "corrupt"),
        "sigma": (
            [f"target={good}", f"sample={good}", "model.spectrum.sigma=-1"],
            "spectrum.sigma must be a number in",
        ),
        "unwritable": (
            [f"target={good}", f"sample={good}", f"output_dir={readonly / 'x'}"],
            "not writable",
        ),
        "corrupt ckpt": ([f"target={good}", f"sample={good}", f"ckpt={ckpt}"], "corrupt"),
        "direction": (
            [f"target={good}", f"sample={good}", "direction=sideways"],
            "direction must be",
        ),
        "precision": (
            [f"target={good}", f"sample={good}", "model.precision=half"],
            "precision must be one of ('auto', 'float32', 'bfloat16')",
        ),
    }


CASES = [
    "missing",
    "zero bytes",
    "text as png",
    "truncated png",
    "truncated jpeg",
    "1x1",
    "pixel limit",
    "pattern",
    "k too large",
    "k huge",
    "raw pickle ckpt",
    "sigma",
    "unwritable",
    "corrupt ckpt",
    "direction",
    "precision",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_no_files(tmp_path, capsys, case):
    overrides, message = bad_inputs(tmp_path)[case]
    code, out = run_cli(tmp_path, *overrides)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("infer.py: error:") and message in err[0], err
    assert not out.exists()


def test_unwritable_output_dir_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    good = small_png(tmp_path / "good.png")
    code, _ = run_cli(tmp_path, f"target={good}", f"sample={good}", f"output_dir={blocker / 'sub'}")
    assert code == 2 and "is a file" in capsys.readouterr().err


def test_one_by_n_image_works(tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray((np.random.default_rng(2).random((1, 40, 3)) * 255).astype(np.uint8)).save(
        strip
    )
    code, out = run_cli(
        tmp_path,
        f"target={strip}",
        f"sample={strip}",
        "direction=forward",
        "model.pattern=c",
        "model.spectrum.k=4",
    )
    assert code == 0 and (out / "strip_strip_forward_c.png").exists()


def test_cli_exit_code_and_help_through_hydra(tmp_path):
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "infer.py"),
            f"target={tmp_path / 'missing.png'}",
            f"output_dir={tmp_path / 'o'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("infer.py: error:")
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "o").exists()
    cfg = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), "--cfg", "job", "model.pattern=ct"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert cfg.returncode == 0 and "pattern: ct" in cfg.stdout


def test_checkpoint_brings_its_model_and_refuses_architecture_overrides(tmp_path):
    from spectral_resnet import AttentionConfig, ShaderConfig, SpectralShader, SpectrumConfig

    trained = ShaderConfig(
        pattern="c",
        spectrum=SpectrumConfig(k=6),
        attention=AttentionConfig(qk_init="learned", kernel="softmax"),
    )
    ckpt = SpectralShader(trained).save(tmp_path / "model.pt")
    good = small_png(tmp_path / "good.png")
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    base = [sys.executable, str(ROOT / "infer.py"), f"target={good}", f"sample={good}"]
    base += [f"ckpt={ckpt}", "direction=forward", "progress=false", "model.pattern=cc"]
    ok = subprocess.run(
        [*base, f"output_dir={tmp_path / 'ok'}", "model.work_size=20"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    report = json.loads((tmp_path / "ok" / "run.json").read_text())
    assert report["model"]["spectrum"]["k"] == 6  # from the checkpoint, no flags given
    assert report["model"]["attention"]["qk_init"] == "learned"
    assert report["model"]["pattern"] == "cc" and report["model"]["work_size"] == 20
    bad = subprocess.run(
        [*base, f"output_dir={tmp_path / 'bad'}", "model.spectrum.k=8"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "model.spectrum.k=8 changes the architecture" in bad.stderr and "k=6" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_default_run_uses_the_shipped_weights_and_a_hand_init_skips_them(tmp_path):
    from spectral_resnet import SpectralShader

    shipped = SpectralShader.from_pretrained("default").config
    assert shipped.attention.qk_init == "learned"
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    base = [sys.executable, str(ROOT / "infer.py"), "direction=forward", "progress=false"]
    for extra, init in (([], "learned"), (["model.attention.qk_init=fmap"], "fmap")):
        out = tmp_path / init
        proc = subprocess.run(
            [*base, f"output_dir={out}", *extra], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        model = json.loads((out / "run.json").read_text())["model"]
        assert model["attention"]["qk_init"] == init
        assert (model["attention"]["tied"] is True) == (init == "learned")


def test_temp_files_a_killed_run_left_are_cleaned_by_the_next(tmp_path):
    """After SIGKILL mid-write: hidden `.NAME.XXXX.tmp` files (`io.write_atomic`'s). The
    next write removes those older than STALE_SECONDS and leaves a live writer's alone."""
    import os
    import time

    from spectral_resnet.io import STALE_SECONDS, save_image
    from spectral_resnet.spectral.spectrum import SpectrumCache, compute_spectrum

    old = time.time() - 2 * STALE_SECONDS
    stale = [tmp_path / ".out.png.k2j3h4.tmp", tmp_path / "cache" / ".0123abcd.pt.x9y8.tmp"]
    live = tmp_path / ".out.png.live01.tmp"
    (tmp_path / "cache").mkdir()
    for f in [*stale, live]:
        f.write_bytes(b"")
    for f in stale:
        os.utime(f, (old, old))
    save_image(torch.zeros(3, 4, 4), tmp_path / "out.png")
    compute_spectrum(torch.rand(3, 8, 8), k=4, cache=SpectrumCache(tmp_path / "cache"))
    assert not any(f.exists() for f in stale) and live.exists()
    assert (tmp_path / "out.png").exists() and list((tmp_path / "cache").glob("*.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["to infer.py", "to its process group"])
def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing(tmp_path, interrupt, group):
    """SIGINT while shading (the first block is done: Python, torch and Hydra are loaded, and
    the bar is not still being drawn): exit 130, one line of ours, no traceback, no output
    dir, and no process left of the reverse direction, which runs beside the forward on two
    threads: sent to infer.py alone, or to the group as a terminal's Ctrl-C is. The message
    is the last line, on a line of its own: infer.py draws the reverse direction's bar too,
    so nothing of the other process's can come after it or share its line."""
    for name in ("t", "s"):
        small_png(tmp_path / f"{name}.png", size=(512, 512))
    out = tmp_path / "out"
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))  # cold: slow enough
    code, text = interrupt(
        [sys.executable, str(ROOT / "infer.py"), f"target={tmp_path / 't.png'}"]
        + [f"sample={tmp_path / 's.png'}", f"output_dir={out}", "progress=true", "threads=2"],
        b"1/4",
        env,
        group=group,
    )
    assert code == 130, text
    ours = [line for line in text.replace("\r", "\n").splitlines() if "infer.py:" in line]
    assert ours == ["infer.py: interrupted; nothing more was written"], text
    assert text.endswith("\ninfer.py: interrupted; nothing more was written\n"), text
    assert "Traceback" not in text and not out.exists()


NAMES = ["photo (1).png", "Café.png", "猫.png", "img[1].png", "a,b.png", "it's.png"]


def test_file_names_people_have_reach_hydra_as_they_are(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from spectral_resnet.cli import quote_paths

    parser = OverridesParser.create()
    for name in NAMES:
        path = str(tmp_path / name)
        for argv in ([f"target={path}"], [path]):  # an override, or the first positional
            (arg,) = quote_paths(argv, ("target", "sample"))
            assert parser.parse_overrides([arg])[0].value() == path, arg
    assert quote_paths(["a.png", "b.png", "model.pattern=c"], ("target", "sample")) == [
        "target='a.png'",
        "sample='b.png'",
        "model.pattern=c",
    ]
    assert quote_paths(["-m", "target=a.png,b.png"]) == ["-m", "target=a.png,b.png"]  # a sweep


def test_positional_paths_with_awkward_names_run_end_to_end(tmp_path):
    t, s = small_png(tmp_path / NAMES[0]), small_png(tmp_path / NAMES[5])
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), str(t), str(s), "ckpt=null"]
        + ["model.pattern=c", "direction=forward", f"output_dir={tmp_path / 'o'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "o" / "photo (1)_it's_c.png").is_file()


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.paste.seeds=100000", "paste.seeds must be an integer in [1, 64]"),
        ("model.paste.rotation=nan", "paste.rotation must be degrees in [-360, 360]"),
        ("model.paste.rotation=inf", "paste.rotation must be degrees in [-360, 360]"),
        ("model.shading.shadow_darkness=nan", "shading.shadow_darkness must be a number in"),
        ("model.shading.thicken_time=1e9", "shading.thicken_time must be a number in [0, 200]"),
        ("model.attention.threshold=3", "attention.threshold must be a number in [0, 2]"),
        ("max_pixels=1", "max_pixels must be an integer in [2,"),
        ("num_workers=1000", "num_workers must be an integer in [0, 64]"),
        ("threads=0", "threads must be an integer in [1, 1024]"),
    ],
)
def test_every_number_has_a_finite_range_named_in_one_line(tmp_path, capsys, override, message):
    good = small_png(tmp_path / "good.png")
    code, out = run_cli(tmp_path, f"target={good}", f"sample={good}", override)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("max_pixels=abc", "max_pixels=abc"),
        ("num_workers=two", "num_workers=two"),
        ("strict=maybe", "strict=maybe"),
        ("model.paste.seeds=1.5", "model.paste.seeds=1.5"),
    ],
)
def test_a_mistyped_option_is_one_line_and_exit_2_before_hydra(capsys, override, message):
    from spectral_resnet.cli import check_overrides

    with pytest.raises(SystemExit) as stop:
        check_overrides("infer", [override], "infer.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and message in err[0], err


def test_a_numeric_output_dir_is_a_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = small_png(tmp_path / "good.png")
    cfg = config([f"target={good}", f"sample={good}", "output_dir=123", "ckpt=null"])
    cfg.model.pattern, cfg.progress = "c", False
    assert cli_main(cfg) == 0 and (tmp_path / "123" / "run.json").is_file()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_the_python_api_takes_any_float_dtype(dtype):
    from spectral_resnet import ShaderConfig, SpectralShader

    shader = SpectralShader(ShaderConfig(pattern="c", spectrum={"k": 4})).eval()
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = shader(image.to(dtype), image.to(dtype))
        reference = shader(image.to(dtype).float(), image.to(dtype).float())
    assert out.image.dtype == torch.float32 and torch.equal(out.image, reference.image)


def test_the_python_api_refuses_0_to_255_pixels_and_empty_batches():
    from spectral_resnet import ShaderConfig, SpectralShader

    shader = SpectralShader(ShaderConfig(pattern="c", spectrum={"k": 4})).eval()
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"target values span .*divide 0..255 pixels by 255"):
        shader(image * 255, image)
    with pytest.raises(ValueError, match="the batch is empty"):
        shader(image[:0], image[:0])


def test_a_float_tiff_of_0_to_255_values_loads_as_the_image_it_is(tmp_path):
    values = np.random.default_rng(3).random((12, 14)).astype(np.float32) * 255
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    image = load_image(tmp_path / "f.tif")
    assert torch.allclose(image[0], torch.from_numpy(values / 255), atol=1e-6)
    values[0, 0] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="NaN or infinite pixels"):
        load_image(tmp_path / "nan.tif")


def test_a_bad_cache_size_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_RESNET_CACHE_GB", "-1")
    code, out = run_cli(tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "SPECTRAL_RESNET_CACHE_GB" in err[0] and not out.exists()


def test_masks_from_the_command_line_follow_their_image(tmp_path):
    """target_mask= and sample_mask= read grey or alpha files; a mask follows its image,
    so a target mask that forbids everything leaves the forward output as the target and
    its skips in run.json say why; a mask of the wrong shape is one line, exit 2."""
    from spectral_resnet.io import load_mask

    grey = tmp_path / "none.png"
    Image.new("L", (160, 160), 0).save(grey)
    alpha = tmp_path / "left.png"
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[:, :40, 3] = 255
    Image.fromarray(rgba).save(alpha)
    left = load_mask(alpha, (160, 160))  # resized to the image: same aspect ratio
    assert left[:, :80].all() and not left[:, 80:].any()
    code, out = run_cli(tmp_path, f"target_mask={grey}", "ckpt=default")
    assert code == 0
    runs = json.loads((out / "run.json").read_text())["runs"]
    assert runs[0]["masks"] == {"target": True, "sample": False}
    assert runs[0]["skipped"] and all("target_mask" in s["reason"] for s in runs[0]["skipped"])
    target = ROOT / "assets" / "toof.png"
    assert torch.equal(load_image(out / runs[0]["output"]), load_image(target))
    assert any("sample_mask" in s["reason"] for s in runs[1]["skipped"])  # reverse: as sample
    Image.new("L", (30, 10), 255).save(tmp_path / "thin.png")
    code, _ = run_cli(tmp_path, f"sample_mask={tmp_path / 'thin.png'}")
    assert code == 2


def test_a_picture_that_several_files_show_is_encoded_once():
    """The paste blocks of a pass share one activation: its heatmap is drawn and encoded
    once for the four act*.png files, and the bytes are encode_image's."""
    from concurrent.futures import Future

    from spectral_resnet.io import encode_image, to_uint8
    from spectral_resnet.runs import encode_all

    heat, out = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    calls = []

    def submit(fn, *args):
        calls.append(args)
        job = Future()
        job.set_result(fn(*args))
        return job

    files = encode_all({"out.png": out, "act0.png": heat, "act1.png": heat}, submit)
    assert len(calls) == 2 and files["act0.png"] is files["act1.png"]
    assert files["act1.png"].result() == encode_image(to_uint8(heat), ".png")
    assert encode_all({"out.png": out})["out.png"] == encode_image(to_uint8(out), ".png")


def test_a_lost_reverse_direction_is_one_line_exit_2_and_no_files(tmp_path, monkeypatch, capsys):
    """The forked direction killed (the kernel's OOM killer, say): one line with the fix,
    exit code 2, nothing written."""
    import spectral_resnet.inference as inference
    from spectral_resnet.directions import ChildLost

    def lost(*args, **kwargs):
        raise ChildLost("the reverse direction's process ended without a result (signal 9)")

    monkeypatch.setattr(inference, "side_by_side", lost)
    out = tmp_path / "out"
    cfg = config([f"output_dir={out}", "progress=false", "threads=2"])
    assert cli_main(cfg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "infer.py: error: the reverse direction's process ended without a result (signal 9)"
    ]
    assert not out.exists()
