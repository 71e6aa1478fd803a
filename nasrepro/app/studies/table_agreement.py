"""Does our live training agree with a tabular benchmark? Rank correlation and mean absolute
difference between the table's test accuracy and ours, over architectures spread across the
table's range -- the check that lets a table result stand in for a trained one.

    python -m nasrepro.app.studies.table_agreement --task cora --table nasbench-graph/cora \\
        --n 30 --seeds 0-1 --preset cpu --out results

Each architecture is trained by `nasrepro evaluate` (one record per seed); the summary is computed
from those records alone and written beside them as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from nasrepro.atomic import atomic_write_text
from nasrepro.tracking.records import iter_records


def spread_archs(table_task: Any, n: int) -> list[str]:
    """`n` architectures at evenly spaced quantiles of the table's test accuracy (deterministic)."""
    entries = sorted(((e.test, str(a)) for a, e in table_task.table().items()), key=lambda t: (t[0], t[1]))
    picks = np.linspace(0, len(entries) - 1, n).round().astype(int)
    return [entries[i][1] for i in sorted(set(picks.tolist()))]


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho with average ranks for ties."""

    def ranks(v: list[float]) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        values = np.asarray(v)
        for value in np.unique(values):
            tie = values == value
            r[tie] = r[tie].mean()
        return r

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def summarise(out: Path, task: str, table_task: Any, preset: str) -> dict[str, Any]:
    ours: dict[str, list[float]] = {}
    for _, record in iter_records(out):
        if (
            record["kind"] == "evaluate"
            and record["task"] == task
            and record["preset"] == preset
            and record["space"].get("name") == table_task.space().name
        ):
            ours.setdefault(record["best_arch"], []).append(record["metrics"]["test"])
    space = table_task.space()
    rows = sorted(
        (arch, statistics.mean(v), len(v), table_task.table().lookup(space.parse(arch)).test)
        for arch, v in ours.items()
    )
    if len(rows) < 2:
        raise SystemExit(f"need at least two trained architectures under {out}, found {len(rows)}")
    trained, table = [r[1] for r in rows], [r[3] for r in rows]
    return {
        "task": task,
        "table": table_task.name,
        "preset": preset,
        "architectures": len(rows),
        "seeds_per_arch": sorted({r[2] for r in rows}),
        "spearman": spearman(trained, table),
        "mean_abs_diff": statistics.mean(abs(a - b) for a, b in zip(trained, table, strict=True)),
        "mean_diff_ours_minus_table": statistics.mean(a - b for a, b in zip(trained, table, strict=True)),
        "rows": [{"arch": a, "ours_test_mean": m, "n": k, "table_test": t} for a, m, k, t in rows],
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"# Live training vs {summary['table']}",
        "",
        f"{summary['architectures']} architectures spread over the table's test-accuracy range, each trained "
        f"by `nasrepro evaluate --task {summary['task']} --preset {summary['preset']}` "
        f"(seeds per architecture: {summary['seeds_per_arch']}).",
        "",
        f"- Spearman rank correlation: **{summary['spearman']:.3f}**",
        f"- mean |ours - table| test accuracy: **{summary['mean_abs_diff']:.2f}** points "
        f"(mean signed difference {summary['mean_diff_ours_minus_table']:+.2f})",
        "",
        "| architecture | ours (mean test) | n | table test |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{r['arch']}` | {r['ours_test_mean']:.2f} | {r['n']} | {r['table_test']:.2f} |"
        for r in summary["rows"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from nasrepro.app.evaluate import EvaluateRequest, evaluate_label, evaluate_record_path, run_evaluate
    from nasrepro.app.requests import parse_seeds
    from nasrepro.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="cora")
    parser.add_argument("--table", default="nasbench-graph/cora")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seeds", default="0-1")
    parser.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    out, table_task = Path(args.out), get_task(args.table)
    for arch in spread_archs(table_task, args.n):
        for seed in parse_seeds(args.seeds):
            req = EvaluateRequest(
                task=args.task, arch=arch, preset=args.preset, seed=seed, out=out, wandb="disabled"
            )
            if not evaluate_record_path(req, evaluate_label(arch)).exists():
                run_evaluate(req)  # finished evaluations are kept: rerunning resumes
    summary = summarise(out, args.task, table_task, args.preset)
    stem = out / f"agreement_{args.task}_vs_{args.table.replace('/', '_')}_{args.preset}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(summary, indent=1, sort_keys=True) + "\n")
    atomic_write_text(stem.with_suffix(".md"), render(summary))
    print(render(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
