"""Rerun committed table searches from their own requests, so records gain what the harness now
records (e.g. the machine-independent charged cost, the method's own overhead) without changing
what they mean.

    python -m nasrepro.app.rerun --results results [--task 'nasbench-graph/*'] [--method evolution]
        [--missing]

Each search record on a table task is rerun in this process from the request it stores; the new
record replaces the old one only if its history is the committed one query for query (architecture,
validation and test score, status) with the same incumbent. A rerun that differs is reported and
leaves the committed record untouched: it means the code changed what the record means, and that
record must be rerun deliberately (with its reproduce script), not patched.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import tempfile
from pathlib import Path
from typing import Any

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.tracking.records import iter_records

SAME = ("arch", "val", "test", "status")


def request_of(record: dict[str, Any], out: Path) -> SearchRequest:
    """The record's own request (older records predate `tag`: it was empty then)."""
    config = {"tag": "", **record["config"]}
    keep = ("method", "task", "seed", "budget", "reward", "space", "method_config", "tag")
    return SearchRequest(
        **{k: config[k] for k in keep},
        preset=record["preset"],
        out=out,
        wandb="disabled",
        measure=False,
        progress=False,
    )


def same_search(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether `new` is `old`'s search: the same queries, scores and incumbent (timings aside)."""
    history = lambda r: [{k: q[k] for k in SAME} for q in r["history"]]  # noqa: E731
    return history(old) == history(new) and old["best_arch"] == new["best_arch"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--task", default="*", help="task-name pattern (fnmatch)")
    parser.add_argument("--method", default="*", help="method-name pattern (fnmatch)")
    parser.add_argument(
        "--missing",
        action="store_true",
        help="only records without a charged cost (resume an interrupted rerun)",
    )
    args = parser.parse_args(argv)
    from nasrepro.errors import UsageError
    from nasrepro.tasks import get_task

    if not (args.results / "runs").is_dir():
        raise UsageError(
            f"--results {args.results}: no runs/ folder of records there; point it at a results folder"
        )

    replaced, differ = 0, []
    # beside the records, so that a finished rerun replaces its record atomically (same file system)
    with tempfile.TemporaryDirectory(prefix=".rerun-", dir=args.results) as scratch:
        for path, record in iter_records(args.results):
            if (
                record["kind"] != "search"
                or not fnmatch.fnmatchcase(record["task"], args.task)
                or not fnmatch.fnmatchcase(record["method"], args.method)
                or get_task(record["task"]).kind != "table"
                or (args.missing and "charged_cost" in record.get("search_cost", {}))
            ):
                continue
            new, new_path = run_search(request_of(record, Path(scratch)))
            if not same_search(record, new):
                differ.append(path)
                print(f"differs, kept: {path}", file=sys.stderr)
                continue
            new_path.replace(path)
            replaced += 1
    print(f"{replaced} record(s) rerun and replaced; {len(differ)} differ and were kept")
    return 1 if differ else 0


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
