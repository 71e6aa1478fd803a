"""Anytime regret curves per table task: how far each search's incumbent is from the table's best.

Issue 16 item 4. After every unique query the incumbent is the architecture with the best reward
so far (validation unless the row says test); its *test regret* is the table's best test value
minus the incumbent's test value (`optima.Optimum.test`, oriented by the metric's direction), so
a curve reaching the floor found the best architecture of the table. Curves are shown per method
and budget as the median over seeds with a 95% percentile-bootstrap band of that median (seeds
resampled with replacement, `N_BOOTSTRAP` times, fixed generator so the figure is byte-stable),
on log-log axes; regrets below `FLOOR` are drawn at `FLOOR` (the log scale has no zero).
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
    with no successful query yet counts as the worst regret seen in the row."""
    out = []
    for row in rows:
        if row.budget is None or not row.records or len(row.records[0].history) < 2:
            continue
        curves = [regret_curve(r, optimum) for r in row.records]
        length = min(len(c) for c in curves)
        x = grid(length)
        stacked = np.array([c[x - 1] for c in curves], dtype=float)
        if np.isnan(stacked).all():
            continue
        stacked = np.where(np.isnan(stacked), np.nanmax(stacked), stacked)
        median, low, high = median_band(stacked)
        out.append(
            {
                "method": row.method,
                "preset": row.preset,
                "budget": row.budget,
                "n": len(curves),
                "x": x,
                "median": median,
                "low": low,
                "high": high,
            }
        )
    return out


def plot(
    task: str, curves: list[dict[str, Any]], optimum: Optimum, path: Path, metric: str = "accuracy"
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
            label=f"{c['method']} (b={c['budget']}, {c['preset']}, n={c['n']})",
        )
        ax.fill_between(
            x,
            np.maximum(c["low"], FLOOR),
            np.maximum(c["high"], FLOOR),
            color=colour,
            alpha=0.12,
            linewidth=0,
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


def final_regrets(curves: list[dict[str, Any]]) -> dict[tuple[str, str, int], float]:
    """{(method, preset, budget): median final test regret} for the exports."""
    return {(c["method"], c["preset"], c["budget"]): float(c["median"][-1]) for c in curves}
