"""Training hooks a network may offer the task's training step: auxiliary logits and scheduled
drop-path.

Cell-based CIFAR networks are trained with two regularisers that live inside the network and so
cannot be applied from outside by the training step alone:

* an **auxiliary classifier** on an intermediate feature map whose cross-entropy is added to the
  loss with a small weight (the auxiliary classifiers of GoogLeNet, Szegedy et al. 2015; NASNet,
  Zoph et al. 2018; NAO's CIFAR-10 final training, Luo et al. 2018, NAO_V1 ``train_cifar.py``:
  ``loss += 0.4 * aux_loss``; DARTS, Liu et al. 2019, CIFAR-10 evaluation: weight 0.4), used in
  training only;
* **scheduled drop-path** (drop-path from FractalNet, Larsson et al. 2017; NASNet's
  ScheduledDropPath: the drop probability rises linearly over training; DARTS ``train.py``:
  ``model.drop_path_prob = args.drop_path_prob * epoch / args.epochs``; NAO_V1 ``apply_drop_path``:
  the same ramp per step, times a per-cell depth factor).

A network opts in by offering the methods below (structural typing: it need not import or subclass
anything); the training step detects them with ``isinstance`` against these runtime-checkable
protocols, and the recipe declares whether and how strongly each is used (`TrainRecipe.aux_weight`,
`TrainRecipe.drop_path`). A recipe that sets one for a network without the hook is refused
(`check_hooks`), never silently ignored; a recipe that sets neither leaves every network's training
exactly as without hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nasrepro.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nasrepro.harness.recipe import TrainRecipe


@runtime_checkable
class AuxiliaryLogits(Protocol):
    """A network with an auxiliary classifier.

    `enable_auxiliary_head` is called once, before training, when the recipe's `aux_weight` is
    positive: the head is built then (not by the space's `to_model`), so the network's measured
    parameters, FLOPs and latency are those of the network alone, as the papers report them, and a
    recipe without the auxiliary loss trains no unused head. `forward_with_aux` returns the main
    logits and, in training mode, the auxiliary logits (None in eval mode: the head never affects
    a prediction). Plain `forward` returns the main logits only.
    """

    def enable_auxiliary_head(self) -> None: ...

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@runtime_checkable
class ScheduledDropPath(Protocol):
    """A network with drop-path whose probability the training step sets before every epoch.

    `prob` is the epoch's scheduled probability (`drop_path_at`); a network that scales it by depth
    (NASNet, NAO) applies it to its deepest cell and less to shallower ones. Drop-path acts in
    training mode only.
    """

    def set_drop_path(self, prob: float) -> None: ...


def drop_path_at(final: float, epoch: int, epochs: int) -> float:
    """The drop-path probability of (0-based) `epoch` of `epochs`: linear from 0 towards `final`.

    DARTS ``train.py`` (``drop_path_prob * epoch / epochs``): the first epoch trains without
    drop-path and the last with ``final * (epochs - 1) / epochs``. NAO_V1 ramps per optimizer step
    (``(step + 1) / steps``); per epoch the two differ by at most one epoch's share, ``final / epochs``.
    """
    if epochs < 1 or epoch < 0:
        raise UsageError(f"a drop-path schedule needs epoch >= 0 of epochs >= 1, got {epoch} of {epochs}")
    return final * min(epoch, epochs) / epochs


def check_hooks(model: nn.Module, recipe: TrainRecipe) -> None:
    """Refuse a recipe whose auxiliary loss or drop-path the network offers no hook for."""
    missing = []
    if recipe.aux_weight > 0 and not isinstance(model, AuxiliaryLogits):
        missing.append(
            f"aux_weight {recipe.aux_weight} (needs enable_auxiliary_head() and forward_with_aux(x))"
        )
    if recipe.drop_path > 0 and not isinstance(model, ScheduledDropPath):
        missing.append(f"drop_path {recipe.drop_path} (needs set_drop_path(prob))")
    if missing:
        raise UsageError(
            f"the recipe sets {' and '.join(missing)}, but the network {type(model).__name__} has no such "
            f"hook (nasrepro.harness.model_hooks)"
        )
