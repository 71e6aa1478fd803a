"""Speed of one NASBOT step on a 200-network history: GP hyper-parameter refresh + fit, then one
acquisition round (the GA's EI evaluations), beside the same step with every distance already cached
(what later steps of a search mostly see).

Run: `pytest benchmarks/test_nasbot_gp_bench.py -s`. Histories are 200 distinct NAS-Bench-201
cells (graph view `nb201`) and 200 nasbot-mlp networks; rewards are a smooth synthetic function of
the graph (its OTMANN distance to a fixed network), so no table or training is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from nasrepro.methods.nasbot.bo import BayesOpt
from nasrepro.methods.nasbot.distances import DistanceCache
from nasrepro.methods.nasbot.otmann import OTMANN
from nasrepro.methods.nasbot.search import NASBOTConfig, resolved
from nasrepro.methods.nasbot.space import LayerGraphSpace
from nasrepro.methods.nasbot.views import view_for
from nasrepro.spaces.nasbench201 import NB201Space


@dataclass
class _Query:
    score: float
    status: str = "ok"


class _Fitness:
    @staticmethod
    def fitness(query: _Query) -> float:
        return query.score


def _history(space, view, n: int, rng: np.random.Generator) -> list:
    seen, out = set(), []
    while len(out) < n:
        arch = view.mutate(space.sample(rng), rng)
        if space.key(arch) not in seen:
            seen.add(space.key(arch))
            out.append(arch)
    return out


@pytest.mark.parametrize("space_name", ["nasbench201", "nasbot-mlp"])
@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_gp_fit_and_one_acquisition_round_on_200(space_name: str, preset: str) -> None:
    space = NB201Space() if space_name == "nasbench201" else LayerGraphSpace()
    view = view_for(space)
    rng = np.random.default_rng(0)
    history = _history(space, view, 200, rng)
    graphs = [view.to_graph(a) for a in history]
    anchor = graphs[0]
    otmann = OTMANN(view.kind)
    scores = [-float(otmann.pair(g, anchor)[1]) for g in graphs]
    cfg = resolved(NASBOTConfig(), preset)
    timings = {}
    for label in ("cold", "cached"):
        bo = BayesOpt(cfg, view, space, seed=0)
        bo.cache = DistanceCache(bo.otmann, shared=False)
        if label == "cached":
            bo.cache.matrix(graphs, graphs)  # untimed: the history's own distances are known
        bo.record(history, [_Query(s) for s in scores], _Fitness())
        start = time.perf_counter()
        proposal, info = bo.propose([], history[:10], np.random.default_rng(1))
        timings[label] = time.perf_counter() - start
        assert proposal is not None and space.key(proposal) not in bo.seen
    print(
        f"\n{space_name} {preset}: GP refresh+fit+acquisition ({info['acq_evals']} EI evaluations) on 200: "
        f"cold distances {timings['cold']:.1f} s, history distances cached {timings['cached']:.1f} s"
    )
