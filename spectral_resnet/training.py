"""What `python train.py` does: instantiate data, model, module and trainer from the Hydra
config, fit (or only evaluate, for hand-designed baselines with nothing to learn), test,
and write metrics.json for sweeps. Returns the optimised metric (for Hydra sweepers)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from spectral_resnet import viz
from spectral_resnet.cli import (
    UsageError,
    build,
    check_output_file,
    remove_failed_run_dir,
    set_threads,
    shader_config,
    write_json,
    write_text,
)
from spectral_resnet.config import ARCHITECTURE
from spectral_resnet.io import save_image
from spectral_resnet.model import CheckpointError, SpectralShader, load_checkpoint, read_checkpoint
from spectral_resnet.weights import checkpoint_path, get_weights, names

TRAINER_COUNTS = ("max_epochs", "max_steps", "accumulate_grad_batches", "log_every_n_steps")
TRAINER_AMOUNTS = ("limit_train_batches", "limit_val_batches", "val_check_interval")


def check_trainer(node: DictConfig) -> None:
    """The everyday Trainer knobs have the right type, so Lightning never asserts on them."""
    for key in TRAINER_COUNTS:
        value = node.get(key)
        if key in node and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"trainer.{key} must be an integer, got {value!r}")
    for key in (*TRAINER_AMOUNTS, "gradient_clip_val"):
        value = node.get(key)
        if value is None and key == "gradient_clip_val":
            continue
        if key in node and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"trainer.{key} must be a number, got {value!r}")


def check_optimizer(make) -> None:
    """Build the optimizer once on a throwaway parameter, so a bad value (lr=-1) is refused
    before the run starts, by torch's own rules."""
    try:
        make([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        raise UsageError(f"optim config: {err}") from None


def check_resume(path: Path, model: SpectralShader) -> None:
    """ckpt_path is a train.py checkpoint of this very model, checked before the run starts:
    torch.load's and Lightning's own failures are tracebacks (and advice to unpickle)."""
    try:
        blob = load_checkpoint(path)
        saved, state = read_checkpoint(path, blob)
    except CheckpointError as err:
        raise CheckpointError(f"ckpt_path: {err}") from None
    if "pytorch-lightning_version" not in blob or "optimizer_states" not in blob:
        raise CheckpointError(
            f"ckpt_path={path} is model weights, not a train.py checkpoint to resume; "
            "resume from outputs/train/.../checkpoints/last.ckpt"
        )
    for name in ARCHITECTURE:
        if saved.get(name) != model.config.get(name):
            raise CheckpointError(
                f"ckpt_path={path} was trained with {name}={saved.get(name)!r}, this run has "
                f"{model.config.get(name)!r}; resume with the same model options"
            )
    try:
        model.load_weights(state, path)
    except CheckpointError as err:
        raise CheckpointError(f"ckpt_path: {err}") from None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test; returns every logged metric as a float."""
    check_trainer(cfg.trainer)
    if cfg.export and cfg.export not in names():  # before the training whose result it keeps
        check_output_file(Path(cfg.export), "export")
    set_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.output_dir)
    model = SpectralShader(shader_config(cfg.model))
    if cfg.ckpt_path:
        check_resume(Path(cfg.ckpt_path), SpectralShader(model.config))
    if cfg.init_from:
        copied = model.warm_start(checkpoint_path(cfg.init_from))
        print(f"started from {len(copied)} weights of {cfg.init_from}")
    # the model's spectrum config: the workers cache exactly the spectra the model looks up,
    # and none where its tokens and stack read none
    spectrum = model.config.spectrum if model.reads_spectra else None
    datamodule = build(cfg.data, "data", _convert_="all", spectrum=spectrum)
    optimizer = build(cfg.optim.optimizer, "optim")
    check_optimizer(optimizer)
    scheduler = build(cfg.optim.scheduler, "optim") if cfg.optim.get("scheduler") else None
    module = build(cfg.module, "module", model=model, optimizer=optimizer, scheduler=scheduler)
    callbacks = [build(c, "callbacks") for c in (cfg.callbacks or {}).values()]
    logger = build(cfg.logger, "logger") if cfg.get("logger") else False
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    if getattr(datamodule, "several_sizes", False) and trainer.world_size > 1:
        raise UsageError(
            "data.sizes batches the pairs by size in one process; with several processes "
            f"(trainer.devices={trainer.world_size}) train at one data.size"
        )
    if module.trainable():
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        except SystemExit:  # Lightning's own Ctrl-C handling ends in exit(1)
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    else:  # identity / fmap baselines: nothing to learn, evaluate as they are
        trainer.validate(module, datamodule=datamodule)
        checkpoint = None
    if checkpoint and cfg.get("export") and trainer.is_global_zero:  # kilobytes: config + weights
        named = cfg.export in names()
        path = get_weights(cfg.export).path if named else Path(cfg.export)
        path.parent.mkdir(parents=True, exist_ok=True)
        SpectralShader.from_checkpoint(checkpoint).save(path)
        print(f"exported the best weights to {path}")
        if named:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            print(f"its sha256 is {digest}: set it in spectral_resnet/weights/__init__.py")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test:
        trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint)  # the best weights
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if trainer.is_global_zero:
        overrides = []
        try:
            from hydra.core.hydra_config import HydraConfig

            overrides = list(HydraConfig.get().overrides.task)
        except ValueError:
            pass
        report = {"overrides": overrides, "metrics": metrics, "checkpoint": checkpoint}
        write_json(report, out_dir / "metrics.json")
        write_text(OmegaConf.to_yaml(cfg, resolve=True), out_dir / "config.yaml")
        csv = Path(getattr(logger, "log_dir", "") or "") / "metrics.csv"
        if logger and csv.is_file():  # the training curve, as a picture
            save_image(viz.training_curves(str(csv)), out_dir / "curves.png")
    return metrics


def cli_main(cfg: DictConfig) -> float:
    """Train and report; known failures are one line on stderr and exit code 2."""
    try:
        metrics = train(cfg)
    except (UsageError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        remove_failed_run_dir(Path(cfg.output_dir))
        sys.exit(2)
    except KeyboardInterrupt:
        resume = "ckpt_path=.../last.ckpt" + (" init_from=null" if cfg.init_from else "")
        print(
            f"train.py: interrupted; checkpoints so far are in {cfg.output_dir} "
            f"(resume with {resume})",
            file=sys.stderr,
        )
        sys.exit(130)
    value = metrics.get(cfg.optimized_metric, float("nan"))
    print(f"{cfg.optimized_metric} = {value:.4f}; outputs in {cfg.output_dir}")
    return value
