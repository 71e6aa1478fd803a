"""Tasks by name. Each module registers its tasks with `TASKS` when imported."""

from __future__ import annotations

from collections.abc import Callable

from nasrepro.harness.task import Task
from nasrepro.registry import Registry

TASKS: Registry[Callable[[], Task]] = Registry("task")
_loaded = False
_MODULES = ("planetoid", "cifar10", "imagenet", "ptb", "nasbench_graph", "nasbench201")
#: Which module registers which task, so `get_task` imports only that module: a table search then
#: starts without importing Lightning, torchvision or PyG. A test checks it against the registry.
MODULE_OF = {
    "cora": "planetoid",
    "citeseer": "planetoid",
    "pubmed": "planetoid",
    "cifar10": "cifar10",
    "imagenet": "imagenet",
    "ptb": "ptb",
    **{
        f"nasbench-graph/{d}": "nasbench_graph"
        for d in ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
    },
    **{f"nasbench201/{d}": "nasbench201" for d in ("cifar10", "cifar100", "imagenet16-120")},
}


def _load() -> None:
    """Import every task module once so that its tasks are registered."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in _MODULES:
        importlib.import_module(f"nasrepro.tasks.{module}")


_instances: dict[str, Task] = {}


def get_task(name: str) -> Task:
    """The task registered as `name` (one shared instance per process)."""
    if name not in _instances and name not in TASKS:
        if name in MODULE_OF:
            import importlib

            importlib.import_module(f"nasrepro.tasks.{MODULE_OF[name]}")
        else:
            _load()
    if name not in _instances:
        _instances[name] = TASKS.get(name)()
    return _instances[name]


def task_names() -> list[str]:
    _load()
    return TASKS.names()
