"""NAO's cell spaces and NASNet-style network (`nasrepro.spaces.nao_cells`, `nao_cells_net`).

Parameter counts are checked against a count written out by hand below (`hand_count`: per op, the
weights NAO_V1's ``model.py`` / ``operations.py`` give it), and NAONet-B at N = 5, F = 36 against
the NAO README's reported size of the NAO-WS network (2.5M, ``NAO-WS/cnn/train_final.sh``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrepro.errors import UsageError
from nasrepro.spaces import get_space
from nasrepro.spaces.nao_cells import NAONET_A, NAONET_B, ConvArch
from nasrepro.spaces.nao_cells_net import NAONetwork, drop_path_keep


class Cifar:
    num_classes = 10


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the hand count ------------------------------------------------------------------------------
def bn(c: int) -> int:
    return 2 * c  # affine scale and shift


def relu_conv_bn(c_in: int, c_out: int, k: int = 1) -> int:
    return c_in * c_out * k * k + bn(c_out)


def fact_reduce(c_in: int, c_out: int) -> int:
    return 2 * c_in * (c_out // 2) + bn(c_out)  # two 1x1 convs to half the width each, then BN


def sep(c: int, k: int) -> int:
    return 2 * (c * k * k + c * c + bn(c))  # (depthwise k x k, pointwise 1x1, BN) twice


def op_params(op: int, c: int, stride: int) -> int:
    """NAO_V1 op ids: 0/1 sep 3/5, 2/3 pools, 4/5 identity, 6 conv 1x1, 7 conv 3x3, 8 1x3+3x1,
    9 1x7+7x1, 10-15 pools."""
    table = {0: sep(c, 3), 1: sep(c, 5), 6: relu_conv_bn(c, c, 1), 7: relu_conv_bn(c, c, 3)}
    table[8] = 2 * (3 * c * c + bn(c))
    table[9] = 2 * (7 * c * c + bn(c))
    if op in (4, 5):
        return 0 if stride == 1 else fact_reduce(c, c)
    return table.get(op, 0)


def hand_count(arch: ConvArch, layers: int, channels: int, classes: int = 10) -> int:
    total = 3 * 3 * 3 * (3 * channels) + bn(3 * channels)  # stem: 3x3 conv to 3F, BN
    shapes = [(3 * channels, 0), (3 * channels, 0)]  # (width, reductions so far)
    c = channels
    for i in range(3 * layers + 2):
        red = i in (layers, 2 * layers + 1)
        c *= 2 if red else 1
        (c0, r0), (c1, r1) = shapes
        total += fact_reduce(c0, c) if r0 != r1 else (relu_conv_bn(c0, c) if c0 != c else 0)
        total += relu_conv_bn(c1, c) if c1 != c else 0
        cell = arch.reduction if red else arch.normal
        used = {cell[j] for j in range(0, 20, 2)}
        total += sum(op_params(cell[j + 1], c, 2 if red and cell[j] < 2 else 1) for j in range(0, 20, 2))
        concat = [s for s in range(7) if s not in used]
        total += sum(fact_reduce(c, c) for s in concat if red and s < 2)
        shapes = [shapes[1], (c * len(concat), r1 + red)]
    return total + shapes[1][0] * classes + classes  # linear classifier with bias


@pytest.mark.parametrize(("space", "text"), [("naonet-cells", NAONET_A), ("nao-cells", NAONET_B)])
@pytest.mark.parametrize(("layers", "channels"), [(1, 8), (2, 16), (6, 36)])
def test_naonets_build_with_the_hand_counted_parameters(space, text, layers, channels):
    arch = get_space(space).parse(text)
    net = NAONetwork(arch, 10, layers, channels)
    assert n_params(net) == hand_count(arch, layers, channels)


def test_naonet_b_has_the_reported_size_of_the_nao_ws_network():
    """NAO README: the NAO-WS final network (N = 5, F = 36) has 2.5M parameters. Ours, without the
    auxiliary head (which only trains), counts 2,492,902."""
    net = NAONetwork(get_space("nao-cells").parse(NAONET_B), 10, 5, 36)
    assert round(n_params(net) / 1e6, 1) == 2.5


def test_a_small_naonet_runs_forward_and_backward_with_its_auxiliary_head():
    arch = get_space("naonet-cells").parse(NAONET_A)
    net = NAONetwork(arch, 10, 1, 8, auxiliary=True, dropout=0.4, drop_path=0.8, total_steps=10)
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(2, 3, 32, 32), step=3)
    assert logits.shape == aux.shape == (2, 10)
    (logits.sum() + aux.sum()).backward()
    net.eval()
    logits, aux = net.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None
    # the head is NAO_V1's AuxHeadCIFAR after the second reduction cell, whose output is 4 states
    # (3-6: NAONet-A's reduction cell consumes only 0-2) x 32 channels
    head = 4 * 32 * 128 + bn(128) + 128 * 768 * 2 * 2 + bn(768) + 768 * 10 + 10
    assert n_params(net) == hand_count(arch, 1, 8) + head


def test_cell_output_is_the_concatenation_of_unconsumed_states():
    net = NAONetwork(get_space("nao-cells").parse(NAONET_B), 10, 1, 8)
    # NAONet-B normal cell: nodes read 0,0 | 0,2 | 1,0 | 4,1 | 2,0: states 3, 5 and 6 are unconsumed
    assert net.cells[0].concat == [3, 5, 6] and net.cells[0].out_channels == 24
    # reduction cell: 1,1 | 2,2 | 1,2 | 3,2 | 0,0: states 4, 5 and 6
    assert net.cells[1].reduction and net.cells[1].concat == [4, 5, 6]


def test_drop_path_follows_nao_v1_schedule():
    assert drop_path_keep(0.8, 7, 8, 99, 100) == pytest.approx(0.8)  # last cell, last step
    assert drop_path_keep(0.8, 3, 8, 99, 100) == pytest.approx(1 - 4 / 8 * 0.2)
    assert drop_path_keep(0.8, 7, 8, 49, 100) == pytest.approx(1 - 0.5 * 0.2)
    net = NAONetwork(get_space("nao-cells").parse(NAONET_B), 10, 1, 8, drop_path=0.5, total_steps=1)
    x = torch.randn(16, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x, step=0), net(x, step=0))  # never in evaluation
    net.train()
    torch.manual_seed(0)
    a = net(x)  # no step given (the harness's image step): no drop-path
    torch.manual_seed(1)
    assert torch.allclose(a, net(x))
    torch.manual_seed(0)
    b = net(x, step=0)
    torch.manual_seed(1)
    assert not torch.allclose(b, net(x, step=0))


@pytest.mark.parametrize("space", ["nao-cells", "naonet-cells"])
def test_swapping_a_nodes_branches_computes_the_same_network(space):
    """The space's isomorphism (canonical branch order) holds for the real network: with the two
    branch modules exchanged, the swapped architecture's network equals the original's."""
    s = get_space(space)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = s.sample_raw(rng)
        ints = str(arch).split()
        node = int(rng.integers(5))
        ints[4 * node : 4 * node + 4] = ints[4 * node + 2 : 4 * node + 4] + ints[4 * node : 4 * node + 2]
        swapped = s.parse(" ".join(ints))
        assert s.key(swapped) == s.key(arch)
        torch.manual_seed(0)
        net = NAONetwork(arch, 10, 1, 8).eval()
        other = NAONetwork(swapped, 10, 1, 8).eval()
        state = dict(net.state_dict())
        for name in list(state):
            for a, b in (
                (f".ops.{2 * node}.", f".ops.{2 * node + 1}."),
                (f".ops.{2 * node + 1}.", f".ops.{2 * node}."),
            ):
                if name.startswith("cells.0.") and a in name:
                    state[name.replace(a, b)] = net.state_dict()[name]
        other.load_state_dict(state)
        x = torch.randn(2, 3, 32, 32)
        assert torch.allclose(net(x), other(x), atol=1e-5)


@pytest.mark.parametrize("space", ["nao-cells", "naonet-cells", "nao-cells-n1f8"])
def test_space_contract(space):
    s = get_space(space)
    rng = np.random.default_rng(1)
    for _ in range(30):
        arch = s.sample(rng)
        assert s.parse(str(arch)) == arch == s.canonical(arch)
        assert s.decode(s.encode(arch)) == arch
        child = s.mutate(arch, rng)
        assert s.key(child) != s.key(arch)
        assert sum(a != b for a, b in zip(str(child).split(), str(arch).split(), strict=True)) <= 4
    n_ops = len(s.describe()["ops"])
    m = [(i + 2) * n_ops for i in range(5)]
    assert s.size() == int(np.prod([k * (k + 1) // 2 for k in m])) ** 2
    model = s.to_model(s.sample(rng), Cifar())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_architecture_strings_name_the_item():
    with pytest.raises(UsageError, match="item 1: expected an op id 0-4"):
        get_space("nao-cells").parse(NAONET_A)
    with pytest.raises(UsageError, match="item 4: expected an input 0-2 for node 1 of the normal cell"):
        get_space("nao-cells").parse("0 1 0 2 3 1 2 2" + " 0 0 0 0" * 8)
    with pytest.raises(UsageError, match="expected 40 integers"):
        get_space("naonet-cells").parse("0 5 0 5")
