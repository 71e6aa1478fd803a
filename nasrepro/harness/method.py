"""The method contract (DESIGN.md, "Method").

Every method -- baseline or paper -- exposes one signature,
`search(task, space, budget, evaluator, seed) -> SearchResult`, so the runner, the executors and
the leaderboard treat all six papers and the baselines alike. Methods that learn something keep
it in a `lightning.LightningModule`; this class is the search driver around it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator, Query
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.registry import Registry


@dataclass
class SearchCost:
    """What the search spent (Lindauer & Hutter 2020, best practices 7 and 13)."""

    wall_seconds: float
    device: str
    device_hours: float
    queries: int
    evaluation_seconds: float = 0.0
    cost_model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """The incumbent (selected on the reward, normally validation) and how it was found."""

    best_arch: str
    history: list[Query]
    cost: SearchCost | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """Base for each method's hyper-parameters; subclasses add typed fields with paper defaults."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Method(ABC):
    """A NAS method's search driver."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig

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
            config = self.Config(**config)
        self.config = config

    @abstractmethod
    def search(self, task: Task, space: Space, budget: int, evaluator: Evaluator, seed: int) -> SearchResult:
        """Spend at most `budget` unique evaluator queries; return the incumbent."""

    @staticmethod
    def rng(seed: int) -> np.random.Generator:
        return np.random.default_rng(seed)

    @staticmethod
    def result(evaluator: Evaluator, **extra: Any) -> SearchResult:
        """The incumbent by reward over everything the evaluator answered."""
        return SearchResult(best_arch=evaluator.best().arch, history=list(evaluator.history), extra=extra)


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    METHODS.add(cls.name, cls)
    return cls
