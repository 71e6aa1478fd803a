"""Evaluators (DESIGN.md, "Evaluator"): the only way a method learns an architecture's score.

This module holds the contract and the bookkeeping every evaluator shares (budget, duplicates,
history, charging, asynchronous tickets, resumption); the two evaluators live beside it:
`table_evaluator.TableEvaluator` (look-ups) and `train_evaluator.TrainEvaluator` (training).

Both evaluators count *unique* queries (isomorphic duplicates are answered from the cache for free)
and charge every query the same way, so methods compare on equal budgets (issue 16 item 3):

* a table look-up is charged the benchmark's recorded training time of that architecture, and
  nothing when the table records none: its cost is then *unknown* (``None``) and the comparison
  is by unique queries. The look-up's own wall time is kept in ``wall_seconds`` and is never
  charged, so a table search costs the same on every machine;
* a training evaluation is charged its own wall time (the record names the device).

The method's own compute (controller updates, GP fits, predictor training) is not a query cost:
the runner records it separately as ``method_overhead_seconds``.

Asynchronous searches (NASBOT's scheduler, Kandasamy et al. 2018, fact sheet `nasbot.md` §4.1: k
evaluations in flight, a new proposal as soon as one finishes) use `submit` / `wait_any` instead of `query`: each answer
is booked when `wait_any` returns it, so the history is in completion order and every rule above
(unique queries, budget, duplicates, charged cost) holds unchanged. An answer's ``wall_seconds``
is then the time the search waited for it, so a search's charged wall time and its own overhead
still add up to its wall time, as with `query_many`'s shared-out batches. What an answer is
*charged* is another matter: a training on an executor is charged the worker's own time for it
(`TrainEvaluator._charge`), never the wait.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nasrepro.errors import BudgetExhausted, EvaluationFailed, NasreproError, UsageError
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
    #: seconds since the search began (earlier interrupted attempts included) when this answer was
    #: booked: evaluations *and* the method's own compute, so searches compare at equal wall time
    #: (NASBOT's protocol, fact sheet `nasbot.md`); None without a clock (library use, old records)
    elapsed_seconds: float | None = None

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


@dataclass(frozen=True)
class Ticket:
    """One architecture handed to `Evaluator.submit`; a later `wait_any` returns its `Query`.

    `number` counts the evaluator's submissions from 0; `key` is the architecture's cache key,
    i.e. the `arch` of the query that answers it.
    """

    number: int
    key: str


@dataclass
class _Flight:
    """One unique architecture submitted and not yet booked, with every ticket waiting for it."""

    arch: Arch  # canonical
    tickets: list[Ticket]
    #: the executor's handle; None = evaluated in this process when `wait_any` reaches it
    handle: Any = None
    #: answered by the checkpoint of an interrupted run, not evaluated again
    replayed: bool = False


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
        "_replay_in_flight",
        "_flights",
        "_ready",
        "_tickets",
        "executor",
        "listeners",
        "clock",
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
        #: what that run had in flight when its checkpoint was written (`submit` may ask for these)
        self._replay_in_flight: frozenset[str] = frozenset()
        #: submitted, not yet booked, in submission order (`submit` / `wait_any`)
        self._flights: dict[str, _Flight] = {}
        #: answered tickets not yet returned by `wait_any` (duplicates of other tickets)
        self._ready: deque[tuple[Ticket, Query]] = deque()
        self._tickets = 0
        #: where `submit` starts evaluations (subclasses that have one set it); None = here
        self.executor: Executor | None = None
        self.listeners = tuple(listeners)
        #: seconds since the search began, stamped on every booked query (the runner sets it)
        self.clock: Callable[[], float] | None = None

    # --- budget --------------------------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        return len(self.history)

    @property
    def remaining(self) -> float:
        """Unique queries still allowed: the budget less those booked and those in flight."""
        return math.inf if self.budget is None else self.budget - self.n_queries - len(self._flights)

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
            self._count_duplicate()
            return self._cache[key]
        self._refuse_in_flight(key)
        self._admit()
        if key in self._replay:
            return self._replay_one(key)
        if self._replay:
            raise NasreproError(
                f"resumed search diverged: query {len(self.history)} is {key}, but the checkpoint recorded "
                f"{self._next_replayed().arch}; the method is not deterministic"
            )
        return self._evaluate_here(key, self.space.canonical(arch))

    def _count_duplicate(self) -> None:
        self.duplicates += 1
        self._duplicate_streak += 1
        if self._duplicate_streak > MAX_DUPLICATE_STREAK:
            raise NasreproError(
                f"{MAX_DUPLICATE_STREAK} duplicate queries in a row: the method is stuck or the "
                f"space ({self.space.size()} architectures) is exhausted"
            )

    def _admit(self) -> None:
        """A new unique query is about to start: check the budget, end the duplicate streak."""
        if self.exhausted:
            raise BudgetExhausted(f"budget of {self.budget} unique queries is spent")
        self._duplicate_streak = 0

    def _refuse_in_flight(self, key: str) -> None:
        if key in self._flights:
            raise UsageError(f"{key} is in flight (submitted); collect its answer with wait_any()")

    def _next_replayed(self) -> Query:
        """The earliest answer of the checkpoint not yet replayed."""
        return min(self._replay.values(), key=lambda q: q.index)

    def _evaluate_here(self, key: str, arch: Arch) -> Query:
        """Evaluate the canonical `arch` in this process and book it (a failure is booked too)."""
        start = time.perf_counter()
        try:
            outcome, status, reason = self._evaluate(arch), "ok", ""
        except EvaluationFailed as failure:
            outcome, status, reason = None, "failed", str(failure)
        return self._book(key, outcome, status, reason, time.perf_counter() - start)

    def _book_result(self, key: str, result: Any, wall: float) -> Query:
        """Book what an executor returned for `key`: its result, or the `Failure` it raised."""
        from nasrepro.harness.executors import is_failure

        if is_failure(result):
            return self._book(key, None, "failed", f"{result.error_type}: {result.message}", wall)
        return self._book(key, self._outcome_of(result), "ok", "", wall)

    def _outcome_of(self, result: Any) -> Outcome:
        """The `Outcome` in what this evaluator's executor job (`_start`) returned."""
        raise NotImplementedError(f"{type(self).__name__} runs no executor jobs")

    # --- asynchronous queries ------------------------------------------------------------------
    @property
    def workers(self) -> int:
        """How many architectures an asynchronous search should keep in flight (`submit`)."""
        return 1

    @property
    def in_flight(self) -> list[str]:
        """Keys of the architectures submitted and not yet answered, in submission order."""
        return list(self._flights)

    def submit(self, arch: Arch) -> Ticket:
        """Start evaluating `arch`; `wait_any` later returns its `Query`.

        An answered (or isomorphic) architecture is a free duplicate, as with `query`, and so is
        one already in flight: its ticket is answered by that evaluation. A new architecture counts
        against the budget from now on (`remaining`), so `BudgetExhausted` is raised here, not
        when it is answered. Where it runs is the evaluator's: on its executor when it has one,
        else in this process when `wait_any` reaches it (in submission order).
        """
        key = self.space.key(arch)
        if key in self._cache:
            self._count_duplicate()
            ticket = self._ticket(key)
            self._ready.append((ticket, self._cache[key]))
            return ticket
        if key in self._flights:
            self._count_duplicate()
            ticket = self._ticket(key)
            self._flights[key].tickets.append(ticket)
            return ticket
        self._admit()
        canonical = self.space.canonical(arch)
        if key in self._replay:
            flight = _Flight(canonical, [], replayed=True)
        elif self._replay and key not in self._replay_in_flight:
            raise NasreproError(
                f"resumed search diverged: it submitted {key}, which the checkpoint neither answered nor "
                "had in flight; the method is not deterministic"
            )
        else:  # new, or in flight when the interrupted run stopped: evaluated (again) now
            flight = _Flight(canonical, [], handle=self._start(canonical))
        ticket = self._ticket(key)
        flight.tickets.append(ticket)
        self._flights[key] = flight
        return ticket

    def _ticket(self, key: str) -> Ticket:
        ticket = Ticket(self._tickets, key)
        self._tickets += 1
        return ticket

    def _start(self, arch: Arch) -> Any:
        """Start evaluating the canonical `arch` elsewhere and return the executor's handle, or
        None to evaluate it in this process when `wait_any` reaches it (the default)."""
        return None

    def wait_any(self) -> Query:
        """The next answer among the submitted architectures, booked now (completion order).

        Answers to duplicate tickets come first, then the next evaluation to finish: on an executor
        whichever it reports first, in this process the earliest submitted. When resuming, the
        interrupted run's answers come back in the order it received them, without evaluating
        anything, and the architectures it had in flight are evaluated once more.
        """
        if self._ready:
            return self._ready.popleft()[1]
        if not self._flights:
            raise UsageError("wait_any() with nothing in flight: submit an architecture first")
        if self._replay:
            key = self._next_replayed().arch
            if key not in self._flights:
                raise NasreproError(
                    f"resumed search diverged: the checkpoint's query {len(self.history)} is {key}, "
                    "which the method has not submitted; the method is not deterministic"
                )
            return self._answer(self._flights.pop(key), self._replay_one(key))
        here = [key for key, flight in self._flights.items() if flight.handle is None]
        if here:
            flight = self._flights.pop(here[0])
            return self._answer(flight, self._evaluate_here(here[0], flight.arch))
        assert self.executor is not None  # only an executor hands out handles (`_start`)
        start = time.perf_counter()
        keys = {id(flight.handle): key for key, flight in self._flights.items()}
        handle, result = self.executor.wait_any([flight.handle for flight in self._flights.values()])
        key = keys[id(handle)]
        flight = self._flights.pop(key)  # no longer in flight when the listeners see the answer
        return self._answer(flight, self._book_result(key, result, time.perf_counter() - start))

    def _answer(self, flight: _Flight, query: Query) -> Query:
        """`query` for the flight's first ticket; its duplicate tickets are answered next."""
        self._ready.extend((ticket, query) for ticket in flight.tickets[1:])
        return query

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
            elapsed_seconds=None if self.clock is None else round(self.clock(), 6),
        )
        self.history.append(query)
        self._cache[key] = query
        for listener in self.listeners:
            listener(self, query)
        return query

    def resume_from(self, queries: list[Query], in_flight: Iterable[str] = ()) -> None:
        """Answer these queries from the checkpoint when the replayed method asks for them again.

        `in_flight` are the keys the interrupted run had submitted but not received: while the
        replay lasts, the method may submit only these (they are evaluated again, once) or
        architectures the checkpoint answered; anything else means it has diverged.
        """
        self._replay = {q.arch: q for q in queries}
        self._replay_in_flight = frozenset(in_flight)

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
        return {
            "history": [q.to_dict() for q in self.history],
            "duplicates": self.duplicates,
            "in_flight": self.in_flight,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [Query(**q) for q in state["history"]]
        self._cache = {q.arch: q for q in self.history}
        self.duplicates = state.get("duplicates", 0)
