"""Comparison claims as tests over seeds, never by eye (brief; Lindauer & Hutter 2020, practice 9).

Each leaderboard row is compared with random search at the same task, budget, preset, reward and
variant tag: a two-sided Mann-Whitney U test over the seeds' final test values, Holm-corrected
across the rows of a task (Holm 1979), with the Vargha-Delaney effect size A (the probability that
a seed of the row beats a seed of random search, ties counting half; 0.5 = no effect), oriented
by the task's metric direction. A verdict is "better" or "worse" only where the corrected p is
below `ALPHA`; with fewer than `MIN_SEEDS` seeds on either side there is no test.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
MIN_SEEDS = 5


@dataclass(frozen=True)
class Verdict:
    """A row against its random-search baseline."""

    p: float
    p_holm: float
    effect: float
    n: int
    n_baseline: int

    @property
    def label(self) -> str:
        if self.p_holm >= ALPHA:
            return "n.s."
        return "better" if self.effect > 0.5 else "worse"

    def render(self) -> str:
        return f"{self.label}, p={self.p:.3g} (Holm {self.p_holm:.3g}), A={self.effect:.2f}"

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "verdict": self.label,
            "p": self.p,
            "p_holm": self.p_holm,
            "effect_a": self.effect,
            "n": self.n,
            "n_baseline": self.n_baseline,
        }


def vargha_delaney(xs: Sequence[float], ys: Sequence[float], larger_is_better: bool = True) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs, with "greater" meaning better in the metric."""
    sign = 1.0 if larger_is_better else -1.0
    wins = sum((sign * x > sign * y) + 0.5 * (x == y) for x in xs for y in ys)
    return wins / (len(xs) * len(ys))


def mann_whitney_p(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (exact where scipy can, normal approximation with ties)."""
    from scipy.stats import mannwhitneyu

    if len(set(xs) | set(ys)) == 1:
        return 1.0  # every value equal: no evidence of any difference
    return float(mannwhitneyu(xs, ys, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def verdicts(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]] | None], larger_is_better: bool
) -> list[Verdict | None]:
    """One verdict per (row values, baseline values) pair; None where there is no test. Holm's
    correction runs over the tested pairs together (one task's family of claims)."""
    tested = [
        i for i, pair in enumerate(pairs) if pair and len(pair[0]) >= MIN_SEEDS and len(pair[1]) >= MIN_SEEDS
    ]
    raw = {i: mann_whitney_p(*pairs[i]) for i in tested}  # type: ignore[misc]
    adjusted = dict(zip(tested, holm([raw[i] for i in tested]), strict=True))
    out: list[Verdict | None] = []
    for i, pair in enumerate(pairs):
        if i not in raw:
            out.append(None)
            continue
        xs, ys = pair  # type: ignore[misc]
        out.append(Verdict(raw[i], adjusted[i], vargha_delaney(xs, ys, larger_is_better), len(xs), len(ys)))
    return out


def mean_std(values: list[float]) -> str:
    """Two decimals for accuracies and perplexities; three significant digits below 1 (regression
    MSE), where two decimals would print 0.01 ± 0.00."""
    if not values:
        return "—"
    mean = statistics.mean(values)
    small = max(abs(v) for v in values) < 1.0
    if len(values) == 1:
        return f"{mean:.3g}" if small else f"{mean:.2f}"
    std = statistics.stdev(values)
    return f"{mean:.3g} ± {std:.2g}" if small else f"{mean:.2f} ± {std:.2f}"
