"""MemNet's ranker measures (AP@K, NDCG@K; MemNAS fact sheet 3.5), against goldens computed by hand.
The per-round diagnostic on the table is tested with the search (test_methods_memnet_search.py)."""

from __future__ import annotations

import math

import pytest

from nasrepro.methods.memnet.ranking_quality import ap_at_k, ndcg_at_k, ranking_quality

# true ranks (0 = best): item 2, item 3, item 0, item 1
TRUE = [1.0, 0.0, 3.0, 2.0]


def test_ap_and_ndcg_goldens_by_hand():
    # predicted order 2, 0, 3, 1: the top-2 holds item 2 (relevant, P@1 = 1) and item 0 (not relevant)
    predicted = [0.5, 0.1, 0.9, 0.3]
    assert ap_at_k(predicted, TRUE, 2) == pytest.approx(0.5)
    # gains K - rank: item 2 -> 2, item 3 -> 1; DCG = 2 / log2(2); ideal = 2 + 1 / log2(3)
    assert ndcg_at_k(predicted, TRUE, 2) == pytest.approx(2 / (2 + 1 / math.log2(3)))
    # predicted order 2, 3, 0, 1 retrieves the true top-2 in order; at K = 3 item 0 comes third
    assert ap_at_k(TRUE, TRUE, 2) == 1.0 and ndcg_at_k(TRUE, TRUE, 3) == 1.0
    # the reversed order retrieves nothing of the top-2
    reverse = [-t for t in TRUE]
    assert ap_at_k(reverse, TRUE, 2) == 0.0 and ndcg_at_k(reverse, TRUE, 2) == 0.0
    # AP@K rewards getting the relevant items early: order 0, 2, ... finds item 2 only at position 2
    assert ap_at_k([0.9, 0.1, 0.8, 0.7], TRUE, 2) == pytest.approx((1 / 2) / 2)
    # at K = 3 the same order's top-3 is exactly the true top-3, whatever its order
    assert ap_at_k([0.9, 0.1, 0.8, 0.7], TRUE, 3) == 1.0 and ndcg_at_k([0.9, 0.1, 0.8, 0.7], TRUE, 3) < 1
    # AP at K = N is 1.0 for any order, even the reversed one: it is not reported
    assert ap_at_k(reverse, TRUE, len(TRUE)) == 1.0
    assert set(ranking_quality(predicted, TRUE, (2, 10))) == {"ap@2", "ndcg@2", "ndcg@4"}
