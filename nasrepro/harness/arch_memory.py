"""The memory M = W + I of an architecture's real network and the hard upper bound on it.

MemNet/MemNAS (Liu, Wu, Ma & Seok, arXiv 1907.09569, abstract and Introduction) bounds inference
memory = parameters + intermediate feature maps; memnet.md Sec. 5.2-5.3 reconstructs it as
M(a) = W(a) + I(a) with a hard bound M(a) <= M_max. It lives here, below the methods, because more
than one method searches under it: MemNet, and the random-search and regularized-evolution
baselines run under MemNet's bound so that the comparison holds the constraint fixed (issue 12,
item 4; Lindauer & Hutter 2020, best practice 8: baselines under the same conditions).

Definition (`network_memory`): the network is `space.to_model` of the canonical architecture for
`task`; W = parameter and buffer elements (BN included: the harness's weights definition), I = the
peak live activation elements of one inference pass at batch 1 on the task's example input (32x32
RGB where the task has none), from the liveness trace of `nasrepro.harness.memory.trace_memory`.
M is reported in MemNAS MB: elements x 4 bytes / 1e6 (MemNAS's tables count every element at fp32).

Importing this module imports torch; table searches without a bound must import it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.memory import MB, MEMNAS_BYTES_PER_ELEMENT, PrototypeMemory
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task


@dataclass(frozen=True)
class NetMemory(PrototypeMemory):
    """W and I of one network in elements (the MemNAS memory model, here measured by the exact
    trace), with the MB figures searches report."""

    @property
    def total_mb(self) -> float:
        return self.memnas_mb

    def to_dict(self) -> dict[str, float]:
        return {
            "weight_elements": self.weight_elements,
            "feature_elements": self.feature_elements,
            "weight_mb": self.weight_elements * MEMNAS_BYTES_PER_ELEMENT / MB,
            "feature_mb": self.feature_elements * MEMNAS_BYTES_PER_ELEMENT / MB,
            "total_mb": self.total_mb,
        }


#: (space name, number of classes, canonical architecture key) -> memory. A network's memory depends
#: on nothing else, so every search in one process (seeds, methods) shares the traces: 20 seeds of
#: a bounded search trace each canonical NB-201 cell at most once (~25 ms each on one CPU thread).
_CACHE: dict[tuple[str, int, str], NetMemory] = {}


def network_memory(space: Space, task: Task, arch: Any) -> NetMemory:
    """W and I of `arch`'s real network (`space.to_model` of its canonical form) on one example
    input of `task` (module docstring)."""
    import torch

    from nasrepro.harness.memory import trace_memory

    classes = int(getattr(task, "num_classes", 10))
    key = (space.name, classes, space.key(arch))
    if key not in _CACHE:
        model = space.to_model(space.canonical(arch), task)
        try:
            inputs = task.example_input(1)
        except NotImplementedError:
            inputs = (torch.zeros(1, 3, 32, 32),)
        peak = trace_memory(model, tuple(inputs), training=False).peak_elements
        weights = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
        _CACHE[key] = NetMemory(weights, peak)
    return _CACHE[key]


def within_bound(mem: PrototypeMemory, bound_mb: float | None) -> bool:
    """The hard upper bound: True iff M <= M_max (no bound: always)."""
    return bound_mb is None or mem.memnas_mb <= bound_mb


def check_bound(bound_mb: Any, who: str) -> None:
    """A bound is None (unbounded) or a positive number of MemNAS MB; anything else is a usage error."""
    if bound_mb is not None and (
        isinstance(bound_mb, bool) or not isinstance(bound_mb, (int, float)) or not bound_mb > 0
    ):
        raise UsageError(f"{who} memory_bound_mb must be a positive number of MB, got {bound_mb!r}")


def require_model_view(space: Space, who: str) -> None:
    """Memory is measured on real networks: a space that builds none cannot be bounded."""
    if "model" not in space.views():
        raise UsageError(
            f"{who} memory_bound_mb measures memory on real networks, and space {space.name!r} builds none"
        )
