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

from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run


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
    pass


@register_method
class RandomSearch(Method):
    """Uniform samples until `budget` unique architectures are evaluated; the best by reward wins.

    Duplicates are free (the evaluator answers them from its cache), so the budget is spent on
    distinct architectures; a space smaller than the budget is enumerated in full.
    """

    name = "random"
    Config = RandomSearchConfig
    paper = "Li & Talwalkar, UAI 2019 (random search and reproducibility for NAS)"

    def search(self, run: Run) -> SearchResult:
        rng, space, evaluator = run.rng(), run.space, run.evaluator
        size = space.size()
        if size is not None and size <= run.budget:
            evaluator.query_many(space.enumerate())
        while not evaluator.exhausted and (size is None or evaluator.n_queries < size):
            # Independent samples: hand as many to the evaluator as it can train at once.
            evaluator.query_many([space.sample(rng) for _ in range(evaluator.batch_size)])
        return self.result(evaluator)
