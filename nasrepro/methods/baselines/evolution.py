"""Regularized (aging) evolution, Real, Aggarwal, Huang & Le, AAAI 2019, Algorithm 1.

Optionally under MemNet's hard memory bound (issue 12 item 4, `bound`): Algorithm 1 is unchanged
except that a random initial member or a mutated child above the bound is drawn again before it is
queried, so the population only ever holds networks within the bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import partial

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Query
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.methods.baselines.bound import bound_for


@dataclass
class EvolutionConfig(MethodConfig):
    #: P in Algorithm 1. Real et al. use P=100 for 20k-model searches; for budgets of 100-500 table
    #: queries we use P=20 so that at least 80% of the budget is spent evolving (see README).
    population: int = 20
    #: S in Algorithm 1 (tournament size)
    sample_size: int = 5
    #: a hard memory bound M_max in MemNAS MB (MemNet's, `harness.arch_memory`): initial members and
    #: children above it are drawn again, never queried (`bound`); None = unbounded, Algorithm 1
    memory_bound_mb: float | None = None


@register_method
class RegularizedEvolution(Method):
    """Tournament selection, one mutation per child, and removal of the *oldest* member."""

    name = "evolution"
    Config = EvolutionConfig
    paper = "Real, Aggarwal, Huang & Le, AAAI 2019"
    conformance_options = {"population": 4, "sample_size": 2}

    def search(self, run: Run) -> SearchResult:
        cfg, space, evaluator = self.config, run.space, run.evaluator
        if cfg.sample_size < 1 or cfg.population < cfg.sample_size:
            raise UsageError(
                f"evolution needs 1 <= sample_size <= population, got {cfg.sample_size}, {cfg.population}"
            )
        rng = run.rng()
        bound = bound_for(cfg.memory_bound_mb, run, self.name)
        # Under a bound, a proposal above it is proposed again before it is queried (`bound`).
        propose = (lambda make: make()) if bound is None else bound.draw
        population: deque[tuple[object, Query]] = deque()
        # Algorithm 1, lines 3-7: a random initial population (the queue's order is age).
        while len(population) < cfg.population and not evaluator.exhausted:
            arch = propose(partial(space.sample, rng))
            population.append((arch, evaluator.query(arch)))
        # Lines 8-18: cycles of tournament, mutation, and aging.
        while not evaluator.exhausted:
            # Line 10-13: S candidates drawn uniformly *with replacement* from the population.
            picks = rng.integers(0, len(population), size=cfg.sample_size)
            parent_arch, _ = max(
                (population[i] for i in picks), key=lambda member: evaluator.fitness(member[1])
            )
            child = propose(partial(space.mutate, parent_arch, rng))  # line 14: one mutation
            population.append((child, evaluator.query(child)))  # lines 15-16
            population.popleft()  # line 17: the oldest dies, not the worst
        result = self.result(evaluator, population=[space.key(arch) for arch, _ in population])
        if bound is not None:
            result.extra.update(bound.report(evaluator, result.best_arch))
            result.overhead_seconds = round(bound.seconds, 6)
        return result
