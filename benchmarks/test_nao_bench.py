"""Speed of one NAO controller round on the CPU, beside one table query batch of the same size.

Run: `pytest benchmarks/test_nao_bench.py -s` (needs the NAS-Bench-201 table under `NASREPRO_DATA`).

`controller round` is the method's own work in one round of its loop (README "Loop"; issue 13's
benchmark): train the EPD on 100 evaluated architectures (NAS-Bench-201 cell encoding, the `nao`
method's cpu defaults: 100 EPD epochs, batch 100, hidden 96, MLP 3 x 200) and generate 100 unseen
candidates from the 50 best by the growing step (eta = 1, 2, ... <= 50). It is timed inside a real
search -- budget 200 = a seed pool of 100 evaluated as one batch, one round, its 100 candidates
evaluated as one batch: the benchmark's row times that whole search (the two table batches add
about twice the table row, milliseconds), and the printed per-round seconds are the search's
`overhead_seconds`, which count exactly the EPD training and generation. `table query batch` is `query_many` of 100 unseen architectures on
`nasbench201/cifar10`: what evaluating one round's candidates costs on the table, so the two rows
say how much of a table search's wall time is the method itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrepro.harness.run import run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task

POOL = 100  # architectures the EPD trains on
NEW = 100  # candidates generated in the round
GROUP = "NAO controller round (EPD on 100 + 100 candidates) vs a table batch of 100, nasbench201/cifar10"


@pytest.fixture(scope="module")
def nb201():
    task = get_task("nasbench201/cifar10")
    task.table()  # load once, outside the timings
    return task, get_space(task.default_space)


@pytest.fixture(autouse=True)
def _one_thread():
    # the method's EPD runs on one thread, as on the shared CPU the records were made on
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.benchmark(group=GROUP)
def test_controller_round(benchmark, nb201):
    task, space = nb201
    outcomes = []

    def one_search():
        evaluator = TableEvaluator(task, space, budget=POOL + NEW)
        method = get_method("nao")({"seed_archs": POOL, "new_archs": NEW})
        result = method.search(run_of(evaluator, seed=0))
        outcomes.append((result, evaluator))
        return result.overhead_seconds

    # the first search pays one-off imports and Lightning set-up: a warm-up round, not timed
    benchmark.pedantic(one_search, rounds=3, iterations=1, warmup_rounds=1)
    outcomes = outcomes[1:]
    rounds_seconds = [r.overhead_seconds for r, _ in outcomes]
    benchmark.extra_info["controller_round_seconds"] = rounds_seconds
    result, evaluator = outcomes[0]
    (info,) = result.extra["rounds"]  # exactly one round: 100 seeds + 100 proposals = the budget
    assert result.extra["seed_queries"] == POOL and info["pool"] == POOL
    assert info["generated"] + info["fallback"] == NEW and evaluator.n_queries == POOL + NEW
    assert info["pairwise_accuracy"] is not None and info["failure"] == ""
    # deterministic per seed: every timed search proposed the same architectures
    histories = [[q.arch for q in ev.history] for _, ev in outcomes]
    assert all(h == histories[0] for h in histories)
    print(
        f"\ncontroller round (EPD on {POOL} + {NEW} candidates, {info['generated']} generated, "
        f"{info['fallback']} fallback, last eta {info['last_eta']}): "
        + ", ".join(f"{s:.2f} s" for s in rounds_seconds)
    )


@pytest.mark.benchmark(group=GROUP)
def test_table_query_batch(benchmark, nb201):
    task, space = nb201
    rng = np.random.default_rng(0)
    archs, keys = [], set()
    while len(archs) < NEW:
        arch = space.sample(rng)
        if space.key(arch) not in keys:
            keys.add(space.key(arch))
            archs.append(arch)

    def one_batch():
        evaluator = TableEvaluator(task, space, budget=NEW)
        return evaluator, evaluator.query_many(archs)

    evaluator, queries = benchmark.pedantic(one_batch, rounds=5, iterations=1)
    assert len(queries) == NEW and evaluator.n_queries == NEW and evaluator.exhausted
    assert all(q.status == "ok" for q in queries)
    print(f"\ntable query batch of {NEW}: mean {benchmark.stats.stats.mean * 1e3:.1f} ms")
