"""ProxylessNAS's final training (retraining) of a derived network, as data, and the recipe it sets.

`ProxylessNAS.final_recipe` returns `final_recipe(...)`, which the runner applies to the evaluator
that trains the derived network (`harness.method.training_preset`), at the ``paper`` preset:

- **ImageNet**: the released ``search/imagenet_run_exp.py`` (fact sheet Sec. 3.2): 300 epochs,
  batch 256, SGD Nesterov 0.9 from 0.05 with a cosine schedule stepped every iteration (recipe
  schedule ``cosine-step``: ``RunConfig._calc_learning_rate`` in ``search/run_manager.py`` sets
  0.5 lr0 (1 + cos(pi T_cur / T_total)) before each batch, T counted in batches), weight decay
  4e-5 except on BN (``--no_decay_keys bn``), label smoothing 0.1, ``distort_color strong`` =
  ColorJitter(0.4, 0.4, 0.4, 0.1) after RandomResizedCrop(224, 0.08-1) + flip, dropout 0.1 before
  the classifier (mobile nets; the GPU net 0.3: the method option ``retrain_dropout``). BN momentum
  0.1 / eps 1e-3 and the he_fout initialisation are the network's own (`blocks.batch_norm`,
  `spaces.init_he_fout`). Validation holds 50,000 images of ImageNet train out (recipe
  ``valid_size``), the search's hold-out: the released search saves its run settings, ``valid_size``
  50,000 included, as ``learned_net/run.config`` (``nas_manager.py``), and ``imagenet_run_exp.py
  --path .../learned_net`` loads that file, so a searched net retrained the released way keeps the
  hold-out; the script's own default (None: all of ImageNet train) is what its commands for the
  released nets use. That file's other settings are the search's (120 epochs from 0.025), which
  the paper's 300-epoch recipe replaces; only the hold-out is taken from it [reconstruction].
- **CIFAR-10**: no retraining recipe was released; Table 1's row is "Proxyless-G + c/o", i.e. with
  Cutout, so cutout is applied, at length 16 (DeVries & Taylor's CIFAR-10 setting; the paper gives
  none) [reconstruction]; everything else is the task's ``paper`` preset.

What still differs from the released retraining is listed in the README ("Deviations").
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
    #: the cosine annealed per iteration, as the released ``adjust_learning_rate`` (not per epoch)
    schedule: str = "cosine-step"
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
    #: images of ImageNet train held out for validation: the released search's ``valid_size``, which
    #: its ``learned_net/run.config`` carries into the retraining of the searched net
    valid_size: int = 50_000
    bn_momentum: float = 0.1
    bn_eps: float = 1e-3
    source: str = "mit-han-lab/proxylessnas search/imagenet_run_exp.py"

    def overrides(self) -> dict[str, Any]:
        """The `TrainRecipe` fields this recipe sets. RandomResizedCrop(0.08-1) + flip is already
        the imagenet task's training transform; BN momentum/eps are the network's own."""
        fields = (
            "epochs", "batch_size", "optimizer", "lr", "schedule", "momentum", "nesterov", "weight_decay",
            "no_decay_keys", "label_smoothing", "dropout", "color_jitter", "valid_size",
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
