import math

import pytest

from nasrepro.errors import BudgetExhausted, EvaluationFailed, UsageError
from nasrepro.harness.evaluator import Evaluator, Outcome, TableEvaluator


def test_budget_counts_unique_queries_and_isomorphs_are_free(toy_task, toy_space):
    ev = TableEvaluator(toy_task, toy_space, budget=3)
    first = ev.query("110000")
    again = ev.query("000011")  # the reversal: same architecture
    assert again is first and ev.n_queries == 1 and ev.duplicates == 1
    ev.query("111000")
    ev.query("101010")
    assert ev.exhausted
    with pytest.raises(BudgetExhausted):
        ev.query("111111")
    assert ev.query("010101").arch == "010101"  # a seen one is still answered (reversal of 101010)


def test_history_costs_accumulate_and_reward_switch(toy_task, toy_space):
    ev = TableEvaluator(toy_task, toy_space, budget=5, reward="test")
    a, b = ev.query("100000"), ev.query("000001")  # isomorphic
    c = ev.query("110000")
    assert [q.index for q in ev.history] == [0, 1]
    assert a is b and c.score == c.test == 49.0 + 10  # canonical form 000011 starts with 0
    assert c.cumulative_cost == pytest.approx(a.cost_seconds + c.cost_seconds)
    assert a.cost_seconds >= 1.0  # the table's recorded training time is charged


def test_best_is_selected_on_the_reward_not_the_test(toy_task, toy_space):
    ev = TableEvaluator(toy_task, toy_space, budget=10)
    for arch in ("011000", "000111", "100000"):
        ev.query(arch)
    assert ev.best().arch == "000111"


def test_bad_budget_and_reward_are_usage_errors(toy_task, toy_space):
    with pytest.raises(UsageError, match="budget"):
        TableEvaluator(toy_task, toy_space, budget=0)
    with pytest.raises(UsageError, match="reward"):
        TableEvaluator(toy_task, toy_space, reward="train")


class FlakyEvaluator(Evaluator):
    cost_model = "test"

    def _evaluate(self, arch):
        if arch.count("1") == 3:
            raise EvaluationFailed("non-finite training loss (nan)")
        return Outcome(val=float(arch.count("1")), test=0.0, cost_seconds=0.0)


def test_failed_evaluation_is_recorded_and_search_goes_on(toy_task, toy_space):
    ev = FlakyEvaluator(toy_task, toy_space, budget=4)
    failed = ev.query("111000")
    assert failed.status == "failed" and "nan" in failed.reason and failed.score is None
    assert ev.fitness(failed) == -math.inf
    ok = ev.query("110000")
    assert ev.best() is ok and ev.n_queries == 2


def test_state_round_trip(toy_task, toy_space):
    ev = TableEvaluator(toy_task, toy_space, budget=4)
    ev.query("110000")
    ev.query("000011")
    fresh = TableEvaluator(toy_task, toy_space, budget=4)
    fresh.load_state_dict(ev.state_dict())
    assert fresh.n_queries == 1 and fresh.seen("110000") and fresh.duplicates == 1
