"""The training evaluator: an architecture's score is a fit through the harness with the task's
recipe, in this process or on an executor's workers, charged its own wall time."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nasrepro.harness.evaluator import Evaluator, Listener, Outcome, Query, Reward
from nasrepro.harness.recipe import Preset
from nasrepro.harness.space import Arch, Space
from nasrepro.harness.task import Task

if TYPE_CHECKING:
    from nasrepro.harness.executors.base import Executor


class _call_with_arch:  # noqa: N801  (a picklable partial whose free argument is the architecture)
    def __init__(self, job: Any) -> None:
        self.job = job

    def __call__(self, arch: str) -> Any:
        return self.job(arch=arch)


class WarmStart(Protocol):
    """Hands trained weights from earlier evaluations to new ones (parameter sharing: ENAS,
    GraphNAS, AGNN's constrained sharing). Only a `TrainEvaluator` training in-process uses it."""

    def before_fit(self, key: str, arch: Arch, model: Any) -> dict[str, Any]:
        """Copy inherited weights into the freshly built `model`; return recipe overrides for this
        fit (e.g. fewer epochs to fine-tune) and, under ``"metrics"``, numbers to record."""
        ...

    def after_fit(self, key: str, arch: Arch, model: Any) -> None:
        """Keep what later evaluations may inherit from the trained `model`."""
        ...


class TrainEvaluator(Evaluator):
    """Trains each architecture from scratch with the task's recipe at the chosen preset.

    `preset` is the resolved preset (the task's, with the space's recipe overrides applied), so
    every training -- in this process or on an executor's worker -- uses the one object.
    """

    __slots__ = ("preset", "seed", "data_dir", "trainer_kwargs", "warm_start", "_job")
    cost_model = "wall-clock seconds of our own training and evaluation of each architecture"

    def __init__(
        self,
        task: Task,
        space: Space,
        budget: int | None = None,
        reward: Reward = "val",
        *,
        preset: Preset,
        seed: int = 0,
        data_dir: Path,
        trainer_kwargs: dict[str, Any] | None = None,
        executor: Executor | None = None,
        warm_start: WarmStart | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        super().__init__(task, space, budget, reward, listeners=listeners)
        self.preset = preset
        self.seed = seed
        self.data_dir = data_dir
        self.trainer_kwargs = dict(trainer_kwargs or {})
        #: trains batches of architectures at once (`query_many`); None trains one at a time here
        self.executor = executor
        #: parameter sharing between evaluations (see `WarmStart`); None trains from scratch
        self.warm_start = warm_start
        self._job: Any = None

    @property
    def batch_size(self) -> int:
        return self.executor.workers if self.executor is not None else 1

    @property
    def workers(self) -> int:
        """The executor's workers; 1 without one, or with a warm start (it trains in this process,
        in order, since each fit may inherit from the ones before)."""
        return self.executor.workers if self._on_executor else 1

    @property
    def _on_executor(self) -> bool:
        return self.executor is not None and self.warm_start is None

    def _remote_job(self) -> Any:
        """The picklable training job of this evaluator, built once (Ray stores it once)."""
        if self._job is None:
            from functools import partial

            from nasrepro.harness.executors.jobs import train_evaluation

            self._job = _call_with_arch(
                partial(
                    train_evaluation,
                    self.task,
                    self.space,
                    preset=self.preset,
                    seed=self.seed,
                    data_dir=self.data_dir,
                )
            )
        return self._job

    def _start(self, arch: Arch) -> Any:
        return self.executor.submit(self._remote_job(), str(arch)) if self._on_executor else None  # type: ignore[union-attr]

    def _charge(self, outcome: Outcome | None, wall: float) -> float | None:
        """A training is charged what it took where it ran: the worker's own time for an executor's
        job (`job_seconds`, carried as the outcome's cost), else the evaluation's wall time here.
        The wait for an executor's answer is no network's cost: with two workers a 15 s training
        can come back after 2 s, and a batch's time shared by its size is no single network's.
        The answer's `wall_seconds` stays the wait, so the method's overhead is still the search's
        wall time less its waits."""
        if outcome is not None and outcome.cost_seconds:
            return round(outcome.cost_seconds, 6)
        return round(wall, 6)

    def _outcome_of(self, result: Any) -> Outcome:
        return Outcome(
            val=result["val"],
            test=result["test"],
            cost_seconds=float(result.get("job_seconds") or 0.0),  # charged by `_charge`
            metrics=fit_metrics(result, result["params"]),
        )

    def query_many(self, archs: Iterable[Arch]) -> list[Query]:
        """Train the new architectures among `archs` concurrently on the executor, then book every
        answer in input order, so the history is the same as sequential queries would give."""
        archs = list(archs)
        if not self._on_executor or self.replaying or len(archs) < 2:
            return super().query_many(archs)
        new: dict[str, Arch] = {}
        for arch in archs:
            key = self.space.key(arch)
            self._refuse_in_flight(key)
            if key not in self._cache and key not in new and len(new) < self.remaining:
                new[key] = self.space.canonical(arch)
        start = time.perf_counter()
        results = dict(
            zip(new, self.executor.map(self._remote_job(), [str(a) for a in new.values()]), strict=True)  # type: ignore[union-attr]
        )
        wall = (time.perf_counter() - start) / max(len(new), 1)  # the batch's time, shared out
        out = []
        for arch in archs:
            key = self.space.key(arch)
            if key in results:
                out.append(self._book_result(key, results.pop(key), wall))
            elif key in self._cache:
                out.append(self.query(arch))
        return out

    def _evaluate(self, arch: Arch) -> Outcome:
        import lightning as L

        from nasrepro.harness.training import fit_and_evaluate

        L.seed_everything(self.seed, workers=True, verbose=False)  # initial weights follow the seed
        model = self.space.to_model(arch, self.task)
        n_params = sum(p.numel() for p in model.parameters())
        preset, shared = self.preset, {}
        if self.warm_start is not None:
            overrides = dict(self.warm_start.before_fit(self.space.key(arch), arch, model))
            shared = overrides.pop("metrics", {})
            if "epochs" in overrides:  # fine-tuning never trains longer than the full recipe
                overrides["epochs"] = min(int(overrides["epochs"]), preset.recipe.epochs)
            # applied as given, at every preset (smoke included): this fit's own schedule
            preset = dataclasses.replace(preset, recipe=preset.recipe.replace(**overrides))
        result = fit_and_evaluate(
            self.task,
            model,
            preset,
            self.seed,
            self.data_dir,
            build=lambda: self.space.to_model(arch, self.task),
            **self.trainer_kwargs,
        )
        if self.warm_start is not None:
            self.warm_start.after_fit(self.space.key(arch), arch, model)
        return Outcome(
            val=result["val"],
            test=result["test"],
            cost_seconds=0.0,
            metrics={**fit_metrics(result, n_params), **shared},
        )


def fit_metrics(result: dict[str, Any], params: float) -> dict[str, float]:
    """A trained query's metrics from `fit_and_evaluate`'s result, the same on an executor as here:
    size, training time and epochs, and what the fit's callbacks reported, per seed as `name[i]`
    (e.g. NT-ASGD's switch epoch; an event that did not happen is left out)."""
    return {
        "params": float(params),
        "train_seconds": result["train_seconds"],
        "epochs": float(result["epochs"]),
        **{
            f"{name}[{i}]": float(v)
            for name, values in result.get("reported", {}).items()
            for i, v in enumerate(values)
            if v is not None
        },
    }
