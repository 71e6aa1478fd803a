"""Anytime regret curves per table task: how far each search's incumbent is from the table's best.

Issue 16 item 4. After every unique query the incumbent is the architecture with the best reward
so far (validation unless the row says test); its *test regret* is the table's best test value
minus the incumbent's test value (`optima.Optimum.test`, oriented by the metric's direction).
A curve at the floor holds the table's best test architecture; a search that selects on
validation can find the best-validation architecture and still keep the regret of that
architecture's test value, drawn as a grey line (the table's validation and test disagree).
Curves are shown per method and budget as the median over seeds with a 95% percentile-bootstrap
band of that median (seeds resampled with replacement, `N_BOOTSTRAP` times, fixed generator so the
figure is byte-stable), on log-log axes; regrets below `FLOOR` are drawn at `FLOOR` (the log scale
has no zero). A seed that stopped before the row's longest keeps its final incumbent.

Rows whose method picks its final incumbent by something other than the reward (MemNet's
memory-penalised choice) are not drawn: "best reward so far" is not their incumbent, and the curve
would credit them with architectures they did not return. Their final regret (`final_regrets`)
comes from each record's own incumbent, as for every row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasrepro.tracking.optima import Optimum
from nasrepro.tracking.record import Record

N_BOOTSTRAP = 1000
FLOOR = 1e-2  # metric points: below this a regret is drawn as the floor
GRID_POINTS = 60
LINESTYLES = ("-", "--", ":", "-.")


def regret_curve(record: Record, optimum: Optimum) -> np.ndarray:
    """Test regret of the incumbent after each unique query (NaN until a query succeeds)."""
    sign = 1.0 if record.direction == "max" else -1.0
    best, out = -math.inf, np.full(len(record.history), np.nan)
    incumbent_test = math.nan
    for i, q in enumerate(record.history):
        score = q.get("score")
        if score is not None and sign * score > best:
            best = sign * score
            incumbent_test = q["test"] if q.get("test") is not None else math.nan
        out[i] = sign * (optimum.test - incumbent_test)
    return out


def best_scoring_query(record: Record, by_seconds: float = math.inf) -> dict | None:
    """The query with the best reward (the first among equals, as `Evaluator.best`); with a finite
    `by_seconds`, among those booked by then on the search clock (`elapsed_seconds`). None when
    there is none."""
    sign = 1.0 if record.direction == "max" else -1.0
    best, found = -math.inf, None
    for q in record.history:
        if q.get("score") is None:
            continue
        if by_seconds < math.inf and (q.get("elapsed_seconds") is None or q["elapsed_seconds"] > by_seconds):
            continue
        if sign * q["score"] > best:
            best, found = sign * q["score"], q
    return found


def follows_best_score(record: Record) -> bool:
    """Whether the record's own incumbent is its best-reward query (so anytime curves that take
    the best reward so far show what the method would have returned)."""
    best = best_scoring_query(record)
    return best is None or str(best.get("arch")) == str(record.best_arch)


def pad_last(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Curves of different lengths as one array, each carried forward at its last value (a
    search that stopped early keeps its incumbent) to the longest."""
    length = max(len(c) for c in curves)
    return np.array([list(c) + [c[-1]] * (length - len(c)) for c in curves], dtype=float)


def median_band(curves: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median over seeds (rows) and the 2.5/97.5 percentiles of bootstrap medians, per column."""
    median = np.median(curves, axis=0)
    n = curves.shape[0]
    if n < 2:
        return median, median.copy(), median.copy()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(N_BOOTSTRAP, n))
    boot = np.median(curves[picks], axis=1)  # (N_BOOTSTRAP, columns)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    return median, low, high


def grid(length: int, points: int = GRID_POINTS) -> np.ndarray:
    """Log-spaced unique query counts 1..length (the x axis is logarithmic, so ~60 points draw
    the curve as finely as all 500 and keep the bootstrap cheap)."""
    return np.unique(np.geomspace(1, length, num=min(points, length)).round().astype(int))


def curves_for(rows: Sequence[Any], optimum: Optimum) -> list[dict[str, Any]]:
    """Per row with a history: its label, budget, the x grid and median/band arrays on it. A seed
    with no successful query yet counts as the worst regret seen in the row; rows that do not
    follow the best reward (module docstring) are left out."""
    out = []
    for row in rows:
        if row.budget is None or not row.records or len(row.records[0].history) < 2:
            continue
        if not all(follows_best_score(r) for r in row.records):
            continue
        padded = pad_last([regret_curve(r, optimum) for r in row.records if r.history])
        x = grid(padded.shape[1])
        stacked = padded[:, x - 1]
        if np.isnan(stacked).all():
            continue
        stacked = np.where(np.isnan(stacked), np.nanmax(stacked), stacked)
        median, low, high = median_band(stacked)
        out.append(
            {
                "method": row.method,
                "preset": row.preset,
                "budget": row.budget,
                "reward": row.reward,
                "n": len(stacked),
                "x": x,
                "median": median,
                "low": low,
                "high": high,
            }
        )
    return out


def plot(
    task: str,
    curves: list[dict[str, Any]],
    optimum: Optimum,
    path: Path,
    metric: str = "accuracy",
    direction: str = "max",
) -> Path | None:
    """One figure of `curves_for`'s curves: a colour per method, a line style per budget, the
    bootstrap band shaded."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({c["method"] for c in curves})
    budgets = sorted({c["budget"] for c in curves})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    styles = {b: LINESTYLES[i % len(LINESTYLES)] for i, b in enumerate(budgets)}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for c in curves:
        x = c["x"]
        colour = colours[c["method"]]
        ax.plot(
            x,
            np.maximum(c["median"], FLOOR),
            color=colour,
            linestyle=styles[c["budget"]],
            linewidth=1.3,
            label=f"{c['method']} (b={c['budget']}, {c['preset']}{reward_note(c)}, n={c['n']})",
        )
        ax.fill_between(
            x,
            np.maximum(c["low"], FLOOR),
            np.maximum(c["high"], FLOOR),
            color=colour,
            alpha=0.12,
            linewidth=0,
        )
    sign = 1.0 if direction == "max" else -1.0
    val_floor = sign * (optimum.test - optimum.test_of_best_val)
    ax.axhline(
        max(val_floor, FLOOR),
        color="grey",
        linestyle=(0, (1, 3)),
        linewidth=1,
        label=f"the table's best-validation architecture ({optimum.test_of_best_val:.2f})",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("unique queries")
    ax.set_ylabel(f"test regret ({metric} points)")
    ax.set_title(
        f"{task}: incumbent's test regret to the table's best ({optimum.test:.2f})\n"
        "median over seeds, 95% bootstrap band",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="lower left", ncol=2 if len(curves) > 6 else 1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def not_drawn(rows: Sequence[Any]) -> list[str]:
    """Labels of the rows `curves_for` leaves out because their incumbent is not the best reward."""
    return sorted(
        {r.method for r in rows if r.budget is not None and not all(follows_best_score(x) for x in r.records)}
    )


def reward_note(curve: dict[str, Any]) -> str:
    return "" if curve.get("reward", "val") == "val" else f", reward {curve['reward']}"


def final_regrets(rows: Sequence[Any], optimum: Optimum) -> dict[tuple[str, str, str, int], float]:
    """{(method, preset, reward, budget): median over seeds of the test regret of each record's own
    incumbent} for the exports; every searched row, drawn or not."""
    out = {}
    for row in rows:
        tests = [r.metrics.test for r in row.records if r.metrics.test is not None]
        if row.budget is None or not tests:
            continue
        sign = 1.0 if row.direction == "max" else -1.0
        out[(row.method, row.preset, row.reward, row.budget)] = float(
            np.median([sign * (optimum.test - t) for t in tests])
        )
    return out
