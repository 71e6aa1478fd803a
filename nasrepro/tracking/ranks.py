"""Cross-task mean ranks per budget with a Friedman test and a critical-difference diagram.

Issue 16 item 4: one number per method over every table task, and a test of whether the ranks
differ at all, instead of a by-eye reading of many tables (Demšar, JMLR 2006: Friedman's test
over data sets with the Nemenyi post-hoc test and its critical-difference diagram). The tests are
`autorank`'s (Herbold, JOSS 2020), forced to the non-parametric branch so every budget gets the
same procedure: Friedman + Nemenyi for three or more methods, Wilcoxon's signed-rank test for two.

Blocks are table tasks, treatments are the search rows (method and variant tag) at one (preset,
budget, reward), the value is the row's mean final test metric over seeds. A Friedman test needs
a complete block design: of all subsets of the methods, the one whose complete block (the tasks
every one of them ran) holds the most cells is kept, with at least five tasks (autorank's minimum)
and two methods; the section names what was dropped. Dropping greedily instead (the method or
task missing most cells first) threw away two methods on nine tasks to keep one more table
family's three tasks.

With two methods the p-value is scipy's two-sided Wilcoxon signed-rank test on the per-task
differences, not autorank's: autorank's two-sample branch tests one-sided, in the direction of
the larger *median over tasks*, which across tasks of different scales says nothing about which
method wins (on the committed records it tested random > evolution, p = 0.99, where evolution
wins 11 of 12 tasks, two-sided p = 0.021).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_TASKS = 5  # autorank refuses fewer blocks
ALPHA = 0.05
#: rows that are not searches: they do not compete in the ranking
NOT_SEARCHES = ("random-sampling",)


@dataclass
class RankResult:
    """The ranking at one budget: mean ranks (1 = best), the omnibus test and what was left out."""

    setting: tuple[str, int, str]  # preset, budget, reward
    tasks: list[str]
    methods: list[str]
    mean_ranks: dict[str, float]
    test: str
    pvalue: float
    critical_difference: float | None
    dropped_methods: list[str] = field(default_factory=list)
    dropped_tasks: list[str] = field(default_factory=list)
    result: Any = None  # autorank's RankResult, for the diagram

    @property
    def label(self) -> str:
        preset, budget, reward = self.setting
        return f"{preset}, budget {budget}, reward {reward}"

    @property
    def slug(self) -> str:
        preset, budget, reward = self.setting
        return f"{preset}_b{budget}_{reward}"


def complete_block(
    cells: Mapping[tuple[str, str], float],
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(tasks, methods, dropped tasks, dropped methods) of the complete block over `cells`
    {(task, method): value} with the most cells, >= `MIN_TASKS` tasks and >= 2 methods (on a tie
    more methods, then the first by name); no block qualifies -> every task and method, for the
    caller to refuse. The largest block is maximal both ways (all methods that ran all its tasks,
    all tasks they all ran), so subsets of the smaller side, closed over the other, find it."""
    all_tasks = sorted({t for t, _ in cells})
    all_methods = sorted({m for _, m in cells})
    ran = {m: {t for t, mm in cells if mm == m} for m in all_methods}

    def close(methods: Sequence[str]) -> tuple[list[str], list[str]]:
        tasks = set.intersection(*(ran[m] for m in methods)) if methods else set()
        return sorted(tasks), [m for m in all_methods if tasks <= ran[m]]

    if len(all_methods) <= len(all_tasks):
        seeds = (
            list(c) for k in range(2, len(all_methods) + 1) for c in itertools.combinations(all_methods, k)
        )
    else:
        seeds = (
            [m for m in all_methods if set(c) <= ran[m]]
            for k in range(MIN_TASKS, len(all_tasks) + 1)
            for c in itertools.combinations(all_tasks, k)
        )
    best: tuple[tuple[int, int], list[str], list[str]] | None = None
    for seed in seeds:
        tasks, methods = close(seed)
        if len(tasks) < MIN_TASKS or len(methods) < 2:
            continue
        score = (len(tasks) * len(methods), len(methods))  # strict >: a tie keeps the first found
        if best is None or score > best[0]:
            best = (score, methods, tasks)
    if best is None:
        return all_tasks, all_methods, [], []
    _, methods, tasks = best
    dropped_tasks = sorted(set(all_tasks) - set(tasks))
    dropped_methods = sorted(set(all_methods) - set(methods))
    return tasks, methods, dropped_tasks, dropped_methods


def rank_setting(
    setting: tuple[str, int, str], cells: Mapping[tuple[str, str], float], larger_is_better: bool = True
) -> RankResult | None:
    """Mean ranks and the Friedman (or Wilcoxon) test at one setting; None with < 5 tasks or < 2 methods."""
    import pandas as pd
    from autorank import autorank

    tasks, methods, dropped_tasks, dropped_methods = complete_block(cells)
    if len(tasks) < MIN_TASKS or len(methods) < 2 or any((t, m) not in cells for t in tasks for m in methods):
        return None
    sign = 1.0 if larger_is_better else -1.0
    frame = pd.DataFrame({m: [sign * cells[(t, m)] for t in tasks] for m in methods}, index=tasks)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # autorank prints
        warnings.simplefilter("ignore")
        result = autorank(frame, alpha=ALPHA, verbose=False, force_mode="nonparametric", order="descending")
    ranks = {str(m): float(r) for m, r in result.rankdf["meanrank"].items()}
    pvalue = float(result.pvalue)
    if len(methods) == 2:  # autorank's is one-sided, its direction set by medians (module docstring)
        from scipy.stats import wilcoxon

        pvalue = float(wilcoxon(frame[methods[0]], frame[methods[1]], alternative="two-sided").pvalue)
    cd = getattr(result, "cd", None)
    return RankResult(
        setting=setting,
        tasks=tasks,
        methods=sorted(methods, key=lambda m: (ranks[m], m)),
        mean_ranks=ranks,
        test={"friedman": "Friedman", "wilcoxon": "Wilcoxon signed-rank"}.get(
            str(result.omnibus), str(result.omnibus)
        ),
        pvalue=pvalue,
        critical_difference=None if cd is None else float(cd),
        dropped_methods=dropped_methods,
        dropped_tasks=dropped_tasks,
        result=result,
    )


def cross_task_ranks(rows: Sequence[Any]) -> list[RankResult]:
    """One `RankResult` per (preset, budget, reward) over table-task search rows (`Row` objects
    with `task`, `method`, `preset`, `budget`, `reward`, `tests`, `direction`)."""
    settings: dict[tuple[str, int, str], dict[tuple[str, str], float]] = {}
    direction: dict[tuple[str, int, str], str] = {}
    for row in rows:
        if row.budget is None or not row.tests or row.base_and_tag[0] in NOT_SEARCHES:
            continue
        key = (row.preset, row.budget, row.reward)
        settings.setdefault(key, {})[(row.task, row.method)] = statistics.mean(row.tests)
        direction[key] = row.direction
    out = []
    for key in sorted(settings, key=lambda k: (k[1], k[0], k[2])):
        ranked = rank_setting(key, settings[key], direction[key] == "max")
        if ranked is not None:
            out.append(ranked)
    return out


def plot_cd(ranked: RankResult, path: Path) -> Path | None:
    """autorank's critical-difference diagram (Demšar 2006) of one setting, drawn even when the
    Friedman test is not significant (then every method is joined by a bar); None for two methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from autorank import plot_stats

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ax = plot_stats(ranked.result, allow_insignificant=True)
    if ax is None:  # two methods (Wilcoxon): autorank draws no diagram
        plt.close("all")
        return None
    fig = ax.get_figure() if not isinstance(ax, plt.Figure) else ax
    fig.suptitle(f"mean rank over {len(ranked.tasks)} table tasks ({ranked.label})", fontsize=9, y=1.12)
    fig.savefig(path, metadata={"Software": None}, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return path


def render(ranked: list[RankResult], figure_names: Mapping[str, str]) -> str:
    """The markdown section: one table of mean ranks per setting, the test, the diagram link."""
    if not ranked:
        return ""
    lines = [
        "\n## Across table tasks: mean ranks\n",
        "For each setting, every search's mean final test metric per table task is ranked across "
        "methods (1 = best); the mean rank over tasks is shown with Friedman's test (Nemenyi "
        "post-hoc, critical difference CD) as run by `autorank` (Herbold, JOSS 2020; Demšar, JMLR "
        "2006), or Wilcoxon's signed-rank test (two-sided) for two methods. Of the methods, the "
        "subset with the largest complete block (every method ran every task kept; at least five "
        "tasks) is ranked; the others and the tasks outside the block are named. Methods joined by a bar in the diagram are "
        "not significantly different.",
        "",
        "How to cite: the suite (nasrepro, this leaderboard's commit), Demšar (JMLR 2006) for the "
        "procedure, Herbold (JOSS 2020) for autorank, and each task's benchmark (see its section).",
    ]
    for r in ranked:
        cd = f", CD = {r.critical_difference:.2f}" if r.critical_difference is not None else ""
        lines += [
            f"\n### {r.label}\n",
            f"{len(r.tasks)} tasks: {', '.join(r.tasks)}. {r.test}: p = {r.pvalue:.3g}{cd}.",
        ]
        if r.dropped_methods or r.dropped_tasks:
            dropped = [f"methods {', '.join(r.dropped_methods)}"] if r.dropped_methods else []
            dropped += [f"tasks {', '.join(r.dropped_tasks)}"] if r.dropped_tasks else []
            lines.append(f"Dropped for missing cells: {'; '.join(dropped)}.")
        lines += ["", "| method | mean rank |", "|---|---|"]
        lines += [f"| {m} | {r.mean_ranks[m]:.2f} |" for m in r.methods]
        if r.slug in figure_names:
            lines.append(f"\n![critical difference]({figure_names[r.slug]})")
    return "\n".join(lines) + "\n"


def export(ranked: list[RankResult]) -> list[dict[str, Any]]:
    """The ranks as plain values for `leaderboard.json`."""
    return [
        {
            "preset": r.setting[0],
            "budget": r.setting[1],
            "reward": r.setting[2],
            "tasks": r.tasks,
            "mean_ranks": r.mean_ranks,
            "test": r.test,
            "pvalue": r.pvalue,
            "critical_difference": r.critical_difference,
            "dropped_methods": r.dropped_methods,
            "dropped_tasks": r.dropped_tasks,
        }
        for r in ranked
    ]
