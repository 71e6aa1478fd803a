"""Top-level, picklable jobs that executors ship to workers.

A job takes only plain values (names, strings, numbers) and rebuilds everything else -- task,
space, model, data -- inside the worker, so the same call gives the same answer in this process,
in a Ray worker on this machine, or on another node.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasrepro.errors import UsageError
from nasrepro.harness.executors.base import THREADS_ENV
from nasrepro.harness.recipe import Preset, with_overrides

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.space import Space
    from nasrepro.harness.task import Task


def _apply_thread_limit() -> None:
    """Honour `NASREPRO_THREADS` (set by executors, or by hand under another launcher)."""
    value = os.environ.get(THREADS_ENV)
    if not value:
        return
    try:
        threads = int(value)
    except ValueError:
        raise UsageError(f"{THREADS_ENV} must be a positive integer, got {value!r}") from None
    if threads < 1:
        raise UsageError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    import torch

    torch.set_num_threads(threads)


def network_for(task: Task, space: Space | None, arch: str, preset: Preset) -> tuple[nn.Module, Preset]:
    """The model of `arch` and the preset to train it with: the one place where "a reference
    network's name or a space's architecture string" becomes a model plus its recipe overrides.

    With `space` None, `arch` names one of the task's reference networks (`gcn`, `resnet20`, ...),
    trained with the recipe changes of its own paper; otherwise it is an architecture string of `space` (built as written; callers pass canonical strings),
    whose recipe overrides the caller has already applied to `preset` (the runner resolves them
    once per run).
    """
    if space is None:
        reference = task.reference_arch(arch)
        if reference is None:
            raise UsageError(
                f"{arch!r} is not a reference architecture of {task.name} "
                f"({', '.join(task.reference_archs()) or 'none'}); pass the space it belongs to"
            )
        return reference.build(task), with_overrides(preset, reference.recipe)
    return space.to_model(space.parse(arch), task), preset


def train_evaluation(
    task: Task, space: Space | None, arch: str, preset: Preset, seed: int, data_dir: Path
) -> dict[str, Any]:
    """Train `arch` from scratch under `preset`; return the final metrics.

    Takes the run's own objects (they pickle to a worker), so nothing is looked up again by name
    in the worker. See `network_for` for what `space` None means. The result is
    `fit_and_evaluate`'s dict (`val`, `test`, `train_seconds`, `epochs`, per-seed values when the
    recipe repeats) plus `params` and `job_seconds` (this whole job on the worker: what the search
    is charged for the query, as an in-process query is charged its whole evaluation); everything
    but the times depends only on the arguments: `seed` seeds the weight initialisation and
    the fit, whatever ran before in the worker.
    """
    import time

    start = time.perf_counter()
    import lightning as L

    from nasrepro.harness.quiet import quiet_lightning
    from nasrepro.harness.training import fit_and_evaluate

    quiet_lightning()
    _apply_thread_limit()
    if task.kind == "table":
        raise UsageError(f"{task.name} is a table task: there is nothing to train; look it up instead")
    # Weight initialisation draws from the global RNG: seed it here, or the result would depend on
    # whatever ran before in this process (fit_and_evaluate seeds only the fit itself).
    L.seed_everything(seed, workers=True, verbose=False)
    model, chosen = network_for(task, space, arch, preset)
    params = sum(p.numel() for p in model.parameters())
    result = fit_and_evaluate(
        task, model, chosen, seed, data_dir, build=lambda: network_for(task, space, arch, preset)[0]
    )
    return {**result, "params": params, "job_seconds": time.perf_counter() - start}


def table_lookup(table: Any, space: Space, arch: str) -> dict[str, Any]:
    """Look `arch` (a canonical architecture string of `space`) up in a benchmark `table`.

    What `TableEvaluator` runs on an executor when it has one (see its docstring): the fields of an
    `Outcome`, so the evaluator books a look-up made on a worker exactly as one made here.
    """
    entry = table.lookup(space.parse(arch))
    return {
        "val": entry.val,
        "test": entry.test,
        "cost_seconds": entry.train_seconds,
        "metrics": dict(entry.metrics),
    }
