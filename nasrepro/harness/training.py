"""One Lightning fit of one network under a task's recipe: the unit every evaluator and CLI uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from torch import nn

from nasrepro.errors import EvaluationFailed, UsageError
from nasrepro.harness.quiet import quiet_lightning
from nasrepro.harness.recipe import Preset
from nasrepro.harness.task import Task


@runtime_checkable
class FitReporter(Protocol):
    """A callback that knows something about its fit the record should keep, beyond val and test
    (e.g. the epoch NT-ASGD switched to averaged SGD): `fit_report()` maps names to one value per
    fit, None where the event did not happen; `fit_and_evaluate` lists them per seed."""

    def fit_report(self) -> dict[str, float | int | None]: ...


class FailOnNonFiniteLoss(L.Callback):
    """Stops a diverged fit at once, so the search can mark the evaluation failed and go on.

    A fit that selects an epoch (`KeepBestValidation`) and has kept one ends instead: non-finite
    weights never train back, and every later epoch's validation loss is NaN, which the benchmark's
    own loop never selects (``val_loss < min_val_loss`` is false for NaN), so stopping here scores
    exactly what training on would have.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or torch.isfinite(loss).all():
            return
        keep = next((c for c in trainer.callbacks if isinstance(c, KeepBestValidation)), None)  # type: ignore[attr-defined]
        if keep is not None and keep.best is not None:
            keep.diverged_epoch = trainer.current_epoch
            trainer.should_stop = True
            return
        raise EvaluationFailed(
            f"non-finite training loss ({loss.item()}) at epoch {trainer.current_epoch}, batch {batch_idx}"
        )


class KeepBestValidation(L.Callback):
    """Keeps the weights of the epoch selected on validation alone, and its validation score.

    `select: best-val` picks the epoch with the best validation score (`report_key`);
    `select: min-val-loss` the one with the lowest validation loss, which is what NAS-Bench-Graph's
    generation code does (``worker.py``: ``if val_loss < min_val_loss: best_performance = test_acc``).
    Either way test never chooses: the kept weights are scored on test after the fit. They are copied
    to the CPU only when the criterion improves, and restored when fit ends.
    """

    def __init__(self, select_key: str, direction: str, report_key: str) -> None:
        self.key, self.sign, self.report_key = select_key, 1.0 if direction == "max" else -1.0, report_key
        self.criterion: float | None = None
        self.best: float | None = None  # the selected epoch's `report_key` score
        self.best_epoch = -1
        self.diverged_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    @classmethod
    def for_rule(cls, select: str, metric: str, direction: str) -> KeepBestValidation:
        if select == "min-val-loss":
            return cls("val/loss", "min", f"val/{metric}")
        return cls(f"val/{metric}", direction, f"val/{metric}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.key not in trainer.callback_metrics:
            raise UsageError(f"the task logs no {self.key!r}, which the recipe's select rule reads")
        score = float(trainer.callback_metrics[self.key])
        if math.isfinite(score) and (
            self.criterion is None or self.sign * score > self.sign * self.criterion
        ):
            self.criterion, self.best_epoch = score, trainer.current_epoch
            self.best = float(trainer.callback_metrics[self.report_key])
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)


def trainer_for(
    preset: Preset,
    *,
    logger: Any = False,
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    accelerator: str = "auto",
    callbacks: Sequence[L.Callback] = (),
    default_root_dir: Path | None = None,
    deterministic: bool = True,
) -> L.Trainer:
    """A Trainer configured by the preset's recipe; `accelerator="auto"` picks a GPU where there is one."""
    quiet_lightning()  # again here: importing Lightning after an earlier call set its logger back to INFO
    recipe = preset.recipe
    return L.Trainer(
        max_epochs=recipe.epochs,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger=logger,
        callbacks=[FailOnNonFiniteLoss(), *callbacks],
        gradient_clip_val=recipe.grad_clip,
        limit_train_batches=recipe.limit_train_batches,
        limit_val_batches=recipe.limit_eval_batches,
        limit_test_batches=recipe.limit_eval_batches,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        # Validate inside `fit` only to select an epoch (`select` other than final); else the protocol scores
        # the final model, which `fit_and_evaluate` validates once after training.
        check_val_every_n_epoch=1 if recipe.select != "final" else recipe.epochs + 1,
        deterministic=deterministic,
        default_root_dir=str(default_root_dir) if default_root_dir else None,
    )


def fit_and_evaluate(
    task: Task,
    model: nn.Module,
    preset: Preset,
    seed: int,
    data_dir: Path,
    *,
    build: Callable[[], nn.Module] | None = None,
    callbacks: Sequence[L.Callback] = (),
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    """Train from scratch with the task's recipe; return `val`, `test` and timing.

    The numbers are those of the final model, as in the papers' final-training recipes, or with
    with `select` those of the epoch chosen on validation (`KeepBestValidation`). With `repeats: n` the
    network is trained n times -- `model` under `seed`, then fresh networks from `build()` under
    seeds seed+1, ... -- and `val`/`test` are the means (per-seed values in `val_seeds`/`test_seeds`,
    one each without repeats; the selected epochs in `best_epochs`; each `FitReporter` callback's
    value `x` in `reported["xs"]`). Every list is per seed.
    """
    repeats = preset.recipe.repeats
    if repeats > 1 and build is None:
        raise UsageError(f"the recipe trains {repeats} seeds per architecture, which needs a model builder")
    runs = []
    for r in range(repeats):
        if r:
            L.seed_everything(seed + r, workers=True, verbose=False)  # the fresh network's weights
            model = build()  # type: ignore[misc]
        runs.append(_fit_once(task, model, preset, seed + r, data_dir, callbacks, trainer_kwargs))
    out: dict[str, Any] = {
        "val": sum(r["val"] for r in runs) / repeats,
        "test": sum(r["test"] for r in runs) / repeats,
        "train_seconds": sum(r["train_seconds"] for r in runs),
        "epochs": preset.recipe.epochs,
        "val_seeds": [r["val"] for r in runs],
        "test_seeds": [r["test"] for r in runs],
    }
    if "best_epoch" in runs[0]:
        out["best_epochs"] = [r["best_epoch"] for r in runs]
        out["diverged_epochs"] = [r.get("diverged_epoch") for r in runs]
    # `FitReporter` values, one list per name with one entry per seed, as `best_epochs`
    out["reported"] = {f"{key}s": [r["reported"].get(key) for r in runs] for key in runs[0]["reported"]}
    return out


def _fit_once(
    task: Task,
    model: nn.Module,
    preset: Preset,
    seed: int,
    data_dir: Path,
    callbacks: Sequence[L.Callback],
    trainer_kwargs: dict[str, Any],
) -> dict[str, Any]:
    if not preset.recipe.normalize_features and not task.node_features:
        raise UsageError(
            f"{task.name} has no node features to leave un-normalised (normalize_features: false)"
        )
    task.check_recipe(preset.recipe)  # an option the task would not apply is refused, not ignored
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = task.datamodule(preset, data_dir, seed)
    module = task.lightning_module(model, preset)
    name = task.metric.name
    keep = KeepBestValidation.for_rule(preset.recipe.select, name, task.metric.direction)
    selecting = preset.recipe.select != "final"
    trainer = trainer_for(preset, callbacks=[*callbacks, *([keep] if selecting else [])], **trainer_kwargs)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    if selecting and keep.best is not None:
        val = keep.best  # the restored weights' own validation score: no second pass
    else:
        val = trainer.validate(module, datamodule=datamodule, verbose=False)[0][f"val/{name}"]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0][f"test/{name}"]
    if not (math.isfinite(val) and math.isfinite(test)):
        raise EvaluationFailed(f"non-finite {name}: val={val}, test={test}")
    result: dict[str, Any] = {
        "val": float(val),
        "test": float(test),
        "train_seconds": train_seconds,
        "epochs": preset.recipe.epochs,
        "reported": {
            k: v
            for cb in trainer.callbacks
            if isinstance(cb, FitReporter)
            for k, v in cb.fit_report().items()
        },
    }
    if selecting:
        result["best_epoch"] = keep.best_epoch
        if keep.diverged_epoch is not None:
            result["diverged_epoch"] = keep.diverged_epoch
    return result
