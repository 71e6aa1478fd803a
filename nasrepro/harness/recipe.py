"""Training recipes and budget presets as data, plus the optimiser/schedule they imply.

A recipe is the whole final-training protocol of a task at one preset; keeping it as a frozen
dataclass means it is recorded verbatim in every run record and can be overridden from YAML.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nasrepro.errors import UsageError

if TYPE_CHECKING:  # recipes are data: a table search reads them without paying torch's import
    import torch

PRESETS = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class TrainRecipe:
    """How one architecture is trained from scratch for a task."""

    epochs: int
    lr: float
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    batch_size: int = 128
    schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float | None = None
    dropout: float = 0.0
    # Caps on batches per epoch: a float is a fraction, an int a count (Lightning's convention).
    limit_train_batches: float | int = 1.0
    limit_eval_batches: float | int = 1.0
    # A fixed-size subset of the training split (smoke presets); None = the full split.
    train_subset: int | None = None
    #: which weights are scored: the final epoch's (the papers' final-training recipes), or those of
    #: the epoch with the best *validation* score (NAS-Bench-Graph's protocol; test never chooses)
    select: Literal["final", "best-val"] = "final"
    #: independent trainings, seeds seed, seed+1, ..., whose val and test are averaged (NAS-Bench-Graph's
    #: entries are means over 3 seeds); a size field, so smoke keeps 1
    repeats: int = 1
    #: row-normalise node features (Kipf & Welling); NAS-Bench-Graph trains on the raw features.
    #: Only graph tasks have node features; other tasks refuse `False` rather than ignore it
    normalize_features: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise UsageError(f"recipe field 'repeats' must be at least 1, got {self.repeats}")
        if self.select not in ("final", "best-val"):
            raise UsageError(f"recipe field 'select' must be 'final' or 'best-val', got {self.select!r}")

    def replace(self, **changes: Any) -> TrainRecipe:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UsageError(f"unknown recipe field(s) {sorted(unknown)}; known: {sorted(self.to_dict())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class Preset:
    """A named budget: the training recipe and the default search budget (unique queries)."""

    name: str
    recipe: TrainRecipe
    search_budget: int
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "search_budget": self.search_budget,
            "description": self.description,
            "recipe": self.recipe.to_dict(),
        }


def build_optimizer(params: Iterable[Any], recipe: TrainRecipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over `params` (tensors, or param-group dicts whose own settings win)."""
    import torch

    params = list(params)
    if params and not isinstance(params[0], dict):
        params = [p for p in params if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            nesterov=recipe.nesterov,
        )
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise UsageError(f"unknown optimizer {recipe.optimizer!r}; use sgd, adam or adamw")


def configure_optimizers(params: Iterable[Any], recipe: TrainRecipe) -> dict[str, Any]:
    """What a LightningModule's `configure_optimizers` returns for `recipe` (per-epoch schedule)."""
    optimizer = build_optimizer(params, recipe)
    if recipe.schedule == "constant":
        return {"optimizer": optimizer}
    if recipe.schedule == "cosine":
        import torch

        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(recipe.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    raise UsageError(f"unknown schedule {recipe.schedule!r}; use constant or cosine")


#: The fields that size a fit (how much work it does), which the smoke preset keeps as its own.
SIZE_FIELDS: frozenset[str] = frozenset(
    {"epochs", "limit_train_batches", "limit_eval_batches", "train_subset", "repeats"}
)


def with_overrides(preset: Preset, overrides: Mapping[str, Any]) -> Preset:
    """`preset` with a model family's own training settings (its paper's recipe) applied.

    A reference network or a search space trains with its paper's or benchmark's protocol -- the
    optimiser, learning rate, weight decay, schedule, dropout, and at cpu and paper presets also its
    epoch count (NAS-Bench-Graph's 400 epochs on Cora, GraphNAS's 300) -- rather than the task's
    default recipe. The rule is: overrides win, except that at `smoke` the preset's `SIZE_FIELDS`
    (epochs, batch limits, training subset) win, because smoke exists to run every code path in
    seconds, not to train; the protocol's other settings still apply at smoke, so the same
    optimiser and schedule code runs there as at the real presets. A key that is not a `TrainRecipe`
    field is an error, never dropped: a protocol setting that nothing applies would make the numbers
    silently mean something else (settings of the network itself, such as a width, belong to the
    space's `to_model`).
    """
    fields = {f.name for f in dataclasses.fields(TrainRecipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(
            f"recipe override(s) {unknown} are not training-recipe fields, so nothing would apply them; "
            f"known: {sorted(fields)}"
        )
    pinned = SIZE_FIELDS if preset.name == "smoke" else frozenset()
    changes = {k: v for k, v in overrides.items() if k in fields and k not in pinned}
    if not changes:
        return preset
    return dataclasses.replace(preset, recipe=preset.recipe.replace(**changes))
