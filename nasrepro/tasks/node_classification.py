"""Full-batch transductive node classification: the training step shared by every graph model."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from nasrepro.harness.recipe import Preset, build_optimizer


class NodeClassificationModule(L.LightningModule):
    """Cross-entropy on the training mask; accuracy (percent) on the validation and test masks.

    One "batch" is the whole graph, so one optimisation step is one epoch, as in Kipf & Welling's
    and every Planetoid benchmark's protocol.
    """

    def __init__(self, model: nn.Module, preset: Preset) -> None:
        super().__init__()
        self.model = model
        self.recipe = preset.recipe

    def forward(self, data: Data) -> torch.Tensor:
        return self.model(data.x, data.edge_index)

    def training_step(self, data: Data, batch_idx: int) -> torch.Tensor:
        logits = self(data)
        loss = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
        self.log("train/loss", loss, batch_size=1)
        return loss

    def _accuracy(self, data: Data, mask: torch.Tensor, stage: str) -> None:
        logits = self(data)
        pred = logits[mask].argmax(dim=-1)
        acc = (pred == data.y[mask]).float().mean() * 100.0
        loss = F.cross_entropy(logits[mask], data.y[mask])
        self.log(f"{stage}/accuracy", acc, batch_size=1)
        self.log(f"{stage}/loss", loss, batch_size=1)

    def validation_step(self, data: Data, batch_idx: int) -> None:
        self._accuracy(data, data.val_mask, "val")

    def test_step(self, data: Data, batch_idx: int) -> None:
        self._accuracy(data, data.test_mask, "test")

    def configure_optimizers(self) -> Any:
        groups = getattr(self.model, "param_groups", None)
        params = groups(self.recipe.weight_decay) if groups else self.model.parameters()
        return build_optimizer(params, self.recipe)
