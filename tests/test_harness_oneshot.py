"""The shared one-shot machinery (`harness/oneshot.py`) on a toy supernet: sizing, split loaders, and an
epoch-checkpointed fit that an interrupted run continues exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.errors import UsageError
from nasrepro.harness.oneshot import (
    SUPERNET_CHECKPOINT,
    PresetSizes,
    arch_loader,
    fit_supernet,
    search_preset,
)
from nasrepro.harness.run import Run, TrainerFactory, run_of
from nasrepro.harness.table_evaluator import TableEvaluator

EPOCHS, BATCHES = 4, 3


@dataclass(frozen=True)
class Size:
    batch_size: int
    arch_batch_size: int
    train_subset: int | None
    train_batches: int | None


class Interrupted(RuntimeError):
    """Stands for a kill: raised inside the fit, after some epochs were saved."""


class ToySupernet(L.LightningModule):
    """Two linear layers, SGD with momentum (state a resume must restore), optionally stopping early."""

    def __init__(self, stop_at_epoch: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        self.stop_at_epoch = stop_at_epoch
        self.steps: list[tuple[int, int]] = []  # (epoch, batch) this attempt trained

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.stop_at_epoch:
            raise Interrupted
        self.steps.append((self.current_epoch, batch_idx))
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def state(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.parameters()]


def train_loader() -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(24, 4, generator=gen), torch.randint(0, 2, (24,), generator=gen))
    return DataLoader(data, batch_size=8, shuffle=False)


def toy_run(toy_task, toy_space, artifacts: Path, seed: int = 0, **fields) -> Run:
    return run_of(
        TableEvaluator(toy_task, toy_space),
        preset_name="smoke",
        artifacts_dir=artifacts,
        trainer=TrainerFactory(accelerator="cpu", devices=1),
        fingerprint={"method": "toy", "seed": seed},
        **fields,
    )


def fit(run: Run, module: ToySupernet) -> float:
    return fit_supernet(run, module, train_loader(), EPOCHS, limit_train_batches=BATCHES)


def test_an_interrupted_fit_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_one(
    toy_task, toy_space, tmp_path: Path
) -> None:
    reference = ToySupernet()
    saves: list[int] = []
    fit(
        toy_run(toy_task, toy_space, tmp_path / "reference", save_checkpoint=lambda: saves.append(1)),
        reference,
    )
    assert len(saves) == EPOCHS  # the run's own checkpoint follows every saved epoch

    artifacts = tmp_path / "killed"
    with pytest.raises(Interrupted):
        fit(toy_run(toy_task, toy_space, artifacts), ToySupernet(stop_at_epoch=2))
    assert (artifacts / SUPERNET_CHECKPOINT).is_file()

    resumed = ToySupernet()
    seconds = fit(toy_run(toy_task, toy_space, artifacts, resumed=True, elapsed_before=100.0), resumed)
    assert resumed.steps == [(e, b) for e in (2, 3) for b in range(BATCHES)]  # epochs 0-1 not redone
    for a, b in zip(reference.state(), resumed.state(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # weights and momentum came back exactly
    assert seconds >= 100.0  # the interrupted attempt's time is part of the supernet's cost


def test_a_fresh_run_ignores_a_left_over_checkpoint_and_a_foreign_one_is_refused(
    toy_task, toy_space, tmp_path: Path
) -> None:
    fit(toy_run(toy_task, toy_space, tmp_path), ToySupernet())
    fresh = ToySupernet()
    assert fit(toy_run(toy_task, toy_space, tmp_path), fresh) < 100.0
    assert fresh.steps[0] == (0, 0)  # not resumed: trains from the first epoch
    with pytest.raises(UsageError, match="belongs to another run"):
        fit(toy_run(toy_task, toy_space, tmp_path, seed=1, resumed=True), ToySupernet())


def test_arch_loader_shuffles_the_held_out_part_with_its_own_seeded_generator() -> None:
    held_out = DataLoader(TensorDataset(torch.arange(20.0)), batch_size=4)
    datamodule = SimpleNamespace(val_dataloader=lambda: held_out)

    def order(seed: int) -> list[float]:
        return torch.cat([x for (x,) in arch_loader(datamodule, 6, seed)]).tolist()

    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    first = order(3)
    assert torch.equal(global_state, torch.get_rng_state())  # the global stream is not drawn from
    assert first == order(3) and first != order(4)
    assert first != sorted(first) and len(first) == 18  # shuffled; full batches only (drop_last)
    small = arch_loader(SimpleNamespace(val_dataloader=lambda: held_out), 32, 0)
    assert sum(len(x) for (x,) in small) == 20  # a hold-out smaller than one batch is kept whole


def test_search_preset_sizes_the_data_task_recipe(toy_task) -> None:
    from nasrepro.tasks import get_task

    size = Size(batch_size=8, arch_batch_size=8, train_subset=80, train_batches=5)
    cifar = get_task("cifar10")
    preset = search_preset(cifar, "smoke", size, {"valid_size": 25_000})
    base = cifar.preset("smoke")
    assert (preset.recipe.batch_size, preset.recipe.train_subset) == (8, 80)
    assert preset.recipe == base.recipe.replace(batch_size=8, train_subset=80, valid_size=25_000)
    assert preset.recipe.epochs == base.recipe.epochs and preset.name == base.name
    # a hold-out the task would not apply is refused, never silently dropped
    with pytest.raises(UsageError, match="does not apply the recipe option"):
        search_preset(toy_task, "smoke", size, {"valid_size": 25_000})


def test_preset_sizes_look_up_with_a_usage_error_naming_the_choices() -> None:
    rows = {("a", "smoke"): Size(8, 8, 80, 5), ("a", "cpu"): Size(64, 64, None, None)}
    sizes = PresetSizes("toy", rows)
    assert sizes.size("a", "cpu") is rows[("a", "cpu")] and sizes[("a", "smoke")] is rows[("a", "smoke")]
    assert dict(sizes) == rows
    with pytest.raises(
        UsageError, match="unknown preset 'paper' for toy on a spaces; choose one of smoke, cpu"
    ):
        sizes.size("a", "paper")
