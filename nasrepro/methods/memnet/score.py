"""MemNet's memory model and ranking score (memnet.md Sec. 3.3-3.4; MemNet abstract and Sec. 3).

Memory of a candidate, measured on the real network (`nasrepro.harness.arch_memory`, exact liveness
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

from nasrepro.errors import UsageError
from nasrepro.harness.arch_memory import NetMemory

W_SHARE, I_SHARE = 0.3, 0.7  # k3, k4 hard-coded in the prototype's score()


def check_lambda(lam: float) -> None:
    if not (isinstance(lam, (int, float)) and 0.0 <= lam <= 1.0):
        raise UsageError(f"memnet lambda must be in [0, 1], got {lam!r}")


def score(acc: float, mem: NetMemory, acc_prev: float, mem_prev: NetMemory, lam: float) -> float:
    """S of a candidate against the previous round's best (module docstring)."""
    gain = (acc - acc_prev) / max(abs(acc_prev), 1e-12)
    dw = (mem_prev.weight_elements - mem.weight_elements) / max(mem_prev.weight_elements, 1)
    di = (mem_prev.feature_elements - mem.feature_elements) / max(mem_prev.feature_elements, 1)
    return lam * gain + (1.0 - lam) * (W_SHARE * dw + I_SHARE * di)


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
