"""NASBOT's modifiers and evolutionary acquisition optimiser: each primitive changes what it should
and only that; every mutant is valid and within the limits; GA budgets, parent sampling, and a
planted optimum found."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nasrepro.methods.nasbot import ea
from nasrepro.methods.nasbot.graph import MLP_RECTIFIERS, MLP_SIGMOIDS, LayerGraph, Limits
from nasrepro.methods.nasbot.mutations import (
    PRIMITIVE_MASSES,
    PRIMITIVES,
    STEP_PROBS,
    branch,
    dec_en_masse,
    dec_single,
    en_masse_groups,
    inc_en_masse,
    inc_single,
    modifiable_layers,
    mutate,
    remove_layer,
    skip,
    swap_layer,
    wedge_layer,
)
from nasrepro.methods.nasbot.space import LayerGraphSpace, chain_mlp

CHAIN = chain_mlp(tuple(("relu" if i % 2 else "tanh", 16 * (i + 1)) for i in range(8)))


def _layers(g: LayerGraph) -> Counter:
    return Counter(zip(g.labels, g.units, strict=True))


def test_masses_and_step_probabilities_are_the_codes() -> None:
    assert PRIMITIVE_MASSES == {
        "inc_single": 0.1,
        "dec_single": 0.1,
        "inc_en_masse": 0.1,
        "dec_en_masse": 0.1,
        "swap_layer": 0.2,
        "wedge_layer": 0.1,
        "remove_layer": 0.1,
        "branch": 0.2,
        "skip": 0.2,
    }
    assert set(PRIMITIVES) == set(PRIMITIVE_MASSES)
    assert STEP_PROBS == (0.5, 0.25, 0.125, 0.075, 0.05)


@pytest.mark.parametrize("increase", [True, False])
def test_single_changes_one_layers_units_by_an_eighth(increase: bool) -> None:
    rng = np.random.default_rng(0)
    op = inc_single if increase else dec_single
    for _ in range(20):
        child = op(CHAIN, rng)
        assert child.labels == CHAIN.labels and child.edges == CHAIN.edges  # same order: a chain
        changed = [i for i in range(CHAIN.num_layers) if child.units[i] != CHAIN.units[i]]
        assert len(changed) == 1
        (i,) = changed
        assert child.units[i] == round(CHAIN.units[i] * (1.125 if increase else 0.875))


@pytest.mark.parametrize("increase", [True, False])
def test_en_masse_changes_one_contiguous_group(increase: bool) -> None:
    assert en_masse_groups(CHAIN) == [(1, 2), (2, 2), (1, 4), (2, 4), (3, 4), (4, 4)]  # 9 internal
    small = chain_mlp((("relu", 8), ("relu", 8)))
    assert en_masse_groups(small) == [] and inc_en_masse(small, np.random.default_rng(0)) is None
    rng = np.random.default_rng(1)
    order = modifiable_layers(CHAIN)
    sizes = set()
    for _ in range(30):
        child = (inc_en_masse if increase else dec_en_masse)(CHAIN, rng)
        changed = [k for k, i in enumerate(order) if child.units[i] != CHAIN.units[i]]
        assert changed == list(range(changed[0], changed[-1] + 1))  # contiguous in topological order
        sizes.add(len(changed))
        for k in changed:
            ratio = child.units[order[k]] / CHAIN.units[order[k]]
            assert (ratio > 1) == increase and abs(ratio - (1.125 if increase else 0.875)) < 0.07
    assert sizes == {2, 4}  # quarters and halves of 8 modifiable layers


def test_swap_crosses_rectifiers_and_sigmoids_only() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        child = swap_layer(CHAIN, rng)
        diff = [i for i in range(CHAIN.num_layers) if child.labels[i] != CHAIN.labels[i]]
        assert len(diff) == 1 and child.units == CHAIN.units and child.edges == CHAIN.edges
        old, new = CHAIN.labels[diff[0]], child.labels[diff[0]]
        assert (old in MLP_RECTIFIERS) == (new in MLP_SIGMOIDS)


def test_wedge_adds_one_layer_on_an_edge() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        child = wedge_layer(CHAIN, rng)
        assert child.num_layers == CHAIN.num_layers + 1 and len(child.edges) == len(CHAIN.edges) + 1
        added = _layers(child) - _layers(CHAIN)
        assert sum(added.values()) == 1 and not (_layers(CHAIN) - _layers(child))


def test_remove_deletes_one_layer_and_rewires() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        child = remove_layer(CHAIN, rng)
        assert child.num_layers == CHAIN.num_layers - 1 and len(child.edges) == len(CHAIN.edges) - 1
        assert sum((_layers(CHAIN) - _layers(child)).values()) == 1 and not (_layers(child) - _layers(CHAIN))


def test_branch_duplicates_layers_of_a_path_in_parallel() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        child = branch(CHAIN, rng)
        added = _layers(child) - _layers(CHAIN)
        assert sum(added.values()) >= 1 and not (_layers(CHAIN) - _layers(child))
        assert all(copy in _layers(CHAIN) for copy in added)  # copies of existing layers
        assert child.num_layers - CHAIN.num_layers == len(child.edges) - len(CHAIN.edges) - 1


def test_skip_adds_exactly_one_forward_edge() -> None:
    rng = np.random.default_rng(6)
    for _ in range(20):
        child = skip(CHAIN, rng)
        assert _layers(child) == _layers(CHAIN) and len(child.edges) == len(CHAIN.edges) + 1


def test_every_mutant_is_valid_and_within_limits() -> None:
    space = LayerGraphSpace()
    rng = np.random.default_rng(7)
    limits = Limits()
    current = space.initial_pool()
    for _ in range(4):
        current = [mutate(g, rng, limits) for g in current for _ in range(5)]
        for g in current:
            limits.check(g)
            assert LayerGraph.parse(str(g)) == g
        current = current[:10]
    # one-step mutation of the space is at edit distance one, and never the parent
    for g in space.initial_pool():
        assert space.mutate(g, rng) != g


def test_ga_budgets_and_parent_probabilities() -> None:
    assert [ea.acquisition_budget(t) for t in (0, 4, 16, 100, 400, 10_000)] == [50, 50, 100, 250, 500, 500]
    assert [ea.mutations_per_epoch(n) for n in (0, 9, 100, 10_000)] == [5, 9, 30, 100]
    probs = ea.parent_probs(np.array([0.0, 1.0, 2.0]))
    std = np.std([0.0, 1.0, 2.0])
    expected = np.exp((np.array([0.0, 1.0, 2.0]) - 1.0) / (2 * std))
    assert np.allclose(probs, expected / expected.sum())
    assert np.allclose(ea.parent_probs(np.ones(4)), 0.25)


def test_ga_climbs_to_a_planted_optimum_and_respects_its_budget() -> None:
    target = 37

    def phi(xs):
        return np.array([-abs(x - target) for x in xs], dtype=float)

    def step(x, rng):
        return x + int(rng.choice([-2, -1, 1, 2]))

    rng = np.random.default_rng(0)
    result = ea.maximise(phi, [0, 5], step, budget=400, rng=rng)
    assert result.best == target and result.evaluations <= 400
    # flipping the acquisition's sign sends the search away from the target
    flipped = ea.maximise(lambda xs: -phi(xs), [0, 5], step, budget=400, rng=np.random.default_rng(0))
    assert abs(flipped.best - target) > 20
    # `allowed` excludes known points from the answer
    known = ea.maximise(
        phi, [target], step, budget=60, rng=np.random.default_rng(0), allowed=lambda x: x != target
    )
    assert known.best != target and abs(known.best - target) <= 2
