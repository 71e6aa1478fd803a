"""NAS-Bench-201 as table tasks: ``nasbench201/{cifar10,cifar100,imagenet16-120}``.

Dong & Yang (ICLR 2020) trained all 15,625 cells of the NB201 space (`nasrepro.spaces.nasbench201`)
on three datasets; these tasks answer a query from those records. All numbers are 200-epoch
results (NB201's ``hp='200'``) averaged over the recorded seeds (``is_random=False``); the
12-epoch proxy and single-seed entries are never used.

Split semantics -- mind NB201's naming:

* ``nasbench201/cifar10``: ``val`` is the accuracy on the held-out half of the CIFAR-10 training
  set of the model trained on the other half (NB201's dataset ``cifar10-valid``, split
  ``x-valid``: the search-time signal); ``test`` is the CIFAR-10 test accuracy of the model trained
  on the full training set (dataset ``cifar10``, split ``ori-test``: the number NB201 reports).
* ``nasbench201/cifar100`` and ``nasbench201/imagenet16-120``: ``val`` and ``test`` are the two
  halves of the original test set (``x-valid``, ``x-test``) of one trained model.

The data are a compact Parquet table of our own (one row per cell, in NB201 index order), read
from ``<data_dir>/nasbench201/nasrepro-nb201.parquet`` or, failing that, built once from the
shared CSVs in ``<data_dir>/nasbench201/`` into ``cache_dir("nasbench201")``. Its Parquet
metadata records the format version and its provenance (source files, sha256, hp=200).

Which CSV column feeds which field (``convert_from_csvs``):

* ``cifar10_val``  <- ``nasgraph_nb201_cifar10_hp200.csv`` "validation accuracy" (that file's
  ``cifar10`` is NB201's ``cifar10-valid``: its "test accuracy" is *not* the full-train test).
* ``cifar10_test`` <- ``nats_tss_hp200_test_acc.csv`` "CIFAR10TestAccuracy200Epochs".
* ``cifar100_*``, ``imagenet16_120_*`` <- the ``nasgraph_nb201_<dataset>_hp200.csv``
  "validation accuracy" / "test accuracy" of the same file, so val and test come from the same
  trials. The NATS csv's CIFAR-100 / ImageNet16-120 test columns equal these on 84% of the cells
  and differ by up to 2.9 / 4.8 points on the rest (NATS-Bench re-released the results with a
  different set of seed runs for some cells); both give the same best test accuracies (73.51 on
  CIFAR-100, 47.31 on ImageNet16-120), so we keep the pair that belongs together.

Isomorphic cells: the space's ``canonical`` maps equivalent cells to one representative, and the
`TableEvaluator` looks up that representative, so a search sees one (the representative's) training
run per equivalence class. ``NB201Table.lookup`` itself answers any raw cell from its own row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasrepro import __version__
from nasrepro.atomic import atomic_write
from nasrepro.errors import DataError, UsageError
from nasrepro.harness.space import Arch
from nasrepro.harness.table import Table, TableEntry, TableTask
from nasrepro.harness.task import DataStatus, Metric
from nasrepro.paths import cache_dir
from nasrepro.paths import data_dir as resolve_data_dir
from nasrepro.spaces.nasbench201 import SPACE_SIZE, NB201Arch, all_arch_strings
from nasrepro.tasks import TASKS
from nasrepro.tasks.datafiles import ExpectedFile, require, sha256, status

FORMAT = "nasrepro-nb201"
FORMAT_VERSION = 1
META_KEY = b"nasrepro"
FOLDER = "nasbench201"
COMPACT_NAME = "nasrepro-nb201.parquet"
CONVERT_HINT = (
    f"Convert the official benchmark with `nasrepro data convert-nb201 --source "
    f"NATS-tss-v1_0-3ffb9-simple --out <data_dir>/{FOLDER}/{COMPACT_NAME}` (needs "
    f"`pip install nats_bench`), or place the NB201 CSVs there"
)

#: The shared CSV distribution (see /work/shared/datasets/README.md), pinned by hash.
CSV_FILES: tuple[ExpectedFile, ...] = (
    ExpectedFile(
        "nasgraph_nb201_cifar10_hp200.csv", "c82e70b5ffb0dba0f09d88ecc8df5a6d3ce8da8a99ad223285104f4537314033"
    ),
    ExpectedFile(
        "nasgraph_nb201_cifar100_hp200.csv",
        "87a42005d7005fdb5e4a938ed83dd306d907523f23e70af907dfd276dd5fe35d",
    ),
    ExpectedFile(
        "nasgraph_nb201_ImageNet16-120_hp200.csv",
        "f5225573584977b283f473b0ded7fe51ae599a67063b3bd02b18de36b29fcd6b",
    ),
    ExpectedFile(
        "nats_tss_hp200_test_acc.csv", "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e"
    ),
)
NATS_CSV = "nats_tss_hp200_test_acc.csv"


@dataclass(frozen=True)
class NB201Dataset:
    """One NB201 dataset: the task's shape and which compact columns hold its val/test."""

    key: str  # task suffix
    column: str  # compact-table column prefix
    num_classes: int
    input_size: tuple[int, int, int]
    val_source: str  # (official dataset name, split) behind `val`
    test_source: str


DATASETS: dict[str, NB201Dataset] = {
    d.key: d
    for d in (
        NB201Dataset(
            "cifar10",
            "cifar10",
            10,
            (3, 32, 32),
            "cifar10-valid x-valid (trained on 25k train images)",
            "cifar10 ori-test (trained on all 50k train images)",
        ),
        NB201Dataset("cifar100", "cifar100", 100, (3, 32, 32), "cifar100 x-valid", "cifar100 x-test"),
        NB201Dataset(
            "imagenet16-120",
            "imagenet16_120",
            120,
            (3, 16, 16),
            "ImageNet16-120 x-valid",
            "ImageNet16-120 x-test",
        ),
    )
}

#: compact column -> (CSV file, CSV column)
CSV_SOURCES: dict[str, tuple[str, str]] = {
    "cifar10_val": ("nasgraph_nb201_cifar10_hp200.csv", "validation accuracy"),
    "cifar10_test": (NATS_CSV, "CIFAR10TestAccuracy200Epochs"),
    "cifar100_val": ("nasgraph_nb201_cifar100_hp200.csv", "validation accuracy"),
    "cifar100_test": ("nasgraph_nb201_cifar100_hp200.csv", "test accuracy"),
    "imagenet16_120_val": ("nasgraph_nb201_ImageNet16-120_hp200.csv", "validation accuracy"),
    "imagenet16_120_test": ("nasgraph_nb201_ImageNet16-120_hp200.csv", "test accuracy"),
}
ACCURACY_COLUMNS = tuple(CSV_SOURCES)

#: compact column -> (official dataset name, get_more_info key)
OFFICIAL_SOURCES: dict[str, tuple[str, str]] = {
    "cifar10_val": ("cifar10-valid", "valid-accuracy"),
    "cifar10_test": ("cifar10", "test-accuracy"),
    "cifar100_val": ("cifar100", "valid-accuracy"),
    "cifar100_test": ("cifar100", "test-accuracy"),
    "imagenet16_120_val": ("ImageNet16-120", "valid-accuracy"),
    "imagenet16_120_test": ("ImageNet16-120", "test-accuracy"),
    # the training run whose validation accuracy a search sees
    "cifar10_train_seconds": ("cifar10-valid", "train-all-time"),
    "cifar100_train_seconds": ("cifar100", "train-all-time"),
    "imagenet16_120_train_seconds": ("ImageNet16-120", "train-all-time"),
}

CSV_COST_MODEL = (
    "no recorded training time in the shared CSVs: each query's charged cost is unknown (compare "
    "by unique queries); look-up wall time is never charged"
)
OFFICIAL_COST_MODEL = (
    "NB201's recorded 200-epoch training time (train-all-time, mean over seeds) of the "
    "run behind the validation accuracy; look-up wall time is never charged"
)


# --- the compact table ------------------------------------------------------------------------


class NB201Data:
    """All columns of a compact table, validated, with an arch-string -> row dict for fast look-ups."""

    def __init__(
        self, path: Path, archs: list[str], columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> None:
        self.path, self.archs, self.columns, self.metadata = path, archs, dict(columns), dict(metadata)
        self.row = {arch: i for i, arch in enumerate(archs)}


def _fail(path: Path, what: str) -> DataError:
    return DataError(f"NAS-Bench-201 table {path} is corrupt: {what}. Rebuild it: {CONVERT_HINT}")


def _validate(path: Path, archs: list[str], columns: Mapping[str, np.ndarray]) -> None:
    """The checks every compact table (written or read) must pass."""
    if len(archs) != SPACE_SIZE:
        raise _fail(path, f"{len(archs)} rows, expected {SPACE_SIZE}")
    unique = set(archs)
    if len(unique) != SPACE_SIZE:
        raise _fail(path, "duplicate architecture strings")
    if unique != all_arch_strings():
        bad = next(arch for arch in archs if arch not in all_arch_strings())
        raise _fail(path, f"{bad!r} is not a NAS-Bench-201 cell string")
    for name, values in columns.items():
        if values.shape != (SPACE_SIZE,) or not np.all(np.isfinite(values)):
            raise _fail(path, f"column {name!r} has missing or non-finite values")
        if name.endswith(("_val", "_test")) and (values.min() < 0 or values.max() > 100):
            raise _fail(path, f"column {name!r} is not an accuracy in percent")
        if name.endswith("_train_seconds") and values.min() < 0:
            raise _fail(path, f"column {name!r} has negative times")


def write_compact(
    out_path: Path, archs: list[str], columns: Mapping[str, np.ndarray], provenance: Mapping[str, Any]
) -> Path:
    """Validate and write a compact table atomically (temporary file + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out_path)
    _validate(out_path, archs, columns)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hp": "200",
        "is_random": False,
        "rows": len(archs),
        "order": "NB201 index",
        "created_by": f"nasrepro {__version__}",
        "semantics": {d.column: {"val": d.val_source, "test": d.test_source} for d in DATASETS.values()},
        **provenance,
    }
    table = pa.table(
        {
            "index": pa.array(np.arange(len(archs), dtype=np.int32)),
            "arch": pa.array(archs, pa.string()),
            **{name: pa.array(np.asarray(values, dtype=np.float64)) for name, values in columns.items()},
        },
        metadata={META_KEY: json.dumps(meta).encode()},
    )
    atomic_write(out_path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return out_path


def read_compact(path: Path) -> NB201Data:
    """Load and check a compact table: format, version, hp, columns, rows in NB201 index order."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"NAS-Bench-201 table {path} does not exist. {CONVERT_HINT}")
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise _fail(path, f"not a readable Parquet file ({type(error).__name__})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, f"no {FORMAT} metadata")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"NAS-Bench-201 table {path} has format version {meta.get('format_version')!r}, "
            f"this nasrepro reads version {FORMAT_VERSION}; rebuild it. {CONVERT_HINT}"
        )
    if meta.get("hp") != "200":
        raise _fail(path, f"hp={meta.get('hp')!r}, only 200-epoch results are accepted")
    missing = [c for c in ("index", "arch", *ACCURACY_COLUMNS) if c not in table.column_names]
    if missing:
        raise _fail(path, f"missing columns {missing}")
    index = table.column("index").to_numpy()
    if not np.array_equal(index, np.arange(len(index))):
        raise _fail(path, "rows are not in NB201 index order 0..15624")
    archs = table.column("arch").to_pylist()
    columns = {
        name: table.column(name).to_numpy().astype(np.float64)
        for name in table.column_names
        if name not in ("index", "arch")
    }
    _validate(path, archs, columns)
    return NB201Data(path, archs, columns, meta)


# --- converters -------------------------------------------------------------------------------


def convert_from_csvs(folder: Path, out_path: Path, *, verify_hash: bool = True) -> Path:
    """Build the compact table from the shared NB201 CSVs in `folder` (see `CSV_SOURCES`)."""
    import pandas as pd

    folder = Path(folder)
    require("NAS-Bench-201", folder, CSV_FILES, CONVERT_HINT, verify_hash=verify_hash)
    frames = {}
    for f in CSV_FILES:
        try:
            frames[f.relpath] = pd.read_csv(folder / f.relpath)
        except Exception as error:
            raise DataError(
                f"NAS-Bench-201 CSV {folder / f.relpath} is unreadable "
                f"({type(error).__name__}). {CONVERT_HINT}"
            ) from None
    reference: list[str] | None = None
    for name, frame in frames.items():
        arch_col = "ArchitectureString" if name == NATS_CSV else "arch str"
        needed = {arch_col, *(col for src, col in CSV_SOURCES.values() if src == name)}
        if name != NATS_CSV:
            needed |= {"file id", "cfg name", "C", "N"}
        if missing := sorted(needed - set(frame.columns)):
            raise DataError(f"NAS-Bench-201 CSV {folder / name} lacks columns {missing}. {CONVERT_HINT}")
        if name != NATS_CSV:
            if not np.array_equal(frame["file id"].to_numpy(), np.arange(len(frame))):
                raise DataError(
                    f"NAS-Bench-201 CSV {folder / name} is not in NB201 index order. {CONVERT_HINT}"
                )
            # NB201's evaluation network (infer.tiny, C=16, N=5) is what the accuracies describe
            if set(frame["cfg name"]) != {"infer.tiny"} or set(frame["C"]) != {16} or set(frame["N"]) != {5}:
                raise DataError(
                    f"NAS-Bench-201 CSV {folder / name} is not for NB201's C=16, N=5 "
                    f"evaluation network. {CONVERT_HINT}"
                )
        archs = frame[arch_col].astype(str).tolist()
        if reference is None:
            reference = archs
        elif archs != reference:
            raise DataError(
                f"NAS-Bench-201 CSV {folder / name} lists the cells in a different order "
                f"from {CSV_FILES[0].relpath}. {CONVERT_HINT}"
            )
    assert reference is not None
    columns = {col: frames[src][name].to_numpy(dtype=np.float64) for col, (src, name) in CSV_SOURCES.items()}
    provenance = {
        "source_kind": "csv",
        "sources": [{"file": f.relpath, "sha256": sha256(folder / f.relpath)} for f in CSV_FILES],
        "columns": {col: f"{src}: {name}" for col, (src, name) in CSV_SOURCES.items()},
    }
    return write_compact(out_path, reference, columns, provenance)


def _open_official(path: Path) -> tuple[Any, str]:
    """An NB201 API object over `path`: NATS-Bench's `tss` API, else the older `nas_201_api`."""
    try:
        from nats_bench import create
    except ImportError:
        create = None
    if create is not None:
        return create(str(path), "tss", fast_mode=True, verbose=False), "nats_bench"
    try:
        from nas_201_api import NASBench201API
    except ImportError:
        raise DataError(
            f"reading the official NAS-Bench-201 file {path} needs its API: "
            f"`pip install nats_bench` (or the older `nas-bench-201`)"
        ) from None
    return NASBench201API(str(path), verbose=False), "nas_201_api"


def convert_from_official(path: Path, out_path: Path, *, api: Any = None) -> Path:
    """Build the compact table (with training times) from the official NATS-Bench `tss` / NB201 file.

    Every value comes from ``api.get_more_info(index, dataset, hp='200', is_random=False)``: the
    200-epoch results averaged over seeds, never the API's 12-epoch, random-trial defaults.
    `api` lets a caller pass an already-opened API object instead of opening `path`.
    """
    path = Path(path)
    if api is None:
        if not path.exists():
            raise DataError(
                f"official NAS-Bench-201 file {path} does not exist; download "
                f"NATS-tss-v1_0-3ffb9-simple (NATS-Bench README) or NAS-Bench-201-v1_1-096897.pth"
            )
        api, kind = _open_official(path)
    else:
        kind = type(api).__module__.split(".")[0]
    n = len(api)
    if n != SPACE_SIZE:
        raise DataError(f"official NAS-Bench-201 file {path} lists {n} cells, expected {SPACE_SIZE}")
    archs = [str(api.arch(i)) for i in range(n)]
    columns = {name: np.empty(n) for name in OFFICIAL_SOURCES}
    datasets = sorted({dataset for dataset, _ in OFFICIAL_SOURCES.values()})
    for i in range(n):
        infos = {d: api.get_more_info(i, d, hp="200", is_random=False) for d in datasets}
        for name, (dataset, key) in OFFICIAL_SOURCES.items():
            value = infos[dataset].get(key)
            if value is None:
                raise DataError(
                    f"official NAS-Bench-201 file {path}: cell {i} has no {key!r} on {dataset} at hp=200"
                )
            columns[name][i] = float(value)
    source: dict[str, Any] = {"file": path.name}
    if path.is_file():
        source["sha256"] = sha256(path)
    provenance = {
        "source_kind": kind,
        "sources": [source],
        "columns": {
            name: f"get_more_info(index, {d!r}, hp='200', is_random=False)[{k!r}]"
            for name, (d, k) in OFFICIAL_SOURCES.items()
        },
    }
    return write_compact(out_path, archs, columns, provenance)


# --- locating and caching ---------------------------------------------------------------------


def locate(data_dir: Path) -> Path:
    """The compact table for `data_dir`: its own file, else one built from its CSVs into the cache."""
    folder = Path(data_dir) / FOLDER
    own = folder / COMPACT_NAME
    if own.is_file():
        return own
    if not any((folder / f.relpath).exists() for f in CSV_FILES):
        raise DataError(
            f"NAS-Bench-201 data not found in {folder}: expected {COMPACT_NAME} or the CSVs "
            f"{', '.join(f.relpath for f in CSV_FILES)}. {CONVERT_HINT}"
        )
    require("NAS-Bench-201", folder, CSV_FILES, CONVERT_HINT)
    cached = cache_dir(FOLDER) / COMPACT_NAME
    wanted = [{"file": f.relpath, "sha256": f.sha256} for f in CSV_FILES]
    if cached.is_file() and _metadata(cached).get("sources") == wanted:
        return cached  # fully validated when read
    return convert_from_csvs(folder, cached)  # missing, stale or damaged: rebuilt


def _metadata(path: Path) -> dict[str, Any]:
    """The nasrepro metadata of a Parquet file ({} if unreadable), without reading its data."""
    import pyarrow.parquet as pq

    try:
        meta = json.loads((pq.read_schema(path).metadata or {})[META_KEY])
    except Exception:  # unreadable file, no or broken metadata: treat as absent
        return {}
    return meta if isinstance(meta, dict) else {}


_LOADED: dict[tuple[str, int, int], NB201Data] = {}


def load(data_dir: Path | None = None) -> NB201Data:
    """The compact table for `data_dir` (default: `NASREPRO_DATA`), read once per process."""
    path = locate(resolve_data_dir(data_dir))
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        _LOADED[key] = read_compact(path)
    return _LOADED[key]


def check_data(data_dir: Path) -> list[DataStatus]:
    """One `nasrepro data check` row for the NB201 data (shared by the three tasks)."""
    folder = Path(data_dir) / FOLDER
    own = folder / COMPACT_NAME
    if own.is_file():
        try:
            data = read_compact(own)
        except DataError as error:
            return [DataStatus("nasbench201", "corrupt", str(own), str(error))]
        return [
            DataStatus(
                "nasbench201",
                "found",
                str(own),
                f"compact table v{FORMAT_VERSION}, {len(data.archs)} cells, hp=200, "
                f"from {data.metadata.get('source_kind')}",
            )
        ]
    row = status("nasbench201", folder, CSV_FILES)
    if row.status == "missing":
        return [
            DataStatus(
                "nasbench201",
                "missing",
                str(folder),
                f"neither {COMPACT_NAME} nor the NB201 CSVs; see `nasrepro data convert-nb201`",
            )
        ]
    return [row]


# --- table and tasks --------------------------------------------------------------------------


class NB201Table(Table):
    """One dataset's columns of the compact table; look-ups by architecture string in O(1)."""

    def __init__(self, data: NB201Data, dataset: NB201Dataset) -> None:
        self.data, self.dataset = data, dataset
        self.val = data.columns[f"{dataset.column}_val"]
        self.test = data.columns[f"{dataset.column}_test"]
        self.train_seconds = data.columns.get(f"{dataset.column}_train_seconds")
        self.cost_model = CSV_COST_MODEL if self.train_seconds is None else OFFICIAL_COST_MODEL
        self.records_training_time = self.train_seconds is not None

    def index(self, arch: Arch) -> int:
        """The NB201 index of `arch` (an `NB201Arch` or its string)."""
        key = str(arch)
        row = self.data.row.get(key)
        if row is None:
            NB201Arch.parse(key)  # a malformed string raises its own, more precise error
            raise UsageError(f"NAS-Bench-201 cell {key!r} is not in {self.data.path}")
        return row

    def _entry(self, row: int) -> TableEntry:
        seconds = None if self.train_seconds is None else float(self.train_seconds[row])
        return TableEntry(
            val=float(self.val[row]),
            test=float(self.test[row]),
            train_seconds=seconds,
            metrics={"nb201_index": float(row)},
        )

    def lookup(self, arch: Arch) -> TableEntry:
        return self._entry(self.index(arch))

    def __len__(self) -> int:
        return len(self.data.archs)

    def items(self) -> Iterator[tuple[Arch, TableEntry]]:
        """Every cell (all 15,625 raw encodings, each with its own row) in NB201 index order."""
        for row, arch in enumerate(self.data.archs):
            yield NB201Arch.parse(arch), self._entry(row)

    def values(self, split: str) -> np.ndarray:
        """The whole `val` or `test` column (NB201 index order), e.g. for oracle/regret plots."""
        if split not in ("val", "test"):
            raise UsageError(f"split must be 'val' or 'test', got {split!r}")
        return self.val if split == "val" else self.test


class NB201Task(TableTask):
    """A NAS-Bench-201 dataset as a table task; subclasses fix `dataset`."""

    dataset: NB201Dataset
    metric = Metric("accuracy", "max")
    default_space = "nasbench201"

    def __init__(self, data_dir: Path | None = None) -> None:
        self._data_dir = data_dir
        self._table: NB201Table | None = None

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.dataset.input_size

    def table(self) -> NB201Table:
        """The table, loaded on first use from `data_dir` (default: `NASREPRO_DATA`)."""
        if self._table is None:
            self._table = NB201Table(load(self._data_dir), self.dataset)
        return self._table

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        import torch

        return (torch.zeros(batch_size, *self.input_size),)

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        return check_data(data_dir)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            dataset=self.dataset.key,
            val=self.dataset.val_source,
            test=self.dataset.test_source,
            num_classes=self.num_classes,
            input_size=list(self.input_size),
        )
        return out


class NB201Cifar10(NB201Task):
    """val = cifar10-valid x-valid (trained on 25k images), test = CIFAR-10 test (trained on 50k)."""

    name = "nasbench201/cifar10"
    dataset = DATASETS["cifar10"]


class NB201Cifar100(NB201Task):
    """val / test = the two halves (x-valid / x-test) of CIFAR-100's test set."""

    name = "nasbench201/cifar100"
    dataset = DATASETS["cifar100"]


class NB201ImageNet16(NB201Task):
    """val / test = the two halves (x-valid / x-test) of ImageNet16-120's test set; 16x16 inputs."""

    name = "nasbench201/imagenet16-120"
    dataset = DATASETS["imagenet16-120"]


for _cls in (NB201Cifar10, NB201Cifar100, NB201ImageNet16):
    TASKS.add(_cls.name, _cls)
