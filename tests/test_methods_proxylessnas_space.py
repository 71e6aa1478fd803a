"""ProxylessNAS search spaces, blocks and released networks: golden values from the released configs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasrepro.errors import UsageError
from nasrepro.methods.proxylessnas.blocks import (
    BN_EPS,
    BN_MOMENTUM,
    CANDIDATE_OPS,
    MBConv,
    MobileInvertedResidualBlock,
    ZeroLayer,
    candidate_op,
)
from nasrepro.methods.proxylessnas.released import (
    PROXYLESS_CIFAR_CELLS,
    RELEASED_IMAGENET,
    TREE_OPS,
    parse_tree_cell,
    proxyless_cifar,
    pyramid_widths,
    released_net,
)
from nasrepro.methods.proxylessnas.spaces import (
    CIFAR_SPACE,
    IMAGENET_SPACE,
    ProxylessArch,
    ProxylessSpace,
    build_net,
)
from nasrepro.spaces import SPACES

MOBILE = "5E3,3E3,Z,Z|7E3,3E3,5E3,5E3|7E6,5E3,5E3,5E3|5E6,5E3,5E3,5E3|7E6,7E6,7E3,7E3|7E6"


class FakeTask:
    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes


@pytest.fixture(scope="module")
def imagenet() -> ProxylessSpace:
    return ProxylessSpace(IMAGENET_SPACE)


@pytest.fixture(scope="module")
def cifar() -> ProxylessSpace:
    return ProxylessSpace(CIFAR_SPACE)


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, size: int) -> float:
    """Multiply-accumulates of conv + linear layers (FLOPs / 2), batch 1."""
    counter = FlopCounterMode(display=False)
    model.eval()
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    counts = counter.get_flop_counts()["Global"]
    counted = {str(op) for op in counts}
    assert counted <= {"aten.convolution", "aten.addmm"}, counted
    return counter.get_total_flops() / 2


# --- released ImageNet nets: exact params / MACs are in test_methods_proxylessnas_fidelity.py ----------


def test_released_dropout_and_aliases() -> None:
    rates = {name: spec.dropout for name, spec in RELEASED_IMAGENET.items()}
    assert rates == {
        "proxyless_mobile": 0.1,
        "proxyless_mobile_14": 0.3,
        "proxyless_gpu": 0.3,
        "proxyless_cpu": 0.2,
    }
    assert released_net("gpu").classifier.dropout.p == 0.3
    with pytest.raises(UsageError, match="unknown released"):
        released_net("proxyless_tpu")


def test_mobile_choices_are_an_architecture_of_the_imagenet_space(imagenet: ProxylessSpace) -> None:
    arch = imagenet.parse(MOBILE)
    assert str(arch) == MOBILE
    assert RELEASED_IMAGENET["proxyless_mobile"].arch == arch
    # the GPU net skips blocks 2-3 of stage 1: zeros are allowed there
    assert str(RELEASED_IMAGENET["proxyless_gpu"].arch).startswith("5E3,Z,Z,Z|7E3,Z,Z,3E3")


# --- the ImageNet space -----------------------------------------------------------------------


def test_imagenet_space_geometry_and_size(imagenet: ProxylessSpace) -> None:
    assert imagenet.size() == 6**6 * 7**15
    assert len(imagenet.slots) == 21 == len(imagenet.fields())
    widths = [(s.c_in, s.c_out, s.stride) for s in imagenet.slots if s.block == 0]
    assert widths == [(16, 24, 2), (24, 40, 2), (40, 80, 2), (80, 96, 1), (96, 192, 2), (192, 320, 1)]
    for slot in imagenet.slots:
        # zero exactly on stride-1 equal-width blocks, i.e. every block but a stage's first
        assert slot.allows_zero == (slot.block > 0)
        assert ("Z" in slot.choices) == slot.allows_zero
        assert len(slot.choices) == (7 if slot.block > 0 else 6)
    assert sum(len(s.choices) == 7 for s in imagenet.slots) == 15


def test_candidate_registry() -> None:
    assert list(CANDIDATE_OPS) == [
        "3x3_MBConv3",
        "3x3_MBConv6",
        "5x5_MBConv3",
        "5x5_MBConv6",
        "7x7_MBConv3",
        "7x7_MBConv6",
        "zero",
    ]
    op = candidate_op("7x7_MBConv6")
    assert (op.kernel, op.expand, op.code) == (7, 6, "7E6")
    assert candidate_op("7E6") is op
    assert isinstance(candidate_op("zero").build(8, 8, 1), ZeroLayer)
    with pytest.raises(UsageError, match="unknown ProxylessNAS op"):
        candidate_op("9x9_MBConv3")


def test_string_round_trip_and_sampling(imagenet: ProxylessSpace, cifar: ProxylessSpace) -> None:
    rng = np.random.default_rng(0)
    for space in (imagenet, cifar):
        for _ in range(50):
            arch = space.sample(rng)
            assert space.parse(str(arch)) == arch
            assert space.decode(space.encode(arch)) == arch
            assert hash(space.parse(str(arch))) == hash(arch)


def test_fields_encode_decode(imagenet: ProxylessSpace) -> None:
    fields = imagenet.fields()
    assert fields[0].name == "stage1_block1" and fields[0].group == "stage1"
    assert fields[-1].group == "stage6"
    assert {f.group for f in fields} == {f"stage{k}" for k in range(1, 7)}
    arch = imagenet.parse(MOBILE)
    codes = imagenet.encode(arch)
    assert all(0 <= c < len(f.choices) for c, f in zip(codes, fields, strict=True))
    assert [fields[i].choices[c] for i, c in enumerate(codes)] == list(arch.ops)
    with pytest.raises(UsageError, match="out of range"):
        imagenet.decode([6] + list(codes[1:]))  # index 6 = zero does not exist on a first block
    with pytest.raises(UsageError, match="21 fields"):
        imagenet.decode(codes[:-1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "architecture is a string"),
        ("5E3,3E3,Z,Z|7E3,3E3,5E3,5E3", "expected 6 '\\|'-separated stages"),
        (MOBILE.replace("5E3,3E3,Z,Z", "5E3,3E3,Z"), "stage 1 has 4 blocks, got 3"),
        (MOBILE[:-3] + "9E6", "unknown op code '9E6'"),
        (MOBILE.replace("5E3,3E3,Z,Z", "Z,3E3,Z,Z"), "zero only skips stride-1"),
        (MOBILE.replace("5E3,3E3", "5E3,,3E3"), "empty block"),
    ],
)
def test_parse_errors(imagenet: ProxylessSpace, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        imagenet.parse(text)


def test_parse_rejects_non_strings(imagenet: ProxylessSpace) -> None:
    with pytest.raises(UsageError):
        imagenet.parse(None)  # type: ignore[arg-type]


def test_mutate_changes_exactly_one_edge(imagenet: ProxylessSpace) -> None:
    rng = np.random.default_rng(1)
    arch = imagenet.parse(MOBILE)
    for _ in range(100):
        child = imagenet.mutate(arch, rng)
        diff = sum(a != b for a, b in zip(arch.ops, child.ops, strict=True))
        assert diff == 1
        imagenet.validate(child)
        arch = child


def test_canonical_moves_zeros_to_the_stage_end(imagenet: ProxylessSpace) -> None:
    a = imagenet.parse(MOBILE.replace("5E3,3E3,Z,Z", "5E3,Z,3E3,Z"))
    b = imagenet.parse(MOBILE)
    assert a != b
    assert imagenet.canonical(a) == b
    assert imagenet.key(a) == imagenet.key(b)
    # zero returns its input exactly, so with the same weights both networks compute the same
    # function: a's block 3 (3E3, after a zero) is b's block 2
    torch.manual_seed(0)
    net_a = imagenet.to_model(a, FakeTask(5)).eval()
    net_b = imagenet.to_model(b, FakeTask(5)).eval()
    moved = {k.replace("blocks.3.", "blocks.2."): v for k, v in net_a.state_dict().items()}
    net_b.load_state_dict(moved)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net_a(x), net_b(x), atol=1e-5)
    assert imagenet.num_distinct() == 6 * (6 * (1 + 6 + 36 + 216)) ** 5 < imagenet.size()


def test_spaces_registered() -> None:
    assert isinstance(SPACES.get("proxyless-imagenet")(), ProxylessSpace)
    made = SPACES.get("proxyless-cifar")()
    assert made.name == "proxyless-cifar" and made.config is CIFAR_SPACE


# --- blocks -----------------------------------------------------------------------------------


def test_mbconv_hidden_width_has_no_rounding() -> None:
    block = MBConv(20, 24, 5, 2, 3)
    assert block.hidden == 60  # make_divisible(60, 8) would be 64
    assert block.inverted_bottleneck.conv.out_channels == 60
    assert block.depth_conv.conv.groups == 60 and block.depth_conv.conv.kernel_size == (5, 5)
    assert block.depth_conv.conv.stride == (2, 2)
    assert isinstance(block.depth_conv.act, nn.ReLU6)
    assert not hasattr(block.point_linear, "act")  # linear bottleneck
    bn = block.point_linear.bn
    assert (bn.momentum, bn.eps) == (BN_MOMENTUM, BN_EPS) == (0.1, 1e-3)
    assert MBConv(16, 16, 3, 1, 1).inverted_bottleneck is None
    assert MBConv(16, 24, 3, 2, 6)(torch.randn(1, 16, 8, 8)).shape == (1, 24, 4, 4)


def test_residual_block_rule() -> None:
    x = torch.randn(2, 8, 6, 6)
    zero = MobileInvertedResidualBlock(ZeroLayer(1), 8, 8, 1)
    assert torch.equal(zero(x), x)
    op = MBConv(8, 8, 3, 1, 3).eval()
    block = MobileInvertedResidualBlock(op, 8, 8, 1).eval()
    assert block.has_shortcut and torch.allclose(block(x), op(x) + x)
    assert not MobileInvertedResidualBlock(MBConv(8, 16, 3, 1, 3), 8, 16, 1).has_shortcut
    assert not MobileInvertedResidualBlock(MBConv(8, 8, 3, 2, 3), 8, 8, 2).has_shortcut
    with pytest.raises(UsageError, match="zero op needs"):
        MobileInvertedResidualBlock(ZeroLayer(2), 8, 8, 2)


# --- CIFAR-scale space ------------------------------------------------------------------------


def test_cifar_space_is_small_and_trains(cifar: ProxylessSpace) -> None:
    assert cifar.size() == 6**6 * 7**5 and len(cifar.slots) == 11
    assert (CIFAR_SPACE.stem_width, CIFAR_SPACE.first_width, CIFAR_SPACE.head_width) == (16, 8, 640)
    assert CIFAR_SPACE.widths == (16, 24, 40, 48, 96, 160)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    widest = ProxylessArch(tuple(("7E6",) * d for d in CIFAR_SPACE.depths))
    model = cifar.to_model(widest, FakeTask(10))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert cifar.to_model(widest, object()).classifier.linear.out_features == 10  # default
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert params(model) < 1_000_000


def test_build_net_rejects_misplaced_zero() -> None:
    spec = RELEASED_IMAGENET["proxyless_mobile"]
    stages = list(spec.stages)
    stages[1] = ("Z", *stages[1][1:])
    with pytest.raises(UsageError, match="zero at stage 2 block 1 is not allowed"):
        build_net(dataclasses.replace(spec, stages=tuple(stages)))


# --- CIFAR-10 tree-cell PyramidNet (fact sheet Sec. 2.3) --------------------------------------


def test_tree_cell_data() -> None:
    assert len(PROXYLESS_CIFAR_CELLS) == 54
    assert set(TREE_OPS) == set("I357DMA")
    for cell in PROXYLESS_CIFAR_CELLS:
        assert len(parse_tree_cell(cell)) == 12
    widths = pyramid_widths()
    assert widths[0] == 18 and widths[-1] == 100 and all(w % 2 == 0 for w in widths)
    assert all(b - a in (0, 2) for a, b in zip(widths, widths[1:], strict=False))
    with pytest.raises(UsageError, match="6 space-separated pairs"):
        parse_tree_cell("7M DI")
    with pytest.raises(UsageError, match="unknown tree-cell op"):
        parse_tree_cell("7M DI 7M 5D 55 7X")


# A hand count of the released ``proxyless_cifar.config`` (han-cai/files), written from its layer
# list and independent of the builder's modules. Facts read from that JSON: a TransitionBlock stem
# (ConvLayer 3x3 3 -> 16 without BN, then IdentityLayer with BN 16); 54 ResidualTreeBlocks, block i of
# inner width c: in_bottle ConvLayer 1x1 (BN over its input, no bias) 4c_{i-1} -> c, a root ConvLayer
# 3x3 groups 2 c -> 2c (BN, ReLU, shuffle; stride 2 at blocks 19 and 37, whose shortcut is an avg
# PoolingLayer 2x2: no parameters), a split TreeNode with has_branch_bn (one BN of c per branch),
# 12 leaf edges, out_bottle ConvLayer 1x1 c -> 4c (BN, ReLU), final_bn over 4c; then a TransitionBlock
# PoolingLayer avg 8 with BN over 400 and a LinearLayer 400 -> 10 with bias. A DepthConvLayer edge is
# BN(c) + k x k depthwise + 1x1 pointwise (no bias); PoolingLayer and IdentityLayer edges have
# use_bn false. Spot values of the JSON: blocks 1 / 18 / 19 / 54 have c = 18 / 44 / 46 / 100, block 19's
# in_bottle is 176 -> 46, and parts of their cells read (A.edges A.child0 A.child1 B.edges B.child0
# B.child1, codes as `TREE_OPS`) as below.
_JSON_CELL_PARTS = {
    0: ("7M DI 7M 5D 55", "start"),
    17: ("7M 57 ID", "end"),
    18: ("DM 5", "start"),
    53: ("37", "end"),
}
_SEP_KERNEL = {"3": 3, "5": 5, "7": 7, "D": 3}  # D: 3x3 dilation 2, same weights as 3x3


def _bn(c: int) -> int:
    return 2 * c


def _hand_count_released_cifar(cells: tuple[str, ...]) -> int:
    # PyramidNet (Han et al. 2017) with 16 -> 16 + 84 over 54 blocks, each width rounded to nearest
    # then down to even for the 2-group root conv; 84 i / 54 = 14 i / 9 is never a half
    widths = [2 * (((16 * 9 + 14 * i) * 2 + 9) // 18 // 2) for i in range(1, 55)]
    assert (widths[0], widths[17], widths[18], widths[53]) == (18, 44, 46, 100)  # the JSON's
    total = 3 * 3 * 3 * 16 + _bn(16)  # stem
    c_in = 16
    for c, cell in zip(widths, cells, strict=True):
        total += _bn(c_in) + c_in * c  # in_bottle
        total += _bn(c) + 3 * 3 * (c // 2) * (2 * c)  # root group conv (groups 2: c/2 inputs each)
        total += 2 * _bn(c)  # the split node's branch BNs
        for op in cell.replace(" ", ""):
            if op in _SEP_KERNEL:
                total += _bn(c) + _SEP_KERNEL[op] ** 2 * c + c * c
        total += _bn(c) + c * 4 * c  # out_bottle
        total += _bn(4 * c)  # final_bn
        c_in = 4 * c
    return total + _bn(c_in) + c_in * 10 + 10  # head BN, classifier with bias


def test_proxyless_cifar_params_equal_a_hand_count_of_the_released_config() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = proxyless_cifar()
    for block, (part, where) in _JSON_CELL_PARTS.items():
        cell = PROXYLESS_CIFAR_CELLS[block]
        assert cell.startswith(part) if where == "start" else cell.endswith(part)
    expected = _hand_count_released_cifar(PROXYLESS_CIFAR_CELLS)
    assert params(model) == expected  # exact to the integer
    assert round(expected / 1e6, 1) == 5.7  # the paper's Table 1 (Proxyless-G + c/o: 5.7M)
    assert round(expected / 1e6, 2) == 5.73  # the fact sheet's count of the released config
    widths = [block.in_bottle.conv.out_channels for block in model.blocks]
    assert [block.in_bottle.conv.in_channels for block in model.blocks][18] == 176 == 4 * widths[17]
    assert model.classifier.in_features == 400
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert released_net("cifar", num_classes=100).classifier.out_features == 100
