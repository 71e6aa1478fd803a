"""Training recipes and budget presets as data, plus the optimiser/schedule they imply.

A recipe is the whole final-training protocol of a task at one preset; keeping it as a frozen
dataclass means it is recorded verbatim in every run record and can be overridden from YAML.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nasrepro.errors import UsageError

if TYPE_CHECKING:  # recipes are data: a table search reads them without paying torch's import
    import torch

PRESETS = ("smoke", "cpu", "paper")
#: the recipe's `schedule` values (`configure_optimizers` builds each)
SCHEDULES = ("constant", "cosine", "cosine-step", "multistep")
#: the recipe's `select` values: which epoch's weights a fit is scored with
SELECT_RULES = ("final", "best-val", "min-val-loss")


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
    #: learning-rate schedule (`SCHEDULES`): "cosine" anneals to zero once per epoch, "cosine-step"
    #: after every optimizer step (the released ProxylessNAS retraining), "multistep" multiplies the
    #: rate by `gamma` at each of `milestones` (epochs)
    schedule: Literal["constant", "cosine", "cosine-step", "multistep"] = "cosine"
    grad_clip: float | None = None
    dropout: float = 0.0
    # Caps on batches per epoch: a float is a fraction, an int a count (Lightning's convention).
    limit_train_batches: float | int = 1.0
    limit_eval_batches: float | int = 1.0
    # A fixed-size subset of the training split (smoke presets); None = the full split.
    train_subset: int | None = None
    #: which weights are scored: the final epoch's (the papers' final-training recipes), those of the
    #: epoch with the best validation score (`best-val`), or of the epoch with the lowest validation
    #: loss (`min-val-loss`: NAS-Bench-Graph's generation code); test never chooses
    select: Literal["final", "best-val", "min-val-loss"] = "final"
    #: independent trainings, seeds seed, seed+1, ..., whose val and test are averaged (NAS-Bench-Graph's
    #: entries are means over 3 seeds); a size field, so smoke keeps 1
    repeats: int = 1
    #: row-normalise node features (Kipf & Welling); NAS-Bench-Graph trains on the raw features.
    #: Only graph tasks have node features; other tasks refuse `False` rather than ignore it
    normalize_features: bool = True
    #: epochs at which a "multistep" schedule multiplies the learning rate by `gamma` (He et al. 2016
    #: divide by 10 at fixed epochs); unused by the other schedules
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    # Options a task applies only where it declares them (`Task.recipe_options`); their defaults
    # change nothing, and a task refuses a non-default value it would not apply (`OPTIONS`).
    #: cross-entropy label smoothing of the training loss (Szegedy et al. 2016)
    label_smoothing: float = 0.0
    #: '#'-separated substrings of parameter names trained without weight decay (the released
    #: ProxylessNAS ``--no_decay_keys``: "bn" exempts the BatchNorm weights and biases); None: none
    no_decay_keys: str | None = None
    #: side in pixels of the one square zeroed per training image (DeVries & Taylor 2017); 0: none
    cutout: int = 0
    #: ColorJitter (brightness, contrast, saturation, hue) of the training images; None: none
    color_jitter: tuple[float, float, float, float] | None = None
    #: images of the training split held out for validation (the released ProxylessNAS
    #: ``--valid_size``); None: the task's own default split
    valid_size: int | None = None
    #: weight of the auxiliary head's loss added to the training loss (Szegedy et al. 2015's
    #: auxiliary classifiers, as NASNet, NAO and DARTS train with: 0.4 in NAO_V1 ``train_cifar.py``);
    #: the network must offer the hook (`harness.model_hooks.AuxiliaryLogits`); 0: none
    aux_weight: float = 0.0
    #: drop-path probability reached by the end of training, scheduled linearly from 0 per epoch
    #: (`harness.model_hooks.drop_path_at`; NAO_V1 keep 0.8 is 0.2); the network must offer the hook
    #: (`harness.model_hooks.ScheduledDropPath`); 0: none
    drop_path: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise UsageError(f"recipe field 'repeats' must be at least 1, got {self.repeats}")
        if self.select not in SELECT_RULES:
            raise UsageError(
                f"recipe field 'select' must be one of {', '.join(SELECT_RULES)}, got {self.select!r}"
            )
        check_options(self)

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


#: the options a task must declare to apply (`Task.recipe_options`), each with its neutral default
OPTIONS: Mapping[str, Any] = {
    "label_smoothing": 0.0,
    "no_decay_keys": None,
    "cutout": 0,
    "color_jitter": None,
    "valid_size": None,
    "aux_weight": 0.0,
    "drop_path": 0.0,
}
#: `extra` keys that became recipe fields: an old key would otherwise be silently ignored
MOVED_EXTRA: Mapping[str, str] = {
    "lr_milestones": "milestones (with schedule: multistep)",
    "lr_gamma": "gamma",
    "label_smoothing": "label_smoothing",
    "valid_size": "valid_size",
}


def check_options(recipe: TrainRecipe) -> None:
    """Validate the schedule and the optional fields; lists (YAML) become tuples."""
    moved = sorted(set(recipe.extra) & set(MOVED_EXTRA))
    if moved:
        raise UsageError(
            f"recipe extra key(s) {moved} are recipe fields now: use {', '.join(MOVED_EXTRA[k] for k in moved)}"
        )
    object.__setattr__(recipe, "milestones", tuple(int(m) for m in recipe.milestones))
    if recipe.color_jitter is not None:
        object.__setattr__(recipe, "color_jitter", tuple(float(v) for v in recipe.color_jitter))
    if recipe.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {recipe.schedule!r}; use {', '.join(SCHEDULES)}")
    milestones = list(recipe.milestones)
    if recipe.schedule == "multistep" and (
        not milestones or milestones != sorted(set(milestones)) or milestones[0] < 1
    ):
        raise UsageError(f"schedule 'multistep' needs increasing positive milestone epochs, got {milestones}")
    if recipe.schedule != "multistep" and milestones:
        # a recipe that switches schedule clears them, so no record shows milestones nothing applies
        raise UsageError(
            f"milestones {milestones} apply to schedule 'multistep' only, not {recipe.schedule!r}; "
            f"set milestones: [] with it"
        )
    if not 0.0 <= recipe.label_smoothing < 1.0:
        raise UsageError(f"recipe field 'label_smoothing' must be in [0, 1), got {recipe.label_smoothing}")
    if not isinstance(recipe.cutout, int) or recipe.cutout < 0:
        raise UsageError(f"recipe field 'cutout' must be a length in pixels >= 0, got {recipe.cutout!r}")
    if recipe.color_jitter is not None and len(recipe.color_jitter) != 4:
        raise UsageError(
            f"recipe field 'color_jitter' is (brightness, contrast, saturation, hue), got {recipe.color_jitter}"
        )
    if recipe.valid_size is not None and (
        isinstance(recipe.valid_size, bool) or not isinstance(recipe.valid_size, int) or recipe.valid_size < 1
    ):
        raise UsageError(
            f"recipe field 'valid_size' must be a number of images >= 1 (or null), got {recipe.valid_size!r}"
        )
    if isinstance(recipe.aux_weight, bool) or not (
        isinstance(recipe.aux_weight, int | float) and 0.0 <= recipe.aux_weight < math.inf
    ):
        raise UsageError(f"recipe field 'aux_weight' must be a loss weight >= 0, got {recipe.aux_weight!r}")
    if isinstance(recipe.drop_path, bool) or not (
        isinstance(recipe.drop_path, int | float) and 0.0 <= recipe.drop_path < 1.0
    ):
        raise UsageError(
            f"recipe field 'drop_path' must be a probability in [0, 1), got {recipe.drop_path!r}"
        )
    if recipe.no_decay_keys is not None and not all(recipe.no_decay_keys.split("#")):
        raise UsageError(
            f"recipe field 'no_decay_keys' must be '#'-separated names, got {recipe.no_decay_keys!r}"
        )


def options_in_use(recipe: TrainRecipe) -> list[str]:
    """The optional fields (`OPTIONS`) that `recipe` sets to something other than their neutral value."""
    return [name for name, neutral in OPTIONS.items() if getattr(recipe, name) != neutral]


def param_groups(named_parameters: Iterable[tuple[str, Any]], recipe: TrainRecipe) -> list[Any]:
    """The parameters to optimise: plain tensors, or with `no_decay_keys` two groups, the second
    (names containing a key) without weight decay.

    The released ProxylessNAS ``run_manager.py`` splits ``no_decay_keys`` on '#' and exempts every
    parameter whose name *contains* a key (``MyNetwork.get_parameters(keys, mode='include')``),
    because decaying BatchNorm's scale and shift only fights the normalisation (its retraining
    default is "bn"). Names are matched as there, so a network must name its BN modules "bn".
    """
    named = [(name, p) for name, p in named_parameters if p.requires_grad]
    if recipe.no_decay_keys is None:
        return [p for _, p in named]
    keys = recipe.no_decay_keys.split("#")
    exempt = [p for name, p in named if any(key in name for key in keys)]
    if not exempt:
        raise UsageError(f"no_decay_keys {recipe.no_decay_keys!r} matches no parameter name of the network")
    ids = {id(p) for p in exempt}
    return [
        {"params": [p for _, p in named if id(p) not in ids], "weight_decay": recipe.weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


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


class CosineFactor:
    """The released ProxylessNAS cosine, ``0.5 (1 + cos(pi T_cur / T_total))``, as a `LambdaLR` factor.

    ``RunConfig._calc_learning_rate`` in mit-han-lab/proxylessnas ``search/run_manager.py`` counts
    T in batches (T_total = n_epochs * nBatch, T_cur = epoch * nBatch + batch) and sets the rate
    before each batch's step, so step k trains with the factor at k: what `LambdaLR` does when it is
    stepped after every optimizer step. A callable object, not a closure, so that the scheduler's
    state dict keeps `total` and a resumed fit continues the same curve.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise UsageError(f"a per-step cosine needs at least one optimizer step, got {total}")
        self.total = int(total)

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))


def needs_total_steps(recipe: TrainRecipe) -> bool:
    """Whether `configure_optimizers` needs the fit's optimizer-step count (per-step schedules)."""
    return recipe.schedule == "cosine-step"


def configure_optimizers(
    params: Iterable[Any], recipe: TrainRecipe, total_steps: float | None = None
) -> dict[str, Any]:
    """What a LightningModule's `configure_optimizers` returns for `recipe`.

    `total_steps` is the fit's number of optimizer steps (Lightning's
    ``trainer.estimated_stepping_batches``, which counts epochs, batch limits and devices); only a
    per-step schedule needs it (`needs_total_steps`).
    """
    import torch

    optimizer = build_optimizer(params, recipe)
    if recipe.schedule == "constant":
        return {"optimizer": optimizer}
    if recipe.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(recipe.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    if recipe.schedule == "cosine-step":
        if total_steps is None or not math.isfinite(total_steps):
            raise UsageError(
                f"schedule 'cosine-step' needs the fit's number of optimizer steps, got {total_steps}"
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, CosineFactor(int(total_steps)))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
    if recipe.schedule == "multistep":
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(recipe.milestones), gamma=recipe.gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    raise UsageError(f"unknown schedule {recipe.schedule!r}; use {', '.join(SCHEDULES)}")


def lightning_optimizers(module: Any, params: Iterable[Any], recipe: TrainRecipe) -> dict[str, Any]:
    """`configure_optimizers` from inside a LightningModule's own: the fit's step count is read from
    its trainer only when the schedule needs it (reading it sets up the training loader)."""
    steps = module.trainer.estimated_stepping_batches if needs_total_steps(recipe) else None
    return configure_optimizers(params, recipe, steps)


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
