import math

import pytest

from nasrepro.errors import BudgetExhausted, EvaluationFailed, UsageError
from nasrepro.harness.evaluator import Evaluator, Outcome
from nasrepro.harness.table_evaluator import TableEvaluator


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


class _SlowClock:
    """`time.perf_counter` for the evaluator module that advances `step` seconds per call."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _run_table_search(toy_task, toy_space):
    ev = TableEvaluator(toy_task, toy_space, budget=4)
    for arch in ("110000", "111000", "101010", "111100"):
        ev.query(arch)
    return ev


def test_table_charged_cost_is_independent_of_lookup_time(toy_task, toy_space, monkeypatch):
    """Issue 16 item 3: the same table search on a fast and on a very slow machine is charged the
    same (the table's recorded training time), while the look-up wall time is still recorded."""
    import nasrepro.harness.evaluator as evaluator_module

    fast = _run_table_search(toy_task, toy_space)
    monkeypatch.setattr(evaluator_module.time, "perf_counter", _SlowClock(step=7.5))
    slow = _run_table_search(toy_task, toy_space)
    assert [q.cost_seconds for q in slow.history] == [q.cost_seconds for q in fast.history] == [1.0] * 4
    assert slow.charged_cost == fast.charged_cost == pytest.approx(4.0)
    assert slow.total_cost == fast.total_cost
    assert all(q.wall_seconds == pytest.approx(7.5) for q in slow.history)  # measured, not charged


class _NoTimesTable:
    """The toy table without recorded training times (like NAS-Bench-Graph)."""

    records_training_time = False
    cost_model = "no times"

    def lookup(self, arch):
        from nasrepro.harness.table import TableEntry

        return TableEntry(val=float(arch.count("1")), test=0.0, train_seconds=None)


def test_table_without_training_times_charges_unknown(toy_task, toy_space, monkeypatch):
    monkeypatch.setattr(type(toy_task), "table", lambda self: _NoTimesTable())
    ev = TableEvaluator(toy_task, toy_space, budget=3)
    ev.query("110000")
    ev.query("111000")
    assert [q.cost_seconds for q in ev.history] == [None, None]
    assert [q.cumulative_cost for q in ev.history] == [None, None]
    assert ev.charged_cost is None and ev.n_queries == 2
    assert all(q.wall_seconds >= 0 for q in ev.history)


def test_training_evaluator_is_charged_its_wall_time(toy_task, toy_space, monkeypatch):
    """A non-table evaluation's cost is its own wall time (the recorded device says where)."""
    import nasrepro.harness.evaluator as evaluator_module

    monkeypatch.setattr(evaluator_module.time, "perf_counter", _SlowClock(step=2.0))
    ev = FlakyEvaluator(toy_task, toy_space, budget=2)
    ev.query("110000")
    ev.query("100000")
    assert [q.cost_seconds for q in ev.history] == [2.0, 2.0]
    assert ev.charged_cost == pytest.approx(4.0)
