"""One NASBOT proposal: GP on the evaluations, pending points hallucinated, EI maximised by the GA
(Kandasamy et al. 2018, Algorithm 1; code `opt/gp_bandit.py` with ``acq='hei'``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nasrepro.harness.evaluator import Evaluator, Query
from nasrepro.harness.space import Space
from nasrepro.methods.nasbot import ea
from nasrepro.methods.nasbot.distances import DistanceCache
from nasrepro.methods.nasbot.gp import GP, HyperSampler, as_tensor, expected_improvement
from nasrepro.methods.nasbot.otmann import OTMANN
from nasrepro.methods.nasbot.views import GraphView


class BayesOpt:
    """The surrogate's state across steps: evaluated networks, their rewards, cached distances."""

    def __init__(self, cfg: Any, view: GraphView, space: Space, seed: int) -> None:
        self.cfg, self.view, self.space = cfg, view, space
        self.otmann = OTMANN(view.kind, cfg.non_assignment_penalty)
        self.cache = DistanceCache(self.otmann)
        self.sampler = HyperSampler(
            len(self.otmann.struct_coeffs), seed=seed, samples=cfg.hp_samples, refresh_every=cfg.refresh_every
        )
        self.archs: list[Any] = []  # evaluated successfully, in order
        self.y: list[float] = []  # their rewards, larger is better
        self.seen: set[str] = set()  # every evaluated key (failures included)
        self.last_hypers: dict[str, list[float]] = {}

    def record(self, archs: Sequence[Any], queries: Sequence[Query], evaluator: Evaluator) -> None:
        """Add answered evaluations; failed ones are never proposed again but do not enter the GP."""
        for arch, query in zip(archs, queries, strict=False):
            key = self.space.key(arch)
            if key in self.seen:
                continue
            self.seen.add(key)
            fitness = evaluator.fitness(query)
            if np.isfinite(fitness):
                self.archs.append(arch)
                self.y.append(float(fitness))

    def propose(
        self, pending: Sequence[Any], pool: Sequence[Any], rng: np.random.Generator
    ) -> tuple[Any | None, dict[str, Any]]:
        """The next network to evaluate (None when the GA finds nothing unevaluated)."""
        if not self.archs:
            return None, {}
        n = len(self.archs)
        known = [self.view.to_graph(a) for a in [*self.archs, *pending]]
        dist = as_tensor(self.cache.matrix(known, known))
        y = torch.tensor(self.y, dtype=torch.float64)
        mean = float(torch.median(y))
        hp = self.sampler.draw(dist[:, :n, :n], y, mean)
        self.last_hypers = hp.to_dict()
        gp = GP(dist[:, :n, :n], y, hp, mean).hallucinate(dist, len(pending))
        best = float(y.max())

        def phi(candidates: Sequence[Any]) -> np.ndarray:
            graphs = [self.view.to_graph(c) for c in candidates]
            mu, sd = gp.predict(as_tensor(self.cache.matrix(graphs, known)))
            return expected_improvement(mu, sd, best).numpy()

        taken = self.seen | {self.space.key(a) for a in pending}
        budget = ea.acquisition_budget(
            n + len(pending), self.cfg.acq_lead, self.cfg.acq_min, self.cfg.acq_max
        )
        result = ea.maximise(
            phi,
            [*self.archs, *pending, *pool],
            self.view.mutate,
            budget,
            rng,
            key=self.space.key,
            allowed=lambda a: self.space.key(a) not in taken,
        )
        info = {"acq_evals": result.evaluations, "ei": result.value}
        if self.space.key(result.best) in taken:
            return None, info
        return result.best, info
