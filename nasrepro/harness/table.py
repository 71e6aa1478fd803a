"""The tabular-benchmark contract behind `TableEvaluator`.

A table answers "what would training this architecture have given?" from recorded results, so a
search costs seconds instead of GPU-days (Lindauer & Hutter 2020, best practice 10). Tables state
their own cost model: what one query would have cost to train, or that they do not know.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.space import Arch
from nasrepro.harness.task import Task


@dataclass(frozen=True)
class TableEntry:
    """The recorded result of one architecture (accuracies in percent)."""

    val: float
    test: float
    #: the benchmark's recorded training time of this architecture; None = not recorded
    train_seconds: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


class Table(ABC):
    """Recorded results for every architecture of one space on one dataset."""

    #: one sentence saying how a query's cost is defined; copied into every record
    cost_model: str = ""
    #: whether entries carry the benchmark's training time (`TableEntry.train_seconds`); a table
    #: that records none leaves every query's charged cost unknown
    records_training_time: bool = True

    @abstractmethod
    def lookup(self, arch: Arch) -> TableEntry:
        """The entry of a canonical architecture; `UsageError` if it is not in the space."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def items(self) -> Iterator[tuple[Arch, TableEntry]]:
        """Every (canonical architecture, entry) pair."""


#: Search budgets for table tasks, in unique queries (training recipes do not apply).
TABLE_PRESETS: dict[str, Preset] = {
    name: Preset(name=name, recipe=TrainRecipe(epochs=0, lr=0.0), search_budget=budget, description=desc)
    for name, budget, desc in [
        ("smoke", 20, "20 unique queries: seconds, for CI"),
        ("cpu", 100, "100 unique queries"),
        ("paper", 500, "500 unique queries (~2% of NAS-Bench-Graph, as its paper's example runs)"),
    ]
}


class TableTask(Task):
    """A task whose evaluations are table look-ups."""

    kind = "table"

    @property
    def presets(self) -> Mapping[str, Preset]:
        return TABLE_PRESETS

    @abstractmethod
    def table(self) -> Table:
        """The loaded table (cached by the implementation)."""
