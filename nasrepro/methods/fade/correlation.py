"""The paper's first claim, measured: do FaDE-ranks order a region's architectures as training does?

For each of ``--regions`` regions of NAS-Bench-201 (k distinct cells drawn with the region's own seed),
the region is trained with the FaDE estimator once per training seed (CIFAR-10 images, the method's
preset sizes); a cell's FaDE score is its mean FaDE-rank over the 3 stages (`outer.path_scores`). The
scores are compared with the table's 200-epoch accuracies of the same cells (NB-201's stand-alone
training: ``val`` = cifar10-valid validation accuracy, ``test`` = its test accuracy) by Kendall tau and
Spearman rho. Spread: per region, a 95% bootstrap interval of the mean correlation over training seeds
(resampling seeds); overall, the mean over regions of each region's mean, with a two-level bootstrap
(regions, then seeds within each). The seeds of one region share its cells and their table values,
so the independent draws are the regions: ``overall.n`` counts regions (``n_runs`` the finite
(region, seed) values), not pairs. The paper's reported value (about 0.8, CIFAR-10, correlation
type unknown) is UNVERIFIED and is quoted beside ours, never tested against.

    python -m nasrepro.methods.fade.correlation --preset cpu --regions 3 --seeds 0-2 --out results/fade/corr.json
    python -m nasrepro.methods.fade.correlation --summarise results/fade_correlation_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nasrepro.errors import NasreproError, UsageError
from nasrepro.harness.seeds import parse_seeds


def bootstrap(values: list[float], rng: np.random.Generator, n: int = 2000) -> list[float] | None:
    """95% percentile interval of the mean of `values` (None with fewer than 2 finite values)."""
    data = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(data) < 2:
        return None
    means = data[rng.integers(0, len(data), size=(n, len(data)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def hierarchical_bootstrap(
    groups: list[list[float]], rng: np.random.Generator, n: int = 2000
) -> list[float] | None:
    """95% percentile interval of the mean over groups of each group's mean, resampling the groups
    and then the values within each drawn group (None with fewer than 2 groups holding a value)."""
    kept = [np.asarray([v for v in g if np.isfinite(v)], dtype=float) for g in groups]
    kept = [g for g in kept if len(g)]
    if len(kept) < 2:
        return None
    means = np.empty(n)
    for b, pick in enumerate(rng.integers(0, len(kept), size=(n, len(kept)))):
        means[b] = np.mean([kept[i][rng.integers(0, len(kept[i]), len(kept[i]))].mean() for i in pick])
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def overall(regions: list[dict[str, Any]], seed: int = 12345) -> dict[str, Any]:
    """The study's summary over regions (module docstring), from each region's per-seed values."""
    out: dict[str, Any] = {}
    for key, name in (("kendall_tau_val", "kendall_tau"), ("spearman_val", "spearman")):
        groups = [[float(r[key]) for r in region["per_seed"]] for region in regions]
        finite = [[v for v in g if np.isfinite(v)] for g in groups]
        means = [float(np.mean(g)) for g in finite if g]
        out[f"{name}_mean"] = round(float(np.mean(means)), 4) if means else None
        out[f"{name}_ci95"] = hierarchical_bootstrap(groups, np.random.default_rng(seed))
        out["n"] = len(means)  # regions with a value: the independent draws
        out["n_runs"] = sum(len(g) for g in finite)
    return out


def study(
    preset: str, regions: int, seeds: list[int], k: int, mode: str, data_dir: Path | None
) -> dict[str, Any]:
    from scipy.stats import kendalltau, spearmanr

    from nasrepro.harness.run import run_of
    from nasrepro.harness.table_evaluator import TableEvaluator
    from nasrepro.methods.fade.outer import path_scores
    from nasrepro.methods.fade.presets import REGION_PRESETS
    from nasrepro.methods.fade.region import NB201View
    from nasrepro.methods.fade.search import FadeConfig, data_task
    from nasrepro.methods.fade.training import RegionTrainer
    from nasrepro.paths import data_dir as resolve_data_dir
    from nasrepro.spaces.nasbench201 import NB201Space
    from nasrepro.tasks import get_task

    if regions < 1 or k < 2:
        raise UsageError(f"need --regions >= 1 and --k >= 2, got {regions}, {k}")
    task, space = get_task("nasbench201/cifar10"), NB201Space()
    table, view = task.table(), NB201View(space)
    cfg = FadeConfig(region_size=k, mode=mode)
    size = REGION_PRESETS.size("nb201", preset)
    rows: list[dict[str, Any]] = []
    for region in range(regions):
        rng = np.random.default_rng([7919, region])
        cells: list[Any] = []
        while len(cells) < k:
            cell = space.sample(rng)
            if cell not in cells:
                cells.append(cell)
        acc = {"val": [table.lookup(c).val for c in cells], "test": [table.lookup(c).test for c in cells]}
        per_seed = []
        for seed in seeds:
            run = run_of(
                TableEvaluator(task, space),
                seed=seed,
                preset_name=preset,
                data_dir=resolve_data_dir(data_dir),
            )
            trainer = RegionTrainer(run, view, cfg, size, data_task(task), preset)
            start = time.perf_counter()
            ranks, _ = trainer.train([cells] * view.stages, step=region)
            scores = path_scores(
                view, [view.join([c] * view.stages) for c in cells], [cells] * view.stages, ranks
            )
            tau = float(kendalltau(scores, acc["val"]).statistic)
            rho = float(spearmanr(scores, acc["val"]).statistic)
            per_seed.append(
                {
                    "seed": seed,
                    "fade_scores": [round(s, 6) for s in scores],
                    "kendall_tau_val": round(tau, 4),
                    "spearman_val": round(rho, 4),
                    "kendall_tau_test": round(float(kendalltau(scores, acc["test"]).statistic), 4),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
            print(
                f"region {region} seed {seed}: tau {tau:.3f} rho {rho:.3f} ({per_seed[-1]['seconds']} s)",
                file=sys.stderr,
            )
        brng = np.random.default_rng(region)
        taus, rhos = [r["kendall_tau_val"] for r in per_seed], [r["spearman_val"] for r in per_seed]
        rows.append(
            {
                "region": region,
                "cells": [str(c) for c in cells],
                "table_val": acc["val"],
                "table_test": acc["test"],
                "per_seed": per_seed,
                "kendall_tau_mean": round(float(np.nanmean(taus)), 4),
                "kendall_tau_ci95": bootstrap(taus, brng),
                "spearman_mean": round(float(np.nanmean(rhos)), 4),
                "spearman_ci95": bootstrap(rhos, brng),
            }
        )
    return {
        "study": "FaDE-rank vs NAS-Bench-201 table accuracy (cifar10-valid, 200 epochs)",
        "preset": preset,
        "region_size": k,
        "mode": mode,
        "training_seeds": seeds,
        "region_sizes": {
            "epochs": size.epochs,
            "batch": size.batch_size,
            "images": size.train_subset,
            "batches_per_epoch": size.train_batches,
            "C": size.nb201_C,
            "N": size.nb201_N,
        },
        "regions": rows,
        "overall": overall(rows),
        "paper": "about 0.8 on CIFAR-10 (correlation type and region sizes unknown) [UNVERIFIED]",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nasrepro.methods.fade.correlation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--regions", type=int, default=3)
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--k", type=int, default=4, help="cells per region")
    parser.add_argument("--mode", default="first_order", choices=["trivial", "first_order", "second_order"])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="the study's JSON (required unless --summarise)"
    )
    parser.add_argument(
        "--summarise", type=Path, default=None, metavar="JSON",
        help="recompute the overall summary of a finished study's JSON in place (no training)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from nasrepro.tracking.provenance import git_commit

    command = "python -m nasrepro.methods.fade.correlation " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    try:
        if args.summarise is not None:
            out = args.summarise
            try:
                result = json.loads(out.read_text())
                result["overall"] = overall(result["regions"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"--summarise {out}: not a finished correlation study ({exc})") from None
            result["summary_command"], result["summary_git_commit"] = command, git_commit()
        elif args.out is None:
            raise UsageError("--out is required (or --summarise JSON to resummarise a finished study)")
        else:
            out = args.out
            result = study(
                args.preset, args.regions, parse_seeds(args.seeds), args.k, args.mode, args.data_dir
            )
            result["command"], result["git_commit"] = command, git_commit()
    except NasreproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    summary = result["overall"]
    print(
        f"FaDE-rank vs NB-201 val accuracy over {summary['n']} regions ({summary['n_runs']} trainings): "
        f"Kendall tau {summary['kendall_tau_mean']} {summary['kendall_tau_ci95']}, Spearman "
        f"{summary['spearman_mean']} {summary['spearman_ci95']} -> {out}"
    )
    return 0


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
