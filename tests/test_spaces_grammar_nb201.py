"""The hierarchical NAS-Bench-201 grammar space (nasrepro/spaces/hierarchical_nb201.py, _net.py)."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
import torch
from test_spaces_grammar import common_prefix, diff_root

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator, Outcome
from nasrepro.harness.run import run_of
from nasrepro.harness.table import TABLE_PRESETS
from nasrepro.harness.task import Metric, Task
from nasrepro.methods import get_method
from nasrepro.spaces import get_space
from nasrepro.spaces.grammar import Node
from nasrepro.spaces.hierarchical_nb201 import OPS, PRODUCTIONS, HierarchicalNB201Space, cell_is_connected
from nasrepro.spaces.hierarchical_nb201_net import build_block

Z = "Cell(zero,zero,zero,id,zero,zero)"  # input -> output by identity: no parameters
A = "Cell(zero,zero,zero,avg_pool,zero,zero)"  # 3x3 average pooling
K = "Cell(zero,zero,zero,conv3x3,zero,zero)"  # one ReLU-conv3x3-BN
P = "Cell(conv1x1,zero,zero,zero,id,zero)"  # 1 -conv1x1-> 2 -id-> 4
HAND = (
    f"Linear3(Linear3(Linear2({K},{Z}),Linear2({Z},{Z}),Linear2({P},resBlock)),"
    f"Residual3(Linear2({Z},{Z}),Linear2({Z},{Z}),Linear2({Z},resBlock),Residual2({K},resBlock,resBlock)),"
    f"Linear3(Linear2({Z},{Z}),Linear3({Z},{Z},{K}),{P}))"
)


class _Task(Task):
    name = "hnb201-test"
    metric = Metric("accuracy", "max")
    kind = "table"
    presets = TABLE_PRESETS
    input_shape = (3, 32, 32)
    num_classes = 10


@pytest.fixture(scope="module")
def space() -> HierarchicalNB201Space:
    return get_space("hierarchical-nb201")


def test_registered_sizes():
    assert get_space("hierarchical-nb201").channels == 16  # the reference's base_channels
    assert get_space("hierarchical-nb201-c8").channels == 8
    assert get_space("hierarchical-nb201-c4").channels == 4


def test_round_trip_on_sampled_and_hand_written_derivations(space):
    rng = np.random.default_rng(0)
    for _ in range(100):
        arch = space.sample(rng)
        assert space.parse(str(arch)) == arch
        canonical = space.canonical(arch)
        assert space.parse(str(canonical)) == canonical
    hand = space.parse(HAND)
    assert str(hand) == HAND
    assert hand.children[1].symbol == "Residual3" and hand.children[1].children[3].children[1] == Node(
        "resBlock"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (HAND.replace(K, K.replace("conv3x3", "conv5x5"), 1), "'conv5x5' at character"),
        (HAND.replace(K, "Cell(zero,zero,zero,conv3x3,zero)", 1), "'Cell' at character 24 takes 6 children"),
        (HAND.replace(Z, "Cell(zero,zero,zero,zero,zero,id)", 1), "crosses a zero edge"),
        (HAND.replace("resBlock", "maxBlock", 1), "'maxBlock' at character"),
        (f"Linear3({Z},{Z},{Z})", "at character 8 is not an alternative of D1"),
        ("Linear3(D1,D1,D0)", "'D1' at character 8 is not an alternative of D1"),
    ],
)
def test_invalid_strings_are_one_line_errors(space, text, needle):
    with pytest.raises(UsageError) as err:
        space.parse(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_sampling_covers_every_alternative_of_every_nonterminal(space):
    grammar = space.grammar
    seen: dict[str, set] = defaultdict(set)
    for seed in range(60):
        tree = space.sample(np.random.default_rng(seed))
        labels = dict(grammar.label(tree))
        for path, nt in labels.items():
            node = tree.at(path)
            slots = tuple(labels[(*path, i)] for i in range(len(node.children)))
            seen[nt].add((node.symbol, slots))
            if node.symbol == "Cell":
                assert cell_is_connected(tuple(c.symbol for c in node.children))
    for nt, alts in PRODUCTIONS.items():
        assert seen[nt] == {(a.symbol, a.children) for a in alts}, nt


def test_mutation_changes_exactly_one_subtree_and_the_key(space):
    rng = np.random.default_rng(4)
    arch = space.sample(rng)
    levels = []
    for _ in range(100):
        child = space.mutate(arch, rng)
        assert space.key(child) != space.key(arch)
        space.parse(str(child))
        where = common_prefix(diff_root(arch, child))
        assert where != () and arch.replace(where, child.at(where)) == child
        levels.append(arch.at(where).symbol)
        arch = child
    # positions are drawn uniformly, and most of them are op slots inside cells
    assert sum(symbol in OPS for symbol in levels) > len(levels) / 2
    assert any(symbol not in OPS for symbol in levels)


def test_isomorphic_cells_hash_equal(space):
    live = HAND.replace(P, "Cell(conv1x1,zero,zero,zero,id,zero)")
    dead = HAND.replace(P, "Cell(conv1x1,conv3x3,zero,zero,id,zero)")  # (1,3) feeds nothing
    other = HAND.replace(P, "Cell(conv1x1,zero,zero,zero,conv1x1,zero)")
    assert space.key(live) == space.key(dead) != space.key(other)
    assert space.digest(live) == space.digest(dead) != space.digest(other)
    # every connected cell's representative is itself connected (so canonical strings parse)
    for ops in itertools.product(OPS, repeat=6):
        if cell_is_connected(ops):
            cell = Node("Cell", tuple(Node(op) for op in ops))
            rep = space.grammar.canonical(cell)
            assert cell_is_connected(tuple(c.symbol for c in rep.children))


def test_sampled_networks_give_logits_and_gradients():
    space = get_space("hierarchical-nb201-c4")
    for seed in range(3):
        model = space.to_model(space.sample(np.random.default_rng(seed)), _Task())
        out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10)
        out.sum().backward()
        assert model.stem[0].weight.grad is not None


def test_topologies_are_sequential_composition_and_residual_sums():
    x = torch.randn(1, 2, 6, 6)
    avg = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    cases = {
        f"Linear2({A},{Z})": avg(x),
        f"Linear3({A},{A},{Z})": avg(avg(x)),
        f"Residual2({A},{Z},{Z})": avg(x) + x,  # c(a(x)) + b(x)
        f"Residual2({Z},{A},{A})": avg(x) + avg(x),
        f"Residual2({A},{Z},{A})": avg(avg(x)) + x,
    }
    grammar = HierarchicalNB201Space().grammar
    for text, expected in cases.items():
        module, width, halvings = build_block(grammar.parse(text, "C"), 2)
        assert (width, halvings) == (2, 0)
        assert torch.allclose(module(x), expected), text
    # Residual3 (D0): d(b(a(x))) + c(x)
    d0 = grammar.parse(f"Residual3(Linear2({A},{Z}),Linear2({Z},{Z}),{Z},{A})", "D0")
    assert torch.allclose(build_block(d0, 2)[0](x), avg(avg(x)) + x)
    # a resBlock halves the side and doubles the channels, on both branches of a residual DOWN
    down, width, halvings = build_block(grammar.parse(f"Residual2({A},resBlock,resBlock)", "DOWN"), 2)
    assert (width, halvings) == (4, 1) and down(x).shape == (1, 4, 3, 3)


def relu_conv_bn(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel * kernel + 2 * c_out  # conv without bias, affine BN


def res_block(c: int) -> int:
    return relu_conv_bn(c, 2 * c, 3) + relu_conv_bn(2 * c, 2 * c, 3) + c * 2 * c  # + 1x1 shortcut


def test_parameter_count_of_a_hand_written_derivation_equals_a_hand_count():
    c = 8
    stem = 3 * c * 9 + 2 * c
    d1a = relu_conv_bn(c, c, 3) + relu_conv_bn(c, c, 1) + res_block(c)  # K, P, resBlock at C
    d1b = relu_conv_bn(2 * c, 2 * c, 3) + 3 * res_block(2 * c)  # K, three resBlocks at 2C
    d0 = relu_conv_bn(4 * c, 4 * c, 3) + relu_conv_bn(4 * c, 4 * c, 1)  # K, P at 4C
    head = 2 * 4 * c + 4 * c * 10 + 10  # BN(4C), Linear(4C, 10)
    expected = stem + d1a + d1b + d0 + head
    assert expected == 232 + (592 + 80 + 3648) + (2336 + 3 * 14464) + (9280 + 1088) + 394
    model = get_space("hierarchical-nb201", channels=c).to_model(HAND, _Task())
    assert sum(p.numel() for p in model.parameters()) == expected


class _Size(Evaluator):
    """A cheap deterministic score (the derivation's size) so the baselines run without training."""

    def _evaluate(self, arch):
        score = float(self.space.parse(str(arch)).size) if isinstance(arch, str) else float(arch.size)
        return Outcome(val=score, test=score, cost_seconds=0.0)


@pytest.mark.parametrize("method", ["random", "evolution"])
def test_random_search_and_evolution_run_on_the_space(space, method):
    evaluator = _Size(_Task(), space, budget=12)
    config = {"population": 4, "sample_size": 2} if method == "evolution" else {}
    result = get_method(method)(config).search(run_of(evaluator, seed=0, preset_name="smoke"))
    assert evaluator.n_queries == 12
    assert space.parse(result.best_arch)
