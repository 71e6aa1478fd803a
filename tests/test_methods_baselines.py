import pytest

from nasrepro.errors import UsageError
from nasrepro.harness.run import run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method, method_names
from nasrepro.methods.baselines.evolution import RegularizedEvolution


def run(name, task, space, budget, seed, config=None):
    ev = TableEvaluator(task, space, budget=budget)
    result = get_method(name)(config).search(run_of(ev, seed, budget=budget))
    return result, ev


def test_baselines_are_registered():
    assert {"random", "random-sampling", "evolution"} <= set(method_names())


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_budget_is_spent_exactly_and_result_is_the_best_seen(name, toy_task, toy_space):
    result, ev = run(
        name,
        toy_task,
        toy_space,
        budget=12,
        seed=3,
        config={"population": 6, "sample_size": 2} if name == "evolution" else None,
    )
    assert ev.n_queries == 12
    assert result.best_arch == max(ev.history, key=lambda q: q.score).arch


@pytest.mark.parametrize("name", ["random", "random-sampling", "evolution"])
def test_same_seed_same_history_other_seed_differs(name, toy_task, toy_space):
    config = {"population": 6, "sample_size": 2} if name == "evolution" else None
    a = [q.arch for q in run(name, toy_task, toy_space, 10, 7, config)[1].history]
    b = [q.arch for q in run(name, toy_task, toy_space, 10, 7, config)[1].history]
    c = [q.arch for q in run(name, toy_task, toy_space, 10, 8, config)[1].history]
    assert a == b
    assert name == "random-sampling" or a != c


def test_random_sampling_reports_its_first_draw_without_selection(toy_task, toy_space):
    result, ev = run("random-sampling", toy_task, toy_space, 10, 0, {"samples": 5})
    assert ev.n_queries <= 5 and result.best_arch == ev.history[0].arch


def test_random_search_enumerates_a_space_smaller_than_its_budget(toy_task, toy_space):
    _, ev = run("random", toy_task, toy_space, 1000, 0)
    assert ev.n_queries == toy_space.size() == 36


def test_evolution_removes_the_oldest_not_the_worst(toy_task, toy_space, monkeypatch):
    """With S = P the tournament always picks the population's best; aging must still evict it
    once it is the oldest, so the incumbent's lineage keeps moving (Real et al. 2019, Sec. 3)."""
    children = []
    original = toy_space.mutate

    def spy(arch, rng):
        children.append(original(arch, rng))
        return children[-1]

    monkeypatch.setattr(toy_space, "mutate", spy)
    result, ev = run("evolution", toy_task, toy_space, 30, 1, {"population": 4, "sample_size": 4})
    # The survivors are exactly the 4 youngest children, whatever their fitness: the best
    # architecture ever seen is not kept unless it was re-discovered recently.
    assert result.extra["population"] == children[-4:]
    assert len(children) >= 26


def test_evolution_rejects_bad_config(toy_task, toy_space):
    with pytest.raises(UsageError, match="sample_size"):
        RegularizedEvolution({"population": 2, "sample_size": 5}).search(
            run_of(TableEvaluator(toy_task, toy_space, budget=1), 0)
        )
    with pytest.raises(UsageError, match="no option"):
        RegularizedEvolution({"tournament": 3})
