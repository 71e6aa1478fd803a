"""The method contract (DESIGN.md, "Method").

Every method -- baseline or paper -- exposes one signature, `search(run) -> SearchResult`, where
`run` is the frozen run context of `nasrepro.harness.run`, so the runner, the executors and the
leaderboard treat all six papers and the baselines alike. Methods that learn something keep it in
a `lightning.LightningModule`; this class is the search driver around it.

A method also *declares* what it needs, so that an impossible combination is refused before any
work starts, with the compatible choices named: the task kinds it runs on (`table` look-ups,
`train`ing live), the space views it uses (`categorical` fields for controllers, a `supernet` for
one-shot methods; see `Space.views`), and the space it searches on a task by default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator
from nasrepro.harness.recipe import Preset, with_overrides
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.harness.train_evaluator import WarmStart
from nasrepro.registry import Registry

if TYPE_CHECKING:
    from nasrepro.harness.run import Run

TaskKind = Literal["table", "train"]


#: an option's kind, from its default's type: what to call it in an error, and what values pass
OPTION_KINDS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    str: ("a string", lambda v: isinstance(v, str)),
    tuple: ("a list", lambda v: isinstance(v, list | tuple)),
    list: ("a list", lambda v: isinstance(v, list | tuple)),
    dict: ("a mapping", lambda v: isinstance(v, dict)),
}


@dataclass
class SearchResult:
    """What the method adds to the run: the incumbent (selected on the reward, normally validation)
    and a JSON-able report of how it was found. The runner owns the history and the cost: it reads
    them from the evaluator it built, so no method can misreport them."""

    best_arch: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: the method's own compute outside evaluations (controller updates, GP fits, supernet epochs),
    #: in wall seconds; the runner records it beside the evaluations' cost
    overhead_seconds: float | None = None


@dataclass
class MethodConfig:
    """Base for each method's hyper-parameters; subclasses add typed fields with paper defaults."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Method(ABC):
    """A NAS method's search driver."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: short citation of the paper the method reproduces ("" for the baselines' own definitions)
    paper: ClassVar[str] = ""
    #: the task kinds the method runs on
    task_kinds: ClassVar[frozenset[TaskKind]] = frozenset({"table", "train"})
    #: the space views it needs (see `Space.views`); every space offers "basic" (sample/mutate/key)
    needs: ClassVar[frozenset[str]] = frozenset({"basic"})
    #: task-name pattern (fnmatch) -> the space searched there when `--space` is not given; tasks
    #: not matched search their own default space
    default_spaces: ClassVar[Mapping[str, str]] = {}
    #: options that make a search small enough for the conformance suite (tests/test_conformance.py)
    conformance_options: ClassVar[Mapping[str, Any]] = {}
    #: real tasks (at the smoke preset) the conformance suite runs this method on when none of its
    #: toy tasks fits the method's declarations (e.g. a one-shot method needs a supernet space)
    conformance_tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig | dict[str, Any] | None = None) -> None:
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            known = {f.name for f in dataclasses.fields(self.Config)}
            unknown = set(config) - known
            if unknown:
                raise UsageError(
                    f"method {self.name!r} has no option(s) {sorted(unknown)}; known: {sorted(known)}"
                )
            config = self.Config(**{key: self._checked(key, value) for key, value in config.items()})
        self.config = config

    @classmethod
    def _checked(cls, key: str, value: Any) -> Any:
        """`value` for option `key`, of the kind its default has (an int where the default is an int,
        a number where it is a float, ...); a `UsageError` naming the option otherwise, before any
        search starts (a string population used to fail deep inside the search)."""
        field = next(f for f in dataclasses.fields(cls.Config) if f.name == key)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            return value
        if default is None:
            return value
        kind = next((k for k in OPTION_KINDS if type(default) is k), None)
        if kind is None:
            return value
        if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        what, ok = OPTION_KINDS[kind]
        if not ok(value):
            raise UsageError(
                f"method {cls.name!r} option {key!r} must be {what} (default {default!r}), got {value!r}"
            )
        return float(value) if kind is float else (tuple(value) if kind is tuple else value)

    @abstractmethod
    def search(self, run: Run) -> SearchResult:
        """Spend at most `run.budget` unique `run.evaluator` queries; return the incumbent."""

    # --- declarations -------------------------------------------------------------------------
    @classmethod
    def default_space_for(cls, task_name: str) -> str | None:
        """The space this method searches on `task_name` without `--space` (None: the task's own)."""
        for pattern, space in cls.default_spaces.items():
            if fnmatch.fnmatchcase(task_name, pattern):
                return space
        return None

    @classmethod
    def incompatibility(cls, task: Task, space: Space) -> str | None:
        """Why this method cannot search `space` on `task`, or None when it can."""
        if task.kind not in cls.task_kinds:
            kinds = " or ".join(sorted(cls.task_kinds))
            return f"runs on {kinds} tasks only, and {task.name} is a {task.kind} task"
        missing = cls.needs - space.views()
        if missing:
            return (
                f"needs the {', '.join(sorted(missing))} view of its space, which {space.name!r} does not "
                f"offer (it offers: {', '.join(sorted(space.views()))})"
            )
        return None

    def warm_start(self, task: Task, space: Space, artifacts_dir: Path) -> WarmStart | None:
        """Parameter sharing the method wants its training evaluator to use (None: from scratch).

        Called by the runner before it builds the evaluator, so that sharing is part of the
        evaluator's construction, never attached to it afterwards. `artifacts_dir` is where kept
        weights must live so that a resumed search inherits exactly as the interrupted one did.
        """
        return None

    def final_recipe(self, task: Task, preset_name: str) -> Mapping[str, Any]:
        """Training-recipe overrides (`TrainRecipe` fields) for training this method's networks on
        `task` at `preset_name`: its paper's or released code's final-training recipe (default: none).

        The orchestration layer applies them on top of the task's preset and the space's overrides
        (`training_preset`), on train tasks only, so they reach the evaluator that trains the
        derived network -- a one-shot method's single final evaluation, or, for a method whose
        every candidate is trained by the evaluator, each of those trainings (the harness has no
        separate retraining step). Unknown keys are a usage error (`with_overrides`); at `smoke`
        the preset's size fields still win.
        """
        return {}

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def rng(seed: int) -> np.random.Generator:
        return np.random.default_rng(seed)

    @staticmethod
    def result(evaluator: Evaluator, **extra: Any) -> SearchResult:
        """The incumbent by reward over everything the evaluator answered."""
        return SearchResult(best_arch=evaluator.best().arch, extra=extra)


def training_preset(task: Task, space: Space, method: Method | None, preset_name: str) -> Preset:
    """What every training of a run uses: the task's preset, then the space's recipe overrides
    (the protocol its networks were designed with), then the method's `final_recipe` (its paper's
    final training), each through `with_overrides` so that an unknown key is refused. A table
    task trains nothing, so the method's recipe is not applied there."""
    preset = with_overrides(task.preset(preset_name), space.recipe_overrides(task))
    if task.kind == "table":
        return preset
    if method is not None:
        preset = with_overrides(preset, method.final_recipe(task, preset_name))
    task.check_recipe(preset.recipe)
    return preset


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    METHODS.add(cls.name, cls)
    return cls
