"""The networks ProxylessNAS released, as data, and their builders.

ImageNet (Cai, Zhu & Han, ICLR 2019, Table 2/3/4 and Fig. 4; configs ``proxyless_{mobile,
mobile_14,gpu,cpu}.config`` of the authors' model zoo): MBConv chains built by
`spaces.build_net`. Each entry lists the stem / block-1 / stage widths / head and the per-block
choices in the space's string form; the strides are the search space's (2,2,2,1,2,1) and the
dropout rates are the retraining ones (``search/imagenet_run_exp.py``: mobile 0.1, mobile_14 0.3,
GPU 0.3, CPU 0.2). The GPU and CPU nets use widths different from the search space's (fact sheet
Sec. 2.2), so they are `NetSpec`s, not architectures of `IMAGENET_SPACE`. Measured at 224x224 with
1000 classes these builders give exactly the analytic counts of the released configs:
mobile 4.08M params / 320M MACs, mobile_14 6.86M / 581M, GPU 7.12M / 465M, CPU 4.36M / 439M.

CIFAR-10 (paper Table 1, "Proxyless-G + c/o", 2.08% error, 5.7M params): the released
``proxyless_cifar.config`` is a ``PyramidTreeNet`` taken over from Path-Level EAS (Cai et al.,
ICML 2018). We transcribed it block by block from that JSON (read through the code-search corpus;
the file itself is not shipped): a 3x3 stem to 16 channels + BN, 54 bottleneck
`ResidualTreeBlock`s (3 stages of 18, stride 2 at blocks 19 and 37), BN-ReLU-8x8 average pooling
and a linear 400 -> 10 classifier. Block ``i`` has inner width ``c_i = 2 * (round(16 + 84 i / 54)
// 2)`` (PyramidNet, N=18 per stage, alpha=84, rounded down to even for the 2-group root conv;
this rule reproduces all 54 widths of the config, 18 -> 100) and outputs ``4 c_i`` channels.
Every block has pre-activation order (BN -> ReLU -> weight) and computes

    shortcut(x) (identity, or 2x2 average pooling at the stride-2 blocks; zero-padded to 4c)
    + final_BN(out_bottle(cell(in_bottle(x))))

with ``in_bottle`` = BN-conv1x1 (4c_{i-1} -> c), ``out_bottle`` = BN-ReLU-conv1x1 (c -> 4c) and
the tree cell: a root edge BN-ReLU-3x3 group conv (G=2, c -> 2c, the block's stride) + channel
shuffle, then a ``split`` node that hands each half of the channels to one branch; each branch is
a ``copy``/``add`` node whose two edges each feed a ``copy``/``add`` child with two leaf edges,
and the branch output is ``BN(child(x_half)) + x_half``. The 12 searched edges of a cell are
written as 6 pairs, ``A.edges A.child0 A.child1 B.edges B.child0 B.child1``; the cells differ
block by block (`PROXYLESS_CIFAR_CELLS`). Parameter count: 5,731,530 (5.73M), equal to the
integer to a hand count of the config's layers that the tests do without these modules
(`tests/test_methods_proxylessnas_space.py`), and to the fact sheet's 5.73M and the paper's 5.7M at
their stated precision. The hand count reads its ops from `PROXYLESS_CIFAR_CELLS`, so it cannot
catch a single mis-transcribed op (swapping one separable conv for a pool moves the count by only
~1-20k): the cells are a careful transcription (parts of blocks 1, 18, 19 and 54 re-read from the JSON
are tested), not a verified byte-for-byte copy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.methods.proxylessnas.spaces import (
    IMAGENET_SPACE,
    NetSpec,
    ProxylessArch,
    ProxylessNet,
    build_net,
)

# --- ImageNet ---------------------------------------------------------------------------------

_MOBILE_CHOICES = "5E3,3E3,Z,Z|7E3,3E3,5E3,5E3|7E6,5E3,5E3,5E3|5E6,5E3,5E3,5E3|7E6,7E6,7E3,7E3|7E6"


def _imagenet(
    stem: int, first: int, widths: tuple[int, ...], head: int, choices: str, dropout: float
) -> NetSpec:
    return NetSpec(
        stem_width=stem,
        first_width=first,
        widths=widths,
        strides=IMAGENET_SPACE.strides,
        stages=ProxylessArch.parse(choices).stages,
        head_width=head,
        dropout=dropout,
        stem_stride=2,
        input_size=224,
    )


#: the four released ImageNet nets (fact sheet Sec. 2.2 table; dropout from Sec. 3.2)
RELEASED_IMAGENET: dict[str, NetSpec] = {
    "proxyless_mobile": _imagenet(32, 16, (32, 40, 80, 96, 192, 320), 1280, _MOBILE_CHOICES, 0.1),
    "proxyless_mobile_14": _imagenet(48, 24, (40, 56, 112, 136, 256, 448), 1792, _MOBILE_CHOICES, 0.3),
    "proxyless_gpu": _imagenet(
        40,
        24,
        (32, 56, 112, 128, 256, 432),
        1728,
        "5E3,Z,Z,Z|7E3,Z,Z,3E3|7E6,Z,Z,5E3|5E6,Z,3E3,5E3|7E6,7E6,7E6,5E6|7E6",
        0.3,
    ),
    "proxyless_cpu": _imagenet(
        40,
        24,
        (32, 48, 88, 104, 216, 360),
        1432,
        "3E6,3E3,3E3,3E3|3E6,3E3,3E3,5E3|3E6,Z,Z,3E3|5E6,3E3,3E3,3E3|5E6,5E3,5E3,3E3|5E6",
        0.2,
    ),
}


# --- CIFAR-10: the tree-cell PyramidNet -------------------------------------------------------


class PreActConv(nn.Module):
    """The released ``ConvLayer`` with ``ops_order='bn_act_weight'``: [BN] -> [ReLU] -> conv
    (no bias) -> channel shuffle when grouped (ShuffleNet's shuffle, as ``has_shuffle``)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        bn: bool = True,
        act: bool = False,
        shuffle: bool = False,
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in) if bn else None
        self.act = nn.ReLU() if act else None
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.shuffle_groups = groups if shuffle and groups > 1 else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return channel_shuffle(self.conv(x), self.shuffle_groups)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (g, c/g) -> (c/g, g) interleave."""
    if groups == 1:
        return x
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SepConv(nn.Module):
    """The released ``DepthConvLayer`` (bn_act_weight): BN -> ReLU -> kxk depthwise (dilated) ->
    1x1 pointwise, no biases."""

    def __init__(self, channels: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()
        pad = kernel // 2 * dilation
        self.depth_conv = nn.Conv2d(
            channels, channels, kernel, 1, pad, dilation=dilation, groups=channels, bias=False
        )
        self.point_conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.act(self.bn(x))))


@dataclass(frozen=True)
class TreeOp:
    """One leaf/edge operation of the tree cell: its code in `PROXYLESS_CIFAR_CELLS`, the released
    layer it stands for, and its builder ``channels -> module``."""

    code: str
    name: str
    build: Callable[[int], nn.Module]


#: the 7 tree-cell operations (Path-Level EAS / ProxylessNAS CIFAR-10 search space)
TREE_OPS: dict[str, TreeOp] = {
    op.code: op
    for op in (
        TreeOp("I", "identity", lambda c: nn.Identity()),
        TreeOp("3", "3x3_depthwise_separable_conv", lambda c: SepConv(c, 3)),
        TreeOp("5", "5x5_depthwise_separable_conv", lambda c: SepConv(c, 5)),
        TreeOp("7", "7x7_depthwise_separable_conv", lambda c: SepConv(c, 7)),
        TreeOp("D", "3x3_dilated2_depthwise_separable_conv", lambda c: SepConv(c, 3, dilation=2)),
        TreeOp("M", "3x3_max_pool", lambda c: nn.MaxPool2d(3, 1, 1)),
        TreeOp("A", "3x3_avg_pool", lambda c: nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    )
}


class TreeNode(nn.Module):
    """A node of the Path-Level EAS tree cell: allocate the input to its branches (``copy`` = the
    same tensor to every branch, ``split`` = consecutive channel chunks), run each branch's edge and
    then its child node (if any), and add the branch outputs. With branch BN (the split node), a
    branch returns ``BN(child(edge(x))) + edge(x)`` (released ``path_normal_forward``)."""

    def __init__(
        self,
        edges: Sequence[nn.Module],
        children: Sequence[nn.Module | None],
        split: bool = False,
        branch_bn_channels: int | None = None,
    ) -> None:
        super().__init__()
        if len(edges) != len(children):
            raise UsageError(
                f"a tree node needs one child slot per edge, got {len(edges)} and {len(children)}"
            )
        self.split = split
        self.edges = nn.ModuleList(edges)
        self.child_nodes = nn.ModuleList([c if c is not None else nn.Identity() for c in children])
        self.has_child = [c is not None for c in children]
        self.branch_bns = (
            nn.ModuleList([nn.BatchNorm2d(branch_bn_channels) for _ in edges])
            if branch_bn_channels is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = torch.chunk(x, len(self.edges), dim=1) if self.split else [x] * len(self.edges)
        total = None
        for i, (edge, child) in enumerate(zip(self.edges, self.child_nodes, strict=True)):
            y = edge(inputs[i])
            out = child(y) if self.has_child[i] else y
            if self.branch_bns is not None:
                out = self.branch_bns[i](out) + y
            total = out if total is None else total + out
        assert total is not None
        return total


def parse_tree_cell(text: str) -> tuple[str, ...]:
    """The 12 op codes of a cell string ``"7M DI 7M 5D 55 77"`` (6 pairs: A.edges A.child0
    A.child1 B.edges B.child0 B.child1); `UsageError` naming the problem."""
    pairs = text.split()
    if len(pairs) != 6 or any(len(p) != 2 for p in pairs):
        raise UsageError(
            f"a tree cell is 6 space-separated pairs of op codes like '7M DI 7M 5D 55 77', got {text!r}"
        )
    codes = tuple("".join(pairs))
    for code in codes:
        if code not in TREE_OPS:
            raise UsageError(f"unknown tree-cell op {code!r} in {text!r}; choose from {', '.join(TREE_OPS)}")
    return codes


def tree_cell(channels: int, cell: str, stride: int = 1, groups: int = 2) -> TreeNode:
    """The released tree cell at inner width `channels`: root group conv (c -> 2c, `stride`,
    shuffle) -> split node with branch BN -> two copy nodes of depth 2 with the cell's ops."""
    codes = parse_tree_cell(cell)

    def op(code: str) -> nn.Module:
        return TREE_OPS[code].build(channels)

    def branch(c: tuple[str, ...]) -> TreeNode:  # 6 codes: edge0 edge1 | leaves of child0 | child1
        leaves0 = TreeNode([op(c[2]), op(c[3])], [None, None])
        leaves1 = TreeNode([op(c[4]), op(c[5])], [None, None])
        return TreeNode([op(c[0]), op(c[1])], [leaves0, leaves1])

    split_node = TreeNode(
        [nn.Identity(), nn.Identity()],
        [branch(codes[:6]), branch(codes[6:])],
        split=True,
        branch_bn_channels=channels,
    )
    root_edge = PreActConv(channels, groups * channels, 3, stride, groups=groups, act=True, shuffle=True)
    return TreeNode([root_edge], [split_node])


class ResidualTreeBlock(nn.Module):
    """A bottleneck PyramidNet block around a tree cell (released ``ResidualTreeBlock``)."""

    def __init__(self, c_in: int, channels: int, cell: str, stride: int = 1, expansion: int = 4) -> None:
        super().__init__()
        self.c_out = expansion * channels
        if self.c_out < c_in:
            raise UsageError(f"a pyramid block cannot shrink its width ({c_in} -> {self.c_out})")
        self.shortcut = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        self.in_bottle = PreActConv(c_in, channels, 1)
        self.cell = tree_cell(channels, cell, stride)
        self.out_bottle = PreActConv(channels, self.c_out, 1, act=True)
        self.final_bn = nn.BatchNorm2d(self.c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.final_bn(self.out_bottle(self.cell(self.in_bottle(x))))
        shortcut = self.shortcut(x)
        missing = residual.shape[1] - shortcut.shape[1]
        if missing:  # PyramidNet's zero-padded identity shortcut
            pad = shortcut.new_zeros(shortcut.shape[0], missing, *shortcut.shape[2:])
            shortcut = torch.cat([shortcut, pad], dim=1)
        return shortcut + residual


def pyramid_widths(blocks: int = 54, start: int = 16, alpha: int = 84) -> tuple[int, ...]:
    """PyramidNet's linearly growing inner widths, rounded down to even (reproduces the config)."""
    return tuple(2 * (round(start + alpha * i / blocks) // 2) for i in range(1, blocks + 1))


class PyramidTreeNet(nn.Module):
    """Stem conv (3 -> `stem`) + BN, the residual tree blocks, BN-ReLU-global pool, linear."""

    def __init__(
        self,
        cells: Sequence[str],
        widths: Sequence[int],
        strides: Sequence[int],
        num_classes: int = 10,
        stem: int = 16,
    ) -> None:
        super().__init__()
        if not len(cells) == len(widths) == len(strides):
            raise UsageError(
                f"need one width and stride per cell; got {len(cells)}, {len(widths)}, {len(strides)}"
            )
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem))
        blocks, c_in = [], stem
        for cell, width, stride in zip(cells, widths, strides, strict=True):
            blocks.append(ResidualTreeBlock(c_in, width, cell, stride))
            c_in = blocks[-1].c_out
        self.blocks = nn.Sequential(*blocks)
        # the released final transition is BN-ReLU-AvgPool(8) on an 8x8 map: global pooling
        self.head = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.blocks(self.stem(x))))


#: the 54 released cells, block by block (ops: I identity, 3/5/7 kxk depthwise-separable conv,
#: D 3x3 dilation-2 separable conv, M 3x3 max pool, A 3x3 avg pool), transcribed from
#: han-cai/files proxylessnas/proxyless_cifar.config
PROXYLESS_CIFAR_CELLS: tuple[str, ...] = (
    "7M DI 7M 5D 55 77",  #  1
    "AI AA 3I M7 DI DD",  #  2
    "7I 3A 5A 3D 3A D5",  #  3
    "A5 5D 3D D7 73 I7",  #  4
    "AI 5D D5 7M 7A IM",  #  5
    "7M 7M 35 A7 D3 II",  #  6
    "DM IM 77 77 53 II",  #  7
    "DD 57 57 M5 AA 37",  #  8
    "7D 5M II MM 3A AD",  #  9
    "5I 3I 37 3I 57 57",  # 10
    "7A 75 35 DI AD D3",  # 11
    "5D A5 33 A5 77 D3",  # 12
    "MM 73 7D 3M A5 7I",  # 13
    "37 MD 7D 5D I3 73",  # 14
    "DA M3 DD AI 5I 5I",  # 15
    "5I D5 AA D5 55 73",  # 16
    "75 55 D3 ID M7 37",  # 17
    "MD II 3I 7M 57 ID",  # 18
    "DM 5A A7 5A 73 AM",  # 19
    "7D I7 I7 DM 37 M5",  # 20
    "MD A3 ID MM M5 IA",  # 21
    "DA 73 A3 3A 7I DD",  # 22
    "DM MA 7I 7D DI AM",  # 23
    "75 M7 MI MI AD M7",  # 24
    "I5 A5 M5 DD 7A DM",  # 25
    "3I AD DD D3 AA A3",  # 26
    "D7 M7 IM MM 55 5D",  # 27
    "37 73 AI M7 37 MM",  # 28
    "75 77 A3 33 ID A3",  # 29
    "5I AI A5 A7 3A AM",  # 30
    "I3 AD I7 IA 7M ID",  # 31
    "7M 5I 7D M7 DM 77",  # 32
    "37 M3 I3 53 I3 5I",  # 33
    "D7 D3 D7 3I 3D MI",  # 34
    "MI I5 5A 37 AI AD",  # 35
    "7M 75 DA 73 75 55",  # 36
    "AA AA DA 7I 5I IA",  # 37
    "M7 IA 5I II AI 7I",  # 38
    "D3 7M I5 AI 3I MA",  # 39
    "77 A5 A3 MI A3 MM",  # 40
    "II A7 I7 IM A5 A7",  # 41
    "DI 5I M5 75 D7 ID",  # 42
    "MM IA AM DA I5 3I",  # 43
    "77 57 7A D7 3M 7A",  # 44
    "DA DM D3 7D ID M5",  # 45
    "AD AM 3M DI 7D AI",  # 46
    "MM A7 33 5D AI I3",  # 47
    "5D 7D IM M7 35 MI",  # 48
    "77 3M DA M5 MM 5M",  # 49
    "M5 IA D3 53 73 77",  # 50
    "I3 A5 77 I7 77 3A",  # 51
    "5M 53 AI 55 AM 5I",  # 52
    "3M D3 MA I7 MD 33",  # 53
    "77 3M 5I 5M M3 37",  # 54
)
#: blocks (1-based) whose root conv has stride 2 and whose shortcut is 2x2 average pooling
PROXYLESS_CIFAR_STRIDE2: tuple[int, ...] = (19, 37)


def proxyless_cifar(num_classes: int = 10) -> PyramidTreeNet:
    """The released CIFAR-10 tree-cell PyramidNet (Proxyless-G, paper Table 1)."""
    strides = tuple(
        2 if i in PROXYLESS_CIFAR_STRIDE2 else 1 for i in range(1, len(PROXYLESS_CIFAR_CELLS) + 1)
    )
    return PyramidTreeNet(PROXYLESS_CIFAR_CELLS, pyramid_widths(), strides, num_classes)


# --- the registry -----------------------------------------------------------------------------

#: released name -> builder(num_classes); ImageNet nets default to 1000 classes, CIFAR to 10
RELEASED_NETS: dict[str, Callable[[int | None], nn.Module]] = {
    **{
        name: functools.partial(lambda spec, n: build_net(spec, 1000 if n is None else n), spec)
        for name, spec in RELEASED_IMAGENET.items()
    },
    "proxyless_cifar": lambda n: proxyless_cifar(10 if n is None else n),
}


def released_net(name: str, num_classes: int | None = None) -> nn.Module:
    """A freshly initialised released network by name (``proxyless_mobile``, ``proxyless_gpu``,
    ... or without the ``proxyless_`` prefix)."""
    key = name if name in RELEASED_NETS else f"proxyless_{name}"
    if key not in RELEASED_NETS:
        raise UsageError(
            f"unknown released ProxylessNAS net {name!r}; choose from {', '.join(RELEASED_NETS)}"
        )
    return RELEASED_NETS[key](num_classes)


__all__ = [
    "PROXYLESS_CIFAR_CELLS",
    "RELEASED_IMAGENET",
    "RELEASED_NETS",
    "ProxylessNet",
    "PyramidTreeNet",
    "released_net",
]
