"""Speed of AGNN's controller, and of a 100-query AGNN search beside the baselines, on a table.

Run: `pytest benchmarks/test_agnn_bench.py` (needs nothing but the nas-bench-graph wheel).
`controller update` is one child's controller work in the AGNN search loop: every class modifier
proposes around the incumbent, the guide keeps one, and one REINFORCE step (backward + Adam) is
taken. The search rows share one table and budget, so their difference is the methods' own cost:
`random` is the floor of sampling + look-up, `graphnas-rl` the plain controller of the ablation.
"""

import numpy as np
import pytest
import torch

import nasrepro.methods.agnn  # noqa: F401  (registration)
from nasrepro.harness.recipe import with_overrides
from nasrepro.harness.run import run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method
from nasrepro.methods.agnn.controller import AGNNController, GraphNASController
from nasrepro.tasks import get_task

BUDGET = 100


@pytest.fixture(scope="module")
def cora():
    task = get_task("nasbench-graph/cora")
    task.table()  # load once, outside the timings
    space = task.space()
    space.sample(np.random.default_rng(0))  # builds the canonical-architecture index once
    return task, space


@pytest.mark.benchmark(group="controller update (propose + one REINFORCE step)")
@pytest.mark.parametrize("kind", ["agnn", "graphnas"])
def test_controller_update_speed(benchmark, cora, kind):
    fields = cora[1].fields()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    incumbent = (0, 1, 2, 3, 0, 1, 2, 3)
    if kind == "agnn":
        ctrl = AGNNController(fields)
        ctrl.reset_baseline(0.7)

        def step():
            p = ctrl.propose(incumbent, gen)
            return ctrl.reinforce(p.log_prob, p.entropy, 0.8)

    else:
        ctrl = GraphNASController(fields)
        ctrl.reset_baseline(0.7)

        def step():
            p = ctrl.propose(gen)
            return ctrl.reinforce(p.log_prob, p.entropy, 0.8)

    before = [p.detach().clone() for p in ctrl.parameters()]
    benchmark.pedantic(step, rounds=200, iterations=1, warmup_rounds=5)
    assert any(not torch.equal(a, b) for a, b in zip(before, ctrl.parameters(), strict=True))


@pytest.mark.benchmark(group="100-query search on nasbench-graph/cora")
@pytest.mark.parametrize("name", ["random", "evolution", "graphnas-rl", "agnn"])
def test_search_speed(benchmark, cora, name):
    task, space = cora
    seeds = iter(range(1000))

    def search():
        ev = TableEvaluator(task, space, budget=BUDGET)
        get_method(name)().search(run_of(ev, next(seeds), budget=BUDGET))
        return ev

    ev = benchmark.pedantic(search, rounds=5, iterations=1)
    assert ev.n_queries == BUDGET


CHILDREN = {
    # a GAT-like GraphNAS child (8 heads x 8 units), and the same child fine-tuning inherited weights
    "graphnas child": ("gat,sum,elu,8,8|gat,sum,linear,1,classes", False),
    "graphnas child, shared weights": ("gat,sum,elu,8,8|gat,sum,linear,1,classes", True),
}


@pytest.mark.benchmark(group="one child training on Cora (smoke preset; shared: 20)")
@pytest.mark.parametrize("name", ["gcn reference", *CHILDREN])
def test_child_training_speed(benchmark, name):
    """One child trained by the harness, next to Kipf & Welling's GCN under the same protocol."""
    import os
    from pathlib import Path

    from nasrepro.harness.train_evaluator import TrainEvaluator
    from nasrepro.harness.training import fit_and_evaluate
    from nasrepro.methods.agnn.sharing import ConstrainedSharing
    from nasrepro.spaces.graphnas import GraphNasSpace

    data = Path(os.environ.get("NASREPRO_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    task = get_task("cora")
    if name == "gcn reference":
        preset = task.preset("smoke")
        benchmark.pedantic(
            lambda: fit_and_evaluate(task, task.reference_arch("gcn").build(task), preset, 0, data),
            rounds=2,
            iterations=1,
        )
        return
    arch, shared = CHILDREN[name]
    space = GraphNasSpace()
    preset = with_overrides(task.preset("smoke"), space.recipe_overrides(task))

    def train_child():
        return TrainEvaluator(task, space, budget=1, preset=preset, data_dir=data).query(space.parse(arch))

    if shared:  # time only the child: train the parent in setup
        evaluator_box = {}

        def setup():
            sharing = ConstrainedSharing(fine_tune_epochs=20)
            evaluator = TrainEvaluator(
                task, space, budget=2, preset=preset, data_dir=data, warm_start=sharing
            )
            sharing.parent = evaluator.query(space.parse(arch.replace("elu", "relu", 1))).arch
            evaluator_box["ev"] = evaluator
            return (), {}

        benchmark.pedantic(
            lambda: evaluator_box["ev"].query(space.parse(arch)), setup=setup, rounds=2, iterations=1
        )
    else:
        benchmark.pedantic(train_child, rounds=2, iterations=1)
