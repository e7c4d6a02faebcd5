"""LightningModule: learn W_q / W_k (and the temperature and FFN) on image pairs.

Losses, on a few hundred sampled target pixels per pair:
- correspondence: cross-entropy of the first cross block's attention row at the true match
  (needs ground-truth flow);
- retrieval: target colours from attention-retrieved sample colours (any related pair);
- restoration: the full soft shader, started from a blurred target, must bring the detail
  back from the sample; this is what trains the FFN's blend and gate.
Metrics: PCK@0.01/0.05/0.1 of attention argmax matches, end-point error, retrieval PSNR.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from spectral_resnet import viz
from spectral_resnet.io import save_image
from spectral_resnet.model import SpectralShader
from spectral_resnet.shading import gaussian_blur

PCK_ALPHAS = (0.01, 0.05, 0.1)
METRICS = ("loss", "epe", "psnr", *(f"pck@{a}" for a in PCK_ALPHAS))


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
        restoration_weight: float = 0.5,
        blur: float = 2.0,
        image_every_n_steps: int = 100,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        if not any(getattr(b, "mode", None) == "cross" for b in model.blocks):
            raise ValueError(f"pattern {model.pattern!r} has no cross block to train")
        if model.work_size is not None:  # losses index pixels at full resolution
            raise ValueError("training runs at full resolution: set model.work_size=null")
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name.replace('@', '_').replace('.', '_')}": MeanMetric()
                for stage in ("train", "val", "test")
                for name in METRICS
            }
        )

    @property
    def block(self):
        """The first cross block: its attention is the correspondence being trained."""
        return next(b for b in self.model.blocks if getattr(b, "mode", None) == "cross")

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
        ctx, _ = self.model.context(target, sample, {})
        q, k = self.block.qk(ctx.f_t, ctx.f_s)  # (B, n_t, d), (B, n_s, d)
        n = min(self.hparams.queries, h * w)
        weights = valid.flatten(1).float() + 1e-3  # prefer pixels with a known match
        gen = None if self.training else torch.Generator(device="cpu").manual_seed(0)
        index = torch.multinomial(weights.cpu(), n, generator=gen).to(target.device)  # (B, N)
        logits = self.block.attention.scores(
            q.gather(1, index[..., None].expand(-1, -1, q.shape[-1])), k, self.block.qk.scale
        )  # (B, N, n_s): attention rows of the sampled pixels, never n_t x n_s
        labelled = valid.flatten(1).gather(1, index)  # (B, N)
        true_xy = flow.flatten(1, 2).gather(1, index[..., None].expand(-1, -1, 2))  # (B, N, 2)
        hs, ws = sample.shape[-2:]
        true_idx = (
            true_xy[..., 1].round().clamp(0, hs - 1) * ws + true_xy[..., 0].round().clamp(0, ws - 1)
        ).long()
        terms: dict[str, Tensor] = {}
        zero = logits.sum() * 0
        if labelled.any():
            ce = F.cross_entropy(logits[labelled], true_idx[labelled])
            terms["correspondence"] = ce
        else:
            terms["correspondence"] = zero
        colours_s = sample.flatten(2).transpose(1, 2)  # (B, n_s, 3)
        retrieved = logits.softmax(-1) @ colours_s  # (B, N, 3)
        truth = target.flatten(2).transpose(1, 2).gather(1, index[..., None].expand(-1, -1, 3))
        mse = F.mse_loss(retrieved, truth)
        terms["retrieval"] = mse
        if self.hparams.restoration_weight > 0 and any(
            p.requires_grad for p in self.model.blocks.parameters()
        ):
            start = gaussian_blur(target, self.hparams.blur)
            restored = self.model(target, sample, start=start, context=ctx).image
            terms["restoration"] = F.l1_loss(restored, target)
        else:
            terms["restoration"] = zero
        loss = (
            self.hparams.correspondence_weight * terms["correspondence"]
            + self.hparams.retrieval_weight * terms["retrieval"]
            + self.hparams.restoration_weight * terms["restoration"]
        )
        terms["loss"] = loss
        pred = logits.argmax(-1)  # (B, N)
        pred_xy = torch.stack([pred % ws, pred // ws], -1).float()
        stats = {"psnr": -10 * torch.log10(mse.detach().clamp_min(1e-10))}
        if labelled.any():
            stats.update(correspondence_metrics(pred_xy[labelled], true_xy[labelled], max(h, w)))
        return terms, stats

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        terms, stats = self.losses(batch)
        b = batch["target"].shape[0]
        for name, value in {**stats, "loss": terms["loss"]}.items():
            metric = self.metrics[f"{stage}_{name.replace('@', '_').replace('.', '_')}"]
            metric.update(value.detach(), weight=b)
            self.log(
                f"{stage}/{name}",
                metric,
                on_step=False,
                on_epoch=True,
                batch_size=b,
                prog_bar=name in ("loss", "pck@0.05"),
            )
        for name in ("correspondence", "retrieval", "restoration"):
            self.log(
                f"{stage}/loss_{name}",
                terms[name].detach(),
                on_step=False,
                on_epoch=True,
                batch_size=b,
            )
        return terms["loss"]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        every = self.hparams.image_every_n_steps
        if every and self.global_step % every == 0:
            self.save_samples(batch, f"step{self.global_step:06d}")
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")
        if batch_idx == 0:
            self.save_samples(batch, f"val_epoch{self.current_epoch:03d}")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    @torch.no_grad()
    def save_samples(self, batch: dict[str, Tensor], tag: str) -> None:
        """target | sample | retrieved (attention argmax colours) | activation, as a PNG."""
        # rank zero only, and no trainer.log_dir: that property is a collective under DDP
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        log_dir = getattr(self.logger, "log_dir", None) or self.trainer.default_root_dir
        target, sample = batch["target"][:1], batch["sample"][:1]
        match = self.model.match(target, sample)[0]  # (H, W, 2)
        hs, ws = sample.shape[-2:]
        grid = torch.stack([(2 * match[..., 0] + 1) / ws - 1, (2 * match[..., 1] + 1) / hs - 1], -1)
        retrieved = F.grid_sample(sample, grid[None], mode="nearest", align_corners=False)[0]
        out = self.model(target, sample)
        sheet = viz.contact_sheet(
            [
                ("target", target[0]),
                ("sample", sample[0]),
                ("retrieved", retrieved),
                ("activation", out.activations[0][0, 0]),
            ],
            height=128,
        )
        folder = Path(log_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(sheet, folder / f"{tag}.png")
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(f"samples/{tag.split('_')[0]}", sheet, self.global_step)

    def configure_optimizers(self):
        params = self.trainable()
        if not params:
            raise ValueError(
                "nothing to train: the model has no learnable parameters (use qk_init=learned or learnable=true)"
            )
        optimizer = self.optimizer(params=params)
        if self.scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler(optimizer=optimizer), "interval": "epoch"},
        }
