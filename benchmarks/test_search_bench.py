"""Speed of 500-unique-query searches on a table, per method, beside the raw look-up cost.

Run: `pytest benchmarks/test_search_bench.py` (needs nothing but the nas-bench-graph wheel).
Target (issue "Tabular benchmarks"): well under a second per seed for every baseline. The
`lookup-only` row is the floor -- 500 canonicalise-and-look-up calls with no method at all -- so the
difference is what the method's own bookkeeping costs.
"""

import numpy as np
import pytest

from nasrepro.harness.run import run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method
from nasrepro.tasks import get_task

BUDGET = 500


@pytest.fixture(scope="module")
def cora():
    task = get_task("nasbench-graph/cora")
    task.table()  # load once, outside the timings
    space = task.space()
    space.sample(np.random.default_rng(0))  # builds the canonical-architecture index once
    return task, space


def lookup_only(task, space, seed):
    rng = np.random.default_rng(seed)
    ev = TableEvaluator(task, space, budget=BUDGET)
    while not ev.exhausted:
        ev.query(space.sample(rng))
    return ev


def search(name, task, space, seed):
    ev = TableEvaluator(task, space, budget=BUDGET)
    get_method(name)().search(run_of(ev, seed, budget=BUDGET))
    return ev


@pytest.mark.benchmark(group="500-query search on nasbench-graph/cora")
@pytest.mark.parametrize("name", ["lookup-only", "random", "evolution", "random-sampling"])
def test_search_speed(benchmark, cora, name):
    task, space = cora
    seeds = iter(range(1000))
    if name == "lookup-only":
        ev = benchmark.pedantic(lambda: lookup_only(task, space, next(seeds)), rounds=5, iterations=1)
    else:
        ev = benchmark.pedantic(lambda: search(name, task, space, next(seeds)), rounds=5, iterations=1)
    assert ev.n_queries == (1 if name == "random-sampling" else BUDGET)
