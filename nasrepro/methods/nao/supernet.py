"""NAO-WS's weight-sharing supernet over the 5-op NAO cell (NAO_pytorch ``NAO_V1/model_search.py``).

Luo et al. 2018, Sec. 3.4 ("combined with weight sharing", after ENAS): every architecture of the
space is a path through one network, and an architecture uses exactly the weights of its choices.
As in NAO_V1's ``NASWSNetworkCIFAR``:

* the wiring is the final network's (`nasrepro.spaces.nao_cells_net`): stem, 3N + 2 cells with the
  reduction cells at N and 2N + 1, each cell calibrating its inputs first;
* node i of a cell holds, for each of its two branches, every op on every input it may read:
  the separable convolutions have one set of weights (depthwise, pointwise, BN affine) *per
  possible input* (``WSSepConv`` / ``WSBN`` with ``num_possible_inputs = i + 2``); identity reads
  an input of the previous cells through a factorized reduction in a reduction cell; pools have no
  weights. Two architectures share a branch's weights exactly where they pick the same op on the
  same input at the same node, branch and cell;
* a cell's output is the concatenation of its unconsumed states (inputs 0/1 factorized-reduced in
  a reduction cell) through a ReLU, a 1x1 convolution whose weight slice belongs to each state
  index (``WSReLUConvBN``), and BN -- so every cell outputs F (x 2 per reduction) channels;
* drop-path on each branch in training, with NAO_V1's depth and progress schedule.

Deviation (labelled): NAO_V1's ``Node.forward`` reduces the *second* branch's identity with the
first branch's ``x_id_reduce`` modules (its ``y_id_reduce`` are built but never used); here each
branch has its own, so the two branches share nothing. BN running statistics are one set per BN
module (NAO_V1 shares them across inputs in ``WSBN``); the search never reads them (architectures
are scored with batch statistics, `ws_module`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.spaces.nao_cells import CONV_OPS, NODES, WS_OPS, ConvArch
from nasrepro.spaces.nao_cells_net import (
    AuxHead,
    Calibrate,
    FactorizedReduce,
    Pool,
    SepConv,
    drop_path,
    drop_path_keep,
    stage_plan,
)

#: the NAO-WS op ids (0-4) and names
WS_OP_IDS = tuple(range(WS_OPS[0], WS_OPS[0] + WS_OPS[1]))
SEP_CONVS = {0: ("sep_conv_3x3", 3), 1: ("sep_conv_5x5", 5)}


class WSBranch(nn.Module):
    """One branch of node `node`: every op on every input 0..node+1 (weights per input)."""

    def __init__(self, node: int, channels: int, reduction: bool) -> None:
        super().__init__()
        self.reduction = reduction
        inputs = range(node + 2)
        for name, kernel in SEP_CONVS.values():
            self.add_module(name, nn.ModuleList(SepConv(channels, kernel, self.stride(j)) for j in inputs))
        self.identity = nn.ModuleDict(
            {str(j): FactorizedReduce(channels, channels) for j in inputs if self.stride(j) == 2}
        )

    def stride(self, source: int) -> int:
        return 2 if self.reduction and source < 2 else 1

    def forward(self, x: torch.Tensor, source: int, op: int) -> torch.Tensor:
        name = CONV_OPS[op]
        if op in SEP_CONVS:
            return getattr(self, name)[source](x)
        if name == "identity":
            return self.identity[str(source)](x) if str(source) in self.identity else x
        return Pool(name.split("_")[0], 3, self.stride(source))(x)


class WSCell(nn.Module):
    """A supernet cell: its nodes' branches, the per-state 1x1 combination, the reductions."""

    def __init__(self, c0: int, hw0: int, c1: int, hw1: int, channels: int, reduction: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.calibrate = Calibrate(c0, hw0, c1, hw1, channels)
        self.nodes = nn.ModuleList(
            nn.ModuleList(WSBranch(i, channels, reduction) for _ in range(2)) for i in range(NODES)
        )
        self.reduce = nn.ModuleDict(
            {str(j): FactorizedReduce(channels, channels) for j in range(2)} if reduction else {}
        )
        self.combine = nn.ParameterList(
            nn.Parameter(torch.empty(channels, channels, 1, 1)) for _ in range(NODES + 2)
        )
        self.combine_bn = nn.BatchNorm2d(channels)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, cell: tuple[int, ...], keep: float) -> torch.Tensor:
        states = self.calibrate(s0, s1)
        used: set[int] = set()
        for i, (x_branch, y_branch) in enumerate(self.nodes):
            x_in, x_op, y_in, y_op = cell[4 * i : 4 * i + 4]
            x = x_branch(states[x_in], x_in, x_op)
            y = y_branch(states[y_in], y_in, y_op)
            if self.training and keep < 1.0:
                x, y = drop_path(x, keep), drop_path(y, keep)
            states.append(x + y)
            used.update((x_in, y_in))
        concat = [j for j in range(NODES + 2) if j not in used]
        outs = [self.reduce[str(j)](states[j]) if str(j) in self.reduce else states[j] for j in concat]
        weight = torch.cat([self.combine[j] for j in concat], dim=1)
        return self.combine_bn(F.conv2d(F.relu(torch.cat(outs, dim=1)), weight))


class NAOSupernet(nn.Module):
    """NAO_V1's ``NASWSNetworkCIFAR``: N = `layers` cells per stage, F = `channels`."""

    def __init__(self, layers: int = 3, channels: int = 20, num_classes: int = 10,
                 drop_path: float | None = 0.9, auxiliary: bool = False, input_size: int = 32) -> None:  # fmt: skip
        super().__init__()
        self.layers, self.channels, self.drop_path_keep = layers, channels, drop_path
        stem = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        shapes = [(stem, input_size), (stem, input_size)]
        self.plan = stage_plan(layers)
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers + 1 if auxiliary else None
        self.aux_head: nn.Module | None = None
        for i, reduction in enumerate(self.plan):
            if reduction:
                channels *= 2
            (c0, hw0), (c1, hw1) = shapes
            self.cells.append(WSCell(c0, hw0, c1, hw1, channels, reduction))
            shapes = [shapes[1], (channels, hw1 // 2 if reduction else hw1)]
            if i == self.aux_index:
                self.aux_head = AuxHead(channels, num_classes)
        self.classifier = nn.Linear(shapes[1][0], num_classes)
        for p in self.parameters():  # NAO_V1 ``init_parameters``
            if p.dim() >= 2:
                nn.init.kaiming_normal_(p)

    def keep(self, layer: int, step: int | None, total_steps: int | None) -> float:
        if not self.training or self.drop_path_keep is None or step is None or not total_steps:
            return 1.0
        return drop_path_keep(self.drop_path_keep, layer, len(self.cells), step, total_steps)

    def forward(self, x: torch.Tensor, arch: ConvArch, step: int | None = None,
                total_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """(logits, auxiliary logits or None) of `arch`'s path through the supernet."""
        s0 = s1 = self.stem(x)
        aux = None
        for i, (cell, reduction) in enumerate(zip(self.cells, self.plan, strict=True)):
            genome = arch.reduction if reduction else arch.normal
            s0, s1 = s1, cell(s0, s1, genome, self.keep(i, step, total_steps))
            if i == self.aux_index and self.training and self.aux_head is not None:
                aux = self.aux_head(s1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1)), aux
