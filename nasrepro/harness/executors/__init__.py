"""Executors: evaluate many architectures at once (DESIGN.md, "Where its users outgrow one machine").

    from functools import partial
    from nasrepro.harness.executors import get_executor, is_failure
    from nasrepro.harness.executors.jobs import train_evaluation

    job = partial(train_evaluation, task, None, preset=task.preset("cpu"), seed=0, data_dir=root)
    with get_executor("ray", workers=2) as executor:
        results = executor.map(job, ["gcn", "0,1,2,3:gcn,gat,fc,gin"])   # input order; Failure on error
        handles = [executor.submit(job, arch) for arch in ("gcn", "gat")]  # asynchronous schedulers:
        handle, result = executor.wait_any(handles)                        # whichever finishes first

`local` (the default) runs items one after another in this process; `ray` runs each item as a Ray
task on an embedded cluster, or on the cluster at `RAY_ADDRESS`.
"""

from __future__ import annotations

from nasrepro.harness.executors.base import THREADS_ENV, Executor, Failure, Handle, is_failure, run_item
from nasrepro.harness.executors.local import LocalExecutor
from nasrepro.harness.executors.ray_executor import RayExecutor
from nasrepro.registry import Registry

EXECUTORS: Registry[type[Executor]] = Registry("executor")
EXECUTORS.add(LocalExecutor.name, LocalExecutor)
EXECUTORS.add(RayExecutor.name, RayExecutor)


def get_executor(name: str, workers: int = 1, cpus_per_task: float = 1, gpus_per_task: float = 0) -> Executor:
    """A new executor registered as `name` (`local`, `ray`); an unknown name is a `UsageError`."""
    return EXECUTORS.get(name)(workers=workers, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)


def executor_names() -> list[str]:
    return EXECUTORS.names()


__all__ = [
    "EXECUTORS",
    "THREADS_ENV",
    "Executor",
    "Failure",
    "Handle",
    "LocalExecutor",
    "RayExecutor",
    "executor_names",
    "get_executor",
    "is_failure",
    "run_item",
]
