"""The outer search: a memory-less, batch-wise evolutionary algorithm with pseudo-gradient steps.

**Reconstruction.** The paper's abstract says only that FaDE-ranks are *relative*, so the outer search
must be memory-less and batch-wise, "an evolutionary algorithm with pseudo-gradient descent"; the
authors' code has no outer loop. What follows is our reading of the repository figure ``res/fade.png``
(a batch of 3 paths through a region of k = 4 cells x L = 3 stages, scored by aggregating weights
along each path; after one step the incumbent cells stay, new cells are drawn, the worst member is
replaced) and of the fact sheet's Sec. 2.4. Every choice below is labelled [R] in the README.

One step, given only the current batch B (b architectures):

1. **Region** (`region_candidates`): per stage, the distinct units the batch uses there, filled up
   to k with new units, each a mutation of a random member's unit ([R]: "new cells drawn" near the
   batch). On NB-201 the stages share one candidate list.
2. **Train** the region with the FaDE estimator; read alpha_s = softmax FaDE-ranks per stage.
3. **Score** (`path_scores`): a member's score is the mean over stages of its units' FaDE-ranks ([R]:
   the figure's path B->B->D with weights 0.25, 0.4, 0.2 is scored 0.29, close to their mean 0.28).
   Only the order within the batch is used: ranks, never values across steps.
4. **Pseudo-gradient** (`pseudo_gradient`): per stage and candidate c,
   ``g_s(c) = (alpha_s(c) - 1/k) + sum_i u_i [B_i,s = c] / b`` with centred rank utilities
   ``u_i = (b - 1 - 2 r_i) / (b - 1)`` (r_i = 0 for the best member): the region's own preference
   plus the batch's relative ranking ([R]).
5. **Step** (`pseudo_gradient_step`): the ``replace`` worst members are dropped; each is replaced by a
   child of the best member moved along g: at the stage with the steepest ascent
   ``max_c g_s(c) - g_s(best_s)`` (next steepest for the next child) the unit becomes ``argmax_c
   g_s(c)``, then with probability ``mutation_rate`` one random mutation is added (the figure's child
   BDE of BBD carries a new cell E; without it the memory-less batch cycles between a few
   architectures); without an ascent direction, or if the child is already in the batch, the child is
   a random mutation of the best member (exploration) ([R]).

Nothing survives a step but the new batch: no archive, no scores (memory-less); the only randomness
is the run's generator, so a search is deterministic per seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.methods.fade.region import RegionView, Unit


def region_candidates(
    view: RegionView, batch: Sequence[Any], k: int, rng: np.random.Generator
) -> list[list[Unit]]:
    """Per stage, the batch's distinct units (in batch order) then mutations up to k of them."""
    members = [view.units(arch) for arch in batch]
    stages = 1 if view.tied else view.stages
    out: list[list[Unit]] = []
    for s in range(stages):
        units: list[Unit] = []
        for m in members:
            if m[s] not in units:
                units.append(m[s])
        if len(units) > k:
            raise UsageError(
                f"the batch uses {len(units)} distinct cells at stage {s}, more than region_size={k}"
            )
        tries = 0
        while len(units) < k:
            parent = units[int(rng.integers(len(units)))] if tries < 50 * k else view.sample_unit(rng)
            child = view.mutate_unit(parent, rng)
            tries += 1
            if child not in units:
                units.append(child)
            elif tries > 200 * k:
                raise UsageError(f"cannot draw {k} distinct cells for a region: the space has too few")
        out.append(units)
    return out * view.stages if view.tied else out


def path_scores(
    view: RegionView,
    batch: Sequence[Any],
    candidates: Sequence[Sequence[Unit]],
    ranks: Sequence[Sequence[float]],
) -> list[float]:
    """Each member's mean FaDE-rank along its path (step 3)."""
    scores = []
    for arch in batch:
        units = view.units(arch)
        scores.append(float(np.mean([ranks[s][list(candidates[s]).index(u)] for s, u in enumerate(units)])))
    return scores


def batch_ranks(scores: Sequence[float]) -> list[int]:
    """Rank of each member within the batch (0 = best); ties keep batch order (stable)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def pseudo_gradient(
    view: RegionView,
    batch: Sequence[Any],
    candidates: Sequence[Sequence[Unit]],
    ranks: Sequence[Sequence[float]],
    member_ranks: Sequence[int],
) -> list[list[float]]:
    """g_s(c) per stage and candidate (step 4): region preference + centred batch-rank utilities."""
    b = len(batch)
    utilities = [(b - 1 - 2 * r) / (b - 1) if b > 1 else 0.0 for r in member_ranks]
    grads = []
    for s, units in enumerate(candidates):
        k = len(units)
        g = [float(ranks[s][j]) - 1.0 / k for j in range(k)]
        for arch, u in zip(batch, utilities, strict=True):
            g[list(units).index(view.units(arch)[s])] += u / b
        grads.append(g)
    return grads


def _mutated(view: RegionView, units: Sequence[Unit], rng: np.random.Generator) -> Any:
    """`units` with one stage's unit (all stages' on a tied view) replaced by a random mutation."""
    units = list(units)
    s = int(rng.integers(1 if view.tied else view.stages))
    new = view.mutate_unit(units[s], rng)
    return view.join([new] * view.stages if view.tied else [*units[:s], new, *units[s + 1 :]])


def pseudo_gradient_step(
    view: RegionView,
    batch: Sequence[Any],
    candidates: Sequence[Sequence[Unit]],
    grads: Sequence[Sequence[float]],
    member_ranks: Sequence[int],
    replace: int,
    rng: np.random.Generator,
    mutation_rate: float = 0.5,
) -> list[Any]:
    """The next batch (step 5): the `replace` worst members become children of the best one."""
    order = sorted(range(len(batch)), key=lambda i: member_ranks[i])
    best = view.units(batch[order[0]])
    survivors = [batch[i] for i in order[: len(batch) - replace]]
    keys = {view.space.key(a) for a in survivors}
    if view.tied:  # one decision shared by all stages: average the stage gradients
        mean = np.mean(np.asarray(grads, dtype=float), axis=0)
        ascents = [(float(mean.max() - mean[list(candidates[0]).index(best[0])]), 0, int(mean.argmax()))]
    else:
        ascents = []
        for s, units in enumerate(candidates):
            g = np.asarray(grads[s], dtype=float)
            ascents.append((float(g.max() - g[list(units).index(best[s])]), s, int(g.argmax())))
        ascents.sort(key=lambda t: (-t[0], t[1]))
    children = []
    for n in range(replace):
        child = None
        if n < len(ascents) and ascents[n][0] > 0:
            _, s, j = ascents[n]
            units = list(best)
            if view.tied:
                units = [candidates[0][j]] * view.stages
            else:
                units[s] = candidates[s][j]
            child = view.join(units)
        if child is not None and rng.random() < mutation_rate:  # ES-style noise on the step
            child = _mutated(view, view.units(child), rng)
        tries = 0
        while child is None or view.space.key(child) in keys:
            child = _mutated(view, best, rng)
            tries += 1
            if tries > 1000:
                raise UsageError("the pseudo-gradient step found no new architecture: the space is too small")
        keys.add(view.space.key(child))
        children.append(child)
    return survivors + children
