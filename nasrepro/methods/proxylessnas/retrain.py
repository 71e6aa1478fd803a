"""ProxylessNAS's final training (retraining) of a derived network, as data, and the recipe it sets.

`ProxylessNAS.final_recipe` returns `final_recipe(...)`, which the runner applies to the evaluator
that trains the derived network (`harness.method.training_preset`), at the ``paper`` preset:

- **ImageNet**: the released ``search/imagenet_run_exp.py`` (fact sheet Sec. 3.2): 300 epochs,
  batch 256, SGD Nesterov 0.9 from 0.05 with a cosine schedule, weight decay 4e-5 except on BN
  (``--no_decay_keys bn``), label smoothing 0.1, ``distort_color strong`` = ColorJitter(0.4, 0.4,
  0.4, 0.1) after RandomResizedCrop(224, 0.08-1) + flip, dropout 0.1 before the classifier (mobile
  nets; the GPU net 0.3: the method option ``retrain_dropout``). BN momentum 0.1 / eps 1e-3 and the
  he_fout initialisation are the network's own (`blocks.batch_norm`, `spaces.init_he_fout`).
- **CIFAR-10**: no retraining recipe was released; Table 1's row is "Proxyless-G + c/o", i.e. with
  Cutout, so cutout is applied, at length 16 (DeVries & Taylor's CIFAR-10 setting; the paper gives
  none) [reconstruction]; everything else is the task's ``paper`` preset.

Still different from the released retraining (README, "Deviations"): the learning rate follows
the cosine per epoch, not per iteration, and the task holds 10,000 training images out for
validation where the released script trains on all of ImageNet train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasrepro.errors import UsageError


@dataclass(frozen=True)
class RetrainRecipe:
    """How a derived network is trained from scratch (released ``imagenet_run_exp.py`` by default)."""

    epochs: int = 300
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.05
    schedule: str = "cosine"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    #: parameters exempt from weight decay (released ``--no_decay_keys bn``)
    no_decay_keys: str | None = "bn"
    label_smoothing: float = 0.1
    dropout: float = 0.1
    #: released ``distort_color='strong'``: ColorJitter(brightness, contrast, saturation, hue)
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    augmentation: str = (
        "RandomResizedCrop(224, scale 0.08-1) + horizontal flip + ColorJitter(0.4, 0.4, 0.4, 0.1) "
        "(released distort_color 'strong')"
    )
    bn_momentum: float = 0.1
    bn_eps: float = 1e-3
    source: str = "mit-han-lab/proxylessnas search/imagenet_run_exp.py"

    def overrides(self) -> dict[str, Any]:
        """The `TrainRecipe` fields this recipe sets. RandomResizedCrop(0.08-1) + flip is already
        the imagenet task's training transform; BN momentum/eps are the network's own."""
        fields = (
            "epochs", "batch_size", "optimizer", "lr", "schedule", "momentum", "nesterov", "weight_decay",
            "no_decay_keys", "label_smoothing", "dropout", "color_jitter",
        )  # fmt: skip
        # the cosine schedule has no milestones (the task's step schedule's are cleared)
        return {name: getattr(self, name) for name in fields} | {"milestones": ()}


#: the released 300-epoch recipe with the mobile net's dropout 0.1 (GPU net: 0.3)
RELEASED_RETRAIN = RetrainRecipe()
#: the released GPU net's dropout (fact sheet Sec. 3.2: 0.3 GPU, 0.2 CPU, 0.1 mobile)
GPU_DROPOUT = 0.3
#: Table 1's "c/o" (Cutout) on CIFAR-10, at DeVries & Taylor's CIFAR-10 length [reconstruction]
CIFAR_CUTOUT = 16


def final_recipe(task_name: str, preset_name: str, dropout: float | None = None) -> dict[str, Any]:
    """The recipe overrides of the derived network's training on `task_name` at `preset_name`.

    The paper's recipes are applied at ``paper`` only: ``smoke`` and ``cpu`` exist to run or
    compare in seconds to minutes, and a 300-epoch recipe's settings are tuned for that length.
    `dropout` (the method's ``retrain_dropout``), when given, applies at every preset.
    """
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise UsageError(f"retrain_dropout must be in [0, 1), got {dropout}")
    out: dict[str, Any] = {}
    if preset_name == "paper" and task_name == "imagenet":
        out = RELEASED_RETRAIN.overrides()
    elif preset_name == "paper" and task_name == "cifar10":
        out = {"cutout": CIFAR_CUTOUT}
    if dropout is not None:
        out["dropout"] = dropout
    return out
