"""How well the LSTM ranker orders a round's candidates: AP@K and NDCG@K against the true order.

MemNAS reports its ranker this way (fact sheet 3.5: AP@50/100/150 and NDCG@50/100/150 against the true
ranking of a round's candidates). The true order needs every candidate's score S, which only a table
gives without training them all, so the search computes these on table tasks only, as a diagnostic
(`ranker_diagnostics`): the true scores are looked up uncharged, never shown to the search, and
recorded per round beside the ranker's Spearman on the trained candidates.

Definitions [reconstruction: the paper names the measures, not their formulas]:

* the relevant set is the true top-K (ties broken by candidate order, as `np.argsort` stable);
* AP@K = (1/K) * sum over predicted positions i <= K of precision@i * [item i is relevant];
* NDCG@K = DCG@K / ideal DCG@K with graded relevance K - r for an item of true rank r < K (0-based),
  0 otherwise, and discount 1 / log2(i + 1) at predicted position i (1-based).

Both are 1 for a perfect ranker; a random ranker's expected AP@K is about K / N for N candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _true_ranks(true_scores: Sequence[float]) -> np.ndarray:
    order = np.argsort(-np.asarray(true_scores, dtype=float), kind="stable")
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(len(order))
    return ranks


def ap_at_k(predicted: Sequence[float], true_scores: Sequence[float], k: int) -> float:
    """Average precision of the predicted top-`k` at retrieving the true top-`k`."""
    k = min(k, len(true_scores))
    if k < 1:
        raise ValueError("AP@K needs k >= 1 and at least one candidate")
    ranks = _true_ranks(true_scores)
    picked = np.argsort(-np.asarray(predicted, dtype=float), kind="stable")[:k]
    hits, total = 0, 0.0
    for i, item in enumerate(picked, start=1):
        if ranks[item] < k:
            hits += 1
            total += hits / i
    return total / k


def ndcg_at_k(predicted: Sequence[float], true_scores: Sequence[float], k: int) -> float:
    """Normalised discounted cumulative gain of the predicted top-`k` (graded by true rank)."""
    k = min(k, len(true_scores))
    if k < 1:
        raise ValueError("NDCG@K needs k >= 1 and at least one candidate")
    ranks = _true_ranks(true_scores)
    gain = np.maximum(k - ranks, 0).astype(float)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    picked = np.argsort(-np.asarray(predicted, dtype=float), kind="stable")[:k]
    ideal = np.sort(gain)[::-1][:k]
    return float((gain[picked] * discount).sum() / (ideal * discount).sum())


def ranking_quality(
    predicted: Sequence[float], true_scores: Sequence[float], ks: Sequence[int]
) -> dict[str, float]:
    """``{"ap@K": ..., "ndcg@K": ...}`` for each K below the number of candidates, and NDCG at
    K = N: AP at K = N is 1.0 for any order (every candidate is in the true top N), so it is left
    out rather than reported as a perfect ranker."""
    n = len(true_scores)
    out: dict[str, float] = {}
    for k in sorted({min(k, n) for k in ks}):
        if k < n:
            out[f"ap@{k}"] = round(ap_at_k(predicted, true_scores, k), 6)
        out[f"ndcg@{k}"] = round(ndcg_at_k(predicted, true_scores, k), 6)
    return out
