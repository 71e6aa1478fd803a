"""Cross-task mean ranks per budget with a Friedman test and a critical-difference diagram.

Issue 16 item 4: one number per method over every table task, and a test of whether the ranks
differ at all, instead of a by-eye reading of many tables (Demšar, JMLR 2006: Friedman's test
over data sets with the Nemenyi post-hoc test and its critical-difference diagram). The tests are
`autorank`'s (Herbold, JOSS 2020), forced to the non-parametric branch so every budget gets the
same procedure: Friedman + Nemenyi for three or more methods, Wilcoxon's signed-rank test for two.

Blocks are table tasks, treatments are the search rows (method and variant tag) at one (preset,
budget, reward), the value is the row's mean final test metric over seeds. A Friedman test needs
a complete block design, so rows and tasks with missing cells are dropped greedily (whichever
method or task misses the most cells first; on a tie the task, while at least five remain) and
the section names what was dropped; autorank needs at least five tasks.
"""

from __future__ import annotations

import contextlib
import io
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
    """(tasks, methods, dropped tasks, dropped methods) of a complete block design over `cells`
    {(task, method): value}: drop whichever task or method misses the most cells (on a tie the
    task, unless only `MIN_TASKS` remain; then by name) until none is missing."""
    tasks = sorted({t for t, _ in cells})
    methods = sorted({m for _, m in cells})
    dropped_tasks: list[str] = []
    dropped_methods: list[str] = []
    while tasks and methods:
        missing_m = {m: sum((t, m) not in cells for t in tasks) for m in methods}
        missing_t = {t: sum((t, m) not in cells for m in methods) for t in tasks}
        worst_m = max(methods, key=lambda m: (missing_m[m], m))
        worst_t = max(tasks, key=lambda t: (missing_t[t], t))
        if missing_m[worst_m] == 0:
            break
        keep_tasks = missing_m[worst_m] == missing_t[worst_t] and len(tasks) <= MIN_TASKS
        if missing_m[worst_m] > missing_t[worst_t] or keep_tasks:
            methods.remove(worst_m)
            dropped_methods.append(worst_m)
        else:
            tasks.remove(worst_t)
            dropped_tasks.append(worst_t)
    return tasks, methods, sorted(dropped_tasks), sorted(dropped_methods)


def rank_setting(
    setting: tuple[str, int, str], cells: Mapping[tuple[str, str], float], larger_is_better: bool = True
) -> RankResult | None:
    """Mean ranks and the Friedman (or Wilcoxon) test at one setting; None with < 5 tasks or < 2 methods."""
    import pandas as pd
    from autorank import autorank

    tasks, methods, dropped_tasks, dropped_methods = complete_block(cells)
    if len(tasks) < MIN_TASKS or len(methods) < 2:
        return None
    sign = 1.0 if larger_is_better else -1.0
    frame = pd.DataFrame({m: [sign * cells[(t, m)] for t in tasks] for m in methods}, index=tasks)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # autorank prints
        warnings.simplefilter("ignore")
        result = autorank(frame, alpha=ALPHA, verbose=False, force_mode="nonparametric", order="descending")
    ranks = {str(m): float(r) for m, r in result.rankdf["meanrank"].items()}
    cd = getattr(result, "cd", None)
    return RankResult(
        setting=setting,
        tasks=tasks,
        methods=sorted(methods, key=lambda m: (ranks[m], m)),
        mean_ranks=ranks,
        test={"friedman": "Friedman", "wilcoxon": "Wilcoxon signed-rank"}.get(
            str(result.omnibus), str(result.omnibus)
        ),
        pvalue=float(result.pvalue),
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
        "2006), or Wilcoxon's signed-rank test for two methods. Methods or tasks with missing cells "
        "are dropped to keep a complete block design. Methods joined by a bar in the diagram are "
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
