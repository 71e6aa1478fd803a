"""Supervised image classification: the training step shared by the CIFAR-10 and ImageNet tasks.

Every network -- a reference ResNet, a searched architecture -- is trained and scored by this one
module, so a difference in accuracy is a difference in architecture, not in training code. The
recipe options both image tasks apply (`TrainRecipe`: label smoothing, no-decay keys, cutout,
dropout, a multistep schedule, an auxiliary loss, scheduled drop-path) are implemented here once;
colour jitter is ImageNet's own. The auxiliary loss and drop-path act through hooks the network
offers (`harness.model_hooks`); with neither set, the step trains `model(x)`'s logits alone.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from nasrepro.errors import UsageError
from nasrepro.harness.model_hooks import check_hooks, drop_path_at
from nasrepro.harness.recipe import (
    Preset,
    TrainRecipe,
    configure_optimizers,
    lightning_optimizers,
    param_groups,
)

#: the recipe options both image tasks apply (`Task.recipe_options`; ImageNet adds colour jitter);
#: `valid_size` is each task's datamodule's hold-out
IMAGE_OPTIONS: frozenset[str] = frozenset(
    {"label_smoothing", "no_decay_keys", "cutout", "valid_size", "aux_weight", "drop_path"}
)


def cutout(images: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one `length` x `length` square per image of a (B, C, H, W) or (C, H, W) tensor.

    DeVries & Taylor (2017, arXiv 1708.04552) and their reference ``util/cutout.py``: the centre is
    drawn uniformly over the *whole* image, so a square near the border is clipped rather than
    moved inside (which keeps some images nearly intact), and the mask is applied after
    normalisation, so the square is the dataset's mean colour. Rows ``cy - length // 2`` up to
    ``length`` of them (as the reference code for its even lengths, e.g. 16 on CIFAR-10).
    """
    if length <= 0:
        return images
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    n, _, height, width = batch.shape
    cy = torch.randint(0, height, (n, 1), generator=generator) - length // 2
    cx = torch.randint(0, width, (n, 1), generator=generator) - length // 2
    rows, cols = torch.arange(height), torch.arange(width)
    in_rows = (rows >= cy) & (rows < cy + length)  # (n, H)
    in_cols = (cols >= cx) & (cols < cx + length)  # (n, W)
    square = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (n, 1, H, W)
    out = batch.masked_fill(square.to(batch.device), 0.0)
    return out if images.dim() == 4 else out[0]


class Cutout:
    """`cutout` as a per-image transform (after `Normalize`, as in DeVries & Taylor's pipeline)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return cutout(image, self.length)

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def set_dropout(model: nn.Module, p: float) -> None:
    """The recipe's dropout on the network's own `nn.Dropout` layers (ProxylessNAS: the one before
    its classifier, whose rate the released retraining sets per net: ``--dropout``). A network with
    none cannot apply it, which is an error rather than a silently ignored setting."""
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    if not layers:
        raise UsageError(f"the recipe sets dropout {p}, but the network has no dropout layer to apply it to")
    for layer in layers:
        layer.p = p


def optimizers_for(params: Any, recipe: TrainRecipe, total_steps: float | None = None) -> dict[str, Any]:
    """The recipe's optimiser and schedule (constant; cosine per epoch, or per optimizer step as the
    released ProxylessNAS retraining, which needs the fit's `total_steps`; or multistep: He et al.
    2016 and the standard ImageNet recipe divide the learning rate by 10 at fixed epochs)."""
    return configure_optimizers(params, recipe, total_steps)


class ImageClassificationModule(L.LightningModule):
    """Cross-entropy training; top-1 accuracy in percent (0-100) on the validation and test sets.

    Logged at epoch end: `train/loss`, `val/loss`, `val/accuracy`, `test/loss`, `test/accuracy`
    (and `train/aux_loss` with an auxiliary head). Accuracy is a sample-weighted mean kept by
    torchmetrics, so it is exact over the whole split and synchronised across processes under DDP.

    With the recipe's `aux_weight` > 0 the training loss is ``CE(logits) + aux_weight *
    CE(aux_logits)`` (NAO_V1 ``train_cifar.py``; the same criterion, label smoothing included, for
    both heads); with `drop_path` > 0 the network's drop-path probability is set before each
    training epoch by `drop_path_at`. Validation and test use `model(x)` in eval mode: no auxiliary
    head, no drop-path.
    """

    def __init__(self, model: nn.Module, preset: Preset) -> None:
        super().__init__()
        self.model = model
        self.recipe = preset.recipe
        self.label_smoothing = float(self.recipe.label_smoothing)
        if self.recipe.dropout > 0:
            set_dropout(model, self.recipe.dropout)
        check_hooks(model, self.recipe)
        self.aux_weight = float(self.recipe.aux_weight)
        if self.aux_weight > 0:
            model.enable_auxiliary_head()  # type: ignore[operator]
            self.train_aux_loss = MeanMetric()
        self.train_loss = MeanMetric()
        self.eval_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})
        self.eval_accuracy = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_train_epoch_start(self) -> None:
        if self.recipe.drop_path > 0:
            prob = drop_path_at(self.recipe.drop_path, self.current_epoch, self.recipe.epochs)
            self.model.set_drop_path(prob)  # type: ignore[operator]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.aux_weight > 0:
            loss = self._loss_with_aux(images, labels)
        else:
            loss = F.cross_entropy(self(images), labels, label_smoothing=self.label_smoothing)
        self.train_loss.update(loss.detach(), weight=labels.numel())
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, batch_size=labels.numel())
        return loss

    def _loss_with_aux(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, aux = self.model.forward_with_aux(images)  # type: ignore[operator]
        if aux is None:
            raise RuntimeError(
                f"{type(self.model).__name__}.forward_with_aux gave no auxiliary logits in training"
            )
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        aux_loss = F.cross_entropy(aux, labels, label_smoothing=self.label_smoothing)
        self.train_aux_loss.update(aux_loss.detach(), weight=labels.numel())
        self.log(
            "train/aux_loss", self.train_aux_loss, on_step=False, on_epoch=True, batch_size=labels.numel()
        )
        return loss + self.aux_weight * aux_loss

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
        return lightning_optimizers(
            self, param_groups(self.model.named_parameters(), self.recipe), self.recipe
        )
