"""The two reference GNNs for the Planetoid tasks, as their papers define them.

Both take `(x, edge_index)` and return class logits: the contract every graph model in nasrepro
follows, so searched architectures and these baselines go through the same training step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GCNConv

from nasrepro.spaces.graphnas_layer import input_dropout


class GCN(nn.Module):
    """Kipf & Welling (ICLR 2017), Section 3.1 eq. (9): softmax(Â ReLU(Â X W0) W1).

    Dropout 0.5 on the inputs of both layers and L2 regularisation on the first layer only
    (Section 5.2), which `param_groups` exposes to the training module.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = GCNConv(in_channels, hidden, cached=False)
        self.conv2 = GCNConv(hidden, num_classes, cached=False)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = input_dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Weight decay on the first layer only (Kipf & Welling 2017, Section 5.2)."""
        return [
            {"params": list(self.conv1.parameters()), "weight_decay": weight_decay},
            {"params": list(self.conv2.parameters()), "weight_decay": 0.0},
        ]


class GAT(nn.Module):
    """Veličković et al. (ICLR 2018), Section 3.3 transductive setting: 8 heads x 8 features with
    ELU, then a single-head output layer (Cora, CiteSeer); dropout 0.6 on both layers' inputs and on
    the normalised attention coefficients."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 8,
        heads: int = 8,
        output_heads: int = 1,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = GATConv(in_channels, hidden, heads=heads, dropout=dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=output_heads, concat=False, dropout=dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = input_dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)
