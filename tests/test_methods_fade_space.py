"""The hierarchical multi-cell space FaDE searches (nasrepro/spaces/hierarchical.py)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator, Outcome
from nasrepro.harness.run import run_of
from nasrepro.harness.table import TABLE_PRESETS
from nasrepro.harness.task import Metric, Task
from nasrepro.methods import get_method
from nasrepro.spaces import get_space
from nasrepro.spaces.hierarchical import (
    CellGraph,
    HierArch,
    HierarchicalSpace,
    cell_module,
    cells_with,
    parse_cell,
)


def test_json_adjacency_round_trips_for_cells_and_architectures():
    space = HierarchicalSpace(stages=3, max_vertices=5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = space.sample(rng)
        assert space.parse(str(arch)) == arch
        for cell in arch.cells:
            assert parse_cell(cell.to_json()) == cell
    # the authors' form, without the sink's row, reads as the same cell
    assert parse_cell('{"1":[0,1,1],"2":[0,0,1]}') == parse_cell('{"1":[0,1,1],"2":[0,0,1],"3":[0,0,0]}')


def test_isomorphic_cells_hash_equal_and_non_isomorphic_differ():
    rng = np.random.default_rng(1)
    space = HierarchicalSpace(stages=2, max_vertices=5)
    for _ in range(40):
        arch = space.sample(rng)
        cells = []
        for cell in arch.cells:
            perm = rng.permutation(cell.n) + 1
            cells.append(
                CellGraph(cell.n, frozenset((int(perm[a - 1]), int(perm[b - 1])) for a, b in cell.edges))
            )
        relabelled = HierArch(tuple(cells))
        assert space.key(relabelled) == space.key(arch)
    # the canonical count per vertex number is the number of unlabelled DAGs (OEIS A003087)
    assert [len(cells_with(n)) for n in range(1, 6)] == [1, 2, 6, 31, 302]
    # ... and distinct canonical cells are pairwise non-isomorphic (networkx, as the authors' code)
    graphs = []
    for cell in cells_with(4):
        g = nx.DiGraph()
        g.add_nodes_from(range(1, 5))
        g.add_edges_from(cell.edges)
        graphs.append(g)
    assert not any(nx.is_isomorphic(a, b) for a, b in itertools.combinations(graphs, 2))


@pytest.mark.parametrize(
    "text",
    [
        '[{"1":[0,1],"2":[1,0]}]',  # a 2-cycle
        '[{"1":[1]}]',  # a self-loop
        '[{"1":[0,1,0],"2":[0,0,1],"3":[1,0,0]}]',  # a 3-cycle
    ],
)
def test_a_cell_that_is_not_a_dag_is_one_usage_error(text):
    space = HierarchicalSpace(stages=1)
    with pytest.raises(UsageError) as info:
        space.parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not JSON"),
        ("[]", "non-empty"),
        ('[{"1":[0]}]', "3 stages"),
        ('[{"a":[0]}]', "vertex numbers"),
    ],
)
def test_malformed_architectures_are_usage_errors(text, match):
    with pytest.raises(UsageError, match=match):
        HierarchicalSpace().parse(text)


def test_space_arguments_below_one_are_usage_errors():
    with pytest.raises(UsageError, match="L >= 1"):
        HierarchicalSpace(stages=0)
    with pytest.raises(UsageError, match="min_vertices"):
        HierarchicalSpace(min_vertices=0)


def test_mutation_changes_exactly_one_stage_and_stays_in_the_space():
    space = HierarchicalSpace(stages=3, min_vertices=2, max_vertices=4)
    rng = np.random.default_rng(2)
    arch = space.sample(rng)
    for _ in range(100):
        child = space.mutate(arch, rng)
        assert sum(a != b for a, b in zip(arch.cells, child.cells, strict=True)) == 1
        space.parse(str(child))  # within the vertex range
        arch = child


def test_cell_semantics_identity_input_edges_op_relu_and_sums():
    """A 2-vertex chain 1 -> 2: INPUT -id-> 1 -op-> 2 -op-> OUTPUT; isolated vertices add parallel paths."""
    chain = parse_cell('{"1":[0,1],"2":[0,0]}')
    module = cell_module(chain, lambda: torch.nn.Linear(3, 3, bias=False))
    for edge in module.ops.values():
        torch.nn.init.eye_(edge[0].weight)
    x = torch.tensor([[1.0, -2.0, 3.0]])
    assert torch.equal(module(x), torch.relu(torch.relu(x)))
    assert set(module.ops) == {"e1_2", "e2_out"}
    parallel = cell_module(parse_cell('{"1":[0,0],"2":[0,0]}'), lambda: torch.nn.Linear(3, 3, bias=False))
    for edge in parallel.ops.values():
        torch.nn.init.eye_(edge[0].weight)
    assert torch.equal(parallel(x), 2 * torch.relu(x))


class _Task(Task):
    name = "fade-space-test"
    metric = Metric("accuracy", "max")
    kind = "table"
    presets = TABLE_PRESETS
    input_shape = (3, 32, 32)
    num_classes = 10


class _EdgeCount(Evaluator):
    """A cheap deterministic score so random search and evolution can run on the space."""

    def _evaluate(self, arch):
        score = float(sum(len(c.edges) for c in arch.cells))
        return Outcome(val=score, test=score, cost_seconds=0.0)


@pytest.mark.parametrize("method", ["random", "evolution"])
def test_random_search_and_evolution_run_on_the_space(method):
    space = get_space("hierarchical")
    evaluator = _EdgeCount(_Task(), space, budget=15)
    config = {"population": 4, "sample_size": 2} if method == "evolution" else {}
    result = get_method(method)(config).search(run_of(evaluator, seed=0, preset_name="smoke"))
    assert evaluator.n_queries == 15
    assert space.parse(result.best_arch)


@pytest.mark.parametrize("name", ["hierarchical", "hierarchical-mlp"])
def test_models_build_for_conv_and_mlp_cells(name):
    space = get_space(name, stages=2)
    arch = space.sample(np.random.default_rng(3))
    model = space.to_model(arch, _Task())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert bool(convs) == (name == "hierarchical")
