"""Supervised image classification: the training step shared by the CIFAR-10 and ImageNet tasks.

Every network -- a reference ResNet, a searched architecture -- is trained and scored by this one
module, so a difference in accuracy is a difference in architecture, not in training code.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from nasrepro.errors import UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe, build_optimizer, configure_optimizers


def optimizers_for(params: Any, recipe: TrainRecipe) -> dict[str, Any]:
    """The recipe's optimiser and schedule; `extra["lr_milestones"]` selects a step schedule.

    He et al. (2016) and the standard ImageNet recipe divide the learning rate by 10 at fixed
    epochs, which the shared recipe's `constant`/`cosine` schedules cannot express, so a recipe
    may list the milestone epochs (and `lr_gamma`, default 0.1) in `extra`.
    """
    milestones = recipe.extra.get("lr_milestones")
    if not milestones:
        return configure_optimizers(params, recipe)
    if list(milestones) != sorted(milestones) or min(milestones) < 1:
        raise UsageError(f"lr_milestones must be increasing positive epochs, got {list(milestones)}")
    optimizer = build_optimizer(params, recipe)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(milestones), gamma=float(recipe.extra.get("lr_gamma", 0.1))
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class ImageClassificationModule(L.LightningModule):
    """Cross-entropy training; top-1 accuracy in percent (0-100) on the validation and test sets.

    Logged at epoch end: `train/loss`, `val/loss`, `val/accuracy`, `test/loss`, `test/accuracy`.
    Accuracy is a sample-weighted mean kept by torchmetrics, so it is exact over the whole split
    and synchronised across processes under DDP.
    """

    def __init__(self, model: nn.Module, preset: Preset) -> None:
        super().__init__()
        self.model = model
        self.recipe = preset.recipe
        self.label_smoothing = float(self.recipe.extra.get("label_smoothing", 0.0))
        self.train_loss = MeanMetric()
        self.eval_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})
        self.eval_accuracy = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels, label_smoothing=self.label_smoothing)
        self.train_loss.update(loss.detach(), weight=labels.numel())
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, batch_size=labels.numel())
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        # Evaluation loss is the plain cross-entropy: smoothing is a training regulariser only.
        self.eval_loss[stage].update(F.cross_entropy(logits, labels), weight=labels.numel())
        self.eval_accuracy[stage].update((logits.argmax(dim=-1) == labels).float() * 100.0)
        self.log(
            f"{stage}/loss", self.eval_loss[stage], on_step=False, on_epoch=True, batch_size=labels.numel()
        )
        self.log(
            f"{stage}/accuracy",
            self.eval_accuracy[stage],
            on_step=False,
            on_epoch=True,
            batch_size=labels.numel(),
        )

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        return optimizers_for(self.model.parameters(), self.recipe)
