"""The table evaluator: an architecture's score is a tabular benchmark's look-up (NAS-Bench-201,
NAS-Bench-Graph), charged the training time the table records, never the look-up's wall time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator, Outcome
from nasrepro.harness.space import Arch, Space
from nasrepro.harness.task import Task

if TYPE_CHECKING:
    from nasrepro.harness.executors.base import Executor


class TableEvaluator(Evaluator):
    """Look-ups in a tabular benchmark. A query is charged the table's recorded training time
    where it has one (NAS-Bench-201 with the official times), else its cost is unknown (None:
    NAS-Bench-Graph, our NB201 CSVs) and searches compare by unique queries. The look-up's wall
    time is recorded in ``wall_seconds`` but never charged: it measures this machine, not the
    benchmark (issue 16 item 3).

    For asynchronous searches (`submit` / `wait_any`) a table simulates `workers` evaluations in
    flight: each is looked up when `wait_any` reaches it, in submission order, i.e. workers that
    all take the same time, so the search stays deterministic. With an `executor` the look-ups run
    on it instead and come back in the order it reports (on Ray: whichever finishes first). The
    runner gives a table no executor: a look-up costs less than shipping it to a worker.
    """

    __slots__ = ("table", "_workers", "_job")

    def __init__(
        self,
        task: Task,
        space: Space,
        *args: Any,
        executor: Executor | None = None,
        workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        """As `Evaluator`; the table is the task's (loaded once by the task, shared by searches).
        `workers` (default 1, or the executor's) is what `Evaluator.workers` reports."""
        super().__init__(task, space, *args, **kwargs)
        self.table = task.table()  # type: ignore[attr-defined]
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise UsageError(f"workers must be a positive integer, got {workers!r}")
        self.executor = executor
        self._workers = workers if workers is not None else executor.workers if executor is not None else 1
        self._job: Any = None

    @property
    def workers(self) -> int:
        return self._workers

    def _start(self, arch: Arch) -> Any:
        if self.executor is None:
            return None
        if self._job is None:  # one function object, so Ray stores the table once
            from functools import partial

            from nasrepro.harness.executors.jobs import table_lookup

            self._job = partial(table_lookup, self.table, self.space)
        return self.executor.submit(self._job, str(arch))

    def _outcome_of(self, result: Any) -> Outcome:
        return Outcome(**result)

    @property
    def cost_model(self) -> str:  # type: ignore[override]
        return self.table.cost_model

    def _charge(self, outcome: Outcome | None, wall: float) -> float | None:
        if outcome is None:  # a failed look-up trained nothing; unknown if the table has no times
            return 0.0 if self.table.records_training_time else None
        return None if outcome.cost_seconds is None else round(outcome.cost_seconds, 6)

    def _evaluate(self, arch: Arch) -> Outcome:
        entry = self.table.lookup(arch)
        return Outcome(
            val=entry.val,
            test=entry.test,
            cost_seconds=entry.train_seconds,
            metrics=dict(entry.metrics),
        )
