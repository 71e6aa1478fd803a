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

On PTB (reconstruction): the released ``NAO-WS/rnn/train_search.py`` has no re-ranking (its pool's
best by shared-weight loss is what the authors trained), so the ``paper`` row re-ranks only the
best (nothing); the smaller presets may re-rank a few cells by short stand-alone training of
their language model with the final optimiser (SGD lr 20, clip 0.25), by validation perplexity.
What is trained and read per task is a `RerankSpec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch import nn

from nasrepro.harness.recipe import Preset
from nasrepro.harness.run import Run


@dataclass(frozen=True)
class RerankSpec:
    """What re-ranking trains and reads on one task: the stand-alone network of an architecture at
    the search size, the recipe fields of the short training (optimiser, schedule), and the
    held-out metric logged by the task's module with its direction."""

    build: Callable[[Any], nn.Module]
    recipe_changes: dict[str, Any]
    metric: str = "val/accuracy"
    maximise: bool = True


def short_training(run: Run, search: Preset, datamodule: Any, arch: Any, spec: RerankSpec, epochs: int,
                   train_batches: int | None, eval_batches: int | None, seed: int) -> float:  # fmt: skip
    """`spec.metric` of `arch`'s network after `epochs` epochs from scratch at the search size."""
    L.seed_everything(seed, workers=True, verbose=False)
    recipe = search.recipe.replace(epochs=epochs, **spec.recipe_changes)
    module = run.task.lightning_module(spec.build(arch), dataclasses.replace(search, recipe=recipe))
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
    return float(metrics[spec.metric])


def rerank(run: Run, search: Preset, datamodule: Any, archs: list[Any], spec: RerankSpec, epochs: int,
           train_batches: int | None, eval_batches: int | None) -> list[tuple[Any, float]]:  # fmt: skip
    """`archs` (best weight-sharing score first) with their re-ranking metric, best first; ties keep
    the weight-sharing order. Every training is seeded from (run seed, rank)."""
    scored = [
        (
            arch,
            short_training(
                run, search, datamodule, arch, spec, epochs, train_batches, eval_batches, run.seed * 7919 + k
            ),
        )  # fmt: skip
        for k, arch in enumerate(archs)
    ]
    sign = -1.0 if spec.maximise else 1.0
    order = sorted(range(len(scored)), key=lambda i: (sign * scored[i][1], i))
    return [scored[i] for i in order]
