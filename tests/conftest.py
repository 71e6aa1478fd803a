"""Shared fixtures: the real shared datasets (via NASREPRO_DATA) and a tiny toy space/table.

The toy space (bit strings of length 6, 64 architectures, reversal-symmetric) lets method and
evaluator tests run in milliseconds while still exercising canonicalisation and budgets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from nasrepro.errors import UsageError
from nasrepro.harness.recipe import Preset
from nasrepro.harness.space import Space
from nasrepro.harness.table import TABLE_PRESETS, Table, TableEntry, TableTask
from nasrepro.harness.task import Metric

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets: NASREPRO_DATA, else ../shared/datasets beside the repo."""
    root = Path(os.environ.get("NASREPRO_DATA", SHARED))
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root}; set NASREPRO_DATA")
    return root


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Derived caches go to a per-session folder unless the caller chose one (CI reuses one)."""
    os.environ.setdefault("NASREPRO_CACHE", str(tmp_path_factory.mktemp("nasrepro-cache")))
    os.environ.setdefault("WANDB_SILENT", "true")


class ToySpace(Space):
    """Bit strings of length 6; a string and its reversal are the same architecture."""

    name = "toy"
    n = 6

    def sample(self, rng: np.random.Generator) -> str:
        return self.canonical("".join(str(b) for b in rng.integers(0, 2, self.n)))

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        while True:
            i = int(rng.integers(self.n))
            child = self.canonical(arch[:i] + ("1" if arch[i] == "0" else "0") + arch[i + 1 :])
            if child != arch:
                return child

    def parse(self, text: str) -> str:
        if len(text) != self.n or set(text) - {"0", "1"}:
            raise UsageError(f"toy architecture must be {self.n} bits, got {text!r}")
        return self.canonical(text)

    def canonical(self, arch: str) -> str:
        return min(arch, arch[::-1])

    def enumerate(self) -> Iterator[str]:
        seen = {self.canonical(format(i, f"0{self.n}b")) for i in range(2**self.n)}
        return iter(sorted(seen))

    def size(self) -> int:
        return len(list(self.enumerate()))


class CategoricalToySpace(ToySpace):
    """The toy space with a categorical view: one field per bit, two action classes (halves)."""

    def fields(self):
        from nasrepro.harness.space import Field

        return tuple(
            Field(f"bit{i}", ("0", "1"), "left" if i < self.n // 2 else "right") for i in range(self.n)
        )

    def encode(self, arch: str) -> tuple[int, ...]:
        return tuple(int(c) for c in arch)

    def decode(self, indices) -> str:
        if len(indices) != self.n or any(i not in (0, 1) for i in indices):
            raise UsageError(f"toy encoding must be {self.n} indices in 0..1, got {list(indices)}")
        return self.canonical("".join(str(int(i)) for i in indices))


class ToyTable(Table):
    cost_model = "toy: 1 simulated second per query"

    def lookup(self, arch: str) -> TableEntry:
        ones = arch.count("1")
        # validation rewards ones; test agrees except for a small position-dependent twist
        return TableEntry(
            val=50.0 + 5 * ones,
            test=49.0 + 5 * ones + (1.0 if arch[0] == "1" else 0.0),
            train_seconds=1.0,
            metrics={"params_m": float(ones)},
        )

    def __len__(self) -> int:
        return ToySpace().size()

    def items(self):
        space = ToySpace()
        return ((a, self.lookup(a)) for a in space.enumerate())


class ToyTask(TableTask):
    name = "toy"
    metric = Metric("accuracy", "max")

    @property
    def presets(self) -> Mapping[str, Preset]:
        return TABLE_PRESETS

    def table(self) -> Table:
        return ToyTable()

    def space(self) -> Space:
        return ToySpace()


@pytest.fixture
def toy_task() -> ToyTask:
    return ToyTask()


@pytest.fixture
def toy_space() -> ToySpace:
    return ToySpace()


# --- the reproduce scripts' smoke runs start as soon as they are collected (tests/smoke_scripts.py) ---
@pytest.hookimpl(trylast=True)  # after -m/-k deselection: start only what will be checked
def pytest_collection_modifyitems(session, config, items) -> None:
    scripts = sorted(
        {
            item.callspec.params["script"]
            for item in items
            if item.nodeid.startswith("tests/test_reproduce.py::test_smoke_preset")
            and hasattr(item, "callspec")
        }
    )
    root = Path(os.environ.get("NASREPRO_DATA", SHARED))
    if scripts and root.is_dir():
        import smoke_scripts

        config.stash[smoke_scripts.KEY] = smoke_scripts.SmokeRuns(scripts, root)


def pytest_sessionfinish(session, exitstatus) -> None:
    import smoke_scripts

    runs = session.config.stash.get(smoke_scripts.KEY, None)
    if runs is not None:
        runs.stop()
