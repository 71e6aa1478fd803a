"""Toy tasks for the conformance suite: a table task and a live (trained) task over the toy space.

Both are importable by a subprocess (the SIGKILL test runs searches in child processes), so they
live in a module, not in fixtures. `register()` puts them in the task registry under `toy` and
`toy-live` for code that resolves names (the runner, the command line).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conftest import CategoricalToySpace, ToyTable, ToyTask

from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.task import Metric, Task

N_FEATURES = CategoricalToySpace.n


class ToyCategoricalTask(ToyTask):
    """The toy table over the categorical toy space, so controllers (AGNN, GraphNAS) run on it."""

    name = "toy-table"

    def __init__(self) -> None:
        self._table: ToyTable | None = None

    def space(self) -> CategoricalToySpace:
        return CategoricalToySpace()

    def table(self) -> ToyTable:
        if self._table is None:  # one table per task instance, as the real tasks cache theirs
            self._table = ToyTable()
        return self._table


class LiveToySpace(CategoricalToySpace):
    """The toy space whose architectures build models: bit i keeps input feature i."""

    name = "toy-live"

    def to_model(self, arch: str, task: Task) -> Any:
        import torch
        from torch import nn

        class Masked(nn.Module):
            def __init__(self, mask: list[float]) -> None:
                super().__init__()
                self.register_buffer("mask", torch.tensor(mask))
                self.linear = nn.Linear(N_FEATURES, 2)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.linear(x * self.mask)

        return Masked([float(c) for c in arch])


class ToyLiveTask(Task):
    """A two-class problem whose label depends on every feature: more kept features, better fits.
    One fit takes a fraction of a second, so live-training code paths run in the suite."""

    name = "toy-live"
    metric = Metric("accuracy", "max")
    kind = "train"

    @property
    def presets(self) -> Mapping[str, Preset]:
        recipe = TrainRecipe(epochs=2, lr=0.5, optimizer="sgd", batch_size=64, schedule="constant")
        return {name: Preset(name, recipe, search_budget=8) for name in ("smoke", "cpu", "paper")}

    def space(self) -> LiveToySpace:
        return LiveToySpace()

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        import torch

        return (torch.zeros(batch_size, N_FEATURES),)

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> Any:
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        gen = torch.Generator().manual_seed(1234)  # the data never depend on the search seed
        x = torch.randn(3 * 256, N_FEATURES, generator=gen)
        y = (x.sum(dim=1) > 0).long()
        splits = [TensorDataset(x[i * 256 : (i + 1) * 256], y[i * 256 : (i + 1) * 256]) for i in range(3)]
        batch = preset.recipe.batch_size

        class Data(L.LightningDataModule):
            def train_dataloader(self) -> DataLoader:
                return DataLoader(
                    splits[0], batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed)
                )

            def val_dataloader(self) -> DataLoader:
                return DataLoader(splits[1], batch_size=256)

            def test_dataloader(self) -> DataLoader:
                return DataLoader(splits[2], batch_size=256)

        return Data()

    def lightning_module(self, model: Any, preset: Preset) -> Any:
        from nasrepro.tasks.image_classification import ImageClassificationModule

        return ImageClassificationModule(model, preset)


TOY_TASKS = {"toy-table": ToyCategoricalTask, "toy-live": ToyLiveTask}


def register() -> None:
    """Make the toy tasks resolvable by name (idempotent)."""
    from nasrepro import tasks

    tasks.task_names()  # load the real registry first, so nothing later re-registers over ours
    for name, cls in TOY_TASKS.items():
        if name not in tasks.TASKS:
            tasks.TASKS.add(name, cls)
        tasks._instances.pop(name, None)


__all__ = ["ToyTable", "register"]
