"""What every one-shot method needs around its supernet: split loaders, preset sizing, a resumable fit.

A one-shot method (ProxylessNAS, FaDE, NAO with weight sharing) trains one over-parameterised network
instead of many children, so its search cost is that fit and its state too costly to replay is the
supernet itself. This module gives such a method, from the `Run` alone:

* **sizing** -- `PresetSizes`: the method's own table "(space family, preset) -> how big one fit
  is", looked up with a usage error that names the choices. The numbers stay in the method's package
  as data; they only need the fields of `SupernetSize`;
* **the search split** -- `search_preset` and `arch_loader`: weight steps on the data task's train
  part, architecture steps on its held-out part, shuffled by a seeded generator of its own and without
  augmentation (the bi-level split of DARTS, Liu et al. 2019, Sec. 2.3; ProxylessNAS's released
  ``valid_next_batch``), so a resumed fit can re-walk the held-out pass exactly;
* **a resumable fit** -- `fit_supernet`: a Lightning `Trainer` from the run's `TrainerFactory`
  (accelerator, devices and determinism are the run's, not the method's), a full-state checkpoint at
  every epoch end in `run.artifacts_dir` followed by the run's own search checkpoint (so the wall time
  spent is saved with it), and on a resumed run the fit continues from the last finished epoch.

Exact resume needs the module to save what Lightning does not (its RNG states, where it stands in the
held-out pass, its own logs) in ``on_save_checkpoint``, as plain tensors, numbers, strings and lists:
the checkpoint is loaded with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch.utils.data import DataLoader

from nasrepro.atomic import atomic_write
from nasrepro.errors import UsageError
from nasrepro.harness.recipe import Preset
from nasrepro.harness.task import Task

if TYPE_CHECKING:
    import lightning as L

    from nasrepro.harness.run import Run

#: the supernet's Lightning checkpoint, inside the run's artifacts folder
SUPERNET_CHECKPOINT = "supernet.ckpt"


class SupernetSize(Protocol):
    """The fields of a method's preset row that the shared machinery reads."""

    #: images per weight step (the data task's recipe batch size during the fit)
    batch_size: int
    #: images per architecture step, drawn from the held-out part
    arch_batch_size: int
    #: training images used for weight steps (None: the task's whole train part)
    train_subset: int | None
    #: cap on weight steps per epoch (None: the whole train part)
    train_batches: int | None


S = TypeVar("S", bound=SupernetSize)


class PresetSizes(Mapping[tuple[str, str], S], Generic[S]):
    """A method's "(space family, preset) -> fit size" table, as data with a helpful look-up."""

    def __init__(self, method: str, rows: Mapping[tuple[str, str], S]) -> None:
        self.method, self._rows = method, dict(rows)

    def __getitem__(self, key: tuple[str, str]) -> S:
        return self._rows[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def presets(self, family: str) -> tuple[str, ...]:
        return tuple(preset for fam, preset in self._rows if fam == family)

    def size(self, family: str, preset: str) -> S:
        """The row for `family` at `preset`; a usage error naming the presets that exist."""
        try:
            return self._rows[(family, preset)]
        except KeyError:
            raise UsageError(
                f"unknown preset {preset!r} for {self.method} on {family} spaces; "
                f"choose one of {', '.join(self.presets(family))}"
            ) from None


def search_preset(
    data_task: Task, preset: str, size: SupernetSize, changes: Mapping[str, Any] | None = None
) -> Preset:
    """The data task's preset `preset` with the fit's batch size and train subset; `changes` are further
    recipe fields (e.g. a larger hold-out, ``valid_size``), refused when the task would not apply them."""
    base = data_task.preset(preset)
    recipe = base.recipe.replace(
        batch_size=size.batch_size, train_subset=size.train_subset, **dict(changes or {})
    )
    data_task.check_recipe(recipe)
    return dataclasses.replace(base, recipe=recipe)


def arch_loader(datamodule: Any, batch_size: int, seed: int) -> DataLoader:
    """The held-out part for architecture steps: shuffled with its own seeded generator (so a resumed
    fit can replay a pass from the generator's saved state), full batches, the held-out transforms
    (no augmentation)."""
    held_out = datamodule.val_dataloader()
    return DataLoader(
        held_out.dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(held_out.dataset) >= batch_size,
        collate_fn=held_out.collate_fn,
        num_workers=held_out.num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


class SupernetCheckpoint(Checkpoint):
    """Saves the whole fit state at every epoch end, atomically, then the run's search checkpoint.

    A `Checkpoint` subclass runs its ``on_train_epoch_end`` after the LightningModule's, so whatever the
    module logs at an epoch end is inside the saved state. The run's fingerprint goes in too: a
    checkpoint of another run is refused, never silently continued.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.path = Path(run.artifacts_dir) / SUPERNET_CHECKPOINT

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # weights_only=False here means "the full training state", not torch.load's flag
        atomic_write(self.path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False))
        self.run.save_checkpoint()

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["nasrepro_fingerprint"] = dict(self.run.fingerprint)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if checkpoint.get("nasrepro_fingerprint") != dict(self.run.fingerprint):
            raise UsageError(
                f"supernet checkpoint {self.path} belongs to another run; delete it or rerun without --resume"
            )


def supernet_checkpointing(run: Run) -> tuple[SupernetCheckpoint, Path | None]:
    """The epoch-end checkpoint callback and, on a resumed run, the checkpoint to continue from.

    The runner clears the artifacts folder whenever it starts afresh, and only a resumed run continues:
    a supernet checkpoint used here is always this run's own.
    """
    callback = SupernetCheckpoint(run)
    return callback, (callback.path if run.resumed and callback.path.exists() else None)


def fit_supernet(
    run: Run, module: L.LightningModule, train_loader: DataLoader, max_epochs: int, **trainer_overrides: Any
) -> float:
    """Fit `module` for `max_epochs` on `train_loader`, checkpointed per epoch and resumed if the run is.

    The Trainer comes from `run.trainer` (its devices, accelerator, determinism), with `trainer_overrides`
    on top (e.g. ``limit_train_batches``, or ``devices=1`` for a module whose updates bypass DDP).
    Returns the fit's wall seconds, plus, when it continued an interrupted fit, the earlier attempts'
    (`run.elapsed_before`, saved with the last epoch's checkpoint): the supernet's whole cost.
    """
    callback, resume_from = supernet_checkpointing(run)
    overrides = dict(trainer_overrides)
    callbacks = [*overrides.pop("callbacks", []), callback]
    trainer = run.trainer(
        **{
            "max_epochs": max_epochs,
            "enable_progress_bar": not run.quiet,
            **overrides,
            "callbacks": callbacks,
            "enable_checkpointing": True,
        }
    )
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=train_loader, ckpt_path=resume_from, weights_only=True)
    seconds = time.perf_counter() - start
    return seconds + (run.elapsed_before if resume_from is not None else 0.0)


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, Python) in `torch.load(weights_only=True)`-safe types
    (tensors, ints, lists): a one-shot module saves them in its epoch checkpoint so that a resumed
    fit draws the same architectures and batches as an uninterrupted one."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA states only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
