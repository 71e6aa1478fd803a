"""A hard memory bound for the baselines: a proposal above it is drawn again, never queried.

Why: MemNet (Liu, Wu, Ma & Seok, arXiv 1907.09569, abstract) never trains or chooses a network
whose memory exceeds its upper bound M_max; against accuracy-only random search and evolution, the
comparison mixes the search with the constraint. Issue 12 (item 4) therefore runs the baselines
under the same bound, measured by the same function MemNet bounds
(`nasrepro.harness.arch_memory.network_memory`, M = W + I in MemNAS MB, and `within_bound`), as
Lindauer & Hutter (JMLR 2020, best practice 8) ask of baselines: the same space, budget and
conditions as the method they are compared with.

Semantics: a proposal (a random draw, an initial population member, a mutated child) above the
bound is rejected before it reaches the evaluator, so it costs no budget and never enters the
history; the proposer is asked again. Rejection sampling from a uniform distribution is uniform
over the accepted set (von Neumann 1951), so bounded random search is random search over the
bounded space, and a bounded mutation is a uniform mutation among the parent's neighbours within
the bound. `MAX_REJECTIONS` proposals in a row above the bound mean the bound is below (or too close
to) the smallest network the proposer reaches: one `UsageError`, naming the lightest one it saw.

Nothing here imports torch until a bound is set (`bound_for`): a table search without one stays as
fast as before (tests/test_startup.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator
from nasrepro.harness.run import Run
from nasrepro.harness.space import Arch, Space
from nasrepro.harness.task import Task

#: proposals above the bound in a row before the bound is declared unusable
MAX_REJECTIONS = 1000


class MemoryBound:
    """Filters proposals by M <= bound, counting what it rejects and the time spent measuring."""

    __slots__ = ("bound_mb", "space", "task", "who", "rejected", "seconds")

    def __init__(self, bound_mb: float, space: Space, task: Task, who: str) -> None:
        self.bound_mb, self.space, self.task, self.who = float(bound_mb), space, task, who
        self.rejected = 0
        self.seconds = 0.0

    def memory(self, arch: Arch) -> Any:
        """The `NetMemory` of `arch` (cached per canonical architecture by the harness)."""
        from nasrepro.harness import arch_memory

        start = time.perf_counter()
        try:
            return arch_memory.network_memory(self.space, self.task, arch)
        finally:
            self.seconds += time.perf_counter() - start

    def fits(self, arch: Arch) -> bool:
        """Whether `arch` is within the bound; a rejection is counted."""
        from nasrepro.harness.arch_memory import within_bound

        if within_bound(self.memory(arch), self.bound_mb):
            return True
        self.rejected += 1
        return False

    def draw(self, propose: Callable[[], Arch]) -> Arch:
        """The first proposal within the bound (module docstring)."""
        lightest = math.inf
        for _ in range(MAX_REJECTIONS):
            arch = propose()
            if self.fits(arch):
                return arch
            lightest = min(lightest, self.memory(arch).total_mb)
        raise UsageError(
            f"{self.who} memory_bound_mb {self.bound_mb:g} MB: {MAX_REJECTIONS} proposals in a row on "
            f"{self.space.name} were above it (the lightest {lightest:.4f} MB); the bound is below, or too "
            "close to, the smallest network of the space: raise memory_bound_mb"
        )

    def within(self, archs: Iterable[Arch]) -> list[Arch]:
        """The architectures within the bound, in order; none is the exact case of a bound below
        the smallest network (a finite space enumerated in full)."""
        archs = list(archs)
        kept = [arch for arch in archs if self.fits(arch)]
        if archs and not kept:
            lightest = min(self.memory(arch).total_mb for arch in archs)
            raise UsageError(
                f"{self.who} memory_bound_mb {self.bound_mb:g} MB is below the smallest network of "
                f"{self.space.name} ({lightest:.4f} MB): raise memory_bound_mb"
            )
        return kept

    def report(self, evaluator: Evaluator, incumbent: str) -> dict[str, Any]:
        """What a record keeps: the bound, the proposals it rejected, the incumbent's memory and the
        heaviest network queried (at most the bound, by construction)."""
        inc = self.memory(self.space.parse(incumbent))
        queried = [self.memory(self.space.parse(q.arch)).total_mb for q in evaluator.history]
        return {
            "memory_bound_mb": self.bound_mb,
            "over_bound": self.rejected,
            "incumbent_memory": inc.to_dict(),
            "incumbent_memory_mb": inc.total_mb,
            "heaviest_queried_mb": max(queried, default=None),
        }


def bound_for(bound_mb: Any, run: Run, who: str) -> MemoryBound | None:
    """None without a bound (nothing is imported or measured); else a checked `MemoryBound`."""
    if bound_mb is None:
        return None
    from nasrepro.harness.arch_memory import check_bound, require_model_view

    check_bound(bound_mb, who)
    require_model_view(run.space, who)
    return MemoryBound(bound_mb, run.space, run.task, who)
