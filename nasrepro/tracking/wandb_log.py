"""Weights & Biases logging, offline unless the user opts in, so nothing waits on a network.

Lightning fits log through `WandbLogger`; a search logs its per-query history (score, best so
far, cumulative cost) and the record's final metrics as one W&B run per seed, grouped by task and
method so W&B draws the spread over seeds. Records never contain credentials: only our own config
and metrics are sent.

A search's runs are written *from its records, after the search*, by a detached process
(`log_in_background`): the record is the source of truth and W&B a view of it, so the command
returns as soon as its records are on disk instead of paying W&B's start-up (about 2 s to import,
1 s per run to initialise on 2 cores) in the foreground. Nothing is lost if that process fails:
`nasrepro wandb-log` (or `python -m nasrepro.tracking.wandb_log`) logs any records again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from nasrepro.errors import UsageError

WandbMode = Literal["offline", "online", "disabled"]
MODES = ("offline", "online", "disabled")
PROJECT = os.environ.get("NASREPRO_WANDB_PROJECT", "nasrepro")


def check_mode(mode: str) -> WandbMode:
    if mode not in MODES:
        raise UsageError(f"--wandb must be one of {', '.join(MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def _quiet() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


def lightning_logger(mode: WandbMode, save_dir: Path, name: str, config: dict[str, Any]) -> Any:
    """A Lightning `WandbLogger` in `mode`, or False when disabled."""
    if check_mode(mode) == "disabled":
        return False
    _quiet()
    from lightning.pytorch.loggers import WandbLogger

    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=PROJECT,
        name=name,
        save_dir=str(save_dir),
        offline=mode == "offline",
        config=config,
        log_model=False,
    )


def log_record(record: dict[str, Any], mode: WandbMode, save_dir: Path) -> Path | None:
    """Log a finished run's history and metrics; returns the W&B run folder (None when disabled)."""
    if check_mode(mode) == "disabled":
        return None
    _quiet()
    import wandb

    save_dir.mkdir(parents=True, exist_ok=True)
    name = f"{record['task']}/{record['method']}/{record['preset']}/s{record['seed']}"
    run = wandb.init(
        project=PROJECT,
        name=name,
        mode=mode,
        dir=str(save_dir),
        job_type=record["kind"],
        group=f"{record['task']}/{record['method']}",
        reinit="finish_previous",
        config={
            k: record[k]
            for k in ("method", "task", "seed", "preset", "budget", "reward", "config")
            if k in record
        },
        settings=wandb.Settings(console="off", x_disable_stats=True, x_disable_meta=True),
    )
    try:
        best = None
        fitness_sign = 1.0 if record.get("direction", "max") == "max" else -1.0
        for query in record["history"]:
            row: dict[str, Any] = {"query": query["index"] + 1}
            if query.get("cumulative_cost") is not None:  # None: the table records no training time
                row["cumulative_cost"] = query["cumulative_cost"]
            if query["score"] is not None:
                row["score"] = query["score"]
                if best is None or fitness_sign * query["score"] > fitness_sign * best:
                    best = query["score"]
            if best is not None:
                row["best_so_far"] = best
            run.log(row)
        summary = {f"final/{k}": v for k, v in record["metrics"].items() if isinstance(v, int | float)}
        summary.update(
            {f"cost/{k}": v for k, v in record["search_cost"].items() if isinstance(v, int | float)}
        )
        summary["best_arch"] = record["best_arch"]
        run.summary.update(summary)
        folder = Path(run.dir).parent
    finally:
        run.finish()
        _teardown_at_exit(wandb)
    return folder


def log_leaderboard(
    rows: list[dict[str, Any]], claims: list[dict[str, Any]], mode: str, save_dir: Path
) -> Path | None:
    """Log the leaderboard's rows and paper-claim verdicts as two `wandb.Table`s in one run
    (job type "leaderboard"); None when W&B is disabled. Columns are the union of the rows' keys
    (missing cells None), so the table holds exactly what `leaderboard.csv` holds."""
    if check_mode(mode) == "disabled":
        return None
    _quiet()
    import wandb

    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=PROJECT,
        name="leaderboard",
        mode=mode,
        dir=str(save_dir),
        job_type="leaderboard",
        reinit="finish_previous",
        settings=wandb.Settings(console="off", x_disable_stats=True, x_disable_meta=True),
    )
    try:
        for key, table in (("leaderboard", rows), ("paper_claims", claims)):
            columns = sorted({k for row in table for k in row})
            data = [[_cell(row.get(c)) for c in columns] for row in table]
            run.log({key: wandb.Table(columns=columns, data=data)})
        folder = Path(run.dir).parent
    finally:
        run.finish()
        _teardown_at_exit(wandb)
    return folder


def _cell(value: Any) -> Any:
    """A W&B table cell: lists and dicts as their JSON text (a column must keep one type)."""

    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


_teardown_registered = False


def _teardown_at_exit(wandb: Any) -> None:
    """Stop W&B's background service once, when the process ends, not after every seed.

    Restarting the service for each of 20 seeds cost about half a second per seed. The service
    writes out every finished run's file when it stops, so the offline runs are complete once the
    command exits; the run record (JSON) is written before any of this and is the source of truth.
    """
    global _teardown_registered
    if not _teardown_registered:
        import atexit

        atexit.register(wandb.teardown)
        _teardown_registered = True


def log_in_background(paths: Sequence[Path], mode: WandbMode, save_dir: Path) -> subprocess.Popen | None:
    """Log the records at `paths` in a detached process; returns it (None when disabled or empty).

    The process outlives the command (its own session, so a Ctrl-C of the shell does not cut a run
    file in half) and writes what it does to `save_dir/logger.log`.
    """
    if check_mode(mode) == "disabled" or not paths:
        return None
    save_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nasrepro.tracking.wandb_log", "--mode", mode, "--dir", str(save_dir)]
    with open(save_dir / "logger.log", "ab") as log:
        return subprocess.Popen(
            [*command, *map(str, paths)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_files(paths: Sequence[Path], mode: WandbMode, save_dir: Path) -> list[Path]:
    """Log each record file as its own W&B run, in this process; returns the run folders."""
    folders = []
    from nasrepro.tracking.records import read_record

    for path in paths:
        folder = log_record(read_record(Path(path)), mode, save_dir)  # a broken file: one DataError
        if folder is not None:
            folders.append(folder)
    return folders


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nasrepro.tracking.wandb_log", description="log run records to W&B, one run each"
    )
    parser.add_argument("--mode", choices=[m for m in MODES if m != "disabled"], default="offline")
    parser.add_argument("--dir", type=Path, required=True, help="W&B's folder (runs go to DIR/wandb)")
    parser.add_argument("records", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for folder in log_files(args.records, args.mode, args.dir):
        print(f"logged {folder}", flush=True)
    return 0


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
