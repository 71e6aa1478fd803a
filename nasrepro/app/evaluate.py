"""`nasrepro evaluate`: train one architecture from scratch under a task's protocol, record it."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from nasrepro.app.requests import EvaluateRequest
from nasrepro.app.resolve import check_space_fits, space_for
from nasrepro.app.search import compute_device, hardware_metrics, scale_label
from nasrepro.errors import UsageError
from nasrepro.harness.executors.jobs import network_for
from nasrepro.harness.quiet import quiet_lightning
from nasrepro.harness.recipe import with_overrides
from nasrepro.paths import data_dir as resolve_data_dir
from nasrepro.tracking import records
from nasrepro.tracking.record import Metrics, Record, SearchCost
from nasrepro.tracking.wandb_log import check_mode, lightning_logger


def evaluate_label(arch: str) -> str:
    """The folder name of `nasrepro evaluate` records for a searched (not reference) architecture."""
    return "arch-" + hashlib.sha256(arch.encode()).hexdigest()[:10]


def evaluate_record_path(req: EvaluateRequest, label: str) -> Path:
    return records.record_path(req.out, req.task, label, req.preset, req.seed, None, kind="evaluate")


def run_evaluate(req: EvaluateRequest) -> tuple[dict[str, Any], Path]:
    """Build `req.arch` (a reference name or a canonical architecture string), train, record."""
    from nasrepro.harness.machine import machine_info, search_cost
    from nasrepro.harness.training import fit_and_evaluate
    from nasrepro.tasks import get_task

    quiet_lightning()
    check_mode(req.wandb)
    task = get_task(req.task)
    if task.kind == "table":
        raise UsageError(
            f"{req.task} is a table task: there is nothing to train; query it with `nasrepro search`"
        )
    preset = task.preset(req.preset)
    reference = task.reference_arch(req.arch)
    import lightning as L

    if reference is not None:
        space, space_info, label = None, {"name": "reference"}, req.arch
    else:
        try:
            space = space_for(None, task, req.space)
        except UsageError:
            if req.space is not None:
                raise
            raise UsageError(
                f"{req.arch!r} is not a reference architecture of {req.task} "
                f"({', '.join(task.reference_archs()) or 'none'})"
            ) from None
        arch = space.parse(req.arch)
        if req.space is not None:
            check_space_fits(task, space, arch)
        preset = with_overrides(preset, space.recipe_overrides(task))
        space_info, label = space.describe(), evaluate_label(str(arch))
    L.seed_everything(req.seed, workers=True, verbose=False)  # initial weights follow --seed
    model, preset = network_for(task, space, req.arch if space is None else str(arch), preset)
    data_root = resolve_data_dir(req.data_dir)
    logger = lightning_logger(
        req.wandb,
        req.out / "wandb",
        f"{req.task}/{label}/s{req.seed}",
        {"task": req.task, "arch": req.arch, "preset": preset.to_dict(), "seed": req.seed},
    )
    hw = hardware_metrics(task, model)
    start = time.perf_counter()
    result = fit_and_evaluate(
        task,
        model,
        preset,
        req.seed,
        data_root,
        build=lambda: network_for(task, space, req.arch if space is None else str(arch), preset)[0],
        logger=logger,
        devices=req.devices,
        num_nodes=req.num_nodes,
        strategy=req.strategy,
    )
    wall = time.perf_counter() - start
    if logger:
        logger.experiment.summary.update({"final/val": result["val"], "final/test": result["test"]})
        logger.experiment.finish()
    record = Record(
        kind="evaluate",
        method=label,
        tag=req.tag,
        task=req.task,
        space=space_info,
        seed=req.seed,
        preset=req.preset,
        scale=scale_label(task, req.preset),
        budget=None,
        reward="val",
        direction=task.metric.direction,
        metric=task.metric.name,
        best_arch=req.arch if reference is not None else str(arch),
        metrics=Metrics.from_dict(
            {
                "val": result["val"],
                "test": result["test"],
                **hw,
                "train_seconds": result["train_seconds"],
                **{k: v for k, v in result.items() if isinstance(v, list)},  # the per-seed lists
                **result["reported"],
            }
        ),
        search_cost=SearchCost(
            **search_cost(wall, compute_device(task)),
            queries=1,
            evaluation_seconds=wall,
            cost_model="our own training wall time",
            charged_cost=wall,
        ),
        history=[],
        config={**req.to_config(), "preset": preset.to_dict()},
        machine=machine_info(),
    )
    path = evaluate_record_path(req, label)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP every rank holds the same result; one writes it
        records.write_record(record, path)
    return record.to_dict(), path
