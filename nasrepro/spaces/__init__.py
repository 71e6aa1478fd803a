"""Search spaces shared by several methods, by name. Each module registers its spaces here.

`SPACES` discovers this package's modules and the ``nasrepro.spaces`` entry points on first lookup
(`nasrepro.registry`); `get_space("nasbench-graph")` imports only `spaces.nasbench_graph`.
"""

from __future__ import annotations

from collections.abc import Callable

from nasrepro.harness.space import Space
from nasrepro.registry import Registry

SPACES: Registry[Callable[..., Space]] = Registry("space", package=__name__, group="nasrepro.spaces")


def get_space(name: str, **kwargs) -> Space:
    """A new instance of the space registered as `name`."""
    return SPACES.get(name)(**kwargs)


def space_names() -> list[str]:
    return SPACES.names()
