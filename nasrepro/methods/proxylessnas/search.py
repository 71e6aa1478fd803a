"""The registered method ``proxylessnas``: fit a supernet, derive the argmax architecture, evaluate it once.

ProxylessNAS (Cai, Zhu & Han, ICLR 2019) is a one-shot method: the search cost is the supernet fit
(warm-up + joint epochs of `ProxylessSearchModule`), reported as the method's overhead and counted in
the run's wall time, and the budget counts *final evaluations*: the derived architecture
(argmax_i p_i on every edge, Sec. 3.2) spends exactly one evaluator query (trained from scratch on
live tasks, looked up on NAS-Bench-201). At ``paper`` that training is the paper's retraining
(`final_recipe`, from `retrain`: the released ImageNet recipe; Cutout on CIFAR-10).

Spaces: ``proxyless-cifar`` / ``proxyless-imagenet`` (`MBConvSupernet`, on the task's own data) and
``nasbench201`` (`NB201Supernet` with shared per-edge alphas, trained on real CIFAR-10 because the
table task has no images: ``nasbench201/cifar10`` only). Without ``--space`` the method picks the
space of its task (`default_spaces`); any other combination is refused before work starts
(`incompatibility`). The supernet uses the task's search split (`harness.oneshot`): its train part
for weight steps, its held-out part (shuffled, no augmentation) for architecture steps. On
NAS-Bench-201 the hold-out is 25,000 images, NB201's own ``cifar10-valid`` half split. Sizes per
preset are data (`presets.SEARCH_PRESETS`).

Cost objective. Default cost ``flops`` (multiply-adds, counted per candidate at its position);
``latency`` uses a LatencyTable file (`latency_table`, e.g. the released ``mobile_trim.yaml`` on the
ImageNet space, with ref 80 ms) or, without one, a CPU table measured here at batch 1. The target
``ref`` defaults to the expected cost under uniform alpha (the supernet's starting point), since no
CIFAR/NB201 target exists; the paper's additive lambda2 is not given in the paper, so ``lam``
defaults to 0.1 / ref (the gradient of ``add#linear`` with its released lambda 0.1).

Resuming. `harness.oneshot.fit_supernet` saves every finished supernet epoch in the run's artifacts
folder, then the run's search checkpoint; a resumed run (``--resume``) continues the fit from the last
finished epoch -- `ProxylessSearchModule` restores what Lightning does not save (RNG states, the
held-out iterator, the epoch log, the REINFORCE baseline) -- so the derived architecture, alphas and
log equal an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L

from nasrepro.errors import UsageError
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.oneshot import arch_loader, fit_supernet, search_preset
from nasrepro.harness.run import Run
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.methods.proxylessnas.latency_search import LatencySettings, SearchLatency, search_latency
from nasrepro.methods.proxylessnas.presets import SEARCH_PRESETS, SearchBudget
from nasrepro.methods.proxylessnas.retrain import final_recipe
from nasrepro.methods.proxylessnas.search_module import (
    COLUMNS,
    ArchObjective,
    ProxylessSearchModule,
    SearchSettings,
)
from nasrepro.methods.proxylessnas.spaces import ProxylessSpace
from nasrepro.methods.proxylessnas.supernet import EdgeCosts, MBConvSupernet, NB201Supernet, Supernet
from nasrepro.spaces.nasbench201 import NB201Space


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
    #: cost "latency": a table file (build-lut JSON, or the released YAML format); None: build one with
    #: build-lut's code on the trainer's device and thread count, then check it (`latency_search`)
    latency_table: str | None = None
    #: device to measure on (None: the trainer's), batch (1: CPU/mobile; the paper's GPU row: 8),
    #: build-lut's warm-up / repeats / rounds, networks check-lut measures after the build (0: none)
    latency_device: str | None = None
    latency_batch_size: int = 1
    latency_warmup: int = 10
    latency_repeats: int = 100
    latency_rounds: int = 3
    latency_check_n: int = 20
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
    #: images of the task's train split held out for architecture steps (None: the task's / space
    #: family's default; the released ImageNet search holds out 50,000)
    valid_size: int | None = None
    #: supernet size preset "smoke" | "cpu" | "paper" (None: the run's preset)
    preset: str | None = None
    #: NB201 supernet size (None: the preset's)
    nb201_C: int | None = None  # noqa: N815
    nb201_N: int | None = None  # noqa: N815
    #: dropout before the classifier when the derived network is trained (None: the final recipe's,
    #: `retrain.final_recipe`: 0.1 on ImageNet at paper, the released mobile nets'; the GPU net: 0.3)
    retrain_dropout: float | None = None


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


@dataclass
class SpaceSetup:
    """What one space family needs: its supernet, where its data come from, and which tasks it can use."""

    family: str
    build: Callable[[Space, Task, ProxylessConfig, SearchBudget, str], Supernet]
    data_task: Callable[[Task], Task]
    #: why a task cannot be searched with this family (None: it can); read after "it ..."
    refuse: Callable[[Task], str | None]
    #: changes to the data task's recipe fields (e.g. NB201's 25k hold-out, `valid_size`)
    recipe_changes: dict[str, Any] = dataclasses.field(default_factory=dict)


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


def _refuse_without_images(task: Task) -> str | None:
    if task.kind == "train":
        return None
    return f"trains MBConv supernets on the task's own images (cifar10, imagenet), and {task.name} has none"


def _refuse_other_than_cifar10(task: Task) -> str | None:
    if task.name == "nasbench201/cifar10":
        return None
    return (
        "trains its NAS-Bench-201 supernet on CIFAR-10 images, so it searches nasbench201/cifar10 only, "
        f"not {task.name}"
    )


def _cifar10_images(task: Task) -> Task:
    from nasrepro.tasks import get_task

    return get_task("cifar10")


SPACE_SETUPS: dict[type, SpaceSetup] = {
    ProxylessSpace: SpaceSetup("mbconv", _build_mbconv, lambda task: task, _refuse_without_images),
    NB201Space: SpaceSetup(
        "nb201", _build_nb201, _cifar10_images, _refuse_other_than_cifar10, {"valid_size": 25_000}
    ),
}


def hold_out(setup: SpaceSetup, cfg: ProxylessConfig) -> dict[str, Any]:
    """The data task's recipe changes: the family's (NB201: 25k) with `cfg.valid_size` on top, both
    as the recipe's `valid_size` (recorded with the data task's recipe)."""
    if cfg.valid_size is not None and cfg.valid_size < 1:
        raise UsageError(f"valid_size must be a positive number of images, got {cfg.valid_size}")
    return {**setup.recipe_changes, **({"valid_size": cfg.valid_size} if cfg.valid_size is not None else {})}


def space_setup(space: Space) -> SpaceSetup | None:
    """The setup of `space`'s family, or None when ProxylessNAS has no supernet for it."""
    for cls, setup in SPACE_SETUPS.items():
        if isinstance(space, cls):
            return setup
    return None


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


def latency_settings(cfg: ProxylessConfig) -> LatencySettings:
    return LatencySettings(
        table=cfg.latency_table,
        device=cfg.latency_device,
        batch_size=cfg.latency_batch_size,
        warmup=cfg.latency_warmup,
        repeats=cfg.latency_repeats,
        rounds=cfg.latency_rounds,
        check_n=cfg.latency_check_n,
    )


def objective_latency(cfg: ProxylessConfig, supernet: Supernet, accelerator: str) -> SearchLatency | None:
    """The latency table of a ``cost: latency`` search (None for other costs), via `latency_search`."""
    if cfg.cost != "latency":
        return None
    if not isinstance(supernet, MBConvSupernet):
        raise UsageError("cost 'latency' is available on the MBConv spaces; use 'flops' on NAS-Bench-201")
    return search_latency(supernet.space, latency_settings(cfg), accelerator, supernet.num_classes)


def build_objective(
    cfg: ProxylessConfig, supernet: Supernet, regularizer: str | None, latency: SearchLatency | None = None
) -> ArchObjective:
    """Per-edge costs and the regulariser (Sec. 3.3.1); costs are also the REINFORCE reward's latency.
    A latency cost reads `latency.table` (built on the CPU here when none is given)."""
    if cfg.cost == "latency" and latency is None:
        latency = objective_latency(cfg, supernet, "cpu")
    costs = supernet.edge_costs(cfg.cost, table=latency.table if latency is not None else None)
    ref = cfg.ref if cfg.ref is not None else uniform_cost(costs)
    params = {
        "add": {"lam": cfg.lam if cfg.lam is not None else 0.1 / ref},
        "mul#log": {"ref": ref, "alpha": cfg.mul_alpha, "beta": cfg.mul_beta},
        "add#linear": {"ref": ref, "lam": cfg.linear_lam},
    }
    if regularizer is not None and regularizer not in params:
        raise UsageError(f"unknown regulariser {regularizer!r}; choose add, mul#log, add#linear or none")
    return ArchObjective(costs, regularizer, params.get(regularizer or ""), ref)


@register_method
class ProxylessNAS(Method):
    """Supernet fit (Proxyless-G or -R), argmax derivation, one evaluation of the derived network."""

    name = "proxylessnas"
    Config = ProxylessConfig
    paper = "Cai, Zhu & Han, ICLR 2019"
    #: no toy space has a supernet; the smoke supernet on NAS-Bench-201 takes seconds
    conformance_tasks = ("nasbench201/cifar10",)
    default_spaces = {
        "cifar10": "proxyless-cifar",
        "imagenet": "proxyless-imagenet",
        "nasbench201/*": "nasbench201",
    }

    @classmethod
    def incompatibility(cls, task: Task, space: Space) -> str | None:
        """Refuses spaces it has no supernet for, and tasks its supernet cannot get images from."""
        reason = super().incompatibility(task, space)
        if reason is not None:
            return reason
        setup = space_setup(space)
        if setup is None:
            return "has supernets for proxyless-cifar, proxyless-imagenet and nasbench201 only"
        return setup.refuse(task)

    def final_recipe(self, task: Task, preset_name: str) -> dict[str, Any]:
        """The derived network's training: the released ImageNet retraining recipe, or Cutout on
        CIFAR-10, at ``paper`` (`retrain`); `retrain_dropout` at every preset."""
        cfg: ProxylessConfig = self.config  # type: ignore[assignment]
        return final_recipe(task.name, preset_name, cfg.retrain_dropout)

    def search(self, run: Run) -> SearchResult:
        cfg: ProxylessConfig = self.config  # type: ignore[assignment]
        reason = self.incompatibility(run.task, run.space)
        if reason is not None:  # the runner refuses this first; library use may not
            raise UsageError(
                f"proxylessnas cannot search {run.space.name!r} on {run.task.name!r}: it {reason}"
            )
        setup = space_setup(run.space)
        assert setup is not None
        preset = cfg.preset or run.preset_name
        size = SEARCH_PRESETS.size(setup.family, preset)
        settings, mode, regularizer = resolve_settings(cfg, size)
        data_task = setup.data_task(run.task)

        start = time.perf_counter()
        L.seed_everything(run.seed, workers=True, verbose=False)
        supernet = setup.build(run.space, run.task, cfg, size, mode)
        latency = objective_latency(cfg, supernet, run.trainer.accelerator)
        objective = build_objective(cfg, supernet, regularizer, latency)
        datamodule = data_task.datamodule(
            search_preset(data_task, preset, size, hold_out(setup, cfg)), run.data_dir, run.seed
        )
        module = ProxylessSearchModule(
            supernet,
            settings,
            objective,
            arch_loader(datamodule, _or(cfg.arch_batch_size, size.arch_batch_size), run.seed),
        )
        setup_seconds = time.perf_counter() - start
        supernet_seconds = setup_seconds + fit_supernet(
            run,
            module,
            datamodule.train_dataloader(),
            settings.total_epochs,
            # One process: the architecture gradient is set after backward (set_arch_grads), outside
            # DDP's all-reduce, and each rank would sample different gates.
            devices=1,
            num_nodes=1,
            limit_train_batches=_or(cfg.train_batches, size.train_batches) or 1.0,
            limit_val_batches=0,
        )

        supernet.cpu()
        raw = supernet.derive()
        chosen = supernet.chosen()
        query = run.evaluator.query(raw)
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
            "latency_table": latency.record() if latency is not None else None,
            "derived_expected_cost": objective.costs.arch_cost(chosen) if objective.costs else None,
            "supernet_epochs": settings.total_epochs,
            "supernet_seconds": supernet_seconds,
            "search_preset": {"preset": preset, **dataclasses.asdict(size)},
            "data_task": data_task.name,
            "hold_out": hold_out(setup, cfg),
            "log": module.summary(),
        }
        return SearchResult(best_arch=query.arch, extra=extra, overhead_seconds=supernet_seconds)
