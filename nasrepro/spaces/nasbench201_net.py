"""NAS-Bench-201's evaluation network (cell, residual reductions, stem and classifier), kept apart
from the space so that a table search, which only looks architectures up, never imports torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.spaces.nasbench201 import EDGES, NUM_NODES, NB201Arch, as_arch


class ReLUConvBN(nn.Sequential):
    """NB201's ``nor_conv`` ordering: ReLU, convolution without bias, affine BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
        )


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the input's shape (kept, as in NB201, so shapes and device
    follow the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


#: op name -> factory(channels) for the stride-1, same-width edges of a cell.
OPS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda channels: Zero(),
    "skip_connect": lambda channels: nn.Identity(),
    "nor_conv_1x1": lambda channels: ReLUConvBN(channels, channels, 1),
    "nor_conv_3x3": lambda channels: ReLUConvBN(channels, channels, 3),
    "avg_pool_3x3": lambda channels: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


def edge_key(source: int, target: int) -> str:
    return f"edge_{source}_{target}"


class Cell(nn.Module):
    """NB201's cell wiring, one module per edge: ``node_j = sum_{i<j} edge_ij(node_i)``.

    `edge_ops` maps every edge ``(i, j)`` of `EDGES` to a factory called with `channels`; a plain
    cell uses `OPS[name]`, a supernet a mixed op over all of `OPS`.
    """

    def __init__(self, channels: int, edge_ops: Mapping[tuple[int, int], Callable[[int], nn.Module]]) -> None:
        super().__init__()
        missing = [edge for edge in EDGES if edge not in edge_ops]
        if missing:
            raise UsageError(f"Cell needs a module factory for every edge; missing {missing}")
        self.channels = channels
        self.edges = nn.ModuleDict({edge_key(i, j): edge_ops[(i, j)](channels) for i, j in EDGES})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in range(1, NUM_NODES):
            total = self.edges[edge_key(0, target)](nodes[0])
            for source in range(1, target):
                total = total + self.edges[edge_key(source, target)](nodes[source])
            nodes.append(total)
        return nodes[-1]


def arch_cell(arch: NB201Arch | str) -> Callable[[int], Cell]:
    """A cell factory (channels -> `Cell`) for a fixed architecture."""
    arch = as_arch(arch)
    edge_ops = {edge: OPS[op] for edge, op in zip(EDGES, arch.ops, strict=True)}
    return lambda channels: Cell(channels, edge_ops)


class ResidualReduction(nn.Module):
    """NB201's reduction block between stages: a ResNet basic block with stride 2, whose shortcut
    is 2x2 average pooling followed by a 1x1 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """The NB201 evaluation network around any cell factory (Dong & Yang 2020, Fig. 1 / Sec. 2.1).

    Stem (3x3 conv + BN) -> `cells_per_stage` cells at C -> reduction -> cells at 2C ->
    reduction -> cells at 4C -> BN-ReLU -> global average pooling -> linear classifier.
    `stage_layers(width, stage)` replaces a stage's cells (FaDE's regions put one mixed stage there)
    and keeps everything around them, parameter names included.
    """

    def __init__(
        self,
        cell: Callable[[int], nn.Module] | None = None,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
        stage_layers: Callable[[int, int], list[nn.Module]] | None = None,
    ) -> None:
        super().__init__()
        if (cell is None) == (stage_layers is None):
            raise UsageError("NB201Network takes a cell factory or a stage builder, exactly one")
        if stage_layers is None:
            stage_layers = lambda width, stage: [cell(width) for _ in range(cells_per_stage)]  # noqa: E731
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(width, width * 2))
                width *= 2
            layers.extend(stage_layers(width, stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(features), 1))


# --- the space --------------------------------------------------------------------------------
