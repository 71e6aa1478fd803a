"""Asynchronous queries (`Evaluator.submit` / `wait_any`): answers booked in completion order under
the same rules as `query` (unique queries, budget, duplicates, charged cost, failures), and a
search interrupted with evaluations in flight resumes from its checkpoint without losing them or
evaluating an answered architecture again.

The SIGKILL-and-resume test of a real asynchronous search (NASBOT, two workers) is in
test_methods_nasbot_async.py.
"""

from __future__ import annotations

import pytest

from nasrepro.errors import BudgetExhausted, EvaluationFailed, NasreproError, UsageError
from nasrepro.harness.checkpoint import SearchCheckpoint
from nasrepro.harness.evaluator import Evaluator, Outcome
from nasrepro.harness.executors import Executor, LocalExecutor, is_failure
from nasrepro.harness.table import TableEntry
from nasrepro.harness.table_evaluator import TableEvaluator


class CountingTable:
    """The toy table's scores; counts every look-up and refuses architectures with three ones."""

    records_training_time = True
    cost_model = "toy: 1 simulated second per query"

    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def lookup(self, arch: str) -> TableEntry:
        self.looked_up.append(arch)
        if arch.count("1") == 3:
            raise EvaluationFailed(f"{arch} diverged")
        return TableEntry(val=50.0 + 5 * arch.count("1"), test=0.0, train_seconds=1.0 + arch.count("1"))


@pytest.fixture
def table(toy_task, monkeypatch) -> CountingTable:
    table = CountingTable()
    monkeypatch.setattr(type(toy_task), "table", lambda self: table)
    return table


class LastFirstExecutor(LocalExecutor):
    """Completes the *latest* submitted of the handles waited for: an out-of-order worker pool,
    deterministic, so booking in completion order can be checked without Ray."""

    def wait_any(self, handles):
        handle = self._first_resolved(handles) or max(handles, key=lambda h: h.number)
        if not handle.resolved:
            handle.answer, handle.resolved = self.map(handle.fn, [handle.item])[0], True
        return self._deliver(handle)


def drain(evaluator: Evaluator) -> list[str]:
    out = []
    while evaluator.in_flight:
        out.append(evaluator.wait_any().arch)
    return out


# --- booking --------------------------------------------------------------------------------------


def test_in_process_answers_come_in_submission_order_and_are_booked_then(toy_task, toy_space, table):
    ev = TableEvaluator(toy_task, toy_space, budget=5, workers=3)
    assert ev.workers == 3
    tickets = [ev.submit(a) for a in ("110000", "100000", "111100")]
    assert table.looked_up == [] and ev.n_queries == 0 and ev.remaining == 2
    assert ev.in_flight == ["000011", "000001", "001111"]  # keys, canonical
    first = ev.wait_any()
    assert (first.arch, first.index) == (tickets[0].key, 0) and table.looked_up == ["000011"]
    assert ev.in_flight == ["000001", "001111"] and ev.remaining == 2
    assert drain(ev) == ["000001", "001111"]
    assert [q.index for q in ev.history] == [0, 1, 2]
    assert [q.cost_seconds for q in ev.history] == [3.0, 2.0, 5.0]  # the table's recorded times
    assert [q.cumulative_cost for q in ev.history] == [3.0, 5.0, 10.0]


def test_answers_are_booked_in_the_order_the_executor_completes_them(toy_task, toy_space, table):
    """Out-of-order completion: the history is the completion order, each answer its own arch's."""
    ev = TableEvaluator(toy_task, toy_space, budget=4, executor=LastFirstExecutor())
    for arch in ("100000", "110000", "111100"):
        ev.submit(arch)
    assert drain(ev) == ["001111", "000011", "000001"]
    assert [(q.index, q.val, q.cost_seconds) for q in ev.history] == [
        (0, 70.0, 5.0),
        (1, 60.0, 3.0),
        (2, 55.0, 2.0),
    ]
    assert ev.charged_cost == 10.0 and ev.n_queries == 3


def test_budget_counts_what_is_in_flight_and_duplicates_are_free(toy_task, toy_space, table):
    ev = TableEvaluator(toy_task, toy_space, budget=3, workers=3)
    ev.submit("110000")
    ev.submit("100000")
    dup_in_flight = ev.submit("000011")  # the reversal of the first, still in flight
    assert ev.duplicates == 1 and ev.remaining == 1 and len(ev.in_flight) == 2
    ev.submit("111110")
    assert ev.exhausted
    with pytest.raises(BudgetExhausted):
        ev.submit("111111")
    a = ev.wait_any()
    again = ev.wait_any()  # the duplicate ticket, answered by the same evaluation
    assert dup_in_flight.key == a.arch and again is a and ev.n_queries == 1
    ev.submit("000011")  # answered: free, and answered before anything still running
    assert ev.duplicates == 2 and ev.wait_any() is a
    assert drain(ev) == ["000001", "011111"] and table.looked_up == ["000011", "000001", "011111"]
    assert ev.n_queries == 3 and len({q.arch for q in ev.history}) == 3


def test_failures_are_booked_as_failed_in_process_and_from_an_executor(toy_task, toy_space, table):
    here = TableEvaluator(toy_task, toy_space, budget=3, workers=2)
    remote = TableEvaluator(toy_task, toy_space, budget=3, executor=LocalExecutor())
    for ev in (here, remote):
        ev.submit("111000")
        ev.submit("110000")
        failed, ok = ev.wait_any(), ev.wait_any()
        assert failed.status == "failed" and failed.score is None and "diverged" in failed.reason
        assert ok.status == "ok" and ev.best() is ok
    assert remote.history[0].reason == "EvaluationFailed: 000111 diverged"  # the executor's Failure


def test_a_failure_from_the_executor_is_a_failed_query(toy_task, toy_space):
    """A job that raises on the worker comes back as `Failure` and is booked, not raised."""

    class Broken(LocalExecutor):
        def map(self, fn, items):
            return super().map(lambda arch: 1 / 0, items)

    assert is_failure(Broken().map(str, ["x"])[0])
    ev = TableEvaluator(toy_task, toy_space, budget=2, executor=Broken())
    ev.submit("110000")
    query = ev.wait_any()
    assert query.status == "failed" and query.reason.startswith("ZeroDivisionError")


def test_misuse_is_a_usage_error(toy_task, toy_space, table):
    ev = TableEvaluator(toy_task, toy_space, budget=3, workers=2)
    with pytest.raises(UsageError, match="nothing in flight"):
        ev.wait_any()
    ev.submit("110000")
    with pytest.raises(UsageError, match="in flight"):
        ev.query("000011")
    with pytest.raises(UsageError, match="workers"):
        TableEvaluator(toy_task, toy_space, workers=0)


def test_wall_time_is_the_wait_and_training_is_charged_it(toy_task, toy_space, monkeypatch):
    """In process, an answer's wall time is its evaluation, as with `query`; a training evaluator
    is charged it."""
    import nasrepro.harness.evaluator as evaluator_module

    class Clock:
        now = 0.0

        def __call__(self):
            Clock.now += 2.0
            return Clock.now

    class Trains(Evaluator):
        cost_model = "test"

        def _evaluate(self, arch):
            return Outcome(val=1.0, test=0.0, cost_seconds=0.0)

    monkeypatch.setattr(evaluator_module.time, "perf_counter", Clock())
    ev = Trains(toy_task, toy_space, budget=2)
    ev.submit("110000")
    ev.submit("100000")
    drain(ev)
    assert [q.wall_seconds for q in ev.history] == [2.0, 2.0] and ev.charged_cost == 4.0


# --- resumption -----------------------------------------------------------------------------------


def _script(ev: Evaluator, archs_then_waits) -> list[str]:
    """Submit and wait as a (deterministic) asynchronous method would: 's:ARCH' or 'w'."""
    got = []
    for step in archs_then_waits:
        if step == "w":
            got.append(ev.wait_any().arch)
        else:
            ev.submit(step[2:])
    return got


SCRIPT = ["s:110000", "s:100000", "s:111100", "w", "s:111110", "w", "w", "w"]


def test_in_flight_architectures_are_checkpointed_and_evaluated_once_on_resume(
    toy_task, toy_space, table, tmp_path
):
    """Killed after two answers with two evaluations in flight (started on an eager executor, so
    their first attempt is lost with the process): the checkpoint names them, the resumed run
    evaluates them again, never re-evaluates the answered ones, and ends as an uninterrupted run."""

    class Eager(LocalExecutor):  # starts every item at submission, like a worker pool
        def submit(self, fn, item):
            handle = super().submit(fn, item)
            handle.answer, handle.resolved = self.map(fn, [item])[0], True
            return handle

    reference = TableEvaluator(toy_task, toy_space, budget=4, executor=Eager())
    expected = _script(reference, SCRIPT)
    table.looked_up.clear()

    ckpt = SearchCheckpoint(tmp_path / ".c.checkpoint", {"seed": 0})
    killed = TableEvaluator(
        toy_task, toy_space, budget=4, executor=Eager(), listeners=[lambda ev, q: ckpt.save(ev)]
    )
    assert _script(killed, SCRIPT[:6]) == expected[:2]  # then SIGKILL: nothing more is saved
    assert killed.in_flight == ["001111", "011111"]
    answered = {q.arch for q in killed.history}
    started_before = list(table.looked_up)

    resumed_ckpt = SearchCheckpoint(ckpt.path, {"seed": 0})
    queries = resumed_ckpt.load()
    assert [q.arch for q in queries] == expected[:2] and resumed_ckpt.in_flight == ["001111", "011111"]
    table.looked_up.clear()
    resumed = TableEvaluator(toy_task, toy_space, budget=4, executor=Eager())
    resumed.resume_from(queries, resumed_ckpt.in_flight)
    assert _script(resumed, SCRIPT) == expected
    assert [q.to_dict() for q in resumed.history][:2] == [q.to_dict() for q in queries]
    assert [(q.arch, q.val, q.index) for q in resumed.history] == [
        (q.arch, q.val, q.index) for q in reference.history
    ]
    assert not answered & set(table.looked_up)  # nothing answered was evaluated again
    assert sorted(table.looked_up) == ["001111", "011111"]  # the two lost evaluations, once each
    assert set(started_before) >= {"001111", "011111"}


def test_a_resumed_run_that_submits_something_else_has_diverged(toy_task, toy_space, table, tmp_path):
    ev = TableEvaluator(toy_task, toy_space, budget=4, workers=3)
    _script(ev, SCRIPT[:4])
    queries, in_flight = list(ev.history), ev.in_flight

    other = TableEvaluator(toy_task, toy_space, budget=4, workers=3)
    other.resume_from(queries, in_flight)
    other.submit("100000")  # in flight before: allowed during the replay
    with pytest.raises(NasreproError, match="diverged: it submitted 000111"):
        other.submit("111000")

    late = TableEvaluator(toy_task, toy_space, budget=4, workers=3)
    late.resume_from(queries, in_flight)
    late.submit("100000")
    with pytest.raises(NasreproError, match="has not submitted"):
        late.wait_any()  # the checkpoint's first answer (000011) was never submitted


def test_old_checkpoints_without_in_flight_still_load(tmp_path):
    ckpt = SearchCheckpoint(tmp_path / ".c.checkpoint", {"seed": 0})
    ckpt.path.write_text('{"format": 1, "fingerprint": {"seed": 0}, "history": []}')
    assert ckpt.load() == [] and ckpt.in_flight == []


def test_executor_contract_default_is_sequential_for_any_map():
    """An executor that implements only `map` schedules asynchronously through the default."""

    class MapOnly(Executor):
        name = "map-only"

        def map(self, fn, items):
            return [fn(item) for item in items]

    ex = MapOnly()
    handles = [ex.submit(abs, x) for x in (-3, -1)]
    assert ex.wait_any(handles[::-1]) == (handles[0], 3)


def test_a_training_evaluator_trains_submissions_on_its_executor_as_query_would(tmp_path):
    """The executor's job (`train_evaluation` in a worker) answers as the in-process fit does."""
    import torch
    import toys

    from nasrepro.harness.train_evaluator import TrainEvaluator

    task = toys.ToyLiveTask()
    common = dict(budget=2, preset=task.preset("smoke"), seed=0, data_dir=tmp_path)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the executor's per-item limit, so both fits sum in the same order
    try:
        here = TrainEvaluator(task, task.space(), **common)
        expected = [here.query(a) for a in ("110000", "101101")]
        executor, sent = LocalExecutor(), []
        submit = executor.submit
        executor.submit = lambda fn, item: (sent.append(item), submit(fn, item))[1]
        ev = TrainEvaluator(task, task.space(), executor=executor, **common)
        for arch in ("110000", "101101"):
            ev.submit(arch)
        got = drain(ev)
    finally:
        torch.set_num_threads(previous)
    assert sent == got == [q.arch for q in expected] and ev.workers == 1
    fields = lambda q: (q.arch, q.index, q.val, q.test, q.status, q.metrics["params"], q.metrics["epochs"])  # noqa: E731
    assert [fields(q) for q in ev.history] == [fields(q) for q in expected]
    assert all(q.cost_seconds > 0 and q.wall_seconds > 0 for q in ev.history)


def test_an_executor_answer_is_charged_the_workers_time_not_the_wait(tmp_path):
    """With two workers the main process may wait 2 s for a 15 s training: the query costs 15 s."""
    import toys

    from nasrepro.harness.train_evaluator import TrainEvaluator

    task = toys.ToyLiveTask()
    executor = LocalExecutor()
    submit = executor.submit
    executor.submit = lambda fn, item: submit(lambda arch: {**fn(arch), "job_seconds": 15.0}, item)
    ev = TrainEvaluator(
        task, task.space(), executor=executor, budget=2, preset=task.preset("smoke"), data_dir=tmp_path
    )
    for arch in ("110000", "101101"):
        ev.submit(arch)
    drain(ev)
    assert [q.cost_seconds for q in ev.history] == [15.0, 15.0] and ev.charged_cost == 30.0
    assert all(q.wall_seconds < 15.0 for q in ev.history)  # the wait, from which overhead is derived
