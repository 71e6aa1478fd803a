"""NAO's NASNet-style cell network for CIFAR (NAO_pytorch ``NAO_V1/model.py`` ``NASNetworkCIFAR``,
``operations.py``), and the building blocks NAO-WS's supernet reuses.

Wiring (Luo et al. 2018, Sec. 4.1 and Appendix; NAO_V1):

* stem: 3x3 conv to 3F channels + BN; both inputs of the first cell are the stem's output;
* 3N + 2 cells: N normal, a reduction cell (index N), N normal, a reduction (2N + 1), N normal;
  the cell width starts at F and doubles at each reduction cell;
* a cell first calibrates its two inputs to its width (`Calibrate`: factorized reduction of the
  older input after a reduction, else a 1x1 ReLU-conv-BN where the width differs); node i sums its
  two branches op(input); in a reduction cell an op on input 0 or 1 has stride 2; the cell's output
  is the concatenation of the states no node consumed (inputs 0/1 included, factorized-reduced in a
  reduction cell), so its width is F x (number of such states);
* an optional auxiliary head after the second reduction cell (``AuxHeadCIFAR``), global average
  pooling, dropout, a linear classifier; every weight of dimension >= 2 Kaiming-normal initialised.

Drop-path (NAO_V1 ``apply_drop_path``): each branch's output is dropped per example with a keep
probability that falls linearly with depth, ``1 - (l + 1) / L (1 - keep)`` for cell l of L, and again
with training progress, ``1 - (step + 1) / steps (1 - that)``; a kept branch is divided by the keep
probability. Two ways to drive it: NAO-WS's supernet fit passes the step (`forward(x, step)`,
`total_steps`); the harness's image step sets the progress-ramped probability before each epoch
(`set_drop_path`, `harness.model_hooks.ScheduledDropPath`), to which the network applies the depth
factor. The auxiliary head is likewise built on request (`enable_auxiliary_head`,
`harness.model_hooks.AuxiliaryLogits`), so the space's network measures without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.spaces.nao_cells import CONV_OPS, NODES, ConvArch


def drop_path_keep(keep: float, layer: int, layers: int, step: int, steps: int) -> float:
    """NAO_V1 ``apply_drop_path``'s keep probability for cell `layer` of `layers` at `step` of `steps`."""
    keep = 1.0 - (layer + 1) / layers * (1.0 - keep)
    return 1.0 - min((step + 1) / steps, 1.0) * (1.0 - keep)


def drop_path(x: torch.Tensor, keep: float) -> torch.Tensor:
    """Zero whole examples with probability 1 - `keep`, scaling the kept ones by 1 / `keep`."""
    if keep >= 1.0:
        return x
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two rounds of ReLU, depthwise k x k, pointwise 1x1, BN; the first carries the stride."""

    def __init__(self, channels: int, kernel: int, stride: int) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel, stride, pad, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel, 1, pad, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )


class FactorSeparable(nn.Sequential):
    """The 1xk then kx1 convolution pair (``conv 1x3+3x1``, ``1x7+7x1``), each ReLU-conv-BN."""

    def __init__(self, channels: int, kernel: int, stride: int) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, kernel), (1, stride), (0, pad), bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (kernel, 1), (stride, 1), (pad, 0), bias=False),
            nn.BatchNorm2d(channels),
        )


class FactorizedReduce(nn.Module):
    """Halves the resolution without losing pixels: two 1x1 stride-2 convolutions, the second on
    the input shifted by one pixel, concatenated, then BN (no ReLU inside, as NAO_V1)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


class Pool(nn.Module):
    """k x k max or average pooling keeping the size at stride 1 (average excludes the padding);
    2x2 pads one zero row and column first (NAO_V1 ``F.pad(x, [0, 1, 0, 1])`` for ops 10 and 13)."""

    def __init__(self, kind: str, kernel: int, stride: int) -> None:
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel - 1) // 2
        if self.kernel == 2:
            x, pad = F.pad(x, (0, 1, 0, 1)), 0
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel, self.stride, pad)
        return F.avg_pool2d(x, self.kernel, self.stride, pad, count_include_pad=False)


def make_op(op: int, channels: int, stride: int) -> nn.Module:
    """NAO_V1's op `op` (global id, `CONV_OPS`) at `channels`; identity reduces by factorized
    reduction where the branch has stride 2."""
    name = CONV_OPS[op]
    if name == "identity":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)
    kind, _, size = name.rpartition("_")
    kernel = int(size.split("x")[0])
    if kind == "sep_conv":
        return SepConv(channels, kernel, stride)
    if kind == "conv":
        return ReLUConvBN(channels, channels, kernel, stride, kernel // 2)
    if kind in ("conv_1x3", "conv_1x7"):
        return FactorSeparable(channels, int(kind[-1]), stride)
    return Pool(kind.split("_")[0], kernel, stride)


class Calibrate(nn.Module):
    """NAO_V1 ``MaybeCalibrateSize``: both inputs brought to `channels` at the newer one's size."""

    def __init__(self, c0: int, hw0: int, c1: int, hw1: int, channels: int) -> None:
        super().__init__()
        self.pre0: nn.Module = nn.Identity()
        if hw0 != hw1:
            self.pre0 = nn.Sequential(nn.ReLU(inplace=False), FactorizedReduce(c0, channels))
        elif c0 != channels:
            self.pre0 = ReLUConvBN(c0, channels)
        self.pre1: nn.Module = ReLUConvBN(c1, channels) if c1 != channels else nn.Identity()

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> list[torch.Tensor]:
        return [self.pre0(s0), self.pre1(s1)]


class AuxHead(nn.Module):
    """NAO_V1 ``AuxHeadCIFAR`` on the 8x8 output of the second reduction cell."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class Cell(nn.Module):
    """One cell of a fixed architecture (`cell`: NAO_V1's 20 integers)."""

    def __init__(self, cell: Sequence[int], c0: int, hw0: int, c1: int, hw1: int, channels: int,
                 reduction: bool) -> None:  # fmt: skip
        super().__init__()
        self.cell, self.reduction = tuple(cell), reduction
        self.calibrate = Calibrate(c0, hw0, c1, hw1, channels)
        self.ops = nn.ModuleList()
        used = [0] * (NODES + 2)
        for i in range(NODES):
            for x, op in ((cell[4 * i], cell[4 * i + 1]), (cell[4 * i + 2], cell[4 * i + 3])):
                self.ops.append(make_op(op, channels, 2 if reduction and x < 2 else 1))
                used[x] += 1
        self.concat = [i for i, n in enumerate(used) if n == 0]
        self.reduce = nn.ModuleDict(
            {str(i): FactorizedReduce(channels, channels) for i in self.concat if reduction and i < 2}
        )
        self.out_channels = channels * len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, keep: float = 1.0) -> torch.Tensor:
        states = self.calibrate(s0, s1)
        for i in range(NODES):
            x = self.ops[2 * i](states[self.cell[4 * i]])
            y = self.ops[2 * i + 1](states[self.cell[4 * i + 2]])
            if self.training and keep < 1.0:
                x, y = drop_path(x, keep), drop_path(y, keep)
            states.append(x + y)
        outs = [self.reduce[str(i)](states[i]) if str(i) in self.reduce else states[i] for i in self.concat]
        return torch.cat(outs, dim=1)


def stage_plan(layers: int) -> list[bool]:
    """Which of the 3N + 2 cells reduce (indices N and 2N + 1)."""
    return [i in (layers, 2 * layers + 1) for i in range(3 * layers + 2)]


class NAONetwork(nn.Module):
    """NAO_V1's ``NASNetworkCIFAR`` for one architecture: N = `layers`, F = `channels`.

    `dropout` is the classifier's (1 - ``keep_prob``); `auxiliary` adds the head whose logits
    `forward_with_aux` returns in training (or `enable_auxiliary_head` later); `drop_path` (a keep
    probability) with `total_steps` enables NAO_V1's scheduled drop-path when `forward` is given the
    step, and `set_drop_path` sets a per-epoch probability instead (the harness's training hooks).
    """

    def __init__(self, arch: ConvArch, num_classes: int = 10, layers: int = 6, channels: int = 36,
                 dropout: float = 0.0, auxiliary: bool = False, drop_path: float | None = None,
                 total_steps: int | None = None, input_size: int = 32) -> None:  # fmt: skip
        super().__init__()
        self.arch, self.drop_path_keep, self.total_steps = arch, drop_path, total_steps
        self.num_classes = num_classes
        #: the deepest cell's drop probability of this epoch (`set_drop_path`); 0: none
        self.drop_path_prob = 0.0
        stem = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        shapes = [(stem, input_size), (stem, input_size)]
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers + 1
        self.aux_head: nn.Module | None = None
        for i, reduction in enumerate(stage_plan(layers)):
            if reduction:
                channels *= 2
            cell_arch = arch.reduction if reduction else arch.normal
            (c0, hw0), (c1, hw1) = shapes
            cell = Cell(cell_arch, c0, hw0, c1, hw1, channels, reduction)
            self.cells.append(cell)
            shapes = [shapes[1], (cell.out_channels, hw1 // 2 if reduction else hw1)]
            if i == self.aux_index:
                self.aux_channels = cell.out_channels
                if auxiliary:
                    self.aux_head = AuxHead(cell.out_channels, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(shapes[1][0], num_classes)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.kaiming_normal_(p)

    def enable_auxiliary_head(self) -> None:
        """Build NAO_V1's auxiliary head after the second reduction cell (if not built yet), Kaiming-
        normal initialised like the rest, on the network's device (`model_hooks.AuxiliaryLogits`)."""
        if self.aux_head is not None:
            return
        head = AuxHead(self.aux_channels, self.num_classes)
        for p in head.parameters():
            if p.dim() >= 2:
                nn.init.kaiming_normal_(p)
        self.aux_head = head.to(self.classifier.weight.device)

    def set_drop_path(self, prob: float) -> None:
        """This epoch's drop probability of the deepest cell; cell l of L drops with
        ``(l + 1) / L * prob`` (NAO_V1 ``apply_drop_path``'s depth factor; `model_hooks.ScheduledDropPath`)."""
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"a drop-path probability is in [0, 1), got {prob}")
        self.drop_path_prob = float(prob)

    def _keep(self, layer: int, step: int | None) -> float:
        if not self.training:
            return 1.0
        if self.drop_path_keep is not None and step is not None and self.total_steps:
            return drop_path_keep(self.drop_path_keep, layer, len(self.cells), step, self.total_steps)
        return 1.0 - (layer + 1) / len(self.cells) * self.drop_path_prob

    def forward_with_aux(
        self, x: torch.Tensor, step: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self._keep(i, step))
            if i == self.aux_index and self.training and self.aux_head is not None:
                aux = self.aux_head(s1)
        out = self.dropout(F.adaptive_avg_pool2d(s1, 1).flatten(1))
        return self.classifier(out), aux

    def forward(self, x: torch.Tensor, step: int | None = None) -> torch.Tensor:
        return self.forward_with_aux(x, step)[0]
