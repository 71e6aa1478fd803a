"""Runs one search or one evaluation end to end and writes its record.

This is the single path from the command line (and from reproduce scripts) to a record, so every
method and task is measured, costed and recorded the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.checkpoint import SearchCheckpoint
from nasrepro.harness.evaluator import Evaluator, Reward, TableEvaluator, TrainEvaluator
from nasrepro.harness.recipe import with_overrides
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.paths import data_dir as resolve_data_dir
from nasrepro.tracking import records
from nasrepro.tracking.wandb_log import WandbMode, check_mode, lightning_logger, log_record

SCALE = {"smoke": "smoke test (not a result)", "cpu": "cpu-scale", "paper": "paper setting"}


def quiet_lightning() -> None:
    """Lightning's per-fit banners drown the one line a user needs; keep its warnings only."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class SearchRequest:
    """Everything that defines one search run (all of it is stored in the record's `config`)."""

    method: str
    task: str
    seed: int = 0
    budget: int | None = None
    preset: str = "cpu"
    reward: Reward = "val"
    space: str | None = None
    method_config: dict[str, Any] = field(default_factory=dict)
    out: Path = Path("results")
    data_dir: Path | None = None
    wandb: WandbMode = "offline"
    measure: bool = True
    resume: bool = False
    checkpoint_seconds: float = 5.0
    #: where a train task's evaluations run: `local` (in-process) or `ray` (`workers` at once)
    executor: str = "local"
    workers: int = 1
    #: names a variant (another space, method options) so its records neither overwrite nor mix with
    #: the method's default runs; it appears in file names and leaderboard rows
    tag: str = ""

    def to_config(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["out"] = str(self.out)
        out["data_dir"] = None  # machine-specific; not part of what defines the run
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed by this request."""
        keep = ("method", "task", "seed", "budget", "preset", "reward", "space", "method_config", "tag")
        return {k: v for k, v in self.to_config().items() if k in keep}


def check_tag(tag: str) -> None:
    """A variant tag becomes part of file names: keep it to a safe alphabet."""
    if tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*", tag):
        raise UsageError(f"--tag {tag!r}: use letters, digits and _ . = + - (it becomes part of file names)")


def scale_label(task: Task, preset: str) -> str:
    if task.kind == "table":
        return "table look-up of the benchmark's own training runs" if preset != "smoke" else SCALE["smoke"]
    return SCALE[preset]


def resolve_space(task: Task, name: str | None) -> Space:
    if name is None:
        return task.space()
    from nasrepro.methods import method_names
    from nasrepro.spaces import get_space

    method_names()  # method packages register their own spaces on import (e.g. proxyless-cifar)
    return get_space(name)


def make_evaluator(task: Task, space: Space, req: SearchRequest, budget: int) -> Evaluator:
    if task.kind == "table":
        table = TableEvaluator(task, space, budget=budget, reward=req.reward)
        # One-shot methods (proxylessnas) size their supernet fit by the run's preset and, on a table
        # task, train it on the real images under the run's data folder.
        table.preset_name, table.data_dir = req.preset, resolve_data_dir(req.data_dir)  # type: ignore[attr-defined]
        return table
    return TrainEvaluator(
        task, space, budget=budget, reward=req.reward, preset=req.preset, seed=req.seed, data_dir=req.data_dir
    )


def compute_device(task: Task) -> str:
    """Where evaluations ran: a table look-up is CPU work; training goes where Lightning's "auto" puts it."""
    import torch

    return "cuda" if task.kind == "train" and torch.cuda.is_available() else "cpu"


def hardware_metrics(task: Task, model: Any) -> dict[str, float]:
    """Params, FLOPs, latency and training-step memory of a built model on this machine's CPU."""
    from nasrepro.harness.metrics import model_metrics

    return model_metrics(model, task.example_input(1), device="cpu", latency=True)


def run_search(req: SearchRequest) -> tuple[dict[str, Any], Path]:
    """Search, select the incumbent by the reward, record its final metrics, write the record."""
    from nasrepro.harness.metrics import machine_info, search_cost
    from nasrepro.methods import get_method
    from nasrepro.tasks import get_task

    quiet_lightning()
    check_mode(req.wandb)
    task = get_task(req.task)
    preset = task.preset(req.preset)
    space = resolve_space(task, req.space)
    method = get_method(req.method)(req.method_config)
    budget = req.budget or preset.search_budget
    if budget < 1:
        raise UsageError(f"--budget must be a positive number of unique queries, got {budget}")
    check_tag(req.tag)
    path = records.record_path(req.out, req.task, req.method, req.preset, req.seed, budget, tag=req.tag)
    if req.resume and path.exists():
        return records.read_record(path), path  # finished before the interruption
    evaluator = make_evaluator(task, space, req, budget)
    checkpoint = SearchCheckpoint(
        path.with_name(f".{path.stem}.checkpoint"), req.fingerprint(), req.checkpoint_seconds
    )
    if req.resume:
        evaluator.resume_from(checkpoint.load())
    elif checkpoint.path.exists():  # never overwrite finished work the user may still want
        raise UsageError(
            f"{checkpoint.path} holds an interrupted run of this search; rerun with --resume to continue "
            f"it, or delete it (and {checkpoint.artifacts_dir.name} beside it) to start over"
        )
    if not checkpoint.resumed:  # artifacts of an attempt killed before its first checkpoint
        checkpoint.remove()
    evaluator.checkpoint = checkpoint
    executor = None
    if req.executor != "local" and isinstance(evaluator, TrainEvaluator):
        from nasrepro.harness.executors import get_executor

        executor = evaluator.executor = get_executor(req.executor, workers=req.workers)
    try:
        result = method.search(task, space, budget, evaluator, req.seed)
    finally:
        if executor is not None:
            executor.close()
    wall = checkpoint.elapsed()

    best = next(q for q in evaluator.history if q.arch == result.best_arch)
    metrics: dict[str, Any] = {"val": best.val, "test": best.test, **best.metrics}
    if req.measure and task.kind == "train":
        metrics.update(hardware_metrics(task, space.to_model(space.parse(best.arch), task)))
    cost = search_cost(wall, compute_device(task))
    cost.update(
        queries=evaluator.n_queries, evaluation_seconds=evaluator.total_cost, cost_model=evaluator.cost_model
    )
    record = {
        "schema_version": 1,
        "kind": "search",
        "method": req.method,
        "tag": req.tag,
        "task": req.task,
        "space": space.describe(),
        "seed": req.seed,
        "preset": req.preset,
        "scale": scale_label(task, req.preset),
        "budget": budget,
        "reward": req.reward,
        "direction": task.metric.direction,
        "metric": task.metric.name,
        "best_arch": result.best_arch,
        "metrics": metrics,
        "search_cost": cost,
        "history": [q.to_dict() for q in evaluator.history],
        "duplicates": evaluator.duplicates,
        # what the method reports besides the history: incumbent trajectories, populations, alphas
        "method_extra": json.loads(json.dumps(result.extra, default=str)),
        "config": {**req.to_config(), "method_config": method.config.to_dict(), "preset": preset.to_dict()},
        "versions": records.versions(),
        "machine": machine_info(),
        "git_commit": records.git_commit(),
        "created": records.now(),
    }
    records.write_record(record, path)
    checkpoint.remove()
    log_record(record, req.wandb, req.out / "wandb")
    return record, path


@dataclass
class EvaluateRequest:
    """Train one architecture from scratch under a task's protocol."""

    task: str
    arch: str
    preset: str = "cpu"
    seed: int = 0
    out: Path = Path("results")
    data_dir: Path | None = None
    wandb: WandbMode = "offline"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    #: the space `arch` belongs to (default: the task's); ignored for reference architectures
    space: str | None = None
    #: names a retraining study (e.g. the best architecture a method found): its records join the
    #: leaderboard as "<tag> (trained)" rows, untagged searched architectures stay diagnostics
    tag: str = ""

    def to_config(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["out"] = str(self.out)
        out["data_dir"] = None
        return out


def evaluate_label(arch: str) -> str:
    """The folder name of `nasrepro evaluate` records for a searched (not reference) architecture."""
    return "arch-" + hashlib.sha256(arch.encode()).hexdigest()[:10]


def evaluate_record_path(req: EvaluateRequest, label: str) -> Path:
    return records.record_path(req.out, req.task, label, req.preset, req.seed, None, kind="evaluate")


def run_evaluate(req: EvaluateRequest) -> tuple[dict[str, Any], Path]:
    """Build `req.arch` (a reference name or a canonical architecture string), train, record."""
    from nasrepro.harness.metrics import machine_info, search_cost
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

    L.seed_everything(req.seed, workers=True, verbose=False)  # initial weights follow --seed
    if reference is not None:
        model, space_info, label = reference.build(task), {"name": "reference"}, req.arch
        preset = with_overrides(preset, reference.recipe)
    else:
        try:
            space = resolve_space(task, req.space)
        except UsageError:
            if req.space is not None:
                raise
            raise UsageError(
                f"{req.arch!r} is not a reference architecture of {req.task} "
                f"({', '.join(task.reference_archs()) or 'none'})"
            ) from None
        arch = space.parse(req.arch)
        model, space_info = space.to_model(arch, task), space.describe()
        preset = with_overrides(preset, space.recipe_overrides(task))
        label = evaluate_label(str(arch))
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
        logger=logger,
        devices=req.devices,
        num_nodes=req.num_nodes,
        strategy=req.strategy,
    )
    wall = time.perf_counter() - start
    if logger:
        logger.experiment.summary.update({"final/val": result["val"], "final/test": result["test"]})
        logger.experiment.finish()
    cost = search_cost(wall, compute_device(task))
    cost.update(queries=1, evaluation_seconds=wall, cost_model="our own training wall time")
    record = {
        "schema_version": 1,
        "kind": "evaluate",
        "method": label,
        "tag": req.tag,
        "task": req.task,
        "space": space_info,
        "seed": req.seed,
        "preset": req.preset,
        "scale": scale_label(task, req.preset),
        "budget": None,
        "reward": "val",
        "direction": task.metric.direction,
        "metric": task.metric.name,
        "best_arch": req.arch if reference is not None else str(arch),
        "metrics": {
            "val": result["val"],
            "test": result["test"],
            **hw,
            "train_seconds": result["train_seconds"],
        },
        "search_cost": cost,
        "history": [],
        "config": {**req.to_config(), "preset": preset.to_dict()},
        "versions": records.versions(),
        "machine": machine_info(),
        "git_commit": records.git_commit(),
        "created": records.now(),
    }
    path = evaluate_record_path(req, label)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP every rank holds the same result; one writes it
        records.write_record(record, path)
    return record, path
