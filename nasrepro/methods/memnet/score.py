"""MemNet's memory model and ranking score (memnet.md Sec. 3.3-3.4; MemNet abstract and Sec. 3).

Memory of a candidate, measured on the real network (`nasrepro.harness.memory`, exact liveness
over the executed aten ops, batch 1 at the task's input size): W = weight elements (parameters and
buffers), I = peak live activation elements of one inference pass, total M = W + I, reported in
MemNAS MB (4 bytes per element / 1e6). [reconstruction] The prototype's `cal_in` counted block 1
only at 32x32 and excluded BN; the whole network's trace generalises it (memnet.md Sec. 5.2).

Score (`general.py` `score()`; [inference] lambda = k1):
    S(a | p) = lambda * (acc_a - acc_p) / acc_p
             + (1 - lambda) * (0.3 * (W_p - W_a) / W_p + 0.7 * (I_p - I_a) / I_p)
relative to the previous round's best p. The hard upper bound (MemNet abstract) is applied before
any ranking: a network with M > M_max is never trained or chosen (S = -inf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.memory import MB, MEMNAS_BYTES_PER_ELEMENT, PrototypeMemory
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task

W_SHARE, I_SHARE = 0.3, 0.7  # k3, k4 hard-coded in the prototype's score()


@dataclass(frozen=True)
class NetMemory(PrototypeMemory):
    """W and I of one network, in elements (the harness's MemNAS memory model, here measured by the
    exact trace), with the MB figures the search reports."""

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


#: (space name, number of classes, architecture key) -> memory; a network's memory depends on nothing
#: else, so seeds searched in one process share the traces
_CACHE: dict[tuple[str, int, str], NetMemory] = {}


def network_memory(space: Space, task: Task, arch: Any) -> NetMemory:
    """W and I of `arch`'s real network (`space.to_model`) on one example input of `task`."""
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


def check_lambda(lam: float) -> None:
    if not (isinstance(lam, (int, float)) and 0.0 <= lam <= 1.0):
        raise UsageError(f"memnet lambda must be in [0, 1], got {lam!r}")


def score(acc: float, mem: NetMemory, acc_prev: float, mem_prev: NetMemory, lam: float) -> float:
    """S of a candidate against the previous round's best (module docstring)."""
    gain = (acc - acc_prev) / max(abs(acc_prev), 1e-12)
    dw = (mem_prev.weight_elements - mem.weight_elements) / max(mem_prev.weight_elements, 1)
    di = (mem_prev.feature_elements - mem.feature_elements) / max(mem_prev.feature_elements, 1)
    return lam * gain + (1.0 - lam) * (W_SHARE * dw + I_SHARE * di)


def within_bound(mem: NetMemory, bound_mb: float | None) -> bool:
    """The hard upper bound: True iff M <= M_max (no bound: always)."""
    return bound_mb is None or mem.total_mb <= bound_mb


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
