"""Evaluators (DESIGN.md, "Evaluator"): the only way a method learns an architecture's score.

Both evaluators count *unique* queries (isomorphic duplicates are answered from the cache for free)
and charge every query the same way, so methods compare on equal budgets (issue 16 item 3):

* a table look-up is charged the benchmark's recorded training time of that architecture, and
  nothing when the table records none: its cost is then *unknown* (``None``) and the comparison
  is by unique queries. The look-up's own wall time is kept in ``wall_seconds`` and is never
  charged, so a table search costs the same on every machine;
* a training evaluation is charged its own wall time (the record names the device).

The method's own compute (controller updates, GP fits, predictor training) is not a query cost:
the runner records it separately as ``method_overhead_seconds``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from nasrepro.errors import BudgetExhausted, EvaluationFailed, NasreproError, UsageError
from nasrepro.harness.recipe import Preset
from nasrepro.harness.space import Arch, Space
from nasrepro.harness.task import Task

if TYPE_CHECKING:
    from nasrepro.harness.executors.base import Executor

Reward = Literal["val", "test"]
MAX_DUPLICATE_STREAK = 100_000


@dataclass
class Query:
    """One unique evaluation, as the search saw it and as the record stores it."""

    index: int
    arch: str
    score: float | None
    val: float | None
    test: float | None
    #: what this query is charged (see the module docstring); None = unknown (table without times)
    cost_seconds: float | None
    #: the charged cost of every query so far; None once any of them is unknown
    cumulative_cost: float | None
    #: our own wall time answering it (a look-up or a training), whatever is charged
    wall_seconds: float
    status: Literal["ok", "failed"] = "ok"
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    """What one evaluation produced before bookkeeping."""

    val: float
    test: float | None
    #: the recorded cost of this evaluation (a table's training time); None = not recorded
    cost_seconds: float | None
    metrics: dict[str, float] = field(default_factory=dict)


#: called after every newly booked query (checkpointing, progress): `listener(evaluator, query)`
Listener = Callable[["Evaluator", Query], None]


class Evaluator(ABC):
    """Answers queries, deduplicates them, enforces the budget and keeps the history.

    Everything an evaluator uses is given to its constructor, and `__slots__` makes assigning any
    other attribute an error: methods cannot hang state on it, so the evaluator behaves the same
    whichever method drives it.
    """

    __slots__ = (
        "task",
        "space",
        "budget",
        "reward",
        "history",
        "_cache",
        "duplicates",
        "_duplicate_streak",
        "_replay",
        "listeners",
    )

    #: how a query's cost is defined; stored in every record
    cost_model: ClassVar[str] = ""

    def __init__(
        self,
        task: Task,
        space: Space,
        budget: int | None = None,
        reward: Reward = "val",
        *,
        listeners: Sequence[Listener] = (),
    ) -> None:
        if reward not in ("val", "test"):
            raise UsageError(f"reward must be 'val' or 'test', got {reward!r}")
        if budget is not None and budget < 1:
            raise UsageError(f"budget must be a positive number of unique queries, got {budget}")
        self.task, self.space, self.budget, self.reward = task, space, budget, reward
        self.history: list[Query] = []
        self._cache: dict[str, Query] = {}
        self.duplicates = 0
        self._duplicate_streak = 0
        #: answers of an interrupted run, replayed instead of re-evaluated (see harness/checkpoint.py)
        self._replay: dict[str, Query] = {}
        self.listeners = tuple(listeners)

    # --- budget --------------------------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        return len(self.history)

    @property
    def remaining(self) -> float:
        return math.inf if self.budget is None else self.budget - self.n_queries

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    @property
    def total_cost(self) -> float | None:
        """The charged cost of every query so far (None when some query's cost is unknown)."""
        return self.history[-1].cumulative_cost if self.history else 0.0

    @property
    def charged_cost(self) -> float | None:
        """What the record's ``search_cost.charged_cost`` holds: `total_cost`, independent of the
        look-up time on table tasks (None when the table records no training time)."""
        return self.total_cost

    def _charge(self, outcome: Outcome | None, wall: float) -> float | None:
        """The cost charged for one new evaluation that took `wall` seconds here. By default the
        recorded cost plus our wall time (a training's cost *is* its wall time); `TableEvaluator`
        charges the recorded time alone."""
        recorded = outcome.cost_seconds if outcome is not None else 0.0
        return round((recorded or 0.0) + wall, 6)

    # --- queries -------------------------------------------------------------------------------
    def seen(self, arch: Arch) -> bool:
        return self.space.key(arch) in self._cache

    def query(self, arch: Arch) -> Query:
        """The evaluation of `arch`; a repeated (or isomorphic) architecture is free."""
        key = self.space.key(arch)
        if key in self._cache:
            self.duplicates += 1
            self._duplicate_streak += 1
            if self._duplicate_streak > MAX_DUPLICATE_STREAK:
                raise NasreproError(
                    f"{MAX_DUPLICATE_STREAK} duplicate queries in a row: the method is stuck or the "
                    f"space ({self.space.size()} architectures) is exhausted"
                )
            return self._cache[key]
        if self.exhausted:
            raise BudgetExhausted(f"budget of {self.budget} unique queries is spent")
        self._duplicate_streak = 0
        if key in self._replay:
            return self._replay_one(key)
        if self._replay:
            raise NasreproError(
                f"resumed search diverged: query {len(self.history)} is {key}, but the checkpoint recorded "
                f"{min(self._replay.values(), key=lambda q: q.index).arch}; the method is not deterministic"
            )
        start = time.perf_counter()
        try:
            outcome, status, reason = self._evaluate(self.space.canonical(arch)), "ok", ""
        except EvaluationFailed as failure:
            outcome, status, reason = None, "failed", str(failure)
        return self._book(key, outcome, status, reason, time.perf_counter() - start)

    def _book(self, key: str, outcome: Outcome | None, status: str, reason: str, wall: float) -> Query:
        """Append one new evaluation to the history (and the checkpoint)."""
        wall = round(wall, 6)  # microseconds: finer is noise, and bloats records
        cost = self._charge(outcome, wall)
        previous = self.total_cost
        cumulative = None if cost is None or previous is None else round(previous + cost, 6)
        score = None if outcome is None else (outcome.val if self.reward == "val" else outcome.test)
        query = Query(
            index=len(self.history),
            arch=key,
            score=score,
            val=outcome.val if outcome else None,
            test=outcome.test if outcome else None,
            cost_seconds=cost,
            cumulative_cost=cumulative,
            wall_seconds=wall,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            metrics=outcome.metrics if outcome else {},
        )
        self.history.append(query)
        self._cache[key] = query
        for listener in self.listeners:
            listener(self, query)
        return query

    def resume_from(self, queries: list[Query]) -> None:
        """Answer these queries from the checkpoint when the replayed method asks for them again."""
        self._replay = {q.arch: q for q in queries}

    def _replay_one(self, key: str) -> Query:
        query = self._replay.pop(key)
        if query.index != len(self.history):
            raise NasreproError(
                f"resumed search diverged: {key} was query {query.index} before, now {len(self.history)}"
            )
        self.history.append(query)
        self._cache[key] = query
        for listener in self.listeners:
            listener(self, query)
        return query

    @property
    def replaying(self) -> bool:
        return bool(self._replay)

    @property
    def batch_size(self) -> int:
        """How many architectures the method may usefully hand over at once (`query_many`)."""
        return 1

    def query_many(self, archs: Iterable[Arch]) -> list[Query]:
        """Evaluate several architectures, stopping silently when the budget runs out."""
        out = []
        for arch in archs:
            if self.exhausted and not self.seen(arch):
                break
            out.append(self.query(arch))
        return out

    def fitness(self, query: Query) -> float:
        """The query's reward oriented so larger is better; failed evaluations rank last."""
        if query.status != "ok" or query.score is None:
            return -math.inf
        return self.task.metric.fitness(query.score)

    def best(self) -> Query:
        ok = [q for q in self.history if q.status == "ok"]
        if not ok:
            raise NasreproError("no architecture was evaluated successfully")
        return max(ok, key=self.fitness)

    @abstractmethod
    def _evaluate(self, arch: Arch) -> Outcome:
        """Evaluate one canonical architecture; raise `EvaluationFailed` to record a failure."""

    # --- resumption ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": [q.to_dict() for q in self.history], "duplicates": self.duplicates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [Query(**q) for q in state["history"]]
        self._cache = {q.arch: q for q in self.history}
        self.duplicates = state.get("duplicates", 0)


class _call_with_arch:  # noqa: N801  (a picklable partial whose free argument is the architecture)
    def __init__(self, job: Any) -> None:
        self.job = job

    def __call__(self, arch: str) -> Any:
        return self.job(arch=arch)


class WarmStart(Protocol):
    """Hands trained weights from earlier evaluations to new ones (parameter sharing: ENAS,
    GraphNAS, AGNN's constrained sharing). Only a `TrainEvaluator` training in-process uses it."""

    def before_fit(self, key: str, arch: Arch, model: Any) -> dict[str, Any]:
        """Copy inherited weights into the freshly built `model`; return recipe overrides for this
        fit (e.g. fewer epochs to fine-tune) and, under ``"metrics"``, numbers to record."""
        ...

    def after_fit(self, key: str, arch: Arch, model: Any) -> None:
        """Keep what later evaluations may inherit from the trained `model`."""
        ...


class TableEvaluator(Evaluator):
    """Look-ups in a tabular benchmark. A query is charged the table's recorded training time
    where it has one (NAS-Bench-201 with the official times), else its cost is unknown (None:
    NAS-Bench-Graph, our NB201 CSVs) and searches compare by unique queries. The look-up's wall
    time is recorded in ``wall_seconds`` but never charged: it measures this machine, not the
    benchmark (issue 16 item 3)."""

    __slots__ = ("table",)

    def __init__(self, task: Task, space: Space, *args: Any, **kwargs: Any) -> None:
        """As `Evaluator`; the table is the task's (loaded once by the task, shared by searches)."""
        super().__init__(task, space, *args, **kwargs)
        self.table = task.table()  # type: ignore[attr-defined]

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


class TrainEvaluator(Evaluator):
    """Trains each architecture from scratch with the task's recipe at the chosen preset.

    `preset` is the resolved preset (the task's, with the space's recipe overrides applied), so
    every training -- in this process or on an executor's worker -- uses the one object.
    """

    __slots__ = ("preset", "seed", "data_dir", "trainer_kwargs", "executor", "warm_start")
    cost_model = "wall-clock seconds of our own training and evaluation of each architecture"

    def __init__(
        self,
        task: Task,
        space: Space,
        budget: int | None = None,
        reward: Reward = "val",
        *,
        preset: Preset,
        seed: int = 0,
        data_dir: Path,
        trainer_kwargs: dict[str, Any] | None = None,
        executor: Executor | None = None,
        warm_start: WarmStart | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        super().__init__(task, space, budget, reward, listeners=listeners)
        self.preset = preset
        self.seed = seed
        self.data_dir = data_dir
        self.trainer_kwargs = dict(trainer_kwargs or {})
        #: trains batches of architectures at once (`query_many`); None trains one at a time here
        self.executor = executor
        #: parameter sharing between evaluations (see `WarmStart`); None trains from scratch
        self.warm_start = warm_start

    @property
    def batch_size(self) -> int:
        return self.executor.workers if self.executor is not None else 1

    def query_many(self, archs: Iterable[Arch]) -> list[Query]:
        """Train the new architectures among `archs` concurrently on the executor, then book every
        answer in input order, so the history is the same as sequential queries would give."""
        archs = list(archs)
        if self.executor is None or self.warm_start is not None or self.replaying or len(archs) < 2:
            return super().query_many(archs)
        from functools import partial

        from nasrepro.harness.executors import is_failure
        from nasrepro.harness.executors.jobs import train_evaluation

        new: dict[str, Arch] = {}
        for arch in archs:
            key = self.space.key(arch)
            if key not in self._cache and key not in new and len(new) < self.remaining:
                new[key] = self.space.canonical(arch)
        job = partial(
            train_evaluation,
            self.task,
            self.space,
            preset=self.preset,
            seed=self.seed,
            data_dir=self.data_dir,
        )
        start = time.perf_counter()
        results = dict(
            zip(new, self.executor.map(_call_with_arch(job), [str(a) for a in new.values()]), strict=True)
        )
        wall = (time.perf_counter() - start) / max(len(new), 1)  # the batch's time, shared out
        out = []
        for arch in archs:
            key = self.space.key(arch)
            if key in results:
                result = results.pop(key)
                if is_failure(result):
                    out.append(
                        self._book(key, None, "failed", f"{result.error_type}: {result.message}", wall)
                    )
                else:
                    outcome = Outcome(
                        val=result["val"],
                        test=result["test"],
                        cost_seconds=0.0,
                        metrics={
                            "params": float(result["params"]),
                            "train_seconds": result["train_seconds"],
                            "epochs": float(result["epochs"]),
                        },
                    )
                    out.append(self._book(key, outcome, "ok", "", wall))
            elif key in self._cache:
                out.append(self.query(arch))
        return out

    def _evaluate(self, arch: Arch) -> Outcome:
        import lightning as L

        from nasrepro.harness.training import fit_and_evaluate

        L.seed_everything(self.seed, workers=True, verbose=False)  # initial weights follow the seed
        model = self.space.to_model(arch, self.task)
        n_params = sum(p.numel() for p in model.parameters())
        preset, shared = self.preset, {}
        if self.warm_start is not None:
            overrides = dict(self.warm_start.before_fit(self.space.key(arch), arch, model))
            shared = overrides.pop("metrics", {})
            if "epochs" in overrides:  # fine-tuning never trains longer than the full recipe
                overrides["epochs"] = min(int(overrides["epochs"]), preset.recipe.epochs)
            # applied as given, at every preset (smoke included): this fit's own schedule
            preset = dataclasses.replace(preset, recipe=preset.recipe.replace(**overrides))
        result = fit_and_evaluate(
            self.task,
            model,
            preset,
            self.seed,
            self.data_dir,
            build=lambda: self.space.to_model(arch, self.task),
            **self.trainer_kwargs,
        )
        if self.warm_start is not None:
            self.warm_start.after_fit(self.space.key(arch), arch, model)
        return Outcome(
            val=result["val"],
            test=result["test"],
            cost_seconds=0.0,
            metrics={
                "params": float(n_params),
                "train_seconds": result["train_seconds"],
                "epochs": float(result["epochs"]),
                **shared,
            },
        )
