"""The task contract (DESIGN.md, "Task"): data, metric, evaluation protocol and budget presets.

A task owns everything that must be identical across methods for their numbers to compare
(Lindauer & Hutter 2020, best practice 6): the split, the metric, and the final-training recipe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nasrepro.errors import UsageError
from nasrepro.harness.recipe import OPTIONS, Preset, TrainRecipe, options_in_use

if TYPE_CHECKING:
    import lightning as L
    from torch import nn

    from nasrepro.harness.space import Space


@dataclass(frozen=True)
class Metric:
    """The task's headline metric and whether larger is better."""

    name: str
    direction: Literal["max", "min"]

    def fitness(self, value: float) -> float:
        """`value` oriented so that larger is always better (what search methods maximise)."""
        return value if self.direction == "max" else -value

    def better(self, a: float, b: float) -> bool:
        return self.fitness(a) > self.fitness(b)


@dataclass(frozen=True)
class DataStatus:
    """One row of `nasrepro data check`."""

    dataset: str
    status: Literal["found", "missing", "corrupt", "embedded"]
    path: str
    detail: str = ""


@dataclass(frozen=True)
class ReferenceArch:
    """A hand-designed network for a task and the recipe changes its own paper trained it with."""

    build: Callable[[Task], nn.Module]
    recipe: Mapping[str, Any] = field(default_factory=dict)
    citation: str = ""


class Task(ABC):
    """A benchmark: dataset + split + metric + training protocol (or a table that stands for it)."""

    name: str = ""
    metric: Metric
    kind: Literal["train", "table"] = "train"
    #: the space searched when `--space` is not given
    default_space: str | None = None
    #: the task's inputs include node features, which a recipe may leave un-normalised
    node_features: bool = False
    #: the optional recipe fields (`recipe.OPTIONS`: label smoothing, no-decay keys, cutout, colour
    #: jitter) this task's training applies; any other set to a non-neutral value is refused
    recipe_options: frozenset[str] = frozenset()

    @property
    @abstractmethod
    def presets(self) -> Mapping[str, Preset]:
        """`smoke` (seconds, CI), `cpu` (minutes on a laptop CPU, real data), `paper` (the paper's own)."""

    def preset(self, name: str) -> Preset:
        try:
            return self.presets[name]
        except KeyError:
            raise UsageError(
                f"task {self.name!r} has no preset {name!r}; choose one of {', '.join(self.presets)}"
            ) from None

    def space(self) -> Space | None:
        """This task's own instance of its default space, where the space needs options only the
        task knows (e.g. NAS-Bench-Graph's proteins table); None means: build `default_space` by
        name, which the orchestration layer does (names are resolved there, not here)."""
        return None

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        """Positional inputs of one forward pass (for params/FLOPs/latency/memory measurements)."""
        raise NotImplementedError(f"task {self.name!r} has no example input")

    def reference_archs(self) -> Mapping[str, ReferenceArch | Callable[[Task], nn.Module]]:
        """Hand-designed networks runnable with `nasrepro evaluate --arch NAME`."""
        return {}

    def reference_arch(self, name: str) -> ReferenceArch | None:
        """The reference network called `name`, or None if `name` is not one."""
        entry = self.reference_archs().get(name)
        if entry is None or isinstance(entry, ReferenceArch):
            return entry
        return ReferenceArch(build=entry)

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        """Found / missing / corrupt for every dataset file this task reads."""
        return []

    # --- training protocol (train tasks) -------------------------------------------------------
    def check_recipe(self, recipe: TrainRecipe) -> None:
        """Refuse a recipe option this task would not apply: a setting nothing applies would make
        the numbers silently mean something else (the rule of `recipe.with_overrides`)."""
        unapplied = [name for name in options_in_use(recipe) if name not in self.recipe_options]
        if unapplied:
            applied = ", ".join(sorted(self.recipe_options)) or "none of " + ", ".join(OPTIONS)
            raise UsageError(
                f"task {self.name!r} does not apply the recipe option(s) {unapplied}; it applies: {applied}"
            )

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> L.LightningDataModule:
        raise NotImplementedError(f"task {self.name!r} has no datamodule")

    def lightning_module(self, model: nn.Module, preset: Preset) -> L.LightningModule:
        """Wraps `model` in the task's training/evaluation step (loss, metric, optimiser)."""
        raise NotImplementedError(f"task {self.name!r} does not train models")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "metric": self.metric.name,
            "direction": self.metric.direction,
            "default_space": self.default_space,
        }
