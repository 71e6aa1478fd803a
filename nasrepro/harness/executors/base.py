"""The executor contract: run one picklable function on many items, results in input order.

Searches that can propose several architectures at once (NAO's batches, the baselines'
populations) hand the batch to an executor (`map`). An executor never decides *what* is computed --
every evaluation seeds itself from its own arguments -- so which executor ran a batch, and in what
order its items finished, cannot change a result (DESIGN.md, "Where its users outgrow one machine").

Asynchronous searches (NASBOT's scheduler, Kandasamy et al. 2018: a new network is proposed as
soon as *one* worker is free; fact sheet `nasbot.md` §4.1, code ``mode='asy'``) instead `submit`
items one at a time and `wait_any` for the next to finish. There the completion order is the
executor's: submission order for the sequential executors, the order the workers finish on Ray.

An exception inside one item must not lose the batch: it comes back as a `Failure` in that item's
place, and the caller records that evaluation as failed and goes on.
"""

from __future__ import annotations

import os
import traceback as tb
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from nasrepro.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")

#: Intra-op threads one evaluation may use. Executors set it (and torch's thread count) around every
#: item; `jobs.train_evaluation` also honours it when it runs under another launcher.
THREADS_ENV = "NASREPRO_THREADS"


@dataclass(frozen=True)
class Failure:
    """What an item that raised returns instead of its result.

    `error_type` is the exception's class name (e.g. ``"EvaluationFailed"``), `message` its text on
    one line. Failures compare equal by those two fields, so the same failing input gives equal
    failures under every executor; `traceback` is kept for debugging only. A plain picklable value,
    not an exception, so that it travels back from a worker like any other result.
    """

    error_type: str
    message: str
    traceback: str = field(default="", compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException, with_traceback: bool = True) -> Failure:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = tb.format_exception(exc) if with_traceback else []
        return cls(type(exc).__name__, " | ".join(lines), "".join(text))

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


@dataclass(eq=False)
class Handle:
    """One item submitted to an executor (`Executor.submit`), until `wait_any` returns it.

    `number` counts the executor's submissions from 0 (the sequential executors complete items in
    this order). What else a handle holds is the executor's business: the function and item a
    sequential executor runs when waited for, a Ray object reference, or an answer known at
    submission (an item that could not even be sent is a `Failure` at once).
    """

    number: int
    fn: Callable[[Any], Any] | None = field(default=None, repr=False)
    item: Any = field(default=None, repr=False)
    ref: Any = field(default=None, repr=False)
    #: set when the answer is known before anyone waits (see `resolved`)
    answer: Any = field(default=None, repr=False)
    resolved: bool = False
    #: True once `wait_any` returned this handle: it cannot be waited for again
    done: bool = False


def is_failure(result: object) -> bool:
    """Whether `result` (an element of `Executor.map`'s answer) is a failed item."""
    return isinstance(result, Failure)


@contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run the body with torch limited to `threads` intra-op threads, then restore the old limit.

    Two evaluations on two cores that each spawn one thread per core fight over the cores and both
    slow down; the thread count also changes floating-point summation order, so every executor
    applies the same limit for results to be identical across executors.
    """
    if threads is None:
        yield
        return
    import torch

    previous_threads, previous_env = torch.get_num_threads(), os.environ.get(THREADS_ENV)
    torch.set_num_threads(threads)
    os.environ[THREADS_ENV] = str(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        if previous_env is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = previous_env


def run_item(fn: Callable[[T], R], item: T, threads: int | None) -> R | Failure:
    """`fn(item)` under the thread limit; an `Exception` becomes a `Failure` (Ctrl-C still stops)."""
    try:
        with thread_limit(threads):
            return fn(item)
    except Exception as exc:
        return Failure.from_exception(exc)


class Executor(ABC):
    """Runs `fn` on every item of a batch and returns the results in input order.

    `workers` is the number of items in flight at once; each item reserves `cpus_per_task` CPUs
    (and as many intra-op threads, at least one) and `gpus_per_task` GPUs. Use as a context manager
    (or call `close()`) so that resources the executor started are released.
    """

    name: str = ""

    def __init__(self, workers: int = 1, cpus_per_task: float = 1, gpus_per_task: float = 0) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise UsageError(f"--workers must be a positive integer, got {workers!r}")
        if cpus_per_task <= 0:
            raise UsageError(f"cpus_per_task must be positive, got {cpus_per_task!r}")
        if gpus_per_task < 0:
            raise UsageError(f"gpus_per_task must be zero or positive, got {gpus_per_task!r}")
        self.workers = workers
        self.cpus_per_task = float(cpus_per_task)
        self.gpus_per_task = float(gpus_per_task)
        self._submitted = 0  # handles numbered in submission order (`submit`)

    @property
    def threads(self) -> int:
        """Intra-op threads of one item: its CPU reservation, rounded down, at least one."""
        return max(1, int(self.cpus_per_task))

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R | Failure]:
        """`[fn(item) for item in items]`, with a `Failure` in place of every item that raised.

        `fn` must be a picklable top-level function (or a `functools.partial` of one) so that any
        executor can ship it to another process; use a partial to fix the arguments shared by the
        batch, e.g. ``partial(train_evaluation, task, None, preset=task.preset("cpu"), seed=0, data_dir=root)``
        over architecture strings.
        """

    # --- one item at a time (asynchronous schedulers) -------------------------------------------
    def submit(self, fn: Callable[[T], R], item: T) -> Handle:
        """Start `fn(item)` (or queue it) and return its handle at once; `wait_any` gives its result.

        The same picklability rules as `map` hold. This default is sequential and lazy: nothing runs
        until `wait_any`, which runs the earliest submitted of the handles it is given through `map`,
        so any executor that implements `map` also schedules asynchronously, with a deterministic
        completion order (submission order). Parallel executors override both methods.
        """
        return Handle(self._next_handle_number(), fn=fn, item=item)

    def wait_any(self, handles: Sequence[Handle]) -> tuple[Handle, Any]:
        """Block until one of `handles` has finished; return it with its result (or `Failure`).

        Each handle is returned exactly once; waiting again for a returned handle is a
        `UsageError`. Which handle comes back is the executor's completion order (see `submit`).
        """
        handle = self._first_resolved(handles)
        if handle is None:
            handle = min(handles, key=lambda h: h.number)
            handle.answer, handle.resolved = self.map(handle.fn, [handle.item])[0], True
        return self._deliver(handle)

    def _next_handle_number(self) -> int:
        number, self._submitted = self._submitted, self._submitted + 1
        return number

    @staticmethod
    def _first_resolved(handles: Sequence[Handle]) -> Handle | None:
        """Check `handles` and return the earliest one whose answer is already known, if any."""
        if not handles:
            raise UsageError("wait_any needs at least one submitted handle")
        for handle in handles:
            if not isinstance(handle, Handle) or handle.done:
                raise UsageError(f"{handle!r} is not a pending handle of this executor")
        ready = [h for h in handles if h.resolved]
        return min(ready, key=lambda h: h.number) if ready else None

    @staticmethod
    def _deliver(handle: Handle) -> tuple[Handle, Any]:
        answer = handle.answer
        handle.done, handle.answer, handle.fn, handle.item, handle.ref = True, None, None, None, None
        return handle, answer

    def close(self) -> None:  # noqa: B027 -- optional hook: most executors hold nothing
        """Release what this executor started (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for run records."""
        return {
            "name": self.name,
            "workers": self.workers,
            "cpus_per_task": self.cpus_per_task,
            "gpus_per_task": self.gpus_per_task,
        }
