"""Random search and regularized evolution under MemNet's hard memory bound (issue 12 item 4):
nothing above the bound is queried or chosen, a proposal it rejects costs no budget, a bound no
network meets is one usage error, and without a bound the committed searches are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasrepro.app.rerun import request_of, same_search
from nasrepro.app.search import run_search
from nasrepro.errors import UsageError
from nasrepro.harness import arch_memory
from nasrepro.harness.arch_memory import NetMemory
from nasrepro.harness.run import run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task
from nasrepro.tracking.records import read_record

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs" / "nasbench201" / "cifar10"
CONFIG = {"random": {}, "evolution": {"population": 10, "sample_size": 3}}
METHODS = sorted(CONFIG)


@pytest.fixture(scope="module")
def nb201(data_root):
    return get_task("nasbench201/cifar10"), get_space("nasbench201")


def toy_memory(space, task, arch):
    """A cheap stand-in for the liveness trace (the real one: the last test and
    test_harness_memory.py): 3x3 convs cost many weights, 1x1 convs fewer, every conv features."""
    codes = space.canonical(arch).codes
    convs = sum(c in (2, 3) for c in codes)
    return NetMemory(1000 + sum((0, 0, 40, 1000, 0)[c] for c in codes), 500 + 60 * convs)


@pytest.fixture
def fake_memory(monkeypatch):
    """`toy_memory`, with `planted` {architecture key: NetMemory} overriding it."""
    planted: dict[str, NetMemory] = {}

    def memory(space, task, arch):
        return planted.get(space.key(arch)) or toy_memory(space, task, arch)

    monkeypatch.setattr(arch_memory, "network_memory", memory)
    return planted


def search(nb201, name, budget, seed=0, **config):
    task, space = nb201
    ev = TableEvaluator(task, space, budget=budget)
    result = get_method(name)({**CONFIG[name], **config}).search(run_of(ev, seed, budget=budget))
    return result, ev


def mb(nb201, key):
    task, space = nb201
    return arch_memory.network_memory(space, task, space.parse(key)).total_mb


@pytest.mark.parametrize("name", METHODS)
def test_every_query_and_the_incumbent_are_within_the_bound(nb201, fake_memory, name):
    bound = NetMemory(1000 + 1000 + 80, 500 + 180).total_mb  # one 3x3 conv and two 1x1 convs
    free, free_ev = search(nb201, name, budget=40, seed=1)
    assert max(mb(nb201, q.arch) for q in free_ev.history) > bound  # the bound does bite
    result, ev = search(nb201, name, budget=40, seed=1, memory_bound_mb=bound)
    assert ev.n_queries == 40  # rejected proposals cost no budget
    assert all(mb(nb201, q.arch) <= bound for q in ev.history)
    assert mb(nb201, result.best_arch) <= bound and result.best_arch == ev.best().arch
    extra = result.extra
    assert extra["over_bound"] > 0 and extra["memory_bound_mb"] == bound
    assert extra["heaviest_queried_mb"] <= bound
    assert extra["incumbent_memory_mb"] == pytest.approx(mb(nb201, result.best_arch))
    again, ev_again = search(nb201, name, budget=40, seed=1, memory_bound_mb=bound)
    assert [q.arch for q in ev_again.history] == [q.arch for q in ev.history]


@pytest.mark.parametrize("name", METHODS)
def test_the_unbounded_best_above_the_bound_is_never_seen(nb201, fake_memory, name):
    """Plant the unbounded search's incumbent above a bound every other network meets: the bounded
    search (same seed, same random stream) rejects it where the free one queried it, so its
    history is the free one's up to that point, and never contains it."""
    free, free_ev = search(nb201, name, budget=30, seed=2)
    fake_memory[free.best_arch] = NetMemory(10**6, 10**6)
    result, ev = search(nb201, name, budget=30, seed=2, memory_bound_mb=1.0)
    keys = [q.arch for q in ev.history]
    where = [q.arch for q in free_ev.history].index(free.best_arch)
    assert free.best_arch not in keys and result.best_arch != free.best_arch
    assert keys[:where] == [q.arch for q in free_ev.history[:where]] and len(keys) == 30
    assert result.extra["over_bound"] >= 1
    assert ev.fitness(ev.best()) <= free_ev.fitness(free_ev.best())


@pytest.mark.parametrize("name", METHODS)
def test_a_bound_below_every_network_is_one_usage_error(nb201, fake_memory, name):
    with pytest.raises(
        UsageError, match=r"below, or too close to, the smallest network.*raise memory_bound_mb"
    ):
        search(nb201, name, budget=10, memory_bound_mb=1e-4)


def test_a_space_within_the_budget_is_enumerated_within_the_bound(nb201, fake_memory):
    """NB-201's 15,625 cells fit a budget of 15,625: random search enumerates them, keeping exactly
    the cells within the bound (here: those without a live 3x3 conv), and a bound below all of
    them is exact."""
    task, space = nb201
    bound = NetMemory(1000 + 6 * 40, 500 + 6 * 60).total_mb
    result, ev = search(nb201, "random", budget=15625, memory_bound_mb=bound)
    over = [toy_memory(space, task, a).total_mb > bound for a in space.enumerate()]
    within = {space.key(a) for a, o in zip(space.enumerate(), over, strict=True) if not o}
    assert {q.arch for q in ev.history} == within and ev.n_queries == len(within)
    assert result.extra["over_bound"] == sum(over) > 0
    with pytest.raises(UsageError, match=r"below the smallest network of nasbench201 \(0\.0060 MB\)"):
        search(nb201, "random", budget=15625, memory_bound_mb=0.001)


@pytest.mark.parametrize("name", METHODS)
def test_bad_bounds_are_usage_errors(nb201, toy_task, toy_space, name):
    for bad in (-1.0, 0, "1.5", True):
        with pytest.raises(UsageError, match="memory_bound_mb must be a positive number"):
            search(nb201, name, budget=5, memory_bound_mb=bad)
    ev = TableEvaluator(toy_task, toy_space, budget=5)
    with pytest.raises(UsageError, match="builds none"):
        get_method(name)({**CONFIG[name], "memory_bound_mb": 1.0}).search(run_of(ev, 0, budget=5))


@pytest.mark.parametrize("name", METHODS)
def test_without_a_bound_the_committed_searches_are_unchanged(name, tmp_path, data_root):
    """The committed NB-201 records (seed 0, budget 100) rerun to the same history, with the
    default and with an explicit `memory_bound_mb: None`, and report nothing about memory."""
    committed = read_record(RUNS / name / "cpu-b100-s0.json")
    for config in (committed["config"]["method_config"], {"memory_bound_mb": None}):
        request = request_of(
            {**committed, "config": {**committed["config"], "method_config": config}}, tmp_path
        )
        rerun, _ = run_search(request)
        assert same_search(committed, rerun)
        assert rerun["config"]["method_config"]["memory_bound_mb"] is None
        assert not {"over_bound", "memory_bound_mb"} & set(rerun["method_extra"] or {})


@pytest.mark.parametrize("name", METHODS)
def test_the_bound_holds_on_the_real_memory_trace(nb201, name):
    """MemNet's own measure (`harness.arch_memory.network_memory`) at the committed records' 1.5 MB."""
    result, ev = search(nb201, name, budget=12, seed=0, memory_bound_mb=1.5)
    assert ev.n_queries == 12 and all(mb(nb201, q.arch) <= 1.5 for q in ev.history)
    assert result.extra["incumbent_memory_mb"] <= 1.5 and result.overhead_seconds > 0


@pytest.mark.parametrize("name", METHODS)
def test_a_bounded_search_cut_after_n_queries_is_the_budget_n_search(nb201, fake_memory, name):
    """What MemNet's matched comparison (`memnet.matched`) relies on: the first n queries of a
    budget-40 search are the budget-n search of the same seed."""
    bound = NetMemory(1000 + 1000 + 80, 500 + 180).total_mb
    _, long = search(nb201, name, budget=40, seed=5, memory_bound_mb=bound)
    for n in (7, 17):
        _, short = search(nb201, name, budget=n, seed=5, memory_bound_mb=bound)
        assert [q.arch for q in short.history] == [q.arch for q in long.history[:n]]
