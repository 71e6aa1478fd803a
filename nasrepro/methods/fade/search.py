"""The registered method ``fade``: train FaDE regions, step a batch by pseudo-gradients, query incumbents.

Neumeyer, Stier & Granitzer, IDA 2024 (arXiv 2404.16218). Per step (`outer`): build a region from the
current batch, train it with the FaDE estimator (`estimator.FadeEstimator`, fitted by a Lightning
`Trainer` from ``run.trainer``), rank the batch by FaDE-ranks, then move the batch.

How FaDE spends queries. A region training is the method's own compute (``overhead_seconds``), like a
supernet fit; what the budget counts is unique architectures evaluated through ``run.evaluator``:
after each region training, the batch member with the best FaDE score that has not been evaluated yet
(the region's incumbent) is evaluated -- trained from scratch under the task's recipe on live tasks,
looked up on NAS-Bench-201. The search stops when the budget is spent or after ``steps`` region
trainings (default: until the budget is spent, at most 4 x budget trainings), and returns the best
evaluated incumbent on the reward (validation). So FaDE and the baselines compare at equal numbers
of evaluated architectures, and FaDE's region trainings are reported as its extra cost.

NAS-Bench-201. The table has no images: the region is trained live on CIFAR-10 images (the
``cifar10`` task's search split) while every score comes from the table, so only
``nasbench201/cifar10`` is accepted (NB-201's other datasets would need their own images).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.methods.fade.presets import REGION_PRESETS, RegionBudget
from nasrepro.methods.fade.region import RegionView, region_view
from nasrepro.methods.fade.region_cache import RegionCache


@dataclass
class FadeConfig(MethodConfig):
    """FaDE's options; None means "the preset's" (`presets.REGION_PRESETS`)."""

    #: k: candidate cells per stage of a region (figure res/fade.png: 4; code: stage_number_graphs 5-20)
    region_size: int = 4
    #: b: architectures per batch (figure: 3) [reconstruction]
    batch_size: int = 3
    #: members replaced per pseudo-gradient step (figure: the worst 1) [reconstruction]
    replace: int = 1
    #: probability of one random mutation on top of each pseudo-gradient move [reconstruction]
    mutation_rate: float = 0.5
    #: region trainings (None: until the budget is spent, at most 4 x budget)
    steps: int | None = None
    #: DARTS mode of the code: trivial | first_order | second_order
    mode: str = "first_order"
    #: adam | sgd (momentum 0.8), base lr 1 with LinearLR factors (code)
    optimizer: str = "adam"
    lr_start: float = 0.01
    lr_end: float = 0.001
    alpha_lr_start: float = 0.1
    alpha_lr_end: float = 0.01
    #: hard Gumbel-softmax (tau 1) mixing instead of softmax (code: darts_sampling)
    sampling: bool = False
    #: alpha initialised uniform random instead of ones (code: darts_random_init)
    random_init: bool = False
    #: alpha batches from "train" (the code: a second loader over the same 90%) or "heldout" (DARTS)
    alpha_data: str = "train"
    #: region training size (None: the preset's)
    epochs: int | None = None
    train_batch_size: int | None = None
    train_subset: int | None = None
    train_batches: int | None = None
    #: region size preset smoke | cpu | paper (None: the run's preset)
    preset: str | None = None
    nb201_C: int | None = None  # noqa: N815
    nb201_N: int | None = None  # noqa: N815


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def data_task(task: Task) -> Task:
    """Where region training gets images: the task itself, or CIFAR-10 for the NB-201 table."""
    if task.kind == "train":
        return task
    from nasrepro.tasks import get_task

    return get_task("cifar10")


def check_config(cfg: FadeConfig, view: RegionView) -> None:
    """Bad settings as one usage error each, before any training."""
    if cfg.region_size < 1:
        raise UsageError(f"FaDE needs region_size k >= 1, got {cfg.region_size}")
    if view.stages < 1:
        raise UsageError(f"FaDE needs at least one stage (L >= 1), got {view.stages}")
    if not 2 <= cfg.batch_size <= cfg.region_size:
        raise UsageError(
            f"FaDE ranks within a batch: need 2 <= batch_size <= region_size, got {cfg.batch_size}, {cfg.region_size}"
        )
    if not 1 <= cfg.replace < cfg.batch_size:
        raise UsageError(f"need 1 <= replace < batch_size, got {cfg.replace}")
    count = view.unit_count()
    if count is not None and cfg.region_size > count:
        raise UsageError(
            f"region_size {cfg.region_size} is larger than the space: a stage has only {count} distinct cells"
        )
    if cfg.steps is not None and cfg.steps < 1:
        raise UsageError(f"steps must be >= 1 (or None: until the budget is spent), got {cfg.steps}")
    if not 0.0 <= cfg.mutation_rate <= 1.0:
        raise UsageError(f"mutation_rate is a probability, got {cfg.mutation_rate}")
    if cfg.alpha_data not in ("train", "heldout"):
        raise UsageError(f"alpha_data must be 'train' or 'heldout', got {cfg.alpha_data!r}")


@register_method
class FaDE(Method):
    """Memory-less batch-wise EA over FaDE region trainings (outer loop reconstructed, see `outer`)."""

    name = "fade"
    Config = FadeConfig
    paper = "Neumeyer, Stier & Granitzer, IDA 2024"
    task_kinds = frozenset({"table", "train"})
    default_spaces = {"cifar10": "hierarchical", "nasbench201/*": "nasbench201"}
    conformance_options = {"steps": 2, "region_size": 2, "batch_size": 2}
    conformance_tasks = ("cifar10", "nasbench201/cifar10")

    @classmethod
    def incompatibility(cls, task: Task, space: Space) -> str | None:
        reason = super().incompatibility(task, space)
        if reason is not None:
            return reason
        view = region_view(space)
        if view is None:
            return "has region networks for the hierarchical, hierarchical-mlp and nasbench201 spaces only"
        if view.family == "nb201":
            if task.name != "nasbench201/cifar10":
                return (
                    "trains NAS-Bench-201 regions on CIFAR-10 images, so it searches nasbench201/cifar10 only"
                )
            return None
        if task.kind != "train" or getattr(task, "input_shape", None) is None:
            return f"trains hierarchical regions on the task's own images, and {task.name} has none"
        return None

    def size(self, view: RegionView, preset: str) -> RegionBudget:
        cfg: FadeConfig = self.config  # type: ignore[assignment]
        size = REGION_PRESETS.size(view.family, preset)
        return dataclasses.replace(
            size,
            epochs=_or(cfg.epochs, size.epochs),
            batch_size=_or(cfg.train_batch_size, size.batch_size),
            arch_batch_size=_or(cfg.train_batch_size, size.arch_batch_size),
            train_subset=_or(cfg.train_subset, size.train_subset),
            train_batches=_or(cfg.train_batches, size.train_batches),
            nb201_C=_or(cfg.nb201_C, size.nb201_C),
            nb201_N=_or(cfg.nb201_N, size.nb201_N),
        )

    def search(self, run: Run) -> SearchResult:
        from nasrepro.methods.fade import training
        from nasrepro.methods.fade.outer import (
            batch_ranks,
            path_scores,
            pseudo_gradient,
            pseudo_gradient_step,
            region_candidates,
        )

        cfg: FadeConfig = self.config  # type: ignore[assignment]
        reason = self.incompatibility(run.task, run.space)
        if reason is not None:  # the runner refuses this first; library use may not
            raise UsageError(f"fade cannot search {run.space.name!r} on {run.task.name!r}: it {reason}")
        view = region_view(run.space)
        assert view is not None
        check_config(cfg, view)
        preset = cfg.preset or run.preset_name
        size = self.size(view, preset)
        training.settings_of(cfg, size.epochs)  # bad optimisation settings fail before any data loads
        trainer = training.RegionTrainer(run, view, cfg, size, data_task(run.task), preset)
        rng, evaluator = run.rng(1), run.evaluator

        batch: list[Any] = []
        tries = 0
        while len(batch) < cfg.batch_size:
            arch = view.join(view.units(run.space.sample(rng)))
            tries += 1
            if run.space.key(arch) not in {run.space.key(a) for a in batch}:
                batch.append(arch)
            elif tries > 1000:
                raise UsageError(f"the space has fewer than batch_size={cfg.batch_size} architectures")

        max_steps = cfg.steps if cfg.steps is not None else 4 * max(run.budget, 1)
        log: list[dict[str, Any]] = []
        overhead = 0.0
        # a resumed search reuses the regions its interrupted attempt trained (identical by seeding)
        regions = RegionCache(run.artifacts_dir)
        for step in range(max_steps):
            if evaluator.exhausted:
                break
            candidates = region_candidates(view, batch, cfg.region_size, rng)
            region = [[view.unit_str(u) for u in units] for units in candidates]
            cached = regions.get(step, region)
            if cached is None:
                start = time.perf_counter()
                ranks, report = trainer.train(candidates, step)
                seconds = time.perf_counter() - start
                regions.put(step, region, ranks, report, seconds)
            else:  # trained by the interrupted attempt: its time is this search's too
                ranks, report, seconds = cached
            overhead += seconds
            scores = path_scores(view, batch, candidates, ranks)
            member_ranks = batch_ranks(scores)
            queried = None
            for i in sorted(range(len(batch)), key=lambda i: member_ranks[i]):
                if not evaluator.seen(batch[i]):
                    queried = evaluator.query(batch[i]).arch
                    break
            grads = pseudo_gradient(view, batch, candidates, ranks, member_ranks)
            log.append(
                {
                    "step": step,
                    "batch": [run.space.key(a) for a in batch],
                    "scores": [round(s, 6) for s in scores],
                    "ranks": member_ranks,
                    "queried": queried,
                    "candidates": region,
                    **report,
                }
            )
            batch = pseudo_gradient_step(
                view, batch, candidates, grads, member_ranks, cfg.replace, rng, cfg.mutation_rate
            )
        return SearchResult(
            best_arch=evaluator.best().arch,
            extra={
                "region_trainings": len(log),
                "region_seconds": round(overhead, 3),
                "region_preset": {"preset": preset, **dataclasses.asdict(size)},
                "data_task": trainer.data_task.name,
                "outer_search": "memory-less batch-wise EA with rank-based pseudo-gradient steps (reconstruction)",
                "final_batch": [run.space.key(a) for a in batch],
                "steps": log,
            },
            overhead_seconds=overhead,
        )
