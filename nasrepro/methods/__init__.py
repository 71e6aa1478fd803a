"""NAS methods by name: the baselines and one subpackage per paper, each registered on import.

The registry (`METHODS`, defined in `harness` so that the contract owns it) discovers every
subpackage here and every ``nasrepro.methods`` entry point on first lookup; a new paper's package
registers itself and needs no line in this file.
"""

from __future__ import annotations

from nasrepro.harness.method import METHODS, Method

METHODS.discover_from(package=__name__, group="nasrepro.methods")


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


def method_names() -> list[str]:
    return METHODS.names()
