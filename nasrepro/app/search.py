"""One seed of one search, end to end: resolve, build the run context, search, measure, record.

This is the single path from the command line (and the reproduce scripts) to a search record, so
every method and task is measured, costed and recorded the same way. The runner owns the history
and the cost (it reads them from the evaluator it built); the method adds only its incumbent and
its report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nasrepro.app.requests import SearchRequest, check_tag
from nasrepro.app.resolve import Resolved, resolve_search
from nasrepro.errors import UsageError
from nasrepro.harness.checkpoint import SearchCheckpoint
from nasrepro.harness.evaluator import Evaluator, Listener
from nasrepro.harness.method import SearchResult
from nasrepro.harness.quiet import quiet_lightning
from nasrepro.harness.run import Run, TrainerFactory
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.harness.task import Task
from nasrepro.harness.train_evaluator import TrainEvaluator
from nasrepro.tracking import records
from nasrepro.tracking.record import Metrics, Record, SearchCost
from nasrepro.tracking.wandb_log import check_mode

SCALE = {"smoke": "smoke test (not a result)", "cpu": "cpu-scale", "paper": "paper setting"}


def scale_label(task: Task, preset: str) -> str:
    if task.kind == "table":
        return "table look-up of the benchmark's own training runs" if preset != "smoke" else SCALE["smoke"]
    return SCALE[preset]


def compute_device(task: Task) -> str:
    """Where evaluations ran: a table look-up is CPU work; training goes where Lightning's "auto" puts it."""
    if task.kind != "train":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def hardware_metrics(task: Task, model: Any) -> dict[str, float]:
    """Params, FLOPs, latency and training-step memory of a built model on this machine's CPU."""
    from nasrepro.harness.metrics import model_metrics

    return model_metrics(model, task.example_input(1), device="cpu", latency=True)


def resolve(req: SearchRequest) -> Resolved:
    check_tag(req.tag)
    return resolve_search(
        req.method, req.task, req.space, req.preset, req.budget, req.method_config, req.data_dir
    )


def build_evaluator(
    req: SearchRequest, resolved: Resolved, artifacts: Path, listeners: list[Listener], executor: Any
) -> Evaluator:
    task, space = resolved.task, resolved.space
    if task.kind == "table":  # look-ups run here; `workers` is what asynchronous methods keep in flight
        return TableEvaluator(
            task, space, budget=resolved.budget, reward=req.reward, listeners=listeners, workers=req.workers
        )
    return TrainEvaluator(
        task,
        space,
        budget=resolved.budget,
        reward=req.reward,
        preset=resolved.preset,
        seed=req.seed,
        data_dir=resolved.data_dir,
        executor=executor,
        warm_start=resolved.method.warm_start(task, space, artifacts),
        listeners=listeners,
    )


def make_executor(req: SearchRequest, task: Task) -> Any:
    """The executor evaluations run on; a table look-up needs none."""
    if task.kind == "table" or (req.executor == "local" and req.workers == 1):
        return None
    from nasrepro.harness.executors import get_executor

    return get_executor(req.executor, workers=req.workers)


def run_search(req: SearchRequest) -> tuple[dict[str, Any], Path]:
    """Search, select the incumbent by the reward, record its final metrics, write the record.

    W&B logging is the caller's (`nasrepro search` logs its new records after all seeds, see
    `tracking.wandb_log.log_in_background`), so a search never waits on W&B."""
    quiet_lightning()
    check_mode(req.wandb)
    resolved = resolve(req)
    task, space, method, budget = resolved.task, resolved.space, resolved.method, resolved.budget
    path = records.record_path(req.out, req.task, req.method, req.preset, req.seed, budget, tag=req.tag)
    if req.resume and path.exists():
        return records.read_record(path), path  # finished before the interruption
    checkpoint = SearchCheckpoint(
        path.with_name(f".{path.stem}.checkpoint"), req.fingerprint(), req.checkpoint_seconds
    )
    replay = checkpoint.load() if req.resume else []
    if not req.resume and checkpoint.path.exists():  # never overwrite finished work the user may want
        raise _interrupted(checkpoint)
    if not checkpoint.resumed:  # artifacts of an attempt killed before its first checkpoint
        checkpoint.remove()
    listeners: list[Listener] = [lambda evaluator, _query: checkpoint.maybe_save(evaluator)]
    progress = None
    if req.progress:
        from nasrepro.app.progress import SearchProgress

        progress = SearchProgress(f"{req.method} {req.task} s{req.seed}", budget)
        listeners.append(progress)
    executor = make_executor(req, task)
    try:
        evaluator = build_evaluator(req, resolved, checkpoint.artifacts_dir, listeners, executor)
        evaluator.resume_from(replay, checkpoint.in_flight)
        run = Run(
            task=task,
            space=space,
            budget=budget,
            evaluator=evaluator,
            seed=req.seed,
            preset=resolved.preset,
            preset_name=req.preset,
            data_dir=resolved.data_dir,
            artifacts_dir=checkpoint.artifacts_dir,
            trainer=TrainerFactory(deterministic=req.deterministic),
            executor=executor,
            resumed=checkpoint.resumed,
            elapsed_before=checkpoint.elapsed_before,
            fingerprint=req.fingerprint(),
            save_checkpoint=lambda: checkpoint.save(evaluator),
            quiet=not req.progress,
        )
        search_started = time.monotonic()
        evaluator.clock = lambda: checkpoint.elapsed_before + time.monotonic() - search_started
        result = method.search(run)
        search_wall = checkpoint.elapsed_before + time.monotonic() - search_started
    finally:
        if executor is not None:
            executor.close()
        if progress is not None:
            progress.close()
    wall = checkpoint.elapsed()
    record = search_record(req, resolved, evaluator, result, wall, search_wall)
    records.write_record(record, path)
    checkpoint.remove()
    return record.to_dict(), path


def _interrupted(checkpoint: SearchCheckpoint) -> UsageError:
    return UsageError(
        f"{checkpoint.path} holds an interrupted run of this search; rerun with --resume to continue "
        f"it, or delete it (and {checkpoint.artifacts_dir.name} beside it) to start over"
    )


def method_overhead(result: SearchResult, evaluator: Evaluator, wall: float) -> float:
    """The method's own compute outside evaluations: what it reports (e.g. a supernet fit), else
    the wall time of `Method.search` less the time spent answering its queries (controller updates,
    GP fits, sampling), so every record separates the two (issue 16, search cost). Setting up the
    task and evaluator (loading a table) is the harness's, not the method's."""
    if result.overhead_seconds is not None:
        return round(result.overhead_seconds, 6)
    return round(max(0.0, wall - sum(q.wall_seconds for q in evaluator.history)), 6)


def run_config(req: SearchRequest, resolved: Resolved) -> dict[str, Any]:
    """The record's `config`: the request, the method's options and the preset. On a train task the
    preset is the one every evaluation trained with (task preset + space overrides + the method's
    `final_recipe`, whose own overrides are also kept as `method_recipe` when it has any); a table
    task trains nothing and records its own preset."""
    task, method = resolved.task, resolved.method
    config = {**req.to_config(), "method_config": method.config.to_dict()}
    if task.kind == "table":
        return {**config, "preset": task.preset(req.preset).to_dict()}
    config["preset"] = resolved.preset.to_dict()
    method_recipe = dict(method.final_recipe(task, req.preset))
    if method_recipe:
        config["method_recipe"] = method_recipe
    return config


def search_record(
    req: SearchRequest,
    resolved: Resolved,
    evaluator: Evaluator,
    result: SearchResult,
    wall: float,
    search_wall: float,
) -> Record:
    """The run's record, from the evaluator's history and cost plus the method's report."""
    from nasrepro.harness.machine import machine_info, search_cost

    task, space = resolved.task, resolved.space
    best = next(q for q in evaluator.history if q.arch == result.best_arch)
    metrics: dict[str, Any] = {"val": best.val, "test": best.test, **best.metrics}
    if req.measure and task.kind == "train":
        metrics.update(hardware_metrics(task, space.to_model(space.parse(best.arch), task)))
    return Record(
        kind="search",
        method=req.method,
        tag=req.tag,
        task=req.task,
        space=space.describe(),
        seed=req.seed,
        preset=req.preset,
        scale=scale_label(task, req.preset),
        budget=resolved.budget,
        reward=req.reward,
        direction=task.metric.direction,
        metric=task.metric.name,
        best_arch=result.best_arch,
        metrics=Metrics.from_dict(metrics),
        search_cost=SearchCost(
            **search_cost(wall, compute_device(task)),
            queries=evaluator.n_queries,
            evaluation_seconds=evaluator.total_cost,
            cost_model=evaluator.cost_model,
            charged_cost=evaluator.charged_cost,
            method_overhead_seconds=method_overhead(result, evaluator, search_wall),
        ),
        history=[q.to_dict() for q in evaluator.history],
        duplicates=evaluator.duplicates,
        method_extra=result.extra,
        config=run_config(req, resolved),
        machine=machine_info(),
    )
