"""Comparison verdicts: Mann-Whitney over seeds, Holm across a task's rows, Vargha-Delaney A."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from nasrepro.tracking.stats import holm, vargha_delaney, verdicts


def test_holm_matches_the_step_down_definition():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_effect_size_counts_wins_and_half_ties_in_the_metric_direction():
    assert vargha_delaney([2, 3], [1, 2]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)  # (2,1) (2,2) (3,1) (3,2)
    assert vargha_delaney([2, 3], [1, 2], larger_is_better=False) == pytest.approx((0 + 0.5 + 0 + 0) / 4)


def test_a_planted_difference_is_found_and_no_difference_is_not():
    rng = np.random.default_rng(0)
    baseline = list(rng.normal(80, 1, 20))
    better = list(rng.normal(83, 1, 20))
    same = list(rng.normal(80, 1, 20))
    worse_when_minimising = list(rng.normal(83, 1, 20))
    found = verdicts([(better, baseline), (same, baseline), None], larger_is_better=True)
    assert found[0].label == "better" and found[0].effect > 0.9
    assert found[0].p == pytest.approx(mannwhitneyu(better, baseline, alternative="two-sided").pvalue)
    assert found[0].p_holm == pytest.approx(min(1.0, 2 * found[0].p))  # two tested rows
    assert found[1].label == "n.s." and found[2] is None
    (flipped,) = verdicts([(worse_when_minimising, baseline)], larger_is_better=False)
    assert flipped.label == "worse"


def test_too_few_seeds_give_no_verdict():
    assert verdicts([([1.0, 2.0, 3.0, 4.0], [1.0] * 20)], larger_is_better=True) == [None]
