"""Random sampling and random search, as Lindauer & Hutter (2020, Section 3, best practice 8) and
Yang et al. (2020) define them -- two different baselines:

* random sampling: draw architectures uniformly and report them without selection; its mean over
  seeds is the "average architecture" that relative improvement (Yang et al. 2020, Section 3) is
  measured against;
* random search: draw architectures uniformly until the budget is spent and return the one with
  the best reward (validation accuracy by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from nasrepro.harness.evaluator import Evaluator
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.methods.baselines.bound import MemoryBound, bound_for


@dataclass
class RandomSamplingConfig(MethodConfig):
    #: architectures drawn per seed; the first is the reported one (no selection)
    samples: int = 1


@register_method
class RandomSampling(Method):
    """One uniformly drawn architecture per seed, reported as is."""

    name = "random-sampling"
    Config = RandomSamplingConfig
    paper = "Yang, Esperanca & Carlucci, ICLR 2020 (NAS evaluation is frustratingly hard)"

    def search(self, run: Run) -> SearchResult:
        rng, space, evaluator = run.rng(), run.space, run.evaluator
        first = evaluator.query(space.sample(rng))
        for _ in range(min(self.config.samples, run.budget) - 1):
            evaluator.query(space.sample(rng))
        return SearchResult(best_arch=first.arch)


@dataclass
class RandomSearchConfig(MethodConfig):
    #: a hard memory bound M_max in MemNAS MB (MemNet's, `harness.arch_memory`): draws above it are
    #: drawn again, never queried (`bound`); None = unbounded, the baseline as published
    memory_bound_mb: float | None = None


@register_method
class RandomSearch(Method):
    """Uniform samples until `budget` unique architectures are evaluated; the best by reward wins.

    Duplicates are free (the evaluator answers them from its cache), so the budget is spent on
    distinct architectures; a space smaller than the budget is enumerated in full. Under a memory
    bound, draws above it are drawn again (uniform over the bounded space, `bound`).
    """

    name = "random"
    Config = RandomSearchConfig
    paper = "Li & Talwalkar, UAI 2019 (random search and reproducibility for NAS)"

    def search(self, run: Run) -> SearchResult:
        rng, space, evaluator = run.rng(), run.space, run.evaluator
        bound = bound_for(self.config.memory_bound_mb, run, self.name)
        size = space.size()
        if size is not None and size <= run.budget:
            if bound is None:
                evaluator.query_many(space.enumerate())
            else:  # every architecture within the bound fits the budget: no sampling needed
                evaluator.query_many(bound.within(space.enumerate()))
                return self._bounded(evaluator, bound)
        while not evaluator.exhausted and (size is None or evaluator.n_queries < size):
            # Independent samples: hand as many to the evaluator as it can train at once.
            if bound is None:
                evaluator.query_many([space.sample(rng) for _ in range(evaluator.batch_size)])
            else:
                draw = lambda: space.sample(rng)  # noqa: E731
                evaluator.query_many([bound.draw(draw) for _ in range(evaluator.batch_size)])
        return self.result(evaluator) if bound is None else self._bounded(evaluator, bound)

    def _bounded(self, evaluator: Evaluator, bound: MemoryBound) -> SearchResult:
        """The incumbent by reward, the bound's report, and the tracing time as the method's overhead."""
        best = evaluator.best().arch
        return SearchResult(
            best_arch=best, extra=bound.report(evaluator, best), overhead_seconds=round(bound.seconds, 6)
        )
