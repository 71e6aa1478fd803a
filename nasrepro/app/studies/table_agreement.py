"""Does our live training agree with a tabular benchmark? The check that lets a table result stand
in for a trained one (issue 16 item 2).

    nasrepro study table-agreement --task cora --table nasbench-graph/cora \\
        --n 60 --preset cpu --out results [--shard K/N]

Sampling: `n` architectures stratified by the table's *validation* accuracy (one from each of `n`
equal-count strata, drawn with a fixed seed), so the sample covers the table's range without being
picked on test noise. Each is trained by `nasrepro evaluate` under the space's protocol -- for
NAS-Bench-Graph the benchmark's own (raw features, its optimiser, the epoch of lowest validation
loss, the mean over 3 seeds) -- one record per architecture, kept, so rerunning resumes. Records
made from `e4008f7` on train NAS-Bench-Graph's network with sparse raw features (the same network
and dropout law, a different random stream, about 2x faster; `nasrepro.spaces.sparse_inputs`); the
earlier ones with the dense path. Each record names its commit.

Statistics, from those records alone: Kendall's tau and Spearman's rho between our mean test accuracy
and the table's, with percentile-bootstrap 95% intervals (resampling architectures), over the whole
sample and within the table's top validation quartile (where searches operate); mean absolute and
signed differences; and the *noise ceiling*: what a perfect replica of the benchmark's procedure
would reach, given the per-seed spread we measure: two independent 3-seed replicas of the same
true means (`agreement`: drawn from their posterior given the table, each architecture with its
own seed noise) correlated with each other, with the 95% range of that agreement over replica
pairs. Architectures more than 10 points from the table are listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import UsageError
from nasrepro.tracking.agreement_text import FAR, summary_lines
from nasrepro.tracking.records import iter_records, read_record


def stratified_archs(table_task: Any, n: int, seed: int = 0) -> list[str]:
    """One architecture from each of `n` equal-count strata of the table's validation accuracy."""
    entries = sorted(((e.val, str(a)) for a, e in table_task.table().items()), key=lambda t: (t[0], t[1]))
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, len(entries), n + 1).round().astype(int)
    return [entries[int(rng.integers(lo, hi))][1] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def kendall_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of `x` and `y` (shape (R, n)), vectorised over rows: the
    bootstrap and the noise ceiling need thousands of them."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    denom = np.sqrt((sx**2).sum((1, 2)) * (sy**2).sum((1, 2)))
    return np.divide((sx * sy).sum((1, 2)), denom, out=np.full(len(x), np.nan), where=denom > 0)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho (average ranks for ties) of each row pair, vectorised over rows."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    denom = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    return np.divide((rx * ry).sum(1), denom, out=np.full(len(x), np.nan), where=denom > 0)


def latent_variance(table: np.ndarray, noise_var: np.ndarray) -> float:
    """tau^2, the variance of the architectures' true means, by maximum likelihood under
    table_i ~ N(mu, tau^2 + v_i) with each architecture's own noise variance v_i (mu profiled out).

    The method of moments (Var(table) - mean(v)) lets one architecture with diverged seeds (a
    per-seed SD of 39 points on Cora) set the noise of all sixty; the likelihood weighs each by
    its own noise, so such an architecture mostly says little about tau^2.
    """
    from scipy.optimize import minimize_scalar

    spread = float(np.var(table)) if len(table) > 1 else 0.0
    if spread <= 0:
        return 0.0

    def nll(tau2: float) -> float:
        total = tau2 + noise_var + 1e-12
        mu = float(np.sum(table / total) / np.sum(1 / total))
        return float(np.sum(np.log(total) + (table - mu) ** 2 / total))

    best = minimize_scalar(nll, bounds=(0.0, 4 * spread), method="bounded", options={"xatol": 1e-6 * spread})
    return float(best.x) if nll(float(best.x)) < nll(0.0) else 0.0


def agreement(
    ours: np.ndarray, table: np.ndarray, spread: np.ndarray, seed: int = 0, reps: int = 2000, seeds: int = 3
) -> dict[str, Any]:
    """Rank and absolute agreement of `ours` with `table`, bootstrap intervals and the noise ceiling.

    The ceiling is the agreement of two independent perfect replicas of the benchmark's procedure:
    each architecture's `seeds`-seed mean is its true mean plus N(0, v_i), v_i = s_i^2 / seeds
    (s_i its per-seed standard deviation, `spread`), drawn twice and correlated. The true means are
    unknown: each replica pair draws them from their posterior given the table under the normal
    model table_i ~ N(mu, tau^2 + v_i) (tau^2 by `latent_variance`): mean mu + B_i (table_i - mu),
    variance B_i v_i, B_i = tau^2 / (tau^2 + v_i). Within a narrow band such as the top quartile
    much of the table's spread is seed noise; treating the table's values as exact would put the
    ceiling too high. The ceiling's own 95% range over the replica pairs is reported with it: a
    sample of sixty architectures can land above the ceiling's mean by chance.
    """
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ours), (reps, len(ours)))  # bootstrap resamples of the architectures
    boot_tau, boot_rho = kendall_b(ours[pick], table[pick]), spearman(ours[pick], table[pick])
    noise_var = spread**2 / seeds
    tau2 = latent_variance(table, noise_var)
    weight = 1 / (tau2 + noise_var + 1e-12)
    mu = float(np.sum(table * weight) / np.sum(weight))
    shrink = np.divide(tau2, tau2 + noise_var, out=np.ones_like(noise_var), where=(tau2 + noise_var) > 0)
    latent = mu + shrink * (table - mu) + rng.normal(size=(reps, len(table))) * np.sqrt(shrink * noise_var)
    replica = latent + rng.normal(size=(reps, len(table))) * np.sqrt(noise_var)
    benchmark = latent + rng.normal(size=(reps, len(table))) * np.sqrt(noise_var)
    ci = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
    ceiling_tau, ceiling_rho = kendall_b(replica, benchmark), spearman(replica, benchmark)
    total_var = float(np.var(table)) if len(table) > 1 else 0.0  # ddof 0, as tau^2's likelihood
    return {
        "n": len(ours),
        "kendall": float(kendall_b(ours[None], table[None])[0]),
        "spearman": float(spearman(ours[None], table[None])[0]),
        "kendall_ci95": ci(boot_tau),
        "spearman_ci95": ci(boot_rho),
        "mean_abs_diff": float(np.mean(np.abs(ours - table))),
        "mean_diff_ours_minus_table": float(np.mean(ours - table)),
        "ceiling_kendall": float(np.nanmean(ceiling_tau)),
        "ceiling_spearman": float(np.nanmean(ceiling_rho)),
        "ceiling_kendall_range95": ci(ceiling_tau),
        "ceiling_spearman_range95": ci(ceiling_rho),
        "ceiling_mean_abs_diff": float(np.mean(np.abs(replica - benchmark))),
        # share of the table's variance that is not seed noise
        "ceiling_true_spread_fraction": min(1.0, tau2 / total_var) if total_var > 0 else 0.0,
    }


def under_protocol(record: dict[str, Any]) -> bool:
    """Whether an evaluate record was trained under the space's protocol (issue 16 item 1): records of
    the first study (final epoch, one seed) predate the recipe's `select` and are neither reused nor
    summarised."""
    return bool(record["config"]["preset"]["recipe"].get("select"))


def summarise(out: Path, task: str, table_task: Any, preset: str) -> dict[str, Any]:
    space, table = table_task.space(), table_task.table()
    found: dict[str, dict[str, Any]] = {}
    probes: dict[str, dict[int, list[float]]] = {}  # arch -> first seed -> its seeds' tests
    for _, record in iter_records(out):
        if (
            record["kind"] == "evaluate"
            and record["task"] == task
            and record["preset"] == preset
            and record["space"].get("name") == space.name
            and under_protocol(record)
        ):
            if record["seed"] == 0:  # the sample: seeds 0.. of the recipe's repeats
                found[record["best_arch"]] = record["metrics"]
            else:  # `--probe`: more seeds of a far architecture, never part of the statistics
                probes.setdefault(record["best_arch"], {})[record["seed"]] = record["metrics"]["test_seeds"]
    if len(found) < 4:
        raise UsageError(
            f"need at least four trained architectures under {out}, found {len(found)}: run the study "
            "without --summarise-only first"
        )
    valid = np.array([e.val for _, e in table.items()])
    top_cut = float(np.percentile(valid, 75))
    rows = []
    for arch, m in sorted(found.items()):
        entry = table.lookup(space.parse(arch))
        seeds = m["test_seeds"]
        rows.append(
            {
                "arch": arch,
                "ours_test_mean": m["test"],
                "ours_test_seeds": seeds,
                "ours_test_std": statistics.stdev(seeds) if len(seeds) > 1 else 0.0,
                "table_val": entry.val,
                "table_test": entry.test,
                "top_quartile": entry.val >= top_cut,
            }
        )
    col = lambda key, subset=rows: np.array([r[key] for r in subset], dtype=float)  # noqa: E731
    top = [r for r in rows if r["top_quartile"]]
    return {
        "task": task,
        "table": table_task.name,
        "preset": preset,
        "sampling": "stratified by table validation accuracy (equal-count strata, one each, seed 0)",
        "seeds_per_arch": sorted({len(r["ours_test_seeds"]) for r in rows}),
        "top_quartile_val_cut": top_cut,
        "all": _with_self_agreement(
            agreement(col("ours_test_mean"), col("table_test"), col("ours_test_std")), rows
        ),
        "top_quartile": _with_self_agreement(
            agreement(col("ours_test_mean", top), col("table_test", top), col("ours_test_std", top)), top
        )
        if len(top) >= 4
        else {"n": len(top)},
        "far": [
            {**r, "probe_test_seeds": [v for _, vs in sorted(probes.get(r["arch"], {}).items()) for v in vs]}
            for r in rows
            if abs(r["ours_test_mean"] - r["table_test"]) > FAR
        ],
        "rows": rows,
    }


def _with_self_agreement(stats_: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add how well the table's own validation accuracy ranks its test accuracy on the same
    architectures: a reference for how much rank signal the subset holds at all."""
    val, test = (np.array([[r[k] for r in rows]], dtype=float) for k in ("table_val", "table_test"))
    return {**stats_, "table_val_vs_test_kendall": float(kendall_b(val, test)[0])}


def _far(r: dict[str, Any]) -> str:
    """One far architecture: our seeds, the probe's, and what was found about it (`finding`)."""
    seeds = ", ".join(f"{v:.1f}" for v in r["ours_test_seeds"])
    text = f"`{r['arch']}` (ours {r['ours_test_mean']:.1f}, table {r['table_test']:.1f}, our seeds {seeds}"
    more = r.get("probe_test_seeds") or []
    if more:
        every = [*r["ours_test_seeds"], *more]
        text += (
            f"; {len(more)} more seeds (`--probe`): {', '.join(f'{v:.1f}' for v in more)}, "
            f"mean of all {len(every)} seeds {statistics.mean(every):.1f}"
        )
    return f"- {text}). " + (r.get("finding") or "No finding recorded.")


def add_findings(summary: dict[str, Any], path: Path) -> None:
    """Attach what was found about each far architecture, from `path` (YAML: architecture -> text,
    written by whoever investigated it; the numbers stay generated from the records). A finding for
    an architecture that is not far from the table is an error, so the file cannot go stale."""
    if not path.is_file():
        return
    import yaml

    findings = yaml.safe_load(path.read_text()) or {}
    far = {r["arch"]: r for r in summary["far"]}
    stale = sorted(set(findings) - set(far))
    if stale:
        raise UsageError(f"{path} has findings for architectures that are not far from the table: {stale}")
    for arch, text in findings.items():
        far[arch]["finding"] = " ".join(str(text).split())


def provenance(argv: list[str] | None) -> dict[str, str]:
    """How the summary was made: the command, the commit (``+dirty`` with local changes) and when;
    the statistics change with the code even when the records do not."""
    import sys
    from datetime import UTC, datetime

    from nasrepro.tracking.provenance import git_commit

    args = sys.argv[1:] if argv is None else argv
    return {
        "command": " ".join(["nasrepro study table-agreement", *args]),
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def render(summary: dict[str, Any], figure: str) -> str:
    lines = [
        f"# Live training vs {summary['table']}",
        "",
        f"Architectures sampled {summary['sampling']}; each trained by `nasrepro evaluate --task "
        f"{summary['task']} --space {summary['table'].split('/')[0]} --preset {summary['preset']}` under "
        f"the benchmark's protocol (seeds per architecture: {summary['seeds_per_arch']}). Top quartile: "
        f"table validation accuracy >= {summary['top_quartile_val_cut']:.2f}. Built by "
        "`nasrepro study table-agreement` from the records alone"
        + (
            f" (`{summary['provenance']['command']}` at {summary['provenance']['git_commit']}, "
            f"{summary['provenance']['created']})."
            if "provenance" in summary
            else "."
        ),
        "",
        *summary_lines(summary),
        "",
        f"![ours vs table]({figure})",
        "",
        f"Architectures more than {FAR:.0f} points from the table: {len(summary['far']) or 'none'}",
        "",
        *(_far(r) for r in summary["far"]),
        *([""] if summary["far"] else []),
        "| architecture | ours: mean test (seeds) | table test | table val |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{r['arch']}` | {r['ours_test_mean']:.2f} ({', '.join(f'{v:.1f}' for v in r['ours_test_seeds'])}) "
        f"| {r['table_test']:.2f} | {r['table_val']:.2f} |"
        for r in summary["rows"]
    ]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Ours vs the table, one point per architecture (bars: our per-seed standard deviation): the
    whole sample, and beside it the top validation quartile at its own scale, where searches operate
    and the table's values lie within a few points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    top_rows = [r for r in rows if r["top_quartile"]]
    panels = [(rows, "whole sample", summary["all"])] + (
        [(top_rows, "top validation quartile", summary["top_quartile"])] if top_rows else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (subset, name, stats_) in zip(axes[0], panels, strict=True):
        for top, colour, label in (
            (False, "tab:blue", "sample"),
            (True, "tab:red", "top validation quartile"),
        ):
            pick = [r for r in subset if r["top_quartile"] == top]
            if pick:
                ax.errorbar(
                    [r["table_test"] for r in pick],
                    [r["ours_test_mean"] for r in pick],
                    yerr=[r["ours_test_std"] for r in pick],
                    fmt="o",
                    ms=3,
                    color=colour,
                    label=label,
                )
        pad = 2 if subset is rows else 0.5
        lo = min(min(r["table_test"], r["ours_test_mean"] - r["ours_test_std"]) for r in subset) - pad
        hi = max(max(r["table_test"], r["ours_test_mean"] + r["ours_test_std"]) for r in subset) + pad
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"{summary['table']} test accuracy (%)")
        ax.set_ylabel("ours, mean of seeds (%)")
        rho = f"Spearman {stats_['spearman']:.2f}, " if "spearman" in stats_ else ""
        ax.set_title(f"{summary['task']}, {name}: {rho}n={stats_['n']}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from nasrepro.app.evaluate import EvaluateRequest, evaluate_label, evaluate_record_path, run_evaluate
    from nasrepro.tasks import get_task

    parser = argparse.ArgumentParser(
        prog="nasrepro study table-agreement", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--task", default="cora")
    parser.add_argument("--table", default="nasbench-graph/cora")
    parser.add_argument(
        "--n", type=int, default=60, help="architectures (strata of table validation accuracy)"
    )
    parser.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--out", default="results")
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="train no architecture of the sample (only --probe's seeds, if asked); summarise the records",
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        help="K/N: train only every N-th architecture from the K-th, so N processes share the sample",
    )
    parser.add_argument(
        "--probe",
        type=int,
        default=0,
        help="train each architecture more than 10 points from the table K more times (seeds 3, 6, ... "
        "with the recipe's repeats each), to see what its per-seed spread says about the gap; "
        "reported beside it, never part of the statistics",
    )
    parser.add_argument(
        "--order",
        default="top-first",
        choices=["top-first", "bottom-first"],
        help="training order of the strata (top-first: the top quartile, where searches operate, is "
        "measured first, so a partial study says most where it matters); results do not depend on it",
    )
    args = parser.parse_args(argv)
    if args.n < 4:
        raise UsageError(f"--n must be at least 4, got {args.n}")
    if args.probe < 0:
        raise UsageError(f"--probe must be >= 0, got {args.probe}")
    try:
        shard, shards = (int(v) for v in args.shard.split("/"))
        assert 0 <= shard < shards
    except (ValueError, AssertionError):
        raise UsageError(f"--shard must be K/N with 0 <= K < N, got {args.shard!r}") from None
    out, table_task = Path(args.out), get_task(args.table)
    task = get_task(args.task)
    if table_task.kind != "table" or task.kind == "table":
        raise UsageError(
            f"--table must name a table task and --task the live task it tabulates (e.g. --task cora "
            f"--table nasbench-graph/cora); got --task {args.task} ({task.kind}), --table {args.table} "
            f"({table_task.kind})"
        )
    if args.table.split("/", 1)[-1] != args.task:
        raise UsageError(
            f"--table {args.table} tabulates {args.table.split('/', 1)[-1]}, not --task {args.task}: the study "
            f"trains the table's architectures on the table's own dataset (e.g. --table "
            f"{args.table.split('/', 1)[0]}/{args.task})"
        )
    space = args.table.split("/")[0]
    if not args.summarise_only:
        archs = stratified_archs(table_task, args.n)
        if args.order == "top-first":
            archs = archs[::-1]
        for arch in archs[shard::shards]:
            req = EvaluateRequest(
                task=args.task, arch=arch, preset=args.preset, seed=0, out=out, wandb="disabled", space=space
            )
            path = evaluate_record_path(req, evaluate_label(arch))
            if not (path.exists() and under_protocol(read_record(path))):
                run_evaluate(req)  # finished evaluations are kept: rerunning resumes
        if shards > 1:
            return 0  # one shard of the sample: summarise with --summarise-only once all have finished
    summary = summarise(out, args.task, table_task, args.preset)
    for far in summary["far"] if args.probe else []:
        stride = len(far["ours_test_seeds"])  # the recipe's repeats: seeds 0..stride-1 are the sample
        for k in range(1, args.probe + 1):
            req = EvaluateRequest(
                task=args.task, arch=far["arch"], preset=args.preset, seed=k * stride, out=out,
                wandb="disabled", space=space,
            )  # fmt: skip
            if not evaluate_record_path(req, evaluate_label(far["arch"])).exists():
                run_evaluate(req)
        summary = summarise(out, args.task, table_task, args.preset)
    stem = f"agreement_{args.task}_vs_{args.table.replace('/', '_')}_{args.preset}"
    add_findings(summary, out / f"{stem}.findings.yaml")
    summary["provenance"] = provenance(argv)
    figure = Path("figures") / f"{stem}.png"
    plot(summary, out / figure)
    atomic_write_text(out / f"{stem}.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    atomic_write_text(out / f"{stem}.md", render(summary, str(figure)))
    print(render(summary, str(figure)))
    return 0
