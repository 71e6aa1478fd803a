"""NAS-Bench-Graph look-up tasks: ``nasbench-graph/<dataset>`` for its nine datasets.

The light tables ship inside the ``nas-bench-graph==1.4.0`` wheel (``nas_bench_graph/light/*.bench``):
for every canonical architecture, keyed by the benchmark hash, the validation and test performance
(fractions, mean over 3 seeds), the inference latency of one full-graph forward pass (seconds) and
the parameter count (millions). Here values are percentages; `val` = ``valid_perf``, `test` =
``perf``. ogbn-proteins reports ROC-AUC, not accuracy (the generation code's ``worker.py``).

The tables are pickles, so they are only read after their bytes match the sha256 recorded below
(package 1.4.0), and then through an unpickler that admits nothing but plain containers and numpy
float scalars: a tampered or other-version file is refused with a `DataError` instead of executed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nasrepro.errors import DataError, UsageError
from nasrepro.harness.table import Table, TableEntry, TableTask
from nasrepro.harness.task import DataStatus, Metric
from nasrepro.spaces.nasbench_graph import GraphArch, NasBenchGraphSpace, arch_from_hash
from nasrepro.tasks import TASKS

PACKAGE = "nas_bench_graph"
PACKAGE_PIN = "nas-bench-graph==1.4.0"
DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")

#: sha256 of the light tables in the nas-bench-graph 1.4.0 wheel (computed from the installed files).
SHA256: Mapping[str, str] = {
    "arxiv": "7ee21a7653297a806c0ed1be3efe6ecc06acc84e48e942da0bfde0e5d287debe",
    "citeseer": "99c7f79b73372636305bf73fb32a58b63c57bd1871a152dd62ec72d984c8c50f",
    "computers": "fdb3dc0cf405d62322f0ab9614b2083c2a5e6576c2f43e4f2214be64bc62b1b3",
    "cora": "5e69b2f9bb08d8927d9ffd4921f8494a3cea349c9c3a461334cb9dc9e11701a8",
    "cs": "71ae8469930517160b024f52db6000a4897f1aff5d765beb27bb60952ed5bd31",
    "photo": "5511b4dc3f63fa988792177227db7901290fb9b27fc6c02e3036b29e134ed6df",
    "physics": "1e309bafee0b832c8b84fa3c039c36992bc0a910238b128f26b7e9190d7f2aea",
    "proteins": "b9e7fb0902bda44fec32c948e5fde822fb22d38d674c52e43ace5197378f2d21",
    "pubmed": "10b4dcf6cfd3a24f6059f7d541a4a872960b4adac0b3dba26abed1bb9a3d904d",
}

#: (input features, outputs) of each dataset as the benchmark trained it (ogbn-proteins: 8 averaged
#: edge features, 112 binary tasks). With `BENCH_HP` these reproduce every table's ``para`` exactly.
SHAPES: Mapping[str, tuple[int, int]] = {
    "cora": (1433, 7),
    "citeseer": (3703, 6),
    "pubmed": (500, 3),
    "cs": (6805, 15),
    "physics": (8415, 5),
    "photo": (745, 8),
    "computers": (767, 10),
    "arxiv": (128, 40),
    "proteins": (8, 112),
}

COST_MODEL = (
    "NAS-Bench-Graph light tables record no training time: each query's charged cost is unknown "
    "(compare by unique queries; look-up wall time is never charged); each architecture's "
    "recorded inference latency (s) is kept in metrics['latency']"
)


def package_light_dir() -> Path:
    """``light/`` inside the installed nas_bench_graph package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"NAS-Bench-Graph tables: package {PACKAGE!r} is not installed; run `pip install {PACKAGE_PIN}`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "light"


class _TableUnpickler(pickle.Unpickler):
    """Admits only what the light tables contain: dicts, ints, strings and numpy float scalars."""

    _ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a light table")
        if name == "dtype":
            return np.dtype
        core = getattr(np, "_core", None) or np.core
        return core.multiarray.scalar


def _how_to_fix(dataset: str) -> str:
    return f"Reinstall the pinned package: `pip install --force-reinstall {PACKAGE_PIN}`."


def read_light_table(dataset: str, folder: Path | None = None) -> dict[int, dict[str, float]]:
    """The verified raw table {hash: {valid_perf, perf, latency, para}} of `dataset`.

    `folder` defaults to the installed package's ``light/``; any other folder must hold byte-identical
    files. The bytes that were hashed are the bytes that are unpickled (no second read).
    """
    if dataset not in SHA256:
        raise UsageError(f"NAS-Bench-Graph has no dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    path = (folder if folder is not None else package_light_dir()) / f"{dataset}.bench"
    if not path.is_file():
        raise DataError(f"NAS-Bench-Graph table {path} is missing. {_how_to_fix(dataset)}")
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256[dataset]:
        raise DataError(
            f"NAS-Bench-Graph table {path} has sha256 {digest[:16]}..., expected {SHA256[dataset][:16]}... "
            f"(tampered or not from {PACKAGE_PIN}); refusing to unpickle it. {_how_to_fix(dataset)}"
        )
    try:
        raw = _TableUnpickler(io.BytesIO(blob)).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:  # pragma: no cover - hash already matched
        raise DataError(
            f"NAS-Bench-Graph table {path} cannot be read: {error}. {_how_to_fix(dataset)}"
        ) from None
    return {int(key): {name: float(value) for name, value in record.items()} for key, record in raw.items()}


class NasBenchGraphTable(Table):
    """One dataset's light table, indexed by the benchmark hash of canonical architectures."""

    cost_model = COST_MODEL
    records_training_time = False

    def __init__(self, dataset: str, folder: Path | None = None) -> None:
        self.dataset = dataset
        self.space = NasBenchGraphSpace(proteins=dataset == "proteins")
        self._entries: dict[int, TableEntry] = {
            key: TableEntry(
                val=100.0 * record["valid_perf"],
                test=100.0 * record["perf"],
                train_seconds=None,
                metrics={"latency": record["latency"], "params_m": record["para"]},
            )
            for key, record in sorted(read_light_table(dataset, folder).items())
        }

    def lookup(self, arch: GraphArch | str) -> TableEntry:
        """The entry of `arch` (any encoding or string; it is canonicalised first)."""
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        key = self.space.bench_hash(arch)  # UsageError for all-skip, unknown ops, bad links
        return self.lookup_hash(key)

    def lookup_hash(self, key: int) -> TableEntry:
        try:
            return self._entries[int(key)]
        except KeyError:
            raise UsageError(
                f"hash {key} is not in the NAS-Bench-Graph {self.dataset} table ({len(self)} entries)"
            ) from None

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> Iterator[int]:
        return iter(self._entries)

    def items(self) -> Iterator[tuple[GraphArch, TableEntry]]:
        proteins = self.space.proteins
        for key, entry in self._entries.items():
            yield arch_from_hash(key, proteins), entry


@cache
def load_table(dataset: str) -> NasBenchGraphTable:
    """The installed package's table for `dataset`, loaded once per process."""
    return NasBenchGraphTable(dataset)


class NasBenchGraphTask(TableTask):
    """Look-ups in one NAS-Bench-Graph table; reward = validation performance unless asked otherwise."""

    default_space = "nasbench-graph"

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.name = f"nasbench-graph/{dataset}"
        self.proteins = dataset == "proteins"
        self.metric = Metric("roc_auc" if self.proteins else "accuracy", "max")

    @property
    def num_features(self) -> int:
        return SHAPES[self.dataset][0]

    @property
    def num_classes(self) -> int:
        return SHAPES[self.dataset][1]

    def space(self) -> NasBenchGraphSpace:
        from nasrepro.spaces import get_space

        return get_space("nasbench-graph", proteins=self.proteins)  # type: ignore[return-value]

    def table(self) -> NasBenchGraphTable:
        return load_table(self.dataset)

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        """The table is embedded in the installed package, so `data_dir` is not consulted."""
        try:
            path = package_light_dir() / f"{self.dataset}.bench"
            read_light_table(self.dataset, path.parent)
        except DataError as error:
            missing = "missing" in str(error) or "not installed" in str(error)
            return [DataStatus(self.name, "missing" if missing else "corrupt", PACKAGE, str(error))]
        return [DataStatus(self.name, "embedded", str(path), f"sha256 verified ({PACKAGE_PIN})")]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "dataset": self.dataset,
            "cost_model": COST_MODEL,
            "values": "percent",
            "table_size": len(self.table()),
        }


def top_k(
    task: NasBenchGraphTask | str, k: int = 10, by: Literal["val", "test"] = "val"
) -> list[tuple[GraphArch, TableEntry]]:
    """The `k` best architectures of a table by validation (default) or test performance.

    Ties are broken by hash, so the listing is deterministic.
    """
    if isinstance(task, str):
        from nasrepro.tasks import get_task

        task = get_task(task if task.startswith("nasbench-graph/") else f"nasbench-graph/{task}")
    if by not in ("val", "test"):
        raise UsageError(f"top_k: by must be 'val' or 'test', got {by!r}")
    if k < 1:
        raise UsageError(f"top_k: k must be a positive number, got {k}")
    table = task.table()  # type: ignore[union-attr]
    ranked = sorted(table._entries.items(), key=lambda item: (-getattr(item[1], by), item[0]))
    return [(arch_from_hash(key, table.space.proteins), entry) for key, entry in ranked[:k]]


def _register(dataset: str) -> None:
    TASKS.add(f"nasbench-graph/{dataset}", lambda: NasBenchGraphTask(dataset))


for _dataset in DATASETS:
    _register(_dataset)
