"""Tasks by name. Each module registers its tasks with `TASKS` when imported."""

from __future__ import annotations

from collections.abc import Callable

from nasrepro.harness.task import Task
from nasrepro.registry import Registry

TASKS: Registry[Callable[[], Task]] = Registry("task")
_loaded = False


def _load() -> None:
    """Import every task module once so that its tasks are registered."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in ("planetoid", "cifar10", "imagenet", "ptb", "nasbench_graph", "nasbench201"):
        importlib.import_module(f"nasrepro.tasks.{module}")


_instances: dict[str, Task] = {}


def get_task(name: str) -> Task:
    """The task registered as `name` (one shared instance per process)."""
    _load()
    if name not in _instances:
        _instances[name] = TASKS.get(name)()
    return _instances[name]


def task_names() -> list[str]:
    _load()
    return TASKS.names()
