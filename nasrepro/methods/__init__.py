"""NAS methods by name: the baselines and one subpackage per paper, each registered on import."""

from __future__ import annotations

import importlib

from nasrepro.harness.method import METHODS, Method

#: subpackages that register methods; a paper's package joins this list when it lands
_MODULES = ("baselines", "proxylessnas", "agnn")
_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _MODULES:
            importlib.import_module(f"nasrepro.methods.{module}")


def get_method(name: str) -> type[Method]:
    _load()
    return METHODS.get(name)


def method_names() -> list[str]:
    _load()
    return METHODS.names()
