"""Tasks by name. Each module registers its tasks with `TASKS` when imported.

`TASKS` discovers this package's modules and the ``nasrepro.tasks`` entry points on first lookup
(`nasrepro.registry`). A name's stem picks its module first (``nasbench-graph/cora`` ->
`tasks.nasbench_graph`), so a table search starts without importing Lightning, torchvision or PyG;
a test checks that for every registered table task.
"""

from __future__ import annotations

from collections.abc import Callable

from nasrepro.harness.task import Task
from nasrepro.registry import Registry

TASKS: Registry[Callable[[], Task]] = Registry("task", package=__name__, group="nasrepro.tasks")

_instances: dict[str, Task] = {}


def _load() -> None:
    """Register every task now (tests add their own tasks beside the real ones)."""
    TASKS.load_all()


def get_task(name: str) -> Task:
    """The task registered as `name` (one shared instance per process)."""
    if name not in _instances:
        _instances[name] = TASKS.get(name)()
    return _instances[name]


def task_names() -> list[str]:
    return TASKS.names()
