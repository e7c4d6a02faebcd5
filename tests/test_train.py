"""Training: configs compose and instantiate, a short fit learns, checkpoints load into the
shader exactly, sweeps and DDP run (slow), data flow is right, the evaluation is honest."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import hydra
import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spectral_resnet import SpectralShader
from spectral_resnet.data.pairs import PairDataModule, SizeBatches, SyntheticPairs, split_files
from spectral_resnet.eval import colour_nn, evaluate, pair_metrics, synthetic_pairs
from spectral_resnet.model import CheckpointError
from spectral_resnet.stack import ImageGraphs, PairGraphs
from spectral_resnet.training import train
from spectral_resnet.views import View

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = str(ROOT / "configs")
TINY = [
    "data.size=24",
    "data.train_pairs=4",
    "data.val_pairs=2",
    "data.test_pairs=2",
    "data.batch_size=2",
    "model.spectrum.k=6",
    "module.queries=32",
    "callbacks.sample_images.every_n_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def train_config(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=[f"output_dir={tmp_path}", *TINY, *overrides])


def model_of(cfg) -> SpectralShader:
    return SpectralShader(OmegaConf.to_object(cfg.model))


@pytest.mark.parametrize(
    "experiment",
    ["learned", "stack", "stem", "depth", "depth_views", "pretrained", "identity", "fmap"],
)
@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
@pytest.mark.parametrize("logger", ["csv", "tensorboard"])
def test_every_train_config_composes_and_instantiates(tmp_path, experiment, trainer, logger):
    cfg = train_config(
        tmp_path, f"experiment={experiment}", f"trainer={trainer}", f"logger={logger}"
    )
    learned = experiment in ("learned", "stack", "stem", "depth", "depth_views", "pretrained")
    assert cfg.model.attention.qk_init == ("learned" if learned else experiment)
    model = model_of(cfg)
    assert model.config.attention.trains == learned
    assert (model.stack is not None) == (experiment in ("stack", "depth", "depth_views"))
    assert (cfg.init_from == "stem") == experiment.startswith("depth")
    assert cfg.module.fit_views == (experiment == "depth_views")
    # the stem alone reads no spectra: its training data solves none
    assert model.reads_spectra == (experiment != "stem")
    module = hydra.utils.instantiate(
        cfg.module,
        model=model,
        optimizer=hydra.utils.instantiate(cfg.optim.optimizer),
        scheduler=hydra.utils.instantiate(cfg.optim.scheduler),
    )
    if learned:  # the trainer a fit attaches, with the run's optimizer steps
        module.trainer = SimpleNamespace(estimated_stepping_batches=100)
        schedule = module.configure_optimizers()["lr_scheduler"]
        per_step = cfg.module.lr_interval == "step"
        assert per_step == (experiment == "depth_views")
        assert schedule["interval"] == cfg.module.lr_interval
        assert schedule["scheduler"].T_max == (100 if per_step else cfg.trainer.max_epochs)
    data = hydra.utils.instantiate(cfg.data, spectrum=model.config.spectrum)
    assert isinstance(data, PairDataModule)
    for callback in cfg.callbacks.values():
        hydra.utils.instantiate(callback)
    if trainer != "gpu" or torch.cuda.is_available():
        hydra.utils.instantiate(cfg.trainer, logger=False)
    if trainer == "ddp":
        assert cfg.trainer.strategy == "ddp_spawn" and cfg.trainer.devices == 2


def test_infer_config_composes_and_instantiates():
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="infer", overrides=["model.pattern=ctfh"])
    assert model_of(cfg).pattern == "ctfh"


def test_eval_config_composes_with_the_same_model_group():
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["model.spectrum.k=6"])
    assert model_of(cfg).config.spectrum.k == 6 and cfg.model.attention.kernel == "softmax"


def test_fast_dev_run_fits_on_cpu(tmp_path):
    metrics = train(
        train_config(tmp_path, "+trainer.fast_dev_run=true", "logger=csv", "test=false")
    )
    assert "train/loss" in metrics and torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_the_stack_fits_end_to_end(tmp_path):
    """Stem, layers and head train together; the best checkpoint rebuilds the whole stack."""
    cfg = train_config(tmp_path, "experiment=stack", "data.size=24", "trainer.max_epochs=1")
    cfg.data.warp.crop = [0.9, 1.0]  # 24 px crops of 40% would be 10 px photos
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    rebuilt = SpectralShader.from_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert rebuilt.config.stack.layers == "sx" and rebuilt.stem is not None
    torch.manual_seed(cfg.seed)  # the initial weights train() started from
    assert not torch.equal(rebuilt.stem.out.weight, model_of(cfg).stem.out.weight)


def test_layers_grown_on_a_shallower_model_start_where_it_left_off(tmp_path):
    """init_from: the shared weights are copied and the new layers pass their tokens through,
    so the stack's output is the shallow model's tokens, normed; the layers then train."""
    shallow = SpectralShader(OmegaConf.to_object(train_config(tmp_path, "experiment=stem").model))
    with torch.no_grad():
        shallow.qk.w_q.add_(0.1 * torch.randn_like(shallow.qk.w_q))  # not an init by chance
    shallow.save(tmp_path / "stem.pt")
    cfg = train_config(
        tmp_path / "deep",
        "experiment=depth",
        f"init_from={tmp_path / 'stem.pt'}",
        "model.stack.layers=sx",
        "trainer.max_epochs=1",
        "test=false",
    )
    deep = model_of(cfg)
    copied = deep.warm_start(tmp_path / "stem.pt")
    assert set(copied) == set(shallow.state_dict())
    torch.testing.assert_close(deep.qk.w_q, shallow.qk.w_q)
    f_t, f_s = torch.randn(1, 20, 64), torch.randn(1, 20, 64)
    evecs = torch.linalg.qr(torch.randn(20, 4))[0][None]
    g = ImageGraphs(evecs, torch.tensor([[0.0, 0.2, 0.5, 1.0]]), (4, 5))
    out_t, out_s = deep.stack(f_t, f_s, PairGraphs(g, g), ((4, 5),) * 2)
    torch.testing.assert_close(out_t, deep.stack.norm(f_t))
    torch.testing.assert_close(out_s, deep.stack.norm(f_s))
    # a stack grown on a one-layer model keeps that layer and passes the next one through
    one = replace(deep.config, stack=replace(deep.config.stack, layers="s"))
    grown = SpectralShader(one)
    grown.save(tmp_path / "s.pt")
    deep.warm_start(tmp_path / "s.pt")
    torch.testing.assert_close(
        deep.stack.layers[0].ffn.down.weight, grown.stack.layers[0].ffn.down.weight
    )
    assert (
        deep.stack.layers[0].ffn.down.weight.any()
        and not deep.stack.layers[1].ffn.down.weight.any()
    )
    # a layer of another kind in the source's place is not half copied: it starts as identity
    other = SpectralShader(replace(deep.config, stack=replace(deep.config.stack, layers="x")))
    deep.warm_start(other.save(tmp_path / "x.pt"))
    assert not deep.stack.layers[0].attn.out.weight.any()
    # the whole run: the layers learn away from the identity
    train(cfg)
    trained = SpectralShader.from_checkpoint(tmp_path / "deep" / "checkpoints" / "last.ckpt")
    assert trained.stack.layers[1].attn.out.weight.any()
    torch.testing.assert_close(trained.stem.out.weight, shallow.stem.out.weight, atol=0.1, rtol=0)


def test_init_from_weights_that_share_nothing_is_one_line(tmp_path, capsys):
    from spectral_resnet.training import cli_main

    linear = SpectralShader.from_pretrained("linear").save(tmp_path / "linear.pt")
    cfg = train_config(tmp_path, "experiment=depth", "model.stack.width=32")
    with pytest.raises(CheckpointError, match="shares no weights with this model"):
        model_of(cfg).warm_start(linear)
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, "experiment=depth", "model.stack.width=32", f"init_from={linear}")
    with pytest.raises(SystemExit) as stop:
        cli_main(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "shares no weights" in err[0], err
    assert not run_dir.exists()


def test_baselines_with_nothing_to_learn_are_evaluated_not_trained(tmp_path):
    metrics = train(train_config(tmp_path, "experiment=fmap", "trainer.max_epochs=1"))
    assert "val/pck@0.05" in metrics and "test/pck@0.05" in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["checkpoint"] is None


@pytest.mark.parametrize("interval, anneals", [("step", True), ("epoch", False)])
def test_a_one_epoch_run_anneals_its_rate_only_step_by_step(tmp_path, interval, anneals):
    """The cosine schedule steps once an epoch by default, so a one-epoch run keeps its
    rate; lr_interval=step spans the run's optimizer steps and ends it near zero."""
    cfg = train_config(
        tmp_path, "experiment=stem", "data.train_pairs=8", f"module.lr_interval={interval}"
    )
    rates = []

    class Rates(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = model_of(cfg)
    module = hydra.utils.instantiate(
        cfg.module,
        model=model,
        optimizer=hydra.utils.instantiate(cfg.optim.optimizer),
        scheduler=hydra.utils.instantiate(cfg.optim.scheduler),
    )
    data = hydra.utils.instantiate(cfg.data, spectrum=None)
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[Rates()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    lr = cfg.optim.optimizer.lr
    assert len(rates) == 4 and rates[0] == pytest.approx(lr)
    if anneals:
        assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] < 0.2 * lr
    else:
        assert rates == [pytest.approx(lr)] * 4


def test_loss_decreases_over_50_steps_on_a_fixed_pair(tmp_path):
    cfg = train_config(tmp_path)
    model = model_of(cfg)
    module = hydra.utils.instantiate(cfg.module, model=model, optimizer=None)
    data = hydra.utils.instantiate(cfg.data, spectrum=model.config.spectrum)
    batch = next(iter(data.train_dataloader()))
    opt = torch.optim.Adam(module.trainable(), lr=0.02)
    module.eval()  # fixed query pixels: the same loss every step
    losses = []
    for _ in range(50):
        opt.zero_grad()
        terms, _ = module.losses(batch)
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert losses[-1] < 0.8 * losses[0], losses[::10]


@pytest.mark.parametrize("fit_views, matched", [(True, 1.0), (False, 0.5)])
def test_fitted_views_read_a_turned_sample_as_its_target_shows_it(
    tmp_path, view_pair, fit_views, matched
):
    """A target that is the sample under a grid view: with fit_views, even an untrained stem
    reads the sample under that view, so its features are the target's own and every query
    finds its match; read as it is, the turned sample matches far worse."""
    cfg = train_config(tmp_path, "experiment=stem", f"module.fit_views={fit_views}")
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.module, model=model_of(cfg), optimizer=None)
    module.train()  # no view search: the views are given, or none
    target, sample, flow, valid = view_pair(View(45.0, 1.0), (32, 32))
    batch = dict(target=target[None], sample=sample[None], flow=flow[None], valid=valid[None])
    with torch.no_grad():
        _, stats = module.losses(batch)
    pck = float(stats["pck@0.05"])
    assert pck >= 0.99 if fit_views else pck < matched, pck


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    cfg = train_config(tmp_path, "trainer.max_epochs=1", "test=false")
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    blob = torch.load(ckpt, weights_only=True)
    trained = model_of(cfg)
    trained.load_state_dict({k.removeprefix("model."): v for k, v in blob["state_dict"].items()})
    assert not torch.equal(model_of(cfg).qk.w_q, trained.qk.w_q)  # it did learn
    rebuilt = SpectralShader.from_checkpoint(ckpt)  # no model options needed
    assert rebuilt.config == trained.config
    pair = SyntheticPairs(size=24, length=1)[0]
    t, s = pair["target"][None], pair["sample"][None]
    with torch.no_grad():
        assert torch.equal(rebuilt(t, s).image, trained(t, s).image)
    # the same projections drive a paste pattern: runtime options come from the caller
    pastes = SpectralShader.from_checkpoint(ckpt, replace(trained.config, pattern="cccc"))
    assert torch.equal(pastes.qk.w_q, trained.qk.w_q) and pastes.pattern == "cccc"
    saved = SpectralShader.from_checkpoint(trained.save(tmp_path / "small.pt"))
    assert torch.equal(saved.qk.w_k, trained.qk.w_k) and saved.config == trained.config
    older = dict(blob, format=1)  # written before the learned stack
    torch.save(older, tmp_path / "older.ckpt")
    with pytest.raises(CheckpointError, match="is format 1, from before the learned stack"):
        SpectralShader.from_checkpoint(tmp_path / "older.ckpt")
    with pytest.raises(CheckpointError, match=r"model.spectrum.k=8 changes the architecture.*k=6"):
        other = replace(trained.config, spectrum=replace(trained.config.spectrum, k=8))
        SpectralShader.from_checkpoint(ckpt, other, overrides={"spectrum.k"})
    blob["state_dict"]["model.qk.w_q"][0, 0] = float("nan")
    torch.save(blob, tmp_path / "diverged.ckpt")
    with pytest.raises(CheckpointError, match="non-finite weights"):
        SpectralShader.from_checkpoint(tmp_path / "diverged.ckpt")


def test_ground_truth_flow_maps_target_pixels_onto_sample_pixels():
    data = SyntheticPairs(size=48, length=3, jitter=0.0)
    for i in range(3):
        item = data[i]
        flow, valid = item["flow"], item["valid"]
        assert valid.float().mean() > 0.4
        grid = torch.stack([(2 * flow[..., 0] + 1) / 48 - 1, (2 * flow[..., 1] + 1) / 48 - 1], -1)
        warped = F.grid_sample(item["sample"][None], grid[None], align_corners=False)[0]
        err = (warped - item["target"]).abs().amax(0)[valid]
        assert float(err.mean()) < 0.03
        identity = torch.stack(
            torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="xy"), -1
        )
        assert (flow - identity)[valid].norm(dim=-1).mean() > 1.0  # it is a real warp


def test_pairs_are_deterministic():
    a = SyntheticPairs(size=24, length=2, seed=0)
    b = SyntheticPairs(size=24, length=2, seed=0)
    c = SyntheticPairs(size=24, length=2, seed=1000)
    assert torch.equal(a[1]["target"], b[1]["target"])
    assert not torch.equal(a[1]["sample"], c[1]["sample"])


def test_training_at_several_sizes_keeps_each_batch_at_one_size():
    data = PairDataModule(sizes=[32, 48], size=40, train_pairs=30, batch_size=4, val_pairs=2)
    loader = data.train_dataloader()
    assert isinstance(loader.batch_sampler, SizeBatches)
    sides = [batch["target"].shape[-1] for batch in loader]
    assert set(sides) == {32, 48} and len(sides) == len(loader)
    assert next(iter(data.val_dataloader()))["target"].shape[-1] == 40  # val stays at size
    seen = [i for batch in SizeBatches(data.train_set, 4) for i in batch]
    assert sorted(seen) == list(range(30))  # every pair once an epoch
    sampler = SizeBatches(data.train_set, 4, seed=3)
    first, second = list(sampler), list(sampler)
    assert first != second and first == list(SizeBatches(data.train_set, 4, seed=3))
    # no generator or photo (chosen by index modulo their count) keeps to one size
    assert {data.train_set.size_of(i) for i in range(0, 30, 4)} == {32, 48}


def test_size_batches_follow_the_trainers_epoch_so_a_resumed_run_goes_on():
    pairs = SyntheticPairs(sizes=(32, 48), length=20)
    epoch = [0]
    sampler = SizeBatches(pairs, 4, seed=1, epoch=lambda: epoch[0])
    first = list(sampler)
    epoch[0] = 3
    resumed = list(SizeBatches(pairs, 4, seed=1, epoch=lambda: 3))
    assert list(sampler) == resumed != first


def test_several_sizes_refuse_several_processes_in_one_line(tmp_path, capsys):
    from spectral_resnet.training import cli_main

    cfg = train_config(tmp_path / "run", "trainer=ddp", "data.sizes=[32,48]")
    with pytest.raises(SystemExit) as stop:
        cli_main(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "data.sizes" in err[0], err


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(sizes=[64, 4]), "data.sizes"),
        (dict(sizes=[64, 128], real_pairs="pairs"), "data.sizes and data.real_pairs"),
    ],
)
def test_bad_training_sizes_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message):
        PairDataModule(**options)


@pytest.mark.parametrize("count", [3, 5, 8, 40])
def test_folder_splits_are_disjoint_nonempty_and_cover_every_file(tmp_path, count):
    files = [tmp_path / f"img{i:02d}.png" for i in range(count)]
    splits = {name: split_files(files, name, tmp_path) for name in ("train", "val", "test")}
    assert all(splits.values())
    names = [set(map(str, v)) for v in splits.values()]
    assert sum(len(n) for n in names) == count and len(set.union(*names)) == count
    if count >= 10:
        assert len(splits["test"]) == round(0.1 * count)
    with pytest.raises(ValueError, match="at least 3 images"):
        split_files(files[:2], "train", tmp_path)


def test_pair_metrics_known_answers():
    flow = torch.rand(10, 12, 2) * 9
    valid = torch.ones(10, 12, dtype=torch.bool)
    labels = torch.arange(120).view(10, 12) % 3
    perfect = pair_metrics(flow, flow, valid, labels)
    assert perfect["pck@0.01"] == 1.0 and perfect["epe"] == 0.0 and perfect["miou"] == 1.0
    off = pair_metrics(flow + torch.tensor([3.0, 4.0]), flow, valid, labels)
    assert off["epe"] == pytest.approx(5.0) and off["pck@0.1"] == 0.0  # 5 px > 0.1 * 12


def test_evaluation_table_has_every_metric_in_range():
    results = evaluate({"colour NN": colour_nn}, synthetic_pairs(2, 24, 2000))
    r = results["colour NN"]
    assert set(r) == {"pck@0.01", "pck@0.05", "pck@0.1", "epe", "miou"}
    assert 0 <= r["pck@0.01"] <= r["pck@0.05"] <= r["pck@0.1"] <= 1 and 0 <= r["miou"] <= 1


def test_component_retrieval_is_exact_for_the_true_flow_and_chance_for_random():
    warp = dict(drawings=True, degrees=20.0, fixed_rotation=True, perspective=0.0, elastic=0.0)
    pairs = list(synthetic_pairs(2, 96, 2000, **warp))
    flows = iter([flow for _, _, flow, _ in pairs])
    results = evaluate({"true flow": lambda t, s: next(flows)[None]}, pairs)
    assert results["true flow"]["component acc"] == 1.0
    assert 0 < results["random component"]["component acc"] < 0.5


def run_train(tmp_path, *args, timeout=600):
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags first, as people type them
    overrides = [a for a in args if not a.startswith("-")]  # after TINY: these win
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *flags, *TINY, *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
    )


@pytest.mark.slow
def test_multirun_sweep_writes_each_job_and_a_summary(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        tmp_path,
        "-m",
        "experiment=fmap,learned",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    summary = (sweep / "summary.md").read_text()
    assert "experiment=fmap" in summary and "experiment=learned" in summary


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    proc = run_train(
        tmp_path, "trainer=ddp", "trainer.max_epochs=1", f"hydra.run.dir={out}", "test=false"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert "val/pck@0.05" in metrics


def test_eval_reads_a_folder_of_pairs_with_flow(tmp_path):
    import numpy as np

    from spectral_resnet.io import save_image

    for sub in ("a", "b", "flow"):
        (tmp_path / sub).mkdir()
    for i in range(2):
        item = SyntheticPairs(size=24, length=2, seed=5)[i]
        save_image(item["target"], tmp_path / "a" / f"p{i}.png")
        save_image(item["sample"], tmp_path / "b" / f"p{i}.png")
        flow = item["flow"].numpy().copy()
        flow[~item["valid"].numpy()] = np.nan
        np.save(tmp_path / "flow" / f"p{i}.npy", flow)
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    args = [sys.executable, "-m", "spectral_resnet.eval", f"pairs_dir={tmp_path}", "progress=false"]
    args.append("model.spectrum.k=6")
    into = tmp_path / "new" / "folder" / "eval.json"  # a folder that does not exist yet
    proc = subprocess.run([*args, f"json={into}"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| colour NN |" in proc.stdout and "| fmap |" in proc.stdout
    assert "fmap" in json.loads(into.read_text())[str(tmp_path)]
    for bad in (f"json={tmp_path}", "json=/proc/spectral_resnet/eval.json"):  # refused at once
        proc = subprocess.run([*args, bad], capture_output=True, text=True, env=env)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "json" in proc.stderr and "| fmap |" not in proc.stdout
    np.save(tmp_path / "flow" / "p0.npy", np.zeros((3, 3, 2)))
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "expected (H, W, 2)" in proc.stderr
    assert proc.stderr.strip().startswith("eval: error:") and len(proc.stderr.splitlines()) == 1


def test_dataloader_spectra_are_the_ones_the_model_looks_up(tmp_path):
    cfg = train_config(tmp_path, "model.spectrum.connectivity=8", "model.spectrum.sigma=0.3")
    model = model_of(cfg)
    data = hydra.utils.instantiate(cfg.data, spectrum=model.config.spectrum)
    item = data.train_set[0]  # computes and caches both spectra, as a worker would
    assert model.spectrum(item["target"]).seconds == 0.0  # a cache hit: no eigensolve
    assert model.spectrum(item["sample"]).seconds == 0.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.folder=/nonexistent", "data config: image folder"),
        ("model.pattern=zq", "unknown pattern"),
        ("trainer.max_epochs=abc", "trainer.max_epochs must be an integer"),
        ("trainer.limit_train_batches=lots", "trainer.limit_train_batches must be a number"),
        ("optim.optimizer.lr=-1", "Invalid learning rate"),
        ("data.batch_size=0", "data.batch_size must be an integer in [1, 4096]"),
        ("ckpt_path=/nonexistent.ckpt", "ckpt_path=/nonexistent.ckpt: file not found"),
        ("init_from=/nonexistent.pt", "init_from=/nonexistent.pt: file not found"),
        ("init_from=stme", "init_from: no shipped weights called 'stme'"),
        (
            f"init_from=stem ckpt_path={ROOT / 'assets/eval/stem_s.ckpt'}",
            "give only one of them (to resume a run that started from init_from, add init_from=null)",
        ),
        ("export=/", "export=/ is a directory"),
        ("module.fit_views=true", "module.fit_views reads samples under views"),
        ("module.lr_interval=batch", "module.lr_interval must be one of ('epoch', 'step')"),
    ],
)
def test_train_cli_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, override, message):
    run_dir = tmp_path / "run"
    proc = run_train(tmp_path, *override.split(), f"hydra.run.dir={run_dir}", timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("train.py: error:") and message in errors[0]
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "experiment=identity,bogus"],
        ["-m", "model.spectrum.k=6,abc"],
        ["--multirun", "model.paste.seeds=2,0"],
    ],
)
def test_a_bad_override_under_multirun_is_one_line_exit_2(tmp_path, args):
    proc = run_train(tmp_path, *args, f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error:"), proc.stderr
    assert not (tmp_path / "sweep").exists()


def resume_cases(tmp_path, last: Path) -> dict:
    """Checkpoints ckpt_path= cannot resume from, and what the one line says of each."""
    import pickle

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:2000])
    weights = SpectralShader.from_checkpoint(last).save(tmp_path / "weights.pt")
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(print, protocol=4))  # a pickle that would run code
    return {
        truncated: "corrupt or not a PyTorch file",
        weights: "model weights, not a train.py checkpoint",
        evil: "corrupt or not a PyTorch file",
        last: "trained with spectrum.k=6, this run has 8",
    }


def test_resuming_from_a_checkpoint_that_cannot_resume_is_one_line(tmp_path, capsys):
    from spectral_resnet.training import cli_main

    train(train_config(tmp_path / "first", "trainer.max_epochs=1", "test=false"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    for path, message in resume_cases(tmp_path, last).items():
        extra = ["model.spectrum.k=8"] if path == last else []
        cfg = train_config(tmp_path / "again", f"ckpt_path={path}", *extra)
        with pytest.raises(SystemExit) as stop:
            cli_main(cfg)
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and message in err[0], err
        assert "weights_only" not in err[0]
        assert not (tmp_path / "again").exists()


def test_export_into_a_folder_that_does_not_exist_yet(tmp_path):
    into = tmp_path / "new" / "sub" / "model.pt"
    train(train_config(tmp_path / "run", "trainer.max_epochs=1", "test=false", f"export={into}"))
    assert SpectralShader.from_checkpoint(into).config.spectrum.k == 6


def test_an_unwritable_hydra_run_dir_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "hydra.run.dir=/proc/spectral_resnet/x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: output_dir /proc/spectral_resnet/x is not writable; "
        "choose another output_dir="
    ]
    assert not (tmp_path / "outputs").exists()


def test_real_corpus_splits_by_source_image_and_the_stereo_flow_is_right():
    from spectral_resnet.data.real import PHOTOS, SPLITS, photo_files, stereo_pair

    named = [set(SPLITS[s]) for s in ("train", "val", "test")]
    assert set.union(*named) == set(PHOTOS) and sum(map(len, named)) == len(PHOTOS)
    assert all(p.is_file() for s in SPLITS for p in photo_files(s))
    left, right, flow, valid = stereo_pair(48)
    h, w = left.shape[-2:]
    grid = torch.stack([(2 * flow[..., 0] + 1) / w - 1, (2 * flow[..., 1] + 1) / h - 1], -1)
    warped = F.grid_sample(right[None], grid[None], align_corners=False)[0]
    err = (warped - left).abs().mean(0)[valid].mean()
    assert valid.float().mean() > 0.4 and err < 0.5 * (right - left).abs().mean(0)[valid].mean()


def test_real_pairs_crop_rotate_exactly_and_never_mix_splits():
    from spectral_resnet.data.real import photo_files

    files = photo_files("test")
    pairs = SyntheticPairs(
        size=32,
        length=4,
        files=files,
        crop=(0.4, 1.0),
        degrees=45.0,
        fixed_rotation=True,
        perspective=0.0,
        elastic=0.0,
        jitter=0.0,
        translate=0.0,
        scale=(1.0, 1.0),
    )
    for i in range(4):
        item = pairs[i]
        centre = item["flow"][16, 16] - torch.tensor([15.5, 15.5])
        step = item["flow"][16, 20] - item["flow"][16, 16]  # 4 px to the right, rotated
        angle = torch.rad2deg(torch.atan2(step[1], step[0])).abs()
        assert abs(float(angle) - 45.0) < 0.5 and centre.norm() < 1.0
    train = SyntheticPairs(size=16, length=1, files=photo_files("train"))
    assert not set(train.files) & set(files)


def test_patch_nn_finds_every_pixel_of_an_image_in_itself():
    from spectral_resnet.eval import patch_nn

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 12, 14, generator=g)
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(14.0), indexing="ij")
    assert torch.equal(patch_nn(image, image)[0], torch.stack([xs, ys], -1))


@pytest.mark.slow
def test_shipped_weights_beat_patch_matching_under_rotation(tmp_path):
    """The held-out real photos at 45 deg, a few pairs: the shipped model against the
    baselines (the full table is `python -m spectral_resnet.eval`, in the README)."""
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "eval.json"
    args = [sys.executable, "-m", "spectral_resnet.eval", "sets=['real 64 rot 45']", "pairs=6"]
    args += [f"json={out}", "progress=false"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["real 64 rot 45"]
    learned = rows["learned"]["pck@0.05"]
    assert learned > rows["patch NN (7x7 SSD)"]["pck@0.05"] + 0.05
    assert learned > rows["colour NN"]["pck@0.05"]


def test_a_corrupt_file_in_the_image_folder_is_skipped_with_a_warning(tmp_path):
    from spectral_resnet.data.pairs import list_images
    from spectral_resnet.io import save_image

    for i in range(3):
        save_image(torch.rand(3, 8, 8), tmp_path / f"ok{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="broken.png"):
        files = list_images(tmp_path)
    assert [p.name for p in files] == ["ok0.png", "ok1.png", "ok2.png"]


def test_everyday_trainer_knobs_compose_without_plus(tmp_path):
    knobs = [
        "trainer.max_steps=20",
        "trainer.limit_train_batches=2",
        "trainer.precision=bf16-mixed",
    ]
    knobs += ["trainer.gradient_clip_val=1.0", "trainer.accumulate_grad_batches=2"]
    cfg = train_config(tmp_path, *knobs)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    assert trainer.max_steps == 20 and trainer.limit_train_batches == 2
    assert trainer.accumulate_grad_batches == 2 and trainer.gradient_clip_val == 1.0


@pytest.mark.slow
def test_ctrl_c_during_training_is_one_line_and_exit_130(tmp_path, interrupt):
    """SIGINT once fit has begun (Lightning has printed the model summary): its interrupt
    surfaces as one line of ours and exit 130, no traceback."""
    env = dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache"))
    args = [*TINY, "trainer.enable_model_summary=true", "data.train_pairs=64"]
    args += ["trainer.max_epochs=100", f"output_dir={tmp_path}"]
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    code, text = interrupt(cmd, b"Total params", env)
    assert code == 130, text
    assert "Traceback" not in text, text
    assert [line for line in text.splitlines() if line.startswith("train.py:")] == [
        f"train.py: interrupted; checkpoints so far are in {tmp_path} "
        "(resume with ckpt_path=.../last.ckpt)"
    ], text


def test_eval_keeps_the_methods_asked_for_and_adds_named_checkpoints(tmp_path):
    from spectral_resnet.cli import UsageError
    from spectral_resnet.eval import build_methods

    overrides = ["methods=[learned,ablation,colour NN]", "checkpoints={ablation: linear}"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=overrides)
        bad = compose(config_name="eval", overrides=["methods=[fmap,nonsense]"])
    methods, pickers = build_methods(cfg)
    assert list(methods) == ["learned", "ablation", "colour NN"] and set(pickers) == {
        "learned",
        "ablation",
    }
    with pytest.raises(UsageError, match=r"unknown method\(s\) \['nonsense'\]"):
        build_methods(bad)
