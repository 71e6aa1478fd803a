"""The leaderboard: tables and figures built from run records alone, byte-stable on rebuild.

Per task, one row per (method, preset, budget, reward): n seeds, mean ± std of the final test
metric, the incumbent's cost where the records carry one (memory, latency, FLOPs: `pareto`),
relative improvement over random sampling (Yang, Esperança & Carlucci, ICLR 2020, Section 3:
RI = 100 * (m - r) / r against the randomly sampled average architecture), a tested verdict
against random search (`stats`), the search cost (charged cost and method overhead apart:
`cost`), and the number the method's paper reported with the difference. Then, from the same
rows: regret curves per table task (`regret`, optimum from `optima`), the Pareto front of
accuracy vs memory per task (`pareto`), cross-task mean ranks with Friedman tests and CD diagrams
(`ranks`), and the paper-claims verdicts (`claims`). Exports: `leaderboard.csv`/`.json` (rows),
`leaderboard_ranks.json`, `leaderboard_claims.json`; a `wandb.Table` when W&B is on; generated
blocks in method READMEs (`readme_blocks`).
"""

from __future__ import annotations

import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nasrepro.atomic import atomic_write_text
from nasrepro.tracking import (
    agreement_text,
    claims,
    cost,
    equal_time,
    optima,
    pareto,
    ranks,
    readme_blocks,
    regret,
)
from nasrepro.tracking.record import Record
from nasrepro.tracking.records import iter_loaded
from nasrepro.tracking.stats import Verdict, mean_std, verdicts

METHODS_DIR = Path(__file__).resolve().parents[1] / "methods"
#: the repository's own results folder: only its leaderboard rewrites the method READMEs' blocks
REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"
AUTO = Path("<auto>")
SUITE_CITATION = "nasrepro (this repository; cite the commit named in the section's records)"
#: how to cite a task's benchmark or data set, by task-name prefix
BENCHMARK_CITATIONS = {
    "nasbench201/": "Dong & Yang, NAS-Bench-201, ICLR 2020",
    "nasbench-graph/": "Qin et al., NAS-Bench-Graph, NeurIPS 2022 Datasets and Benchmarks",
    "cora": "Planetoid split: Yang, Cohen & Salakhutdinov, ICML 2016",
    "citeseer": "Planetoid split: Yang, Cohen & Salakhutdinov, ICML 2016",
    "pubmed": "Planetoid split: Yang, Cohen & Salakhutdinov, ICML 2016",
    "cifar10": "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009",
    "imagenet": "Russakovsky et al., ImageNet LSVRC, IJCV 2015",
    "ptb": "Marcus et al., Penn Treebank, 1993 (Mikolov's preprocessing)",
}
GroupKey = tuple[str, str, str, int | None, str]  # task, method, preset, budget, reward


@dataclass
class Row:
    task: str
    method: str
    preset: str
    budget: int | None
    reward: str
    records: list[Record]

    @property
    def tests(self) -> list[float]:
        return [r.metrics.test for r in self.records if r.metrics.test is not None]

    @property
    def direction(self) -> str:
        return self.records[0].direction

    @property
    def base_and_tag(self) -> tuple[str, str]:
        """`agnn [graphnas]` -> ("agnn", "graphnas"); trained rows have no search behind them."""
        name, _, tag = self.method.partition(" [")
        return name, tag.rstrip("]")


def random_baselines(rows: list[Row]) -> list[Row | None]:
    """For each row, random search's row at the same budget, preset, reward and variant tag; None
    for random search itself, random sampling, trained rows and rows without one."""
    baselines = {
        (r.base_and_tag[1], r.preset, r.budget, r.reward): r
        for r in rows
        if r.base_and_tag[0] == "random" and r.budget is not None
    }
    out: list[Row | None] = []
    for row in rows:
        name, tag = row.base_and_tag
        skip = name in ("random", "random-sampling") or row.budget is None
        out.append(None if skip else baselines.get((tag, row.preset, row.budget, row.reward)))
    return out


def versus_random(rows: list[Row]) -> list[Verdict | None]:
    """Each search row against random search at the same budget, preset, reward and variant tag
    (`nasrepro.tracking.stats`); None for random search itself, trained rows and small n."""
    pairs = [
        None if b is None else (row.tests, b.tests)
        for row, b in zip(rows, random_baselines(rows), strict=True)
    ]
    return verdicts(pairs, larger_is_better=rows[0].direction == "max")


def versus_random_at_equal_time(rows: list[Row]) -> list[equal_time.EqualTime | None]:
    """The same pairs cut at equal wall time on the search clock (`nasrepro.tracking.equal_time`)."""
    pairs = [
        None if b is None else (row.records, b.records)
        for row, b in zip(rows, random_baselines(rows), strict=True)
    ]
    return equal_time.compare(pairs, larger_is_better=rows[0].direction == "max")


def flags(row: Row) -> str:
    """Method-specific facts a reader needs to trust the row, read from the records' reports."""
    fractions = [
        len(r.method_extra.get("jumps", [])) / max(r.search_cost.queries, 1)
        for r in row.records
        if isinstance(r.method_extra, dict) and "jumps" in r.method_extra
    ]
    if fractions and max(fractions) > 0:
        return f"uniform jumps {100 * statistics.mean(fractions):.1f}% of queries (max {100 * max(fractions):.0f}%)"
    return ""


def paper_numbers(methods_dir: Path = METHODS_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """{(row, task): entry} from every `paper.yaml` (entries: task, value, table, verified, and
    optionally `row`, the leaderboard row the number belongs to when it is not the method's default
    row, e.g. ``agnn-best (trained)`` for a retrained architecture)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(methods_dir.glob("*/paper.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for entry in doc.get("results", []):
            out[(entry.get("row", doc["method"]), entry["task"])] = entry
    return out


def group(records: Iterable[Record]) -> dict[str, list[Row]]:
    groups: dict[GroupKey, list[Record]] = defaultdict(list)
    for record in records:
        if record.kind == "evaluate" and record.space.get("name") != "reference" and not record.tag:
            continue  # untagged trained searched architectures are diagnostics (e.g. table agreement)
        if record.kind != "search":
            name = record.tag or record.method
            key = (record.task, f"{name} (trained)", record.preset, None, "val")
        else:
            key = (
                record.task,
                f"{record.method} [{record.tag}]" if record.tag else record.method,
                record.preset,
                record.budget,
                record.reward,
            )
        groups[key].append(record)
    by_task: dict[str, list[Row]] = defaultdict(list)
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3] or 0, k[4])):
        recs = sorted(groups[key], key=lambda r: r.seed)
        by_task[key[0]].append(Row(*key, records=recs))
    return dict(sorted(by_task.items()))


def _relative_improvement(row: Row, rows: list[Row]) -> str:
    base = [
        t
        for r in rows
        if r.method == "random-sampling" and (r.reward, r.preset) == (row.reward, row.preset)
        for t in r.tests
    ]
    if not base or not row.tests or row.method == "random-sampling":
        return "—"
    ref, mean = statistics.mean(base), statistics.mean(row.tests)
    sign = 1.0 if row.direction == "max" else -1.0
    return f"{sign * 100.0 * (mean - ref) / ref:+.2f}%"


def _cost(row: Row) -> str:
    return cost.render(row.records)


def _paper(row: Row, papers: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, str]:
    entry = papers.get((row.method, row.task))
    if not entry or not row.tests:
        return "—", "—"
    mark = "" if entry.get("verified", False) else " (unverified)"
    return (
        f"{entry['value']}{mark} [{entry.get('table', '')}]",
        f"{statistics.mean(row.tests) - entry['value']:+.2f}",
    )


def _machines(rows: list[Row]) -> str:
    cpus = sorted({r.machine.get("cpu_model", "?") for row in rows for r in row.records})
    commits = sorted({r.git_commit[:12] for row in rows for r in row.records})
    return f"machines: {', '.join(cpus)}; commits: {', '.join(commits)}"


def render_markdown(
    by_task: dict[str, list[Row]],
    papers: dict[tuple[str, str], dict[str, Any]],
    *,
    figures: set[str] | None = None,
    extra_sections: str = "",
    papers_cited: dict[str, str] | None = None,
) -> str:
    """The markdown leaderboard; `figures` are the written figure names (relative paths) to link,
    `extra_sections` the cross-task sections appended after the task tables."""
    out = io.StringIO()
    out.write("# nasrepro leaderboard\n\n")
    out.write(
        "Built by `nasrepro leaderboard` from the run records under `runs/` alone; rebuild it rather than "
        "editing it. Test metric of the incumbent selected by the reward (validation unless the row says "
        "test); mean ± std over n seeds. RI: relative improvement over random sampling (Yang et al., ICLR "
        "2020). Cost (means per seed): unique queries; the charged cost -- on table tasks the benchmark's "
        "recorded training time of the queries, `unknown` where the table records none (compare by "
        "queries), never the look-up time; on training tasks our training time -- and, apart, the "
        "method's own overhead (controller updates, model fits) on the recording machine. "
        "`scale` says what a row may be compared with: cpu-scale rows are not the paper setting. "
        "vs random search: two-sided Mann-Whitney U over seeds against random search at the same "
        "budget, preset, reward and variant, Holm-corrected within the task; A = Vargha-Delaney effect "
        "size (probability a seed beats a random-search seed; 0.5 = none); only with >= 5 seeds a side. "
        "Flags: facts from the method's own report (e.g. AGNN's uniform jumps, which are random search). "
        "Incumbent cost (tasks whose records carry one): memory (which figure: in brackets), latency and "
        "FLOPs of each row's final architecture, beside its accuracy; the accuracy-vs-memory figure "
        "draws the Pareto front over all runs of the task. Test regret figures (table tasks): the "
        "table's best test value minus the incumbent's, median over seeds with a 95% bootstrap band; a "
        "dotted line marks the table's best-validation architecture, the floor of a search that selects "
        "on validation; rows that pick their incumbent by more than the reward are named, not drawn. "
        "After the tasks: mean ranks across table tasks with Friedman tests, and the paper claims.\n"
    )
    for task, rows in by_task.items():
        metric = rows[0].records[0].metric
        direction = "higher" if rows[0].direction == "max" else "lower"
        out.write(f"\n## {task}\n\nTest {metric} ({direction} is better). {_machines(rows)}.\n\n")
        costs = any(pareto.render(r.records) != "—" for r in rows)
        out.write(
            "| method | preset | scale | budget | reward | n | test "
            + ("| incumbent cost " if costs else "")
            + "| RI vs random sampling | vs random search | cost | paper | Δ vs paper | flags |\n"
        )
        out.write("|---|---|---|---|---|---|---|" + ("---|" if costs else "") + "---|---|---|---|---|---|\n")
        for row, verdict in zip(rows, versus_random(rows), strict=True):
            paper, delta = _paper(row, papers)
            scale = row.records[0].scale
            incumbent = f" {pareto.render(row.records)} |" if costs else ""
            out.write(
                f"| {row.method} | {row.preset} | {scale} | {row.budget or '—'} | {row.reward} | "
                f"{len(row.records)} | {mean_std(row.tests)} |{incumbent} {_relative_improvement(row, rows)} | "
                f"{verdict.render() if verdict else '—'} | {_cost(row)} | {paper} | {delta} | "
                f"{flags(row) or '—'} |\n"
            )
        out.write(equal_time.render([r.method for r in rows], versus_random_at_equal_time(rows)))
        names = _figure_names(task)
        if any(len(r.records[0].history) > 1 for r in rows):
            out.write(f"\n![best so far]({names[0]})\n")
        if figures is not None and names[2] in figures:
            out.write(f"\n![test regret]({names[2]})\n")
            if hidden := regret.not_drawn(rows):
                out.write(
                    f"\nNot drawn in the regret figure: {', '.join(hidden)}, whose incumbent is chosen by "
                    "more than the reward (e.g. a memory penalty), so the best reward so far is not "
                    "what they return; the exports give their final regret from their own incumbents.\n"
                )
        if figures is not None and names[3] in figures:
            out.write(f"\n![accuracy vs memory]({names[3]})\n")
        out.write(f"\n{_how_to_cite(task, rows, papers_cited)}\n")
    if extra_sections:
        out.write(extra_sections)
    return out.getvalue()


def _how_to_cite(task: str, rows: list[Row], papers_cited: dict[str, str] | None) -> str:
    """One line: the suite, the task's benchmark or data set, and the papers of its methods."""
    benchmark = next((c for prefix, c in BENCHMARK_CITATIONS.items() if task.startswith(prefix)), "")
    cited = papers_cited or {}
    methods = sorted({row.base_and_tag[0].split("-")[0] for row in rows} & set(cited))
    parts = [SUITE_CITATION] + ([benchmark] if benchmark else [])
    parts += [f"{m}: {cited[m]}" for m in methods]
    return "How to cite: " + "; ".join(parts) + "."


def _figure_names(task: str) -> tuple[str, str, str, str]:
    slug = task.replace("/", "_")
    return (
        f"figures/{slug}_best_so_far.png",
        f"figures/{slug}_accuracy_vs_cost.png",
        f"figures/{slug}_regret.png",
        f"figures/{slug}_pareto_memory.png",
    )


def _incumbent_curves(record: Record) -> tuple[list[float], list[float]]:
    """Best reward so far and the test metric of that incumbent, after each query."""
    sign = 1.0 if record.direction == "max" else -1.0
    best_score, best_test, scores, tests = -math.inf, math.nan, [], []
    for q in record.history:
        if q["score"] is not None and sign * q["score"] > best_score:
            best_score, best_test = sign * q["score"], q["test"] if q["test"] is not None else math.nan
        scores.append(sign * best_score if best_score > -math.inf else math.nan)
        tests.append(best_test)
    return scores, tests


def plot_task(task: str, rows: list[Row], results_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    metric = rows[0].records[0].metric
    best_path, scatter_path = (results_dir / name for name in _figure_names(task)[:2])
    best_path.parent.mkdir(parents=True, exist_ok=True)
    if any(len(r.records[0].history) > 1 for r in rows):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
        for i, row in enumerate(rows):
            if not row.records[0].history:
                continue
            colour = plt.get_cmap("tab20")(i % 20)  # one per row in both panels (a row may miss one)
            curves = [_incumbent_curves(r) for r in row.records if r.history]
            length = max(len(c[0]) for c in curves)
            if length < 2:
                continue
            x = regret.grid(length)  # log-spaced: the axis is logarithmic
            label = f"{row.method} ({row.preset}, b={row.budget}, n={len(curves)})"
            # the test panel shows the incumbent's test: only where the incumbent is the best reward
            panels = (0, 1) if all(regret.follows_best_score(r) for r in row.records) else (0,)
            for ax, idx in zip(axes, panels, strict=False):
                ys = regret.pad_last([c[idx] for c in curves])[:, x - 1]
                mean = np.nanmean(ys, axis=0)
                ax.plot(x, mean, label=label, linewidth=1.2, color=colour)
                if len(curves) > 1:
                    std = np.nanstd(ys, axis=0)
                    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=colour, linewidth=0)
        for ax, title in zip(
            axes, (f"best validation {metric} so far", f"test {metric} of the incumbent"), strict=True
        ):
            ax.set_title(title)
            ax.set_xlabel("unique queries")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, loc="lower right")  # every row is in the left panel
        fig.suptitle(f"{task}: mean ± std over seeds")
        fig.tight_layout()
        fig.savefig(best_path, metadata={"Software": None})
        plt.close(fig)
        written.append(best_path)

    points = [
        (r.metrics.extra.get("params", r.metrics.extra.get("params_m")), r.metrics.test, row.method)
        for row in rows
        for r in row.records
        if r.metrics.test is not None
    ]
    points = [p for p in points if p[0] is not None]
    if points:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for method in sorted({p[2] for p in points}):
            xs = [p[0] for p in points if p[2] == method]
            ys = [p[1] for p in points if p[2] == method]
            ax.scatter(xs, ys, label=method, s=14, alpha=0.7)
        unit = "params (millions)" if "params_m" in rows[0].records[0].metrics.extra else "params"
        ax.set_xlabel(unit)
        ax.set_ylabel(f"test {metric}")
        ax.set_title(f"{task}: accuracy vs cost (one point per run)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(scatter_path, metadata={"Software": None})
        plt.close(fig)
        written.append(scatter_path)
    return written


def _is_table_row(row: Row) -> bool:
    return cost.is_table_record(row.records[0])


def build(results_dir: Path, *, wandb: str = "disabled", readmes_dir: Path | None = AUTO) -> list[Path]:
    """Write `LEADERBOARD.md`, its figures and exports for every record under `results_dir/runs`.

    `wandb` logs the rows as a `wandb.Table` (offline/online); `readmes_dir` is the methods folder
    whose READMEs' generated blocks are rewritten (default: the package's own, only when
    `results_dir` is the repository's `results/`, so a scratch leaderboard never touches them).
    """
    from nasrepro.errors import UsageError

    if not (results_dir / "runs").is_dir():
        raise UsageError(
            f"no records under {results_dir / 'runs'}; run `nasrepro search --out {results_dir}` first"
        )
    by_task = group(record for _, record in iter_loaded(results_dir, fast=True))
    papers = paper_numbers()
    claim_list = claims.read_claims(METHODS_DIR)
    cited = {c.method: c.citation for c in claim_list}
    table_optima = optima.read(results_dir)
    written: list[Path] = []
    figures: set[str] = set()
    final_regret: dict[tuple[str, str, str, str, int], float] = {}
    for task, rows in by_task.items():
        written += plot_task(task, rows, results_dir)
        names = _figure_names(task)
        metric = rows[0].records[0].metric
        if task in table_optima and any(_is_table_row(r) for r in rows):
            table_rows = [r for r in rows if _is_table_row(r)]
            curves = regret.curves_for(table_rows, table_optima[task])
            path = regret.plot(
                task, curves, table_optima[task], results_dir / names[2], metric, rows[0].direction
            )
            if path is not None:
                written.append(path)
                figures.add(names[2])
            for key, value in regret.final_regrets(table_rows, table_optima[task]).items():
                final_regret[(task, *key)] = value
        path = pareto.plot(task, rows, results_dir / names[3], metric, rows[0].direction)
        if path is not None:
            written.append(path)
            figures.add(names[3])
    ranked = ranks.cross_task_ranks([r for rows in by_task.values() for r in rows if _is_table_row(r)])
    cd_names = {}
    for r in ranked:
        name = f"figures/cd_{r.slug}.png"
        path = ranks.plot_cd(r, results_dir / name)
        if path is not None:
            written.append(path)
            cd_names[r.slug] = name
    all_rows = [r for rows in by_task.values() for r in rows]
    judged = claims.judge_all(claim_list, all_rows, results_dir)
    missing_optima = sorted(
        t for t, rows in by_task.items() if t not in table_optima and any(_is_table_row(r) for r in rows)
    )
    sections = _regret_note(missing_optima) + ranks.render(ranked, cd_names) + claims.render(judged)
    board = results_dir / "LEADERBOARD.md"
    atomic_write_text(
        board, render_markdown(by_task, papers, figures=figures, extra_sections=sections, papers_cited=cited)
    )
    table = export_rows(by_task, final_regret)
    csv_path, json_path = results_dir / "leaderboard.csv", results_dir / "leaderboard.json"
    atomic_write_text(json_path, json.dumps(table, indent=1, sort_keys=True) + "\n")
    atomic_write_text(csv_path, _csv(table))
    ranks_path, claims_path = results_dir / "leaderboard_ranks.json", results_dir / "leaderboard_claims.json"
    atomic_write_text(ranks_path, json.dumps(ranks.export(ranked), indent=1, sort_keys=True) + "\n")
    claims_table = [j.to_dict() for j in judged]
    atomic_write_text(claims_path, json.dumps(claims_table, indent=1, sort_keys=True) + "\n")
    from nasrepro.tracking.wandb_log import log_leaderboard

    log_leaderboard(table, claims_table, wandb, results_dir / "wandb")
    if readmes_dir is AUTO:
        readmes_dir = METHODS_DIR if results_dir.resolve() == REPO_RESULTS.resolve() else None
    changed = []
    if readmes_dir is not None:
        changed = readme_blocks.rewrite_readmes(
            readmes_dir,
            _block_renderer(by_task, judged, results_dir),
            extra=[readmes_dir.parents[1] / "README.md"],
        )
    return [board, csv_path, json_path, ranks_path, claims_path, *written, *changed]


def _regret_note(missing: list[str]) -> str:
    if not missing:
        return ""
    return (
        f"\nNo regret curves for {', '.join(missing)}: the table optimum is not in `{optima.FILENAME}` "
        "(see `nasrepro.tracking.optima` for the command that computes it once from the tables).\n"
    )


def _block_renderer(
    by_task: dict[str, list[Row]], judged: list[claims.Judged], results_dir: Path
) -> readme_blocks.Renderer:
    """What a README block named `results`, `results@TASK`, `claims`, `board@TASK` or `study@STEM`
    shows (see `readme_blocks`)."""
    from nasrepro.errors import DataError

    def belongs(row: Row, method: str) -> bool:
        name = row.base_and_tag[0]
        return name == method or name.startswith(f"{method}-") or name.startswith(f"{method} ")

    tested = {
        id(row): verdict
        for rows in by_task.values()
        for row, verdict in zip(rows, versus_random(rows), strict=True)
    }

    def cells(row: Row) -> list[str]:
        verdict = tested.get(id(row))
        return [
            row.task,
            row.method,
            row.preset,
            str(row.budget or "—"),
            str(len(row.records)),
            mean_std(row.tests),
            verdict.render() if verdict else "—",
            _cost(row),
        ]

    header = ["task", "row", "preset", "budget", "n", "test", "vs random search", "cost"]

    def render(method: str, name: str, argument: str) -> str:
        if name == "claims":
            mine = [j for j in judged if j.claim.method == method]
            return claims.render(mine).replace("\n## Paper claims\n", "").strip("\n") or "(no claims)"
        if name == "board":
            if argument not in by_task:
                return f"(no records on {argument} yet)"
            note = "Generated by `nasrepro leaderboard` from the records; do not edit by hand."
            return note + "\n\n" + readme_blocks.row_table(by_task[argument], cells, header)
        if name == "study":
            return agreement_text.readme_block(results_dir, argument)
        if name == "results":
            tasks = [argument] if argument else list(by_task)
            if argument and argument not in by_task:
                return f"(no records on {argument} yet)"
            rows = [
                r
                for t in tasks
                for r in by_task[t]
                if belongs(r, method) or (argument and r.base_and_tag[0] == "random")
            ]
            note = "Generated by `nasrepro leaderboard` from the records; do not edit by hand."
            return note + "\n\n" + readme_blocks.row_table(rows, cells, header) if rows else note
        raise DataError(
            f"unknown leaderboard block {name!r} in the {method or 'repository'} README "
            "(results, results@TASK, claims, board@TASK, study@STEM)"
        )

    return render


def export_rows(
    by_task: dict[str, list[Row]], final_regret: dict[tuple[str, str, str, str, int], float] | None = None
) -> list[dict[str, Any]]:
    """Every leaderboard row as plain values: one per method x task x budget x preset x reward."""
    final_regret = final_regret or {}
    out = []
    for task, rows in by_task.items():
        timed = versus_random_at_equal_time(rows)
        for row, verdict, at_time in zip(rows, versus_random(rows), timed, strict=True):
            tests = row.tests
            regret_key = (task, row.method, row.preset, row.reward, row.budget or 0)
            out.append(
                {
                    "task": task,
                    "method": row.method,
                    "preset": row.preset,
                    "scale": row.records[0].scale,
                    "budget": row.budget,
                    "reward": row.reward,
                    "n": len(row.records),
                    "test_mean": statistics.mean(tests) if tests else None,
                    "test_std": statistics.stdev(tests) if len(tests) > 1 else None,
                    "queries_mean": statistics.mean(r.search_cost.queries for r in row.records),
                    "wall_seconds_mean": statistics.mean(r.search_cost.wall_seconds for r in row.records),
                    **cost.summary(row.records),
                    **pareto.summary(row.records),
                    "final_test_regret_median": final_regret.get(regret_key),
                    "flags": flags(row),
                    **({f"vs_random_{k}": v for k, v in verdict.to_dict().items()} if verdict else {}),
                    **(at_time.to_dict() if at_time else {}),
                }
            )
    return out


def _csv(table: list[dict[str, Any]]) -> str:
    import csv

    columns = sorted({key for row in table for key in row})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()
