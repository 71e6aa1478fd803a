"""The default executor: one item after another, in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nasrepro.errors import UsageError
from nasrepro.harness.executors.base import Executor, Failure, R, T, run_item


class LocalExecutor(Executor):
    """Sequential and in-process: no pickling, no processes, deterministic, nothing to set up.

    Each item runs under the same thread limit a Ray task would get (`cpus_per_task` threads), so a
    batch gives bit-identical results under both executors; pass ``cpus_per_task=os.cpu_count()``
    to let a lone evaluation use every core instead.

    `submit` only queues an item; `wait_any` runs the earliest submitted of the handles it is given
    and returns it (the contract's default), so an asynchronous search completes its evaluations in
    submission order and is as deterministic here as a sequential one.
    """

    name = "local"

    def __init__(self, workers: int = 1, cpus_per_task: float = 1, gpus_per_task: float = 0) -> None:
        super().__init__(workers, cpus_per_task, gpus_per_task)
        if workers != 1:
            raise UsageError(
                f"the local executor runs one evaluation at a time, got --workers {workers}; "
                "use --executor ray to run several at once"
            )

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R | Failure]:
        return [run_item(fn, item, self.threads) for item in items]
