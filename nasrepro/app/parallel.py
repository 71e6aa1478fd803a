"""Runs several independent seeds at once, one process each, as far as the cores allow.

Seeds are independent runs (Lindauer & Hutter 2020, best practice 9), so they parallelise
perfectly; each process gets an equal share of the cores' threads so two trainings do not fight
over the same two cores. Results come back in request order, whatever order they finish in.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

Kind = Literal["search", "evaluate"]


def _run_one(kind: Kind, request: Any) -> tuple[dict[str, Any], Path]:
    if kind == "search":
        from nasrepro.app.search import run_search

        return run_search(request)
    from nasrepro.app.evaluate import run_evaluate

    return run_evaluate(request)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def env_workers() -> int:
    """`NASREPRO_WORKERS` as a count (0: unset), or one line saying it is not one."""
    text = os.environ.get("NASREPRO_WORKERS", "").strip()
    if not text:
        return 0
    if not text.isdigit():
        from nasrepro.errors import UsageError

        raise UsageError(
            f"NASREPRO_WORKERS={text!r} is not a number of processes; set it to e.g. 2, or unset it"
        )
    return int(text)


def run_many(
    kind: Kind, requests: Sequence[Any], workers: int | None = None
) -> list[tuple[dict[str, Any], Path]]:
    """Run every request; in parallel processes when there are several and cores allow.

    `workers` defaults to `NASREPRO_WORKERS`, else the number of cores.
    """
    cores = os.cpu_count() or 1
    workers = min(workers or env_workers() or cores, len(requests))
    if workers <= 1:
        return [_run_one(kind, request) for request in requests]
    context = multiprocessing.get_context("spawn")  # fork after torch's thread pools start is unsafe
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(max(1, cores // workers),)
    ) as pool:
        futures = [pool.submit(_run_one, kind, request) for request in requests]
        return [future.result() for future in futures]
