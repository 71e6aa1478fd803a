"""Each item is a Ray task: evaluations spread over the cores of this machine or of a cluster.

Locally, `ray.init()` starts an embedded cluster with `workers` task slots that lives as long as the
executor. To scale out, start a cluster and point the run at it -- nothing else changes:

    ray start --head --port 6379 --num-cpus 8          # on the head node
    ray start --address HEAD_IP:6379                   # on every other node
    RAY_ADDRESS=HEAD_IP:6379 nasrepro search --method evolution --task cora --executor ray --workers 32

Every node needs the same nasrepro installation and the datasets at the path the run passes
(`--data-dir`, or `NASREPRO_DATA` in the environment `ray start` was given).

Ray is an optional dependency (``pip install 'nasrepro[ray]'``), imported only when this executor
is built, so the rest of the package never pays for it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.executors.base import Executor, Failure, Handle, R, T, run_item

INSTALL_HINT = "install ray: pip install 'nasrepro[ray]'"
#: Ray's switch that makes a node advertise the loopback address instead of a routable one.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
QUIET = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}


def import_ray() -> Any:
    """The `ray` module, or a one-line `UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


@contextmanager
def embedded_environment() -> Iterator[None]:
    """Environment for an embedded single-machine cluster: loopback only, no usage reporting.

    By default a Ray node advertises this machine's routable address and every component talks to
    it; a cluster that never leaves the machine needs none of that, so the node is told to use the
    loopback address (Ray's own setting for single-machine clusters on macOS and Windows). Ray reads
    it when imported and its processes inherit it at start, so it is set around import and
    `ray.init` only. Usage statistics reporting is turned off unless the user chose otherwise.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    previous = os.environ.get(LOOPBACK_ENV)
    os.environ[LOOPBACK_ENV] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = previous


def _use_loopback(ray: Any) -> None:
    """Apply the loopback setting even if `ray` was imported before `embedded_environment` set it."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False


class RayExecutor(Executor):
    """Runs each item as a Ray task reserving `cpus_per_task` CPUs and `gpus_per_task` GPUs.

    Without `RAY_ADDRESS` it starts an embedded cluster of ``ceil(workers * cpus_per_task)`` CPUs on
    the loopback interface (no dashboard, worker output not forwarded) and shuts it down on
    `close()`; with `RAY_ADDRESS` it joins that cluster and only disconnects on `close()`. If this
    process is already connected to Ray, that connection is used and left open. At most `workers`
    items are in flight at once. Items are never retried: a crashed worker is a `Failure` like an
    exception, since a deterministic evaluation that crashed once would crash again.

    `submit` starts a Ray task at once (more than `workers` of them wait in Ray's queue) and
    `wait_any` returns whichever of the given tasks Ray reports finished first (`ray.wait` with
    ``num_returns=1``): the real completion order, which varies from run to run.
    """

    name = "ray"

    def __init__(self, workers: int = 1, cpus_per_task: float = 1, gpus_per_task: float = 0) -> None:
        super().__init__(workers, cpus_per_task, gpus_per_task)
        self.address = os.environ.get("RAY_ADDRESS") or None
        self._owns_connection = False
        with embedded_environment() if self.address is None else nullcontext():
            self._ray = ray = import_ray()
            if not ray.is_initialized():
                if self.address is None:
                    _use_loopback(ray)
                    ray.init(address="local", num_cpus=math.ceil(workers * self.cpus_per_task), **QUIET)
                else:
                    ray.init(address=self.address, **QUIET)
                self._owns_connection = True
        self._check_resources()
        self._remote = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=0)(
            run_item
        )
        #: functions already in Ray's object store, by id (the function is kept so its id stays its
        #: own): an asynchronous search submits the same job for every architecture
        self._functions: dict[int, tuple[Any, Any]] = {}

    def _check_resources(self) -> None:
        """Refuse tasks no node can run: Ray would otherwise queue them forever."""
        available = self._ray.cluster_resources()
        for resource, need in (("CPU", self.cpus_per_task), ("GPU", self.gpus_per_task)):
            have = float(available.get(resource, 0))
            if need > 0 and have < need:
                where = self.address or "the embedded cluster"
                self.close()
                raise UsageError(
                    f"each task asks for {need:g} {resource}(s) but {where} has {have:g}; "
                    f"lower the per-task {resource} request or add nodes with `ray start`"
                )

    def _put(self, fn: Callable[..., Any]) -> Any:
        """`fn` in the object store, or a `UsageError` saying it must be picklable."""
        try:
            return self._ray.put(fn)
        except Exception as exc:
            raise UsageError(
                f"cannot send {fn!r} to Ray workers ({type(exc).__name__}: {exc}); "
                "pass a picklable top-level function"
            ) from None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R | Failure]:
        ray = self._ray
        items = list(items)
        fn_ref = self._put(fn)
        results: list[Any] = [None] * len(items)
        pending: dict[Any, int] = {}
        submitted = 0
        try:
            while submitted < len(items) or pending:
                while submitted < len(items) and len(pending) < self.workers:
                    try:
                        pending[self._remote.remote(fn_ref, items[submitted], self.threads)] = submitted
                    except Exception as exc:  # the item itself could not be serialised
                        results[submitted] = Failure.from_exception(exc)
                    submitted += 1
                if not pending:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    results[pending.pop(ref)] = self._fetch(ref)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return results

    def submit(self, fn: Callable[[T], R], item: T) -> Handle:
        stored = self._functions.get(id(fn))
        if stored is None or stored[0] is not fn:
            stored = self._functions[id(fn)] = (fn, self._put(fn))
        handle = Handle(self._next_handle_number())
        try:
            handle.ref = self._remote.remote(stored[1], item, self.threads)
        except Exception as exc:  # the item itself could not be serialised: answered at once
            handle.answer, handle.resolved = Failure.from_exception(exc), True
        return handle

    def wait_any(self, handles: Sequence[Handle]) -> tuple[Handle, Any]:
        handle = self._first_resolved(handles)
        if handle is None:
            by_ref = {h.ref: h for h in handles}
            ready, _ = self._ray.wait(list(by_ref), num_returns=1)
            handle = by_ref[ready[0]]
            handle.answer, handle.resolved = self._fetch(handle.ref), True
        return self._deliver(handle)

    def _fetch(self, ref: Any) -> Any:
        """The task's value; a task that died or could not start becomes a `Failure`."""
        errors = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except errors.RayTaskError as exc:  # raised outside `run_item`'s guard, e.g. while unpickling
            cause = getattr(exc, "cause", None)
            return Failure.from_exception(cause if isinstance(cause, BaseException) else exc)
        except errors.RayError as exc:  # worker crashed, was killed (e.g. out of memory), cancelled
            return Failure.from_exception(exc)

    def close(self) -> None:
        if self._owns_connection:
            self._owns_connection = False
            self._ray.shutdown()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cluster": self.address or "embedded"}
