"""One Lightning fit of one network under a task's recipe: the unit every evaluator and CLI uses."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from nasrepro.errors import EvaluationFailed
from nasrepro.harness.recipe import Preset
from nasrepro.harness.task import Task


class FailOnNonFiniteLoss(L.Callback):
    """Stops a diverged fit at once, so the search can mark the evaluation failed and go on."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise EvaluationFailed(
                f"non-finite training loss ({loss.item()}) at epoch {trainer.current_epoch}, batch {batch_idx}"
            )


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
        # Never validate inside `fit`: the protocol scores the final model, which `fit_and_evaluate`
        # validates once after training (validating at the last epoch as well repeated that pass).
        check_val_every_n_epoch=recipe.epochs + 1,
        deterministic=deterministic,
        default_root_dir=str(default_root_dir) if default_root_dir else None,
    )


def fit_and_evaluate(
    task: Task, model: nn.Module, preset: Preset, seed: int, data_dir: Path, **trainer_kwargs: Any
) -> dict[str, float]:
    """Train `model` from scratch with the task's recipe; return final `val`, `test` and timing.

    The reported numbers are those of the final model, as in the papers' final-training recipes
    (no checkpoint picked on test data).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = task.datamodule(preset, data_dir, seed)
    module = task.lightning_module(model, preset)
    trainer = trainer_for(preset, **trainer_kwargs)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    name = task.metric.name
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0][f"val/{name}"]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0][f"test/{name}"]
    if not (math.isfinite(val) and math.isfinite(test)):
        raise EvaluationFailed(f"non-finite {name}: val={val}, test={test}")
    return {
        "val": float(val),
        "test": float(test),
        "train_seconds": train_seconds,
        "epochs": preset.recipe.epochs,
    }
