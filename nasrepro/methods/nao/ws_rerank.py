"""NAO-WS's last step: re-rank the best of the final pool by short stand-alone training (NAO_pytorch
``NAO_V1/train_search.py``, ``train_and_evaluate_top_on_cifar10``, run when the search ends).

The ``rerank_top`` best architectures by weight-sharing score are each trained from scratch at the
search size (``NASNetworkCIFAR`` with ``child_layers``, ``child_channels``) for ``rerank_epochs``
epochs (the code: 10) with the search's optimiser (SGD lr 0.025, momentum 0.9, L2 3e-4, gradient
clip 5, cosine schedule), and validated on the held-out split; sorted by that accuracy they are
the code's ``arch_pool.final``, whose best the authors then train in full (``train_cifar.py``).
Every training is seeded from (run seed, rank), so a resumed search re-ranks identically.

Deviations (labelled): the cosine schedule anneals to 0 (the harness's), not to ``child_lr_min``
0.001; training uses the harness's image-classification step (no drop-path, as the networks are
built without it); validation may be capped (``rerank_eval_batches``) at the smoke and cpu presets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L

from nasrepro.harness.recipe import Preset
from nasrepro.harness.run import Run
from nasrepro.spaces.nao_cells import ConvArch
from nasrepro.spaces.nao_cells_net import NAONetwork


def short_training(run: Run, search: Preset, datamodule: Any, arch: ConvArch, layers: int, channels: int,
                   epochs: int, train_batches: int | None, eval_batches: int | None, seed: int,
                   optimiser: dict[str, Any]) -> float:  # fmt: skip
    """Held-out accuracy (%) of `arch` after `epochs` epochs from scratch at N = `layers`, F = `channels`."""
    L.seed_everything(seed, workers=True, verbose=False)
    recipe = search.recipe.replace(epochs=epochs, schedule="cosine", optimizer="sgd", **optimiser)
    model = NAONetwork(arch, int(getattr(run.task, "num_classes", 10)), layers, channels)
    module = run.task.lightning_module(model, dataclasses.replace(search, recipe=recipe))
    trainer = run.trainer(
        max_epochs=epochs,
        devices=1,
        num_nodes=1,
        gradient_clip_val=recipe.grad_clip,
        limit_train_batches=train_batches or 1.0,
        limit_val_batches=eval_batches or 1.0,
    )
    trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    (metrics,) = trainer.validate(module, dataloaders=datamodule.val_dataloader(), verbose=False)
    return float(metrics["val/accuracy"])


def rerank(run: Run, search: Preset, datamodule: Any, archs: list[ConvArch], layers: int, channels: int,
           epochs: int, train_batches: int | None, eval_batches: int | None,
           optimiser: dict[str, Any]) -> list[tuple[ConvArch, float]]:  # fmt: skip
    """`archs` (best weight-sharing score first) with their re-ranking accuracy, best first; ties keep
    the weight-sharing order."""
    scored = [
        (
            arch,
            short_training(
                run,
                search,
                datamodule,
                arch,
                layers,
                channels,
                epochs,
                train_batches,
                eval_batches,
                run.seed * 7919 + k,
                optimiser,
            ),
        )  # fmt: skip
        for k, arch in enumerate(archs)
    ]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
    return [scored[i] for i in order]
