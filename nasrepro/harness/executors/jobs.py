"""Top-level, picklable jobs that executors ship to workers.

A job takes only plain values (names, strings, numbers) and rebuilds everything else -- task,
space, model, data -- inside the worker, so the same call gives the same answer in this process,
in a Ray worker on this machine, or on another node.
"""

from __future__ import annotations

import os
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.executors.base import THREADS_ENV


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


def train_evaluation(
    task_name: str, space_name: str | None, arch: str, preset: str, seed: int, data_dir: str | None
) -> dict[str, Any]:
    """Train `arch` from scratch under `task_name`'s recipe at `preset`; return the final metrics.

    `arch` is a canonical architecture string of the space `space_name` (the task's default space
    when None) -- or, when `space_name` is None, one of the task's reference networks (`gcn`, `gat`,
    ...), exactly as `nasrepro evaluate --arch` reads it. The space's (or reference network's) own
    recipe overrides are applied as in `TrainEvaluator`. The result is
    `fit_and_evaluate`'s dict (`val`, `test`, `train_seconds`, `epochs`) plus `params`; everything
    but `train_seconds` depends only on the arguments: `seed` seeds the weight initialisation and
    the fit, whatever ran before in the worker.
    """
    import lightning as L

    from nasrepro.harness.recipe import with_overrides
    from nasrepro.harness.runner import quiet_lightning, resolve_space
    from nasrepro.harness.training import fit_and_evaluate
    from nasrepro.paths import data_dir as resolve_data_dir
    from nasrepro.tasks import get_task

    quiet_lightning()
    _apply_thread_limit()
    task = get_task(task_name)
    if task.kind == "table":
        raise UsageError(f"{task_name} is a table task: there is nothing to train; look it up instead")
    chosen = task.preset(preset)
    reference = task.reference_arch(arch) if space_name is None else None
    # Weight initialisation draws from the global RNG: seed it here, or the result would depend on
    # whatever ran before in this process (fit_and_evaluate seeds only the fit itself).
    L.seed_everything(seed, workers=True, verbose=False)
    if reference is not None:
        model = reference.build(task)
        chosen = with_overrides(chosen, reference.recipe)
    else:
        space = resolve_space(task, space_name)
        model = space.to_model(space.canonical(space.parse(arch)), task)
        chosen = with_overrides(chosen, space.recipe_overrides(task))
    params = sum(p.numel() for p in model.parameters())
    result = fit_and_evaluate(task, model, chosen, seed, resolve_data_dir(data_dir))
    return {**result, "params": params}
