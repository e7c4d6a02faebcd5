"""LightningModule: learn the encoder's stem, the stack's layers and the head's Q/K on pairs.

With fit_views, the sample is read under the grid view (model.views) nearest its true warp,
the one an ideal view search would keep: large turns and zooms train the stack on what it
reads at inference, while the stem still only has to bridge the small steps between views.

Losses, on a few hundred sampled target pixels per pair:
- correspondence: cross-entropy of the head's attention row at the true match, InfoNCE over
  every sample pixel (needs ground-truth flow);
- retrieval: target colours from attention-retrieved sample colours (any related pair).
Metrics (a torchmetrics MetricCollection per stage): PCK@0.01/0.05/0.1 of attention argmax
matches, end-point error, retrieval PSNR. Sample pictures come from `SampleImages`.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection

from spectral_resnet import viz
from spectral_resnet.config import check_lr_interval
from spectral_resnet.io import save_image
from spectral_resnet.model import CHECKPOINT_FORMAT, SpectralShader, index_to_xy
from spectral_resnet.views import ViewSearch, fitted_view

PCK_ALPHAS = (0.01, 0.05, 0.1)
METRICS = ("loss", "epe", "psnr", *(f"pck@{a}" for a in PCK_ALPHAS))
STAGES = ("train", "val", "test")


def metric_key(name: str) -> str:
    """A metric name as a module key ('pck@0.05' -> 'pck_0_05'); logged under its own name."""
    return name.replace("@", "_").replace(".", "_")


def correspondence_metrics(pred_xy: Tensor, true_xy: Tensor, size: int) -> dict[str, Tensor]:
    """PCK@alpha (within alpha * max(H, W) of the truth) and end-point error, (N, 2) points."""
    dist = (pred_xy - true_xy).norm(dim=-1)
    out = {f"pck@{a}": (dist <= a * size).float().mean() for a in PCK_ALPHAS}
    out["epe"] = dist.mean()
    return out


class ShaderModule(L.LightningModule):
    """Trains what is learnable in a SpectralShader; everything else stays frozen."""

    def __init__(
        self,
        *,
        model: SpectralShader,
        optimizer,
        scheduler=None,
        queries: int = 256,
        correspondence_weight: float = 1.0,
        retrieval_weight: float = 1.0,
        fit_views: bool = False,
        lr_interval: str = "epoch",
    ):
        super().__init__()
        check_lr_interval(lr_interval)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_metrics": MetricCollection({metric_key(n): MeanMetric() for n in METRICS})
                for stage in STAGES
            }
        )

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def losses(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict]:
        target, sample, flow, valid = (
            batch["target"],
            batch["sample"],
            batch["flow"],
            batch["valid"],
        )
        b, _, h, w = target.shape
        views = None
        if self.hparams.fit_views:  # the sample as inference reads it: under its nearest view
            search = ViewSearch.of(self.model.config.views.angles, self.model.config.views.scales)
            views = [search.nearest(fitted_view(f, v)) for f, v in zip(flow, valid)]
        ctx = self.model.pair_context(target, sample, ops=False, views=views)
        if tuple(ctx.work_shape) != (h, w):  # losses index pixels at full resolution
            raise ValueError(
                f"training pairs ({h}x{w}) exceed model.work_size={self.model.config.work_size}: "
                "raise it or set it to null"
            )
        n = min(self.hparams.queries, h * w)
        weights = valid.flatten(1).float() + 1e-3  # prefer pixels with a known match
        gen = None if self.training else torch.Generator(device="cpu").manual_seed(0)
        index = torch.multinomial(weights.cpu(), n, generator=gen).to(target.device)  # (B, N)
        logits = ctx.cross.logits(index)  # (B, N, n_s): rows of the sampled pixels only
        labelled = valid.flatten(1).gather(1, index)  # (B, N)
        true_xy = flow.flatten(1, 2).gather(1, index[..., None].expand(-1, -1, 2))  # (B, N, 2)
        hs, ws = sample.shape[-2:]
        true_idx = (
            true_xy[..., 1].round().clamp(0, hs - 1) * ws + true_xy[..., 0].round().clamp(0, ws - 1)
        ).long()
        zero = logits.sum() * 0
        terms: dict[str, Tensor] = {
            "correspondence": F.cross_entropy(logits[labelled], true_idx[labelled])
            if labelled.any()
            else zero
        }
        colours_s = sample.flatten(2).transpose(1, 2)  # (B, n_s, 3)
        retrieved = logits.softmax(-1) @ colours_s  # (B, N, 3)
        truth = target.flatten(2).transpose(1, 2).gather(1, index[..., None].expand(-1, -1, 3))
        terms["retrieval"] = F.mse_loss(retrieved, truth)
        terms["loss"] = (
            self.hparams.correspondence_weight * terms["correspondence"]
            + self.hparams.retrieval_weight * terms["retrieval"]
        )
        stats = {"psnr": -10 * torch.log10(terms["retrieval"].detach().clamp_min(1e-10))}
        if labelled.any():
            pred_xy = index_to_xy(logits.argmax(-1), ws)  # (B, N, 2)
            stats.update(correspondence_metrics(pred_xy[labelled], true_xy[labelled], max(h, w)))
        return terms, stats

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        terms, stats = self.losses(batch)
        b = batch["target"].shape[0]
        metrics = self.metrics[f"{stage}_metrics"]
        for name, value in {**stats, "loss": terms["loss"]}.items():
            metric = metrics[metric_key(name)]
            metric.update(value.detach(), weight=b)
            self.log(
                f"{stage}/{name}",
                metric,
                on_step=False,
                on_epoch=True,
                batch_size=b,
                prog_bar=name in ("loss", "pck@0.05"),
            )
        for name in ("correspondence", "retrieval"):
            self.log(
                f"{stage}/loss_{name}",
                terms[name].detach(),
                on_step=False,
                on_epoch=True,
                batch_size=b,
            )
        return terms["loss"]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints describe their model: SpectralShader.from_checkpoint rebuilds it."""
        checkpoint["format"] = CHECKPOINT_FORMAT
        checkpoint["shader_config"] = self.model.config.to_dict()

    def configure_optimizers(self):
        params = self.trainable()
        if not params:
            raise ValueError(
                "nothing to train: the model has no learnable parameters "
                "(use model.attention.qk_init=learned or model.attention.learnable=true)"
            )
        optimizer = self.optimizer(params=params)
        if self.scheduler is None:
            return optimizer
        interval = self.hparams.lr_interval
        # per step, the schedule spans the run: a one-epoch run anneals only so
        span = {"T_max": self.trainer.estimated_stepping_batches} if interval == "step" else {}
        scheduler = self.scheduler(optimizer=optimizer, **span)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }


class SampleImages(L.Callback):
    """target | sample | retrieved (attention argmax colours) | activation, as PNGs under
    <log dir>/samples: every `every_n_steps` training steps and once per validation epoch."""

    def __init__(self, every_n_steps: int = 100, height: int = 128):
        self.every_n_steps, self.height = every_n_steps, height

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer, module, batch, f"step{trainer.global_step:06d}")

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, *args) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            self.save(trainer, module, batch, f"val_epoch{trainer.current_epoch:03d}")

    @torch.no_grad()
    def save(self, trainer, module: ShaderModule, batch: dict[str, Tensor], tag: str) -> None:
        # rank zero only, and no trainer.log_dir: that property is a collective under DDP
        if not trainer.is_global_zero:
            return
        log_dir = getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir
        target, sample = batch["target"][:1], batch["sample"][:1]
        match = module.model.match(target, sample)[0]  # (H, W, 2)
        hs, ws = sample.shape[-2:]
        grid = torch.stack([(2 * match[..., 0] + 1) / ws - 1, (2 * match[..., 1] + 1) / hs - 1], -1)
        retrieved = F.grid_sample(sample, grid[None], mode="nearest", align_corners=False)[0]
        out = module.model(target, sample)
        sheet = viz.contact_sheet(
            [
                ("target", target[0]),
                ("sample", sample[0]),
                ("retrieved", retrieved),
                ("activation", out.activations[0][0, 0]),
            ],
            height=self.height,
        )
        folder = Path(log_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(sheet, folder / f"{tag}.png")
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(f"samples/{tag.split('_')[0]}", sheet, trainer.global_step)
