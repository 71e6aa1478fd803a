"""MemNet's CIFAR cell space: the 61-bit codec round-trips, networks are valid and run, bad input fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrepro.errors import UsageError
from nasrepro.harness.memory import PROTOTYPE_OPS
from nasrepro.spaces import get_space
from nasrepro.spaces import memnet_cells as mc


@pytest.fixture(scope="module")
def space() -> mc.MemNetSpace:
    return get_space("memnet-cells-w8")


def test_registered_widths():
    assert get_space("memnet-cells").width == 32
    assert get_space("memnet-cells-w16").width == 16
    assert "memnet-cells" in get_space("memnet-cells").views()


def test_cell_vector_is_the_prototype_61_bits():
    v = mc.cell_vector(mc.MemNetCell(0, 6, 1, None, False), position=2)
    assert v.shape == (61,) and v.sum() == 5  # in1, in2, position, op1, link (op2 trimmed: all zero)
    assert v[0] == v[15 + 1] == v[30 + 2] == v[45 + 6] == v[59] == 1


def test_round_trips(space):
    rng = np.random.default_rng(0)
    for _ in range(60):
        arch = space.sample(rng)
        assert space.parse(str(arch)) == arch
        assert mc.decode(mc.encode(arch)) == arch
        assert mc.decode(mc.encode(arch, 14)) == arch  # padding rows are ignored
        child = space.mutate(arch, rng)
        assert child != arch and space.parse(str(child)) == child
    raw = mc.MemNetArch.uniform([mc.MemNetCell(0, 2, 0, 5, True), mc.MemNetCell(1, None, 0, 3, False)])
    assert mc.decode(mc.encode(raw)) == raw  # exact, not canonicalised (the dead cell survives)


def test_canonical_merges_slot_order_and_dead_cells(space):
    a = mc.MemNetArch.uniform([mc.MemNetCell(0, 5, 0, 2, True)])
    b = mc.MemNetArch.uniform([mc.MemNetCell(0, 2, 0, 5, True), mc.MemNetCell(1, 6, 0, 1, False)])
    assert space.key(a) == space.key(b)
    c = mc.MemNetArch.uniform([mc.MemNetCell(0, 2, 0, 5, False), mc.MemNetCell(1, 6, 0, 1, True)])
    assert len(space.canonical(c).blocks[0]) == 2  # cell 1 is read by the linked cell 2: alive


def test_forward_shapes_and_block_widths(space):
    arch = mc.MemNetArch.uniform([mc.MemNetCell(0, op, 0, (op + 1) % 7, True) for op in range(1)])
    two = mc.MemNetArch.uniform([mc.MemNetCell(0, 6, 0, 4, True), mc.MemNetCell(1, 3, 0, 0, True)])
    for a, linked in ((arch, 1), (two, 2)):
        net = space.to_model(a, None)
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert net.classifier.in_features == linked * 4 * 8 * 16  # (#linked x 4w) channels, 4x4 px
    for op in range(7):  # every op, also reading a stride-2 block input
        net = space.to_model(mc.MemNetArch.uniform([mc.MemNetCell(0, op, 0, op, True)]), None)
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("op", range(7))
def test_op_conv_weights_match_cal_weight(op):
    module = mc.make_op(op, 12, 8, 1)
    convs = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs == PROTOTYPE_OPS[op][1](12, 8)


@pytest.mark.parametrize(
    "text",
    [
        "0.6+0.5",
        "0.6+0.5/0.6+0.5/0.6+0.5/0.6+0.5/1.6+0.5",
        "0.9+0.5/0.6+0.5/0.6+0.5/0.6+0.5/0.6+0.5",
        "0.x+0.x/0.6+0.5/0.6+0.5/0.6+0.5/0.6+0.5",
        "0.6+0.5~/0.6+0.5/0.6+0.5/0.6+0.5/0.6+0.5",
        "a/b/c/d/e",
    ],
)
def test_invalid_networks_are_usage_errors(space, text):
    with pytest.raises(UsageError):
        space.parse(text)


def test_decode_rejects_malformed_vectors():
    bad = mc.encode(mc.MemNetArch.uniform([mc.MemNetCell(0, 1, 0, 2, True)]))
    bad[0, 0, 3] = 1.0  # a second hot bit in input 1
    with pytest.raises(UsageError, match="one-hot"):
        mc.decode(bad)


def test_random_search_and_evolution_search_the_space(space):
    """The space is shared: the baselines sample and mutate it (a fake score, no training)."""
    from nasrepro.harness.evaluator import Evaluator, Outcome
    from nasrepro.harness.run import run_of
    from nasrepro.methods.baselines.evolution import RegularizedEvolution
    from nasrepro.methods.baselines.random_search import RandomSearch
    from nasrepro.tasks import get_task

    class Fake(Evaluator):
        __slots__ = ()

        def _evaluate(self, arch):
            return Outcome(val=float(len(str(arch)) % 17), test=None, cost_seconds=0.0)

    for method in (RandomSearch(), RegularizedEvolution({"population": 4, "sample_size": 2})):
        ev = Fake(get_task("cifar10"), space, budget=12)
        result = method.search(run_of(ev, 0, budget=12))
        assert ev.n_queries == 12 and space.parse(result.best_arch)
