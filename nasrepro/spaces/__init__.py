"""Search spaces shared by several methods, by name. Each module registers its spaces here."""

from __future__ import annotations

from collections.abc import Callable

from nasrepro.harness.space import Space
from nasrepro.registry import Registry

SPACES: Registry[Callable[..., Space]] = Registry("space")
_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in ("nasbench_graph", "nasbench201", "graphnas"):
        importlib.import_module(f"nasrepro.spaces.{module}")


def get_space(name: str, **kwargs) -> Space:
    """A new instance of the space registered as `name`."""
    _load()
    return SPACES.get(name)(**kwargs)


def space_names() -> list[str]:
    _load()
    return SPACES.names()
