"""MemNet's grow-trim search: candidate generators, score, hard memory bound, ranker, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from nasrepro.errors import UsageError
from nasrepro.harness.arch_memory import NetMemory, network_memory
from nasrepro.harness.run import TrainerFactory, run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method
from nasrepro.methods.memnet.grow_trim import adapter_for
from nasrepro.methods.memnet.score import score
from nasrepro.spaces import get_space
from nasrepro.spaces import memnet_cells as mc
from nasrepro.spaces import nasbench201 as nb
from nasrepro.tasks import get_task

FAST = {"ranker_epochs": 10, "ranker_hidden": 16, "top_k": 3}


@pytest.fixture(scope="module")
def nb201(data_root):
    return get_task("nasbench201/cifar10"), get_space("nasbench201")


def fake_memory(space, task, arch):
    """A cheap stand-in for the liveness trace (the real one is tested in test_harness_memory.py and
    by the slow test below): conv edges cost weights, every op edge feature maps."""
    codes = space.canonical(arch).codes
    return NetMemory(1000 + sum((0, 0, 40, 300, 0)[c] for c in codes), 500 + sum(60 * (c > 1) for c in codes))


@pytest.fixture
def cheap_memory(monkeypatch):
    import nasrepro.methods.memnet.search as module

    monkeypatch.setattr(module, "network_memory", fake_memory)
    return fake_memory


def search(nb201, budget=20, seed=0, **config):
    task, space = nb201
    ev = TableEvaluator(task, space, budget=budget)
    result = get_method(config.pop("method", "memnet"))({**FAST, **config}).search(
        run_of(ev, seed, budget=budget)
    )
    return result, ev


# --- grow / trim ------------------------------------------------------------------------------------
def test_memnet_grow_adds_the_same_cell_to_all_five_blocks():
    space = get_space("memnet-cells-w8")
    gt = adapter_for(space)
    base = space.canonical(mc.MemNetArch.uniform([mc.MemNetCell(0, 6, 0, 5, True)]))
    grown = gt.grow(base)
    assert len(grown) == 105  # 2 locations x 7 ops = 14 slots, unordered pairs: C(15, 2)
    assert len({space.key(a) for a in grown}) == len(grown) and space.key(base) not in {
        space.key(a) for a in grown
    }
    for arch in grown:
        new = {block[-1] for block in arch.blocks}
        assert len(new) == 1 and all(block[:-1] == base.blocks[0] for block in arch.blocks)
    assert len(gt.round0()) == 28  # 7 ops, unordered pairs with repetition


def test_memnet_trim_removes_one_op_or_one_link_in_one_block():
    space = get_space("memnet-cells-w8")
    gt = adapter_for(space)
    base = mc.MemNetArch.uniform([mc.MemNetCell(0, 6, 0, 5, True)])
    assert len(gt.trim(base)) == 10  # 5 blocks x 2 ops; the only link cannot go
    same_ops = mc.MemNetArch.uniform([mc.MemNetCell(0, 6, 0, 6, True)])
    assert len(gt.trim(same_ops)) == 5  # removing either copy gives one network per block
    two = space.canonical(
        mc.MemNetArch.uniform([mc.MemNetCell(0, 6, 0, 5, True), mc.MemNetCell(1, 4, 0, 3, True)])
    )
    trimmed = gt.trim(two)
    assert len(trimmed) == 5 * (2 + 2 + 2)  # per block: 4 op removals + 2 link removals
    for arch in trimmed:
        changed = [b for b in range(5) if arch.blocks[b] != two.blocks[b]]
        assert len(changed) == 1
        assert len({space.key(a) for a in trimmed}) == len(trimmed)


def test_nb201_grow_and_trim_are_single_edits_and_distinct(nb201):
    _, space = nb201
    gt = adapter_for(space)
    for base in [
        *gt.round0(),
        space.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),
    ]:
        base = space.canonical(base)
        ops = sum(c != 0 for c in base.codes)
        grown, trimmed = gt.grow(base), gt.trim(base)
        keys = [space.key(a) for a in grown + trimmed]
        assert len(set(keys)) == len(keys) and space.key(base) not in keys
        assert all(1 <= sum(c != 0 for c in a.codes) - ops <= 2 for a in grown)
        assert all(sum(c != 0 for c in a.codes) < ops for a in trimmed)
        assert grown


# --- score ---------------------------------------------------------------------------------------------
def test_score_is_monotone_in_each_term():
    prev, mem = NetMemory(1000, 500), NetMemory(1000, 500)
    s = score(90.0, mem, 90.0, prev, 0.7)
    assert s == 0.0
    assert score(91.0, mem, 90.0, prev, 0.7) > s
    assert score(90.0, NetMemory(900, 500), 90.0, prev, 0.7) > s
    assert score(90.0, NetMemory(1000, 400), 90.0, prev, 0.7) > s
    # the 0.3 / 0.7 split: a 10% feature-map saving is worth more than a 10% weight saving
    assert score(90.0, NetMemory(1000, 450), 90.0, prev, 0.5) > score(
        90.0, NetMemory(900, 500), 90.0, prev, 0.5
    )
    assert score(91.0, NetMemory(5000, 5000), 90.0, prev, 1.0) == pytest.approx(1 / 90)
    assert score(50.0, NetMemory(500, 250), 90.0, prev, 0.0) == pytest.approx(0.5)


# --- the hard memory bound -------------------------------------------------------------------------------
def check_bound(nb201, memory, budget):
    task, space = nb201
    free, _ = search(nb201, budget=budget, ranking="random", lam=1.0)
    unbounded = free.extra["incumbent_memory_mb"]
    bound = unbounded - 1e-9  # the incumbent of the unbounded search is now forbidden
    result, ev = search(nb201, budget=budget, ranking="random", lam=1.0, memory_bound_mb=bound)
    assert all(memory(space, task, space.parse(q.arch)).total_mb <= bound for q in ev.history)
    assert result.extra["incumbent_memory_mb"] <= bound and result.best_arch != free.best_arch
    assert sum(r["over_bound"] for r in result.extra["rounds"]) > 0


def test_no_network_above_the_bound_is_trained_or_chosen(nb201, cheap_memory):
    check_bound(nb201, cheap_memory, budget=30)


@pytest.mark.slow
def test_the_bound_holds_with_the_real_memory_trace(nb201):
    check_bound(nb201, network_memory, budget=10)


def test_bad_options_are_usage_errors(nb201, cheap_memory):
    with pytest.raises(UsageError, match="below the smallest round-0 network"):
        search(nb201, memory_bound_mb=1e-4)
    with pytest.raises(UsageError, match=r"lambda must be in \[0, 1\]"):
        search(nb201, lam=1.5)
    with pytest.raises(UsageError, match="ranking"):
        search(nb201, ranking="oracle")


def test_lambda_steers_the_trade_off(nb201, cheap_memory):
    """lambda = 0: only memory-saving moves are taken; lambda = 1: only accuracy gains (a flipped
    sign in either term breaks one of the two)."""
    task, space = nb201
    for lam in (0.0, 1.0):
        result, ev = search(nb201, budget=30, ranking="random", lam=lam)
        chain = [r["incumbent"] for r in result.extra["rounds"]]
        vals = {q.arch: q.val for q in ev.history}
        for before, after in itertools.pairwise(chain):
            if before != after:
                if lam == 0.0:
                    mb, ma = (cheap_memory(space, task, space.parse(a)) for a in (before, after))
                    assert (
                        0.3 * ma.weight_elements / mb.weight_elements
                        + 0.7 * ma.feature_elements / mb.feature_elements
                        < 1
                    )
                else:
                    assert vals[after] > vals[before]


# --- ranker and determinism ----------------------------------------------------------------------------
def test_ranker_beats_a_random_ranker_on_held_out_spearman():
    from nasrepro.harness.quiet import quiet_lightning
    from nasrepro.methods.memnet.ranker import fit_ranker, predict

    quiet_lightning()
    gt = adapter_for(get_space("nasbench201"))
    weights = np.array([0.0, 0.01, 0.03, 0.06, -0.02])  # a synthetic additive S over the cell's ops
    learned, chance = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        cells = [nb.NB201Arch.from_codes(rng.integers(0, 5, 6)) for _ in range(80)]
        x = gt.sequences(cells)
        s = np.array([weights[list(c.codes)].sum() for c in cells])
        model = fit_ranker(x[:50], s[:50], seed, TrainerFactory(), epochs=8, hidden=16, lr=1e-2)
        learned.append(spearmanr(predict(model, x[50:]), s[50:]).statistic)
        chance.append(spearmanr(rng.permutation(30), s[50:]).statistic)
    assert np.mean(learned) > 0.6 and np.mean(learned) > np.mean(chance) + 0.4


def test_same_seed_same_search_and_the_ranker_steers_it(nb201, cheap_memory):
    a, ev_a = search(nb201, budget=16, seed=3)
    b, ev_b = search(nb201, budget=16, seed=3)
    assert [q.arch for q in ev_a.history] == [q.arch for q in ev_b.history] and a.best_arch == b.best_arch
    c, ev_c = search(nb201, budget=16, seed=3, ranking="random")
    assert [q.arch for q in ev_c.history] != [q.arch for q in ev_a.history]
    assert a.extra["rounds"][1]["ranker_seconds"] > 0 and "ranker_seconds" not in c.extra["rounds"][1]


def test_the_diagnostic_is_recorded_and_changes_nothing_in_the_search(nb201, cheap_memory):
    on, ev_on = search(nb201, budget=16, seed=3)
    off, ev_off = search(nb201, budget=16, seed=3, ranker_diagnostics=False)
    assert [q.arch for q in ev_on.history] == [q.arch for q in ev_off.history]
    assert on.best_arch == off.best_arch and ev_on.n_queries == ev_off.n_queries
    ranked = [r for r in on.extra["rounds"] if "ranker_seconds" in r]
    assert ranked and all(
        0.0 <= r["ranker_quality"]["ap@3"] <= 1.0 for r in ranked if r["ranker_quality"]["n"] > 3
    )
    assert all(r["ranker_quality"]["n"] == r["unseen"] - r["over_bound"] for r in ranked)
    assert all("ranker_quality" not in r for r in off.extra["rounds"])


@pytest.mark.parametrize("method", ["memnet", "memnet-random"])
def test_the_paper_preset_trains_with_the_prototype_recipe(method):
    """train.py (memnet.md Sec. 3.6) at paper on cifar10: 300 epochs, SGD 0.01, milestones
    60/180/240, Cutout 16; cpu keeps the task's epochs and schedule with the space's optimiser."""
    from nasrepro.app.resolve import resolve_search

    def recipe(preset: str):
        return resolve_search(method, "cifar10", None, preset, 1, {}, None).preset.recipe

    paper = recipe("paper")
    assert (paper.epochs, paper.optimizer, paper.lr, paper.momentum, paper.batch_size) == (
        300,
        "sgd",
        0.01,
        0.9,
        128,
    )
    assert (paper.schedule, paper.milestones, paper.gamma, paper.cutout) == (
        "multistep",
        (60, 180, 240),
        0.1,
        16,
    )
    assert (
        paper.weight_decay == get_task("cifar10").preset("paper").recipe.weight_decay
    )  # not in train.py's record
    task_cpu = get_task("cifar10").preset("cpu").recipe
    assert recipe("cpu") == task_cpu.replace(lr=0.01, momentum=0.9)  # the space's optimiser only
    table = resolve_search(method, "nasbench201/cifar10", None, "paper", 1, {}, None).preset
    assert table == get_task("nasbench201/cifar10").preset("paper")  # a table task trains nothing
