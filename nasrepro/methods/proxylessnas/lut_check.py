"""The LUT's end-to-end check and the ``build-lut`` / ``check-lut`` commands.

`check_lut` asks of a table built by `latency_lut.build_lut` the question the paper answers for its
mobile predictor (Cai, Zhu & Han, ICLR 2019, Sec. 3.3.1 / Fig. 8: RMSE 0.75 ms on 1,000 held-out
architectures): how well does the additive per-layer model predict the measured latency of whole
standalone networks? `run_lut_check` writes the committed answer
(``results/proxylessnas_lut_check_<device>.{json,md}``).

Command line (``nasrepro proxylessnas build-lut|check-lut``, or ``python -m`` this module)::

    nasrepro proxylessnas build-lut --space proxyless-cifar --device cpu --out lut.json
    nasrepro proxylessnas check-lut --space proxyless-cifar --n 50 --out results
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from nasrepro.errors import UsageError
from nasrepro.harness.machine import describe_device
from nasrepro.methods.proxylessnas.blocks import ZERO
from nasrepro.methods.proxylessnas.cost import LatencyTable
from nasrepro.methods.proxylessnas.latency_lut import (
    ProgressFn,
    build_lut,
    check_device,
    measure_in_rounds,
    table_layout,
)
from nasrepro.methods.proxylessnas.spaces import ProxylessArch, ProxylessSpace, build_net
from nasrepro.methods.proxylessnas.tools import UsageParser, parse
from nasrepro.paths import writable_dir, writable_file


def sample_archs(space: ProxylessSpace, n: int, seed: int) -> list[ProxylessArch]:
    """`n` distinct random architectures (canonical forms, so no two are the same network)."""
    rng = np.random.default_rng(seed)
    seen: dict[str, ProxylessArch] = {}
    for _ in range(100 * n):
        arch = space.sample(rng)
        seen.setdefault(str(arch), arch)
        if len(seen) == n:
            break
    if len(seen) < n:
        raise UsageError(f"{space.name} gave only {len(seen)} distinct architectures for n={n}")
    return list(seen.values())


def summarise_errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """How well the additive LUT model predicts measured latency: error statistics and rank agreement.

    RMSE is what the paper reports for its mobile predictor (0.75 ms); rank correlation is what matters
    for a search (it only needs to order architectures); the signed mean error shows a systematic
    offset (per-layer dispatch overhead counted n times, or cache effects between layers).
    """
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    err = p - m
    return {
        "n": int(len(p)),
        "mean_measured_ms": float(m.mean()),
        "mean_predicted_ms": float(p.mean()),
        "mean_error_ms": float(err.mean()),
        "mean_abs_error_ms": float(np.abs(err).mean()),
        "mean_abs_pct_error": float(np.mean(np.abs(err) / m) * 100),
        "max_abs_pct_error": float(np.max(np.abs(err) / m) * 100),
        "rmse_ms": float(math.sqrt(np.mean(err**2))),
        "spearman": float(stats.spearmanr(p, m).statistic),
        "pearson": float(np.corrcoef(p, m)[0, 1]),
        "measured_over_predicted": float(m.sum() / p.sum()),
    }


def check_lut(
    space: ProxylessSpace | str,
    table: LatencyTable,
    n: int = 50,
    seed: int = 0,
    device: str | torch.device | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    num_threads: int | None = None,
    rounds: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Measure `n` random architectures' standalone networks end to end and compare with the LUT sum.

    The networks are `build_net` of each sampled architecture (what `ProxylessSpace.to_model` builds)
    with the table's input size and classes; device, batch, threads, warm-up, repeats and rounds default
    to the table's, so both sides are measured the same way (`measure_in_rounds`). Returns ``{"rows": [{arch, predicted_ms,
    measured_ms, error_ms, abs_pct_error}], "summary": summarise_errors(...), "settings": {...}}``.
    """
    if n < 2:
        raise UsageError(f"check_lut needs n >= 2 architectures to correlate, got {n}")
    layout = table_layout(space, table)
    meta = table.meta
    dev = check_device(device if device is not None else meta.get("device_type", "cpu"))
    batch = int(meta.get("batch_size", 1))
    warmup = int(warmup if warmup is not None else meta.get("warmup", 10))
    repeats = int(repeats if repeats is not None else meta.get("repeats", 100))
    threads = int(num_threads or meta.get("threads") or torch.get_num_threads())
    rounds = int(rounds if rounds is not None else meta.get("rounds", 1))
    archs = sample_archs(layout.space, n, seed)
    shape = (batch, 3, layout.input_size, layout.input_size)
    config, classes = layout.space.config, layout.num_classes
    items = [
        (str(arch), functools.partial(build_net, config.net_spec(arch), classes), shape) for arch in archs
    ]
    start = time.perf_counter()
    measured = measure_in_rounds(items, dev, warmup, repeats, rounds, threads, progress)
    rows = []
    for arch in archs:
        predicted, ms = table.total(layout.arch_keys(arch)), measured[str(arch)]
        rows.append(
            {
                "arch": str(arch),
                "blocks": sum(code != ZERO.code for code in arch.ops),
                "predicted_ms": predicted,
                "measured_ms": ms,
                "error_ms": predicted - ms,
                "abs_pct_error": abs(predicted - ms) / ms * 100,
            }
        )
    summary = summarise_errors([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    settings = {
        "space": layout.space.name,
        "input_size": layout.input_size,
        "num_classes": layout.num_classes,
        "device": describe_device(dev),
        "batch_size": batch,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "rounds": rounds,
        "seed": seed,
        "check_seconds": round(time.perf_counter() - start, 2),
    }
    return {"rows": rows, "summary": summary, "settings": settings}


# --- the committed check: results/proxylessnas_lut_check_<device>.json + .md -----------------------------
def run_lut_check(
    space_name: str,
    out_dir: str | Path = "results",
    device: str = "cpu",
    n: int = 50,
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 100,
    threads: int | None = 1,
    batch_size: int = 1,
    input_size: int | None = None,
    rounds: int = 3,
    command: str = "",
) -> dict[str, Any]:
    """Build the LUT for `space_name` on `device`, check it on `n` random networks, and write the result
    into ``out_dir/proxylessnas_lut_check_<device type>.json`` (one entry per space, other spaces' entries
    kept) and the matching ``.md``. The JSON carries the table itself, every architecture's predicted
    and measured latency, the error summary, machine info, git commit and the command."""
    from nasrepro.atomic import atomic_write_text
    from nasrepro.harness.machine import machine_info
    from nasrepro.tracking.provenance import git_commit

    dev = check_device(device)
    if n < 2:
        raise UsageError(f"--n must be at least 2 networks to correlate, got {n}")
    writable_dir(out_dir, "--out")  # before the table is built and measured
    if threads is not None:
        torch.set_num_threads(threads)
    table = cli_build_lut(
        space_name, device, None, warmup, repeats, threads, batch_size, input_size, rounds, verbose=False
    )
    result = check_lut(space_name, table, n=n, seed=seed, device=dev)
    entry = {
        **result,
        "table": table.to_dict(),
        "machine": machine_info(),
        "git_commit": git_commit(),
        "command": command or f"run_lut_check({space_name!r}, device={device!r}, n={n})",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    stem = Path(out_dir) / f"proxylessnas_lut_check_{dev.type}"
    path = stem.with_suffix(".json")
    doc: dict[str, Any] = {"spaces": {}}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            doc = {"spaces": {}}
    doc.setdefault("spaces", {})[table.meta["space"]] = entry
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    atomic_write_text(stem.with_suffix(".md"), render_check(doc))
    return entry


def render_check(doc: dict[str, Any]) -> str:
    """The Markdown summary of a check file: one section per space, summary table then every network."""
    lines = [
        "# ProxylessNAS latency look-up table vs measured end-to-end latency",
        "",
        "Per-op LUT (Sec. 3.3.1: latency additive over layers) built on this machine, then summed for random",
        "architectures and compared with the whole standalone network timed the same way (batch 1, eval",
        "mode, no grad, median of repeated runs). Written by `nasrepro.methods.proxylessnas.lut_check`.",
    ]
    for name, entry in sorted(doc.get("spaces", {}).items()):
        s, st, meta = entry["summary"], entry["settings"], entry["table"]["meta"]
        lines += [
            "",
            f"## {name} ({st['input_size']} px, {st['num_classes']} classes)",
            "",
            f"- device: {st['device']}, threads {st['threads']}, batch {st['batch_size']}, "
            f"warm-up {st['warmup']}, repeats {st['repeats']}, torch {meta.get('torch')}",
            f"- LUT: {meta.get('entries')} entries built in {meta.get('build_seconds')} s; check of {s['n']} "
            f"networks took {st['check_seconds']} s",
            f"- git commit {entry['git_commit']}, {entry['date']}",
            f"- command: `{entry['command']}`",
            "",
            "| metric | value |",
            "|---|---|",
            f"| mean measured latency | {s['mean_measured_ms']:.3f} ms |",
            f"| mean predicted latency | {s['mean_predicted_ms']:.3f} ms |",
            f"| mean error (predicted - measured) | {s['mean_error_ms']:+.3f} ms |",
            f"| mean absolute error | {s['mean_abs_error_ms']:.3f} ms |",
            f"| mean absolute % error | {s['mean_abs_pct_error']:.2f} % |",
            f"| max absolute % error | {s['max_abs_pct_error']:.2f} % |",
            f"| RMSE | {s['rmse_ms']:.3f} ms |",
            f"| Spearman rank correlation | {s['spearman']:.3f} |",
            f"| Pearson correlation | {s['pearson']:.3f} |",
            f"| measured / predicted (totals) | {s['measured_over_predicted']:.3f} |",
            "",
            "| architecture | blocks | predicted ms | measured ms | error % |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| `{r['arch'].replace('|', chr(92) + '|')}` | {r['blocks']} | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | "
            f"{r['abs_pct_error']:.1f} |"
            for r in entry["rows"]
        ]
    return "\n".join(lines) + "\n"


# --- command line -------------------------------------------------------------------------------------
def cli_build_lut(
    space_name: str,
    device: str = "cpu",
    out: str | Path | None = None,
    warmup: int = 10,
    repeats: int = 100,
    threads: int | None = 1,
    batch_size: int = 1,
    input_size: int | None = None,
    rounds: int = 3,
    verbose: bool = True,
) -> LatencyTable:
    """`nasrepro proxylessnas build-lut`: build the table for `space_name` on `device`, save it to `out`.

    `threads` defaults to 1 (the most reproducible CPU number on a shared machine; the table records it);
    pass None for torch's current setting.
    """
    check_device(device)  # fail before any work if CUDA was requested but is missing
    if out is not None:
        writable_file(out, "--out")  # before the measurement, which takes minutes
    if warmup < 0 or repeats < 1:
        raise UsageError(f"--warmup must be >= 0 and --repeats >= 1, got {warmup} and {repeats}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")

    def progress(i: int, total: int, key: str) -> None:
        if verbose:
            print(f"[{i}/{total}] {key}", file=sys.stderr, flush=True)

    table = build_lut(
        space_name,
        device,
        batch_size,
        warmup,
        repeats,
        input_size,
        num_threads=threads,
        rounds=rounds,
        progress=progress,
    )
    if out is not None:
        table.save(out)
        if verbose:
            print(
                f"wrote {len(table)} entries ({table.meta['build_seconds']} s on {table.meta['device']}) to {out}",
                file=sys.stderr,
            )
    return table


def _parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="nasrepro proxylessnas",
        description="ProxylessNAS latency look-up tables measured on this machine.",
        exit_on_error=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("build-lut", "measure every candidate op at every position of a space and save the table"),
        ("check-lut", "build a table, then compare its predictions with 50 measured networks"),
    ):
        p = sub.add_parser(name, help=help_text, exit_on_error=False)
        p.add_argument("--space", default="proxyless-cifar")
        p.add_argument("--device", default="cpu")
        p.add_argument("--warmup", type=int, default=10)
        p.add_argument("--repeats", type=int, default=100)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--batch-size", type=int, default=1)
        p.add_argument("--input-size", type=int, default=None)
        p.add_argument("--rounds", type=int, default=3, help="interleaved passes; each entry keeps its best")
        if name == "build-lut":
            p.add_argument("--out", required=True, help="JSON file for the table")
        else:
            p.add_argument("--out", default="results", help="folder for the check's JSON and Markdown")
            p.add_argument("--n", type=int, default=50)
            p.add_argument("--seed", type=int, default=0)
    return parser


def main_build_lut(argv: Sequence[str] | None = None) -> int:
    """`build-lut` options (see `_parser`) -> a saved table; usage errors raise `UsageError`."""
    args = _parse(["build-lut", *(argv if argv is not None else sys.argv[1:])])
    cli_build_lut(
        args.space,
        args.device,
        args.out,
        args.warmup,
        args.repeats,
        args.threads,
        args.batch_size,
        args.input_size,
        args.rounds,
    )
    return 0


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    return parse(_parser(), argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args.command == "build-lut":
        return main_build_lut(argv[1:])
    run_lut_check(
        args.space,
        out_dir=args.out,
        device=args.device,
        n=args.n,
        seed=args.seed,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        batch_size=args.batch_size,
        input_size=args.input_size,
        rounds=args.rounds,
        command="nasrepro proxylessnas " + " ".join(argv),
    )
    return 0


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
