"""Name -> object registries, so tasks, spaces and methods are found by name, never by if-chains.

A registry fills itself on first lookup from two sources, so no hand-kept list of modules exists
anywhere (issue 11, item 4):

* the project's own modules: every module or subpackage of `package` (found with
  `pkgutil.iter_modules`), which registers its objects when imported;
* Python entry points of `group` (e.g. ``nasrepro.methods``), so that a separately installed
  distribution adds a method, task or space without editing this repository. An entry point names
  either a module that registers its objects on import (``toy = toy_plugin``) or one object that is
  registered under the entry point's name (``toy = toy_plugin:ToySpace``).

Lookups stay cheap by a naming convention: a name's stem (``nasbench-graph/cora`` ->
``nasbench_graph``) is tried as a module first, so a table search imports only its own module and
never the heavy ones (Lightning, torchvision, PyG) that the live tasks need. Only a name that
is not found that way (or a request for every name) imports all modules.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from nasrepro.errors import NasreproError, UsageError

T = TypeVar("T")


class EntryPointError(NasreproError):
    """An installed distribution's entry point cannot be loaded (a broken or outdated plugin)."""


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


class Registry(Generic[T]):
    """A named collection of factories; unknown names raise a `UsageError` with close matches.

    `package` (a dotted module name) and `group` (an entry-point group) are where the registry
    discovers its entries; both are optional, and a registry without them holds only what is
    registered explicitly.
    """

    def __init__(self, kind: str, *, package: str | None = None, group: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._package = package
        self._group = group
        self._lock = threading.RLock()
        self._modules: tuple[str, ...] | None = None
        self._imported: set[str] = set()
        self._own_loaded = False
        self._loaded_eps: set[tuple[str, str]] = set()

    def discover_from(self, *, package: str | None = None, group: str | None = None) -> None:
        """Set the sources of a registry constructed elsewhere (e.g. `METHODS` lives in `harness`,
        which must not name the `methods` package)."""
        with self._lock:
            if package is not None:
                self._package, self._modules, self._own_loaded = package, None, False
            if group is not None:
                self._group = group

    # --- registration ---------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    # --- lookup ---------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        if not self._find(name):
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        self.load_all()
        return sorted(self._entries)

    def load_all(self) -> None:
        """Import every own module and load every entry point not loaded yet."""
        with self._lock:
            self._load_own()
            self._load_entry_points()

    # --- discovery ------------------------------------------------------------------------------
    def _find(self, name: str) -> bool:
        """Whether `name` is registered, discovering as little as possible to find out."""
        if name in self._entries:
            return True
        with self._lock:
            stem = name.split("/", 1)[0].replace("-", "_")
            if stem in self._own_modules():
                self._import(stem)
                if name in self._entries:
                    return True
            self._load_entry_points(only=name)
            if name in self._entries:
                return True
            self._load_own()
            # a miss rescans the entry points, so a distribution installed since the last scan counts
            self._load_entry_points()
            return name in self._entries

    def _own_modules(self) -> tuple[str, ...]:
        if self._package is None:
            return ()
        if self._modules is None:
            package = importlib.import_module(self._package)
            self._modules = tuple(
                sorted(
                    info.name
                    for info in pkgutil.iter_modules(package.__path__)
                    if not info.name.startswith("_")
                )
            )
        return self._modules

    def _import(self, module: str) -> None:
        if module not in self._imported:
            importlib.import_module(f"{self._package}.{module}")
            self._imported.add(module)

    def _load_own(self) -> None:
        # flagged first: a module that looks a name up while it is being imported must not recurse
        if self._own_loaded:
            return
        self._own_loaded = True
        try:
            for module in self._own_modules():
                self._import(module)
        except BaseException:
            self._own_loaded = False
            raise

    def _load_entry_points(self, only: str | None = None) -> None:
        if self._group is None:
            return
        for ep in entry_points(group=self._group):
            key = (ep.name, ep.value)
            if key in self._loaded_eps or (only is not None and ep.name != only):
                continue
            self._load_entry_point(ep)
            self._loaded_eps.add(key)  # only once loaded: a broken plugin fails every lookup alike

    def _load_entry_point(self, ep: EntryPoint) -> None:
        where = (
            f"{self.kind} entry point {ep.name!r} = {ep.value!r} (group {self._group}) of {_distribution(ep)}"
        )
        try:
            obj = ep.load()
        except Exception as exc:
            raise EntryPointError(
                f"{where} failed to load ({type(exc).__name__}: {exc}); fix or uninstall that distribution"
            ) from exc
        if ep.attr is None or ep.name in self._entries:
            return  # a module entry point registers its own objects on import
        declared = getattr(obj, "name", None)
        if isinstance(declared, str) and declared and declared != ep.name:
            raise EntryPointError(
                f"{where} names an object called {declared!r}; rename one to match the other"
            )
        self.add(ep.name, obj)
