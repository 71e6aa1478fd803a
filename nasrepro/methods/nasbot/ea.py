"""NASBOT's evolutionary acquisition optimiser (Kandasamy et al. 2018, Sec. 4.2; reference code:
`opt/ga_optimiser.py`, `opt/nasbot.py`, `nn_ga_optimiser.py`).

Per BO step the acquisition phi may be evaluated clip(25 sqrt(t), 50, 500) times, t the number of
evaluations so far (``lead_const = min(5, dim)^2`` with `NNDomain.get_dim() = 5`). The loop scores
an initial pool, then in epochs of clip(3 sqrt(n), 5, 100) mutations (n acquisition evaluations
so far) draws parents with probability proportional to exp((phi - mean phi) / (2 std phi))
(``fitness_sampler_scaling_const = 2``), mutates each (1-5 steps, `mutations.STEP_PROBS`), scores
the children and adds them to the pool; it returns the pool's arg-max.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

A = TypeVar("A")
SCALING_CONST = 2.0


def acquisition_budget(t: int, lead: float = 25.0, low: int = 50, high: int = 500) -> int:
    """clip(lead x sqrt(t), low, high): acquisition evaluations at BO step t."""
    return int(min(high, max(low, round(lead * math.sqrt(max(t, 0))))))


def mutations_per_epoch(n: int) -> int:
    """clip(3 sqrt(n), 5, 100): children per GA epoch after n acquisition evaluations."""
    return int(min(100, max(5, round(3 * math.sqrt(max(n, 0))))))


def parent_probs(scores: np.ndarray) -> np.ndarray:
    """exp((phi - mean) / (2 std)), normalised; uniform when every score is equal."""
    finite = np.where(np.isfinite(scores), scores, np.nan)
    mean, std = np.nanmean(finite), np.nanstd(finite)
    if not np.isfinite(std) or std <= 0:
        weights = np.where(np.isfinite(scores), 1.0, 0.0)
    else:
        weights = np.exp((np.nan_to_num(finite, nan=mean - 50 * std) - mean) / (SCALING_CONST * std))
        weights = np.where(np.isfinite(scores), weights, 0.0)
    if weights.sum() <= 0:
        weights = np.ones_like(scores, dtype=float)
    return weights / weights.sum()


@dataclass
class GAResult(Generic[A]):
    best: A
    value: float
    evaluations: int
    pool: list[A]
    scores: np.ndarray


def maximise(
    phi: Callable[[Sequence[A]], np.ndarray],
    initial: Sequence[A],
    mutate: Callable[[A, np.random.Generator], A],
    budget: int,
    rng: np.random.Generator,
    key: Callable[[A], Hashable] = lambda a: a,
    allowed: Callable[[A], bool] = lambda a: True,
) -> GAResult[A]:
    """Maximise phi over architectures reachable by mutation from `initial` with `budget`
    evaluations of phi (batched per epoch). The result is the best `allowed` one (e.g. not yet
    evaluated); duplicates (by `key`) are scored once."""
    pool: list[A] = []
    seen: set[Hashable] = set()
    for arch in initial:
        if key(arch) not in seen:
            seen.add(key(arch))
            pool.append(arch)
    scores = np.asarray(phi(pool), dtype=float) if pool else np.zeros(0)
    evaluations = len(pool)
    stalls = 0
    while evaluations < budget and pool and stalls < 5:
        count = min(mutations_per_epoch(evaluations), budget - evaluations)
        parents = rng.choice(len(pool), size=count, p=parent_probs(scores))
        children = []
        for p in parents:
            child = mutate(pool[p], rng)
            if key(child) not in seen:
                seen.add(key(child))
                children.append(child)
        if not children:  # everything nearby is known: stop rather than spin
            stalls += 1
            continue
        stalls = 0
        pool.extend(children)
        scores = np.concatenate([scores, np.asarray(phi(children), dtype=float)])
        evaluations += len(children)
    order = np.argsort(-scores, kind="stable")
    for i in order:
        if allowed(pool[i]):
            return GAResult(pool[i], float(scores[i]), evaluations, pool, scores)
    return GAResult(pool[int(order[0])], float(scores[order[0]]), evaluations, pool, scores)
