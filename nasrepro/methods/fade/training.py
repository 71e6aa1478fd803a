"""One region training from the `Run`: data loaders built once per search, one Lightning fit per region.

Data (the authors' ``Trainer``): weight steps on the data task's train part (its search split, sized by
the preset through `harness.oneshot.search_preset`); alpha steps on a second, separately shuffled
loader over the same images (``alpha_data="train"``, the code's two 90% loaders) or on the held-out
part (``"heldout"``, DARTS's split, `harness.oneshot.arch_loader`). Every region fit is seeded from
(run seed, step), so a search is deterministic and a resumed search replays the same regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from nasrepro.harness.oneshot import arch_loader, search_preset
from nasrepro.harness.task import Task
from nasrepro.methods.fade.estimator import EstimatorSettings, FadeEstimator
from nasrepro.methods.fade.presets import RegionBudget
from nasrepro.methods.fade.region import RegionSize, RegionView, Unit

if TYPE_CHECKING:
    from nasrepro.harness.run import Run
    from nasrepro.methods.fade.search import FadeConfig


def settings_of(cfg: FadeConfig, epochs: int) -> EstimatorSettings:
    return EstimatorSettings(
        mode=cfg.mode,  # type: ignore[arg-type]
        optimizer=cfg.optimizer,  # type: ignore[arg-type]
        epochs=epochs,
        lr_start=cfg.lr_start,
        lr_end=cfg.lr_end,
        alpha_lr_start=cfg.alpha_lr_start,
        alpha_lr_end=cfg.alpha_lr_end,
        sampling=cfg.sampling,
        random_init=cfg.random_init,
    )


def second_loader(train: DataLoader, batch_size: int, seed: int) -> DataLoader:
    """The same images as `train`, shuffled by a generator of its own (the code's alpha loader)."""
    return DataLoader(
        train.dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train.dataset) > batch_size,
        collate_fn=train.collate_fn,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )


class RegionTrainer:
    """Fits FaDE estimators for one search (loaders shared by all its regions)."""

    def __init__(
        self, run: Run, view: RegionView, cfg: FadeConfig, size: RegionBudget, data: Task, preset: str
    ) -> None:
        self.run, self.view, self.cfg, self.size, self.data_task = run, view, cfg, size, data
        self.settings = settings_of(cfg, size.epochs)
        self.datamodule = data.datamodule(search_preset(data, preset, size), run.data_dir, run.seed)
        self.train_loader = self.datamodule.train_dataloader()
        if cfg.alpha_data == "heldout":
            self.alpha_loader = arch_loader(self.datamodule, size.arch_batch_size, run.seed)
        else:
            self.alpha_loader = second_loader(self.train_loader, size.arch_batch_size, run.seed + 1)

    def train(
        self, candidates: Sequence[Sequence[Unit]], step: int
    ) -> tuple[list[list[float]], dict[str, Any]]:
        """Fit one region; its FaDE-ranks per stage and what the record keeps of the fit."""
        L.seed_everything(self.run.seed * 100_003 + step, verbose=False)
        network = self.view.build(
            candidates,
            self.run.task,
            RegionSize(self.size.nb201_C, self.size.nb201_N),
            self.settings.sampling,
            self.settings.random_init,
        )
        self.alpha_loader.generator.manual_seed(self.run.seed * 100_003 + step + 1)  # type: ignore[union-attr]
        module = FadeEstimator(network, self.settings, self.alpha_loader)
        trainer = self.run.trainer(
            max_epochs=self.settings.epochs,
            limit_train_batches=self.size.train_batches or 1.0,
            limit_val_batches=0,
            devices=1,
            num_nodes=1,
            enable_progress_bar=False,
        )
        trainer.fit(module, train_dataloaders=self.train_loader)
        params = sum(p.numel() for p in network.parameters())
        return module.ranks(), {"region_params": params, **module.summary()}
