"""The registered method ``proxylessnas``: fit a supernet, derive the argmax architecture, evaluate it once.

ProxylessNAS (Cai, Zhu & Han, ICLR 2019) is a one-shot method: the search cost is the supernet fit
(warm-up + joint epochs of `ProxylessSearchModule`), counted in the run's wall time, and the budget
counts *final evaluations*: the derived architecture (argmax_i p_i on every edge, Sec. 3.2) spends
exactly one evaluator query (trained from scratch on live tasks, looked up on NAS-Bench-201).

Spaces: ``proxyless-cifar`` / ``proxyless-imagenet`` (`MBConvSupernet`, on the task's own data) and
``nasbench201`` (`NB201Supernet` with shared per-edge alphas, trained on real CIFAR-10 because the
table task has no images: ``nasbench201/cifar10`` only). The supernet uses the task's search split:
its train part for weight steps, its held-out part (shuffled, no augmentation) for architecture
steps. On NAS-Bench-201 the hold-out is 25,000 images, NB201's own ``cifar10-valid`` half split.

Presets (`SEARCH_PRESETS`, data): ``smoke`` a handful of batches (seconds), ``cpu`` about 10-15 min
on 2 cores, ``paper`` the released ImageNet recipe (40 warm-up + 120 joint epochs, batch 256). The
paper never ran on NAS-Bench-201 and released no CIFAR search code, so the ``paper`` rows of those
spaces are ours, labelled as such.

Cost objective. Default cost ``flops`` (multiply-adds, counted per candidate at its position);
``latency`` uses a LatencyTable file (`latency_table`, e.g. the released ``mobile_trim.yaml`` on the
ImageNet space, with ref 80 ms) or, without one, a CPU table measured here at batch 1. The target
``ref`` defaults to the expected cost under uniform alpha (the supernet's starting point), since no
CIFAR/NB201 target exists; the paper's additive lambda2 is not given in the paper, so ``lam``
defaults to 0.1 / ref (the gradient of ``add#linear`` with its released lambda 0.1).

Resuming. When the runner gives the evaluator a `SearchCheckpoint`, every finished supernet epoch is
saved (atomically) as a Lightning checkpoint in the checkpoint's `artifacts_dir`, together with the
search checkpoint's own file (so the wall time already spent is counted once the run resumes). A
resumed run (``--resume``: the runner has read that file back) continues the fit from the last
finished epoch -- `ProxylessSearchModule` restores what Lightning does not save (RNG states, the
held-out iterator, the epoch log, the REINFORCE baseline) -- so the derived architecture, alphas and
log equal an uninterrupted run's. The runner deletes `artifacts_dir` once the record is written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch.utils.data import DataLoader

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.recipe import Preset
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.methods.proxylessnas.cost import LatencyTable
from nasrepro.methods.proxylessnas.search_module import (
    COLUMNS,
    ArchObjective,
    ProxylessSearchModule,
    SearchSettings,
)
from nasrepro.methods.proxylessnas.spaces import ProxylessSpace
from nasrepro.methods.proxylessnas.supernet import EdgeCosts, MBConvSupernet, NB201Supernet, Supernet
from nasrepro.spaces.nasbench201 import NB201Space
from nasrepro.tracking.records import atomic_write

PRESET_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class SearchBudget:
    """How big one supernet fit is at one preset (a row of `SEARCH_PRESETS`)."""

    warmup_epochs: int
    epochs: int
    batch_size: int
    arch_batch_size: int
    #: training images used for weight steps (None: the task's whole train part)
    train_subset: int | None
    #: cap on weight steps per epoch (None: the whole train part)
    train_batches: int | None
    rl_updates_per_epoch: int
    derived_eval_batches: int
    #: NB201 supernet width and cells per stage (ignored on MBConv spaces)
    nb201_C: int = 16  # noqa: N815
    nb201_N: int = 5  # noqa: N815
    note: str = ""


#: (space family, preset) -> budget. ``mbconv`` = proxyless-* spaces, ``nb201`` = nasbench201.
SEARCH_PRESETS: dict[tuple[str, str], SearchBudget] = {
    ("mbconv", "smoke"): SearchBudget(1, 2, 8, 8, 80, 5, 2, 1, note="3 epochs x 5 batches of 8: seconds"),
    ("mbconv", "cpu"): SearchBudget(
        2, 6, 64, 64, 2_560, None, 20, 2,
        note="2 warm-up + 6 joint epochs on 2,560 images (40 batches of 64): ~10 min on 2 idle cores "
        "(weight step ~1.2 s, full_v2 arch step ~2.5 s); alpha stays near uniform at this scale",
    ),
    ("mbconv", "paper"): SearchBudget(
        40, 120, 256, 256, None, None, 300, 4,
        note="released imagenet_arch_search.py: 40 warm-up + 120 joint epochs, batch 256",
    ),
    ("nb201", "smoke"): SearchBudget(
        1, 2, 8, 8, 80, 5, 2, 1, nb201_C=8, nb201_N=1, note="C=8, N=1; 3 epochs x 5 batches of 8: seconds"
    ),
    ("nb201", "cpu"): SearchBudget(
        2, 8, 64, 64, 5_000, None, 20, 2, nb201_C=16, nb201_N=1,
        note="C=16, N=1 (one cell per stage); 2 + 8 epochs on 5,000 images (78 batches of 64): ~6-13 min on 2 cores",
    ),
    ("nb201", "paper"): SearchBudget(
        15, 50, 64, 64, None, None, 300, 4, nb201_C=16, nb201_N=5,
        note="ours (ProxylessNAS never ran on NB201): NB201's search net C=16, N=5, batch 64, DARTS-on-NB201's "
        "50 epochs plus 15 warm-up epochs (about the released 40:120 ratio)",
    ),
}  # fmt: skip


@dataclass
class ProxylessConfig(MethodConfig):
    """ProxylessNAS hyper-parameters; None means "the column's value" (see `search_module.COLUMNS`)."""

    #: which settings to follow: "paper" (two paths, additive), "code" (released), "nni3"
    column: str = "code"
    #: gate mode "two" | "full_v2" | "full" (None: the column's)
    mode: str | None = None
    #: "add" | "mul#log" | "add#linear" | "none" (None: the column's)
    regularizer: str | None = None
    #: per-candidate cost: "flops" (multiply-adds), "params", "latency"
    cost: str = "flops"
    #: a LatencyTable JSON file for cost "latency" (None: measure one on this CPU, batch 1)
    latency_table: str | None = None
    #: target cost (None: E[cost] under uniform alpha); the released mobile target is 80 (ms)
    ref: float | None = None
    #: additive lambda2 (paper; None: 0.1 / ref), add#linear lambda, mul#log alpha and beta
    lam: float | None = None
    linear_lam: float = 0.1
    mul_alpha: float = 0.2
    mul_beta: float = 0.3
    #: "grad" (Proxyless-G) or "rl" (Proxyless-R, REINFORCE)
    algorithm: str = "grad"
    #: supernet edges: "binary" (ProxylessNAS) or "all" (DARTS-style baseline, N x memory)
    edge: str = "binary"
    #: epochs and batches (None: the preset's, `SEARCH_PRESETS`)
    warmup_epochs: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    arch_batch_size: int | None = None
    train_subset: int | None = None
    train_batches: int | None = None
    #: weight optimiser (released search defaults)
    lr: float = 0.025
    warmup_lr: float = 0.05
    weight_decay: float = 4e-5
    no_decay_keys: str | None = None
    label_smoothing: float = 0.1
    #: architecture optimiser (None: the column's)
    arch_lr: float | None = None
    arch_update_every: int | None = None
    #: REINFORCE
    rl_batch_size: int = 10
    rl_updates_per_epoch: int | None = None
    rl_tradeoff: float = 0.1
    rl_baseline_quirk: bool = True
    #: supernet size preset "smoke" | "cpu" | "paper" (None: the run's preset)
    preset: str | None = None
    #: NB201 supernet size (None: the preset's)
    nb201_C: int | None = None  # noqa: N815
    nb201_N: int | None = None  # noqa: N815


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


@dataclass
class SpaceSetup:
    """What one space family needs: its supernet and where its data come from."""

    family: str
    build: Callable[[Space, Task, ProxylessConfig, SearchBudget, str], Supernet]
    data_task: Callable[[Task], Task]
    #: changes to the data task's recipe.extra (e.g. NB201's 25k hold-out)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _build_mbconv(
    space: Space, task: Task, cfg: ProxylessConfig, budget: SearchBudget, mode: str
) -> Supernet:
    return MBConvSupernet(space.config, int(getattr(task, "num_classes", 10)), mode=mode, edge=cfg.edge)  # type: ignore[attr-defined]


def _build_nb201(space: Space, task: Task, cfg: ProxylessConfig, budget: SearchBudget, mode: str) -> Supernet:
    return NB201Supernet(
        num_classes=10,
        C=_or(cfg.nb201_C, budget.nb201_C),
        N=_or(cfg.nb201_N, budget.nb201_N),
        mode=mode,
        edge=cfg.edge,
    )


def _own_data(task: Task) -> Task:
    if task.kind != "train":
        raise UsageError(
            f"ProxylessNAS MBConv spaces need an image task with data (cifar10, imagenet), got {task.name}"
        )
    return task


def _cifar10_for_nb201(task: Task) -> Task:
    if task.name != "nasbench201/cifar10":
        raise UsageError(
            f"ProxylessNAS on NAS-Bench-201 trains its supernet on CIFAR-10 images; only nasbench201/cifar10 is "
            f"supported, got {task.name}"
        )
    from nasrepro.tasks import get_task

    return get_task("cifar10")


SPACE_SETUPS: dict[type, SpaceSetup] = {
    ProxylessSpace: SpaceSetup("mbconv", _build_mbconv, _own_data),
    NB201Space: SpaceSetup("nb201", _build_nb201, _cifar10_for_nb201, {"valid_size": 25_000}),
}


def space_setup(space: Space) -> SpaceSetup:
    for cls, setup in SPACE_SETUPS.items():
        if isinstance(space, cls):
            return setup
    raise UsageError(
        f"proxylessnas searches proxyless-cifar, proxyless-imagenet or nasbench201; got space {space.name!r}"
    )


def resolve_settings(cfg: ProxylessConfig, budget: SearchBudget) -> tuple[SearchSettings, str, str | None]:
    """The loop's settings, gate mode and regulariser name, filled from the column and the preset."""
    if cfg.column not in COLUMNS:
        raise UsageError(f"unknown ProxylessNAS column {cfg.column!r}; choose one of {sorted(COLUMNS)}")
    col = COLUMNS[cfg.column]
    regularizer = _or(cfg.regularizer, col.regularizer)
    settings = SearchSettings(
        column=col.name,
        algorithm=cfg.algorithm,  # type: ignore[arg-type]
        warmup_epochs=_or(cfg.warmup_epochs, budget.warmup_epochs),
        epochs=_or(cfg.epochs, budget.epochs),
        warmup_lr=cfg.warmup_lr,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        no_decay_keys=cfg.no_decay_keys,
        label_smoothing=cfg.label_smoothing,
        arch_lr=_or(cfg.arch_lr, col.arch_lr),
        arch_betas=col.arch_betas,
        arch_weight_decay=col.arch_weight_decay,
        arch_update_every=_or(cfg.arch_update_every, col.arch_update_every),
        skip_first_joint_epoch=col.skip_first_joint_epoch,
        rl_batch_size=cfg.rl_batch_size,
        rl_updates_per_epoch=_or(cfg.rl_updates_per_epoch, budget.rl_updates_per_epoch),
        rl_tradeoff=cfg.rl_tradeoff,
        rl_baseline_quirk=cfg.rl_baseline_quirk,
        derived_eval_batches=budget.derived_eval_batches,
    )
    return settings, _or(cfg.mode, col.mode), None if regularizer == "none" else regularizer


def uniform_cost(costs: EdgeCosts) -> float:
    """E[cost] under uniform alpha: the default target (see the module docstring)."""
    return costs.constant + sum(sum(c) / len(c) for c in costs.per_edge)


def build_objective(cfg: ProxylessConfig, supernet: Supernet, regularizer: str | None) -> ArchObjective:
    """Per-edge costs and the regulariser (Sec. 3.3.1); costs are also the REINFORCE reward's latency."""
    table = None
    if cfg.cost == "latency":
        if not isinstance(supernet, MBConvSupernet):
            raise UsageError("cost 'latency' is available on the MBConv spaces; use 'flops' on NAS-Bench-201")
        table = (
            LatencyTable.load(cfg.latency_table) if cfg.latency_table else supernet.measure_latency_table()
        )
    costs = supernet.edge_costs(cfg.cost, table=table)
    ref = cfg.ref if cfg.ref is not None else uniform_cost(costs)
    params = {
        "add": {"lam": cfg.lam if cfg.lam is not None else 0.1 / ref},
        "mul#log": {"ref": ref, "alpha": cfg.mul_alpha, "beta": cfg.mul_beta},
        "add#linear": {"ref": ref, "lam": cfg.linear_lam},
    }
    if regularizer is not None and regularizer not in params:
        raise UsageError(f"unknown regulariser {regularizer!r}; choose add, mul#log, add#linear or none")
    return ArchObjective(costs, regularizer, params.get(regularizer or ""), ref)


def search_preset(data_task: Task, preset: str, budget: SearchBudget, extra: dict[str, Any]) -> Preset:
    """The data task's preset with the supernet's batch size and train subset."""
    base = data_task.preset(preset)
    recipe = base.recipe.replace(
        batch_size=budget.batch_size,
        train_subset=budget.train_subset,
        extra={**dict(base.recipe.extra), **extra},
    )
    return dataclasses.replace(base, recipe=recipe)


def arch_loader(datamodule: Any, batch_size: int, seed: int) -> DataLoader:
    """The held-out part, shuffled with a seeded generator, full batches (released `valid_next_batch`)."""
    held_out = datamodule.val_dataloader()
    return DataLoader(
        held_out.dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(held_out.dataset) >= batch_size,
        collate_fn=held_out.collate_fn,
        num_workers=held_out.num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


SUPERNET_CHECKPOINT = "supernet.ckpt"


class SupernetCheckpoint(Checkpoint):
    """Saves the whole fit state at every epoch end, atomically, then the search checkpoint.

    A `Checkpoint` subclass runs its ``on_train_epoch_end`` after the LightningModule's, so the epoch's
    log row and the held-out batches of its derived-accuracy check are inside the saved state.
    """

    def __init__(self, search_checkpoint: Any, evaluator: Evaluator) -> None:
        self.search_checkpoint, self.evaluator = search_checkpoint, evaluator
        self.path = Path(search_checkpoint.artifacts_dir) / SUPERNET_CHECKPOINT

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # weights_only=False here means "the full training state", not torch.load's flag
        atomic_write(self.path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False))
        self.search_checkpoint.save(self.evaluator)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["nasrepro_fingerprint"] = self.search_checkpoint.fingerprint

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if checkpoint.get("nasrepro_fingerprint") != self.search_checkpoint.fingerprint:
            raise UsageError(
                f"supernet checkpoint {self.path} belongs to another run; delete it or rerun without --resume"
            )


def supernet_checkpointing(evaluator: Evaluator) -> tuple[list[Checkpoint], Path | None]:
    """The epoch-end checkpoint callback and, on a resumed run, the checkpoint to continue from.

    The runner clears the artifacts folder unless it resumed an earlier attempt, so a supernet checkpoint
    found here is always this run's own, to continue from.
    """
    search_checkpoint = getattr(evaluator, "checkpoint", None)
    if search_checkpoint is None or getattr(search_checkpoint, "path", None) is None:
        return [], None
    callback = SupernetCheckpoint(search_checkpoint, evaluator)
    return [callback], (callback.path if callback.path.exists() else None)


@register_method
class ProxylessNAS(Method):
    """Supernet fit (Proxyless-G or -R), argmax derivation, one evaluation of the derived network."""

    name = "proxylessnas"
    Config = ProxylessConfig

    def search(self, task: Task, space: Space, budget: int, evaluator: Evaluator, seed: int) -> SearchResult:
        cfg: ProxylessConfig = self.config  # type: ignore[assignment]
        preset = self._preset_name(evaluator)
        setup = space_setup(space)
        size = SEARCH_PRESETS[(setup.family, preset)]
        settings, mode, regularizer = resolve_settings(cfg, size)
        data_task = setup.data_task(task)
        data_dir = Path(getattr(evaluator, "data_dir", None) or _default_data_dir())

        start = time.perf_counter()
        L.seed_everything(seed, workers=True, verbose=False)
        supernet = setup.build(space, task, cfg, size, mode)
        objective = build_objective(cfg, supernet, regularizer)
        data_preset = search_preset(data_task, preset, size, setup.extra)
        datamodule = data_task.datamodule(data_preset, data_dir, seed)
        module = ProxylessSearchModule(
            supernet,
            settings,
            objective,
            arch_loader(datamodule, _or(cfg.arch_batch_size, size.arch_batch_size), seed),
        )
        trainer_kwargs = dict(getattr(evaluator, "trainer_kwargs", {}) or {})
        callbacks, resume_from = supernet_checkpointing(evaluator)
        trainer = L.Trainer(
            max_epochs=settings.total_epochs,
            # One process: the architecture gradient is set after backward (set_arch_grads), outside
            # DDP's all-reduce, and each rank would sample different gates.
            accelerator=trainer_kwargs.get("accelerator", "auto"),
            devices=1,
            limit_train_batches=_or(cfg.train_batches, size.train_batches) or 1.0,
            logger=False,
            callbacks=callbacks,
            enable_checkpointing=bool(callbacks),
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            deterministic=True,
        )
        # The checkpoint holds tensors, numbers, strings and lists only: weights_only loading suffices.
        trainer.fit(
            module, train_dataloaders=datamodule.train_dataloader(), ckpt_path=resume_from, weights_only=True
        )
        supernet_seconds = time.perf_counter() - start
        if resume_from is not None:  # plus the interrupted attempts' time up to their last saved epoch
            supernet_seconds += evaluator.checkpoint.elapsed_before  # type: ignore[attr-defined]

        supernet.cpu()
        raw = supernet.derive()
        chosen = supernet.chosen()
        query = evaluator.query(raw)
        extra = {
            "column": settings.column,
            "column_description": COLUMNS[settings.column].description,
            "mode": mode,
            "regularizer": regularizer,
            "algorithm": settings.algorithm,
            "edge": cfg.edge,
            "derived_arch": str(raw),
            "alpha_probs": dict(zip(supernet.group_names, supernet.probabilities(), strict=True)),
            "candidates": dict(zip(supernet.group_names, supernet.candidate_names(), strict=True)),
            "cost_kind": objective.costs.kind if objective.costs else None,
            "cost_unit": objective.costs.unit if objective.costs else None,
            "cost_ref": objective.ref,
            "derived_expected_cost": objective.costs.arch_cost(chosen) if objective.costs else None,
            "supernet_epochs": settings.total_epochs,
            "supernet_seconds": supernet_seconds,
            "search_preset": {"preset": preset, **dataclasses.asdict(size)},
            "data_task": data_task.name,
            "log": module.summary(),
        }
        return SearchResult(best_arch=query.arch, history=list(evaluator.history), extra=extra)

    def _preset_name(self, evaluator: Evaluator) -> str:
        """The supernet's size: `Config.preset`, else the run's preset (which the runner gives every
        evaluator as `preset_name`), else ``cpu``."""
        name = self.config.preset or getattr(evaluator, "preset_name", None) or "cpu"  # type: ignore[attr-defined]
        if name not in PRESET_NAMES:
            raise UsageError(
                f"unknown preset {name!r} for proxylessnas; choose one of {', '.join(PRESET_NAMES)}"
            )
        return name


def _default_data_dir() -> Path:
    from nasrepro.paths import data_dir

    return data_dir(None)
