"""The network of a hierarchical NAS-Bench-201 derivation (Schrodi et al., NeurIPS 2023, App.;
``hierarchical_nb201/graph.py`` ``build`` of ``automl/hierarchical_nas_construction``).

Stem (3x3 conv without bias + BN, NePS ``Stem``) -> the derivation -> BN, ReLU, global average
pooling, linear classifier (the reference's ``Out`` edge, at 4C for the NB-201 grammar's two
resBlock levels). Inside the derivation:

* a topology (``Linear*``, ``Residual*``) is a small DAG: node 1 is its input, the last node its
  output, every node sums the outputs of its incoming edges (NePS ``AbstractTopology``, ``merge_fn=sum``),
  every edge is the module of one child;
* ``Cell`` is this project's NB-201 cell (`nasbench201_net.Cell` with `nasbench201_net.OPS`), the
  grammar's six op slots in NB-201's edge order;
* ``resBlock`` is NB-201's residual reduction (`nasbench201_net.ResidualReduction`: ReLU-conv-BN
  stride 2 to 2C, ReLU-conv-BN, shortcut 2x2 average pooling + 1x1 conv), the reference's
  ``ResNetBasicblock`` with stride 2: it halves the resolution and doubles the channels.

Channels follow the reference's ``_create_architecture``: an edge keeps its input's width, a resBlock
doubles it. Branches meeting at a node must agree in width and resolution; the NB-201 grammar
guarantees it, another grammar gets one error line naming the topology.
"""

from __future__ import annotations

import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.spaces.grammar import Node
from nasrepro.spaces.hierarchical_nb201 import CELL_EDGES, TO_NB201, TOPOLOGIES, cell_ops
from nasrepro.spaces.nasbench201 import EDGES
from nasrepro.spaces.nasbench201_net import OPS, Cell, ResidualReduction

#: NB-201's 0-based edges in the grammar's slot order (the same order, shifted by one)
_CELL_TO_NB201 = dict(zip(CELL_EDGES, EDGES, strict=True))
assert all((a - 1, b - 1) == _CELL_TO_NB201[(a, b)] for a, b in CELL_EDGES)


class Topology(nn.Module):
    """A topology's DAG over nodes 1..n with one module per edge; nodes sum their inputs."""

    def __init__(self, symbol: str, edges: tuple[tuple[int, int], ...], blocks: list[nn.Module]) -> None:
        super().__init__()
        self.symbol, self.edges = symbol, edges
        self.blocks = nn.ModuleList(blocks)
        self.n = max(target for _, target in edges)
        self.incoming = {
            v: [(i, u) for i, (u, w) in enumerate(edges) if w == v] for v in range(2, self.n + 1)
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {1: x}
        for v in range(2, self.n + 1):
            terms = [self.blocks[i](values[u]) for i, u in self.incoming[v]]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            values[v] = total
        return values[self.n]


def nb201_cell(node: Node, channels: int) -> Cell:
    """The project's NB-201 cell for a ``Cell(op x 6)`` node."""
    ops = cell_ops(node)
    return Cell(
        channels, {_CELL_TO_NB201[e]: OPS[TO_NB201[op]] for e, op in zip(CELL_EDGES, ops, strict=True)}
    )


def build_block(node: Node, channels: int) -> tuple[nn.Module, int, int]:
    """(module, output channels, halvings of the resolution) of a subtree fed `channels`."""
    if node.symbol == "Cell":
        return nb201_cell(node, channels), channels, 0
    if node.symbol == "resBlock":
        return ResidualReduction(channels, 2 * channels), 2 * channels, 1
    edges = TOPOLOGIES.get(node.symbol)
    if edges is None or len(edges) != len(node.children):
        raise UsageError(
            f"hierarchical-nb201 network: no module for {node.symbol!r} with {len(node.children)} children"
        )
    shapes: dict[int, tuple[int, int]] = {1: (channels, 0)}
    blocks: list[nn.Module | None] = [None] * len(edges)
    for i in sorted(range(len(edges)), key=lambda i: (edges[i][1], edges[i][0])):  # targets in order
        source, target = edges[i]
        width, halvings = shapes[source]
        blocks[i], out_width, extra = build_block(node.children[i], width)
        out = (out_width, halvings + extra)
        if shapes.setdefault(target, out) != out:
            raise UsageError(
                f"hierarchical-nb201 network: branches of {node.symbol} meeting at node {target} disagree "
                f"(channels, halvings) {shapes[target]} vs {out}"
            )
    width, halvings = shapes[max(shapes)]
    return Topology(node.symbol, edges, blocks), width, halvings  # type: ignore[arg-type]


class HierarchicalNB201Network(nn.Module):
    """Stem -> derivation -> BN-ReLU -> global pooling -> linear classifier."""

    def __init__(self, arch: Node, num_classes: int = 10, channels: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        self.body, width, self.halvings = build_block(arch, channels)
        self.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.lastact(self.body(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(features), 1))
