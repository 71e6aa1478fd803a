"""NAS-Bench-201 table tasks: golden values, split semantics, the compact table and its errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nasrepro.errors import DataError, UsageError
from nasrepro.harness.table import TableTask
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.spaces.nasbench201 import NB201Arch, NB201Space, canonical_arch
from nasrepro.tasks import TASKS
from nasrepro.tasks import nasbench201 as nb

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NAMES = ["nasbench201/cifar10", "nasbench201/cifar100", "nasbench201/imagenet16-120"]


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = os.environ.get("NASREPRO_DATA")
    if not root:
        pytest.skip("NASREPRO_DATA is not set")
    return Path(root)


@pytest.fixture(scope="module")
def csv_folder(data_root: Path) -> Path:
    return data_root / "nasbench201"


@pytest.fixture(scope="module")
def compact(csv_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact table converted from the shared CSVs into a fresh folder."""
    return nb.convert_from_csvs(csv_folder, tmp_path_factory.mktemp("nb201") / nb.COMPACT_NAME)


@pytest.fixture(scope="module")
def tasks(data_root: Path) -> dict[str, nb.NB201Task]:
    return {name: TASKS.get(name)(data_dir=data_root) for name in NAMES}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_with_metadata(source: Path, target: Path, **changes: object) -> Path:
    table = pq.read_table(source)
    meta = json.loads(table.schema.metadata[nb.META_KEY])
    meta.update(changes)
    pq.write_table(table.replace_schema_metadata({nb.META_KEY: json.dumps(meta).encode()}), target)
    return target


# --- registration and shape -------------------------------------------------------------------


def test_tasks_are_registered_table_tasks() -> None:
    for name, classes in zip(NAMES, (10, 100, 120), strict=True):
        task = TASKS.get(name)()
        assert isinstance(task, TableTask) and task.kind == "table" and task.name == name
        assert task.default_space == "nasbench201" and task.num_classes == classes
        assert task.metric.name == "accuracy" and task.metric.direction == "max"
        assert task.preset("smoke").search_budget > 0


def test_example_input_matches_the_network() -> None:
    space = NB201Space()
    for name, side, classes in zip(NAMES, (32, 32, 16), (10, 100, 120), strict=True):
        task = TASKS.get(name)()
        (x,) = task.example_input(batch_size=2)
        assert tuple(x.shape) == (2, 3, side, side)
        assert space.to_model(EXAMPLE, task).classifier.out_features == classes
    task = TASKS.get("nasbench201/imagenet16-120")()  # forward passes are covered in the space's tests
    assert space.to_model(EXAMPLE, task)(*task.example_input(batch_size=2)).shape == (2, 120)


# --- golden values and semantics --------------------------------------------------------------


def test_golden_values(tasks: dict[str, nb.NB201Task]) -> None:
    """NB201 paper, "optimal" row: CIFAR-10 valid 91.61 / test 94.37, CIFAR-100 73.49 / 73.51,
    ImageNet16-120 46.73 / 47.31 (best over all cells of each column)."""
    expected = {
        "nasbench201/cifar10": (91.61, 94.37),
        "nasbench201/cifar100": (73.49, 73.51),
        "nasbench201/imagenet16-120": (46.73, 47.31),
    }
    for name, (val, test) in expected.items():
        table = tasks[name].table()
        assert len(table) == 15625
        assert round(float(table.values("val").max()), 2) == val
        assert round(float(table.values("test").max()), 2) == test


def test_rows_follow_nb201_index_order_and_split_semantics(
    tasks: dict[str, nb.NB201Task], csv_folder: Path
) -> None:
    c10 = read_csv(csv_folder / "nasgraph_nb201_cifar10_hp200.csv")
    nats = read_csv(csv_folder / "nats_tss_hp200_test_acc.csv")
    im = read_csv(csv_folder / "nasgraph_nb201_ImageNet16-120_hp200.csv")
    table = tasks["nasbench201/cifar10"].table()
    assert table.data.archs == [row["arch str"] for row in c10]
    assert table.data.archs[1] == EXAMPLE
    for i in (0, 1, 777, 15624):
        entry = table.lookup(c10[i]["arch str"])
        assert entry.metrics["nb201_index"] == i
        assert entry.val == pytest.approx(float(c10[i]["validation accuracy"]))  # cifar10-valid x-valid
        assert entry.test == pytest.approx(float(nats[i]["CIFAR10TestAccuracy200Epochs"]))  # full train
        assert entry.test != pytest.approx(float(c10[i]["test accuracy"]))  # not cifar10-valid's test
        assert entry.train_seconds is None
        imagenet = tasks["nasbench201/imagenet16-120"].table().lookup(NB201Arch.parse(im[i]["arch str"]))
        assert imagenet.val == pytest.approx(float(im[i]["validation accuracy"]))
        assert imagenet.test == pytest.approx(float(im[i]["test accuracy"]))
    assert table.cost_model == nb.CSV_COST_MODEL


def test_items_and_lookups(tasks: dict[str, nb.NB201Task]) -> None:
    table = tasks["nasbench201/cifar100"].table()
    items = list(table.items())
    assert len(items) == 15625 and len({str(a) for a, _ in items}) == 15625
    arch, entry = items[1]
    assert str(arch) == EXAMPLE and table.lookup(arch) == entry == table.lookup(EXAMPLE)
    with pytest.raises(UsageError, match="conv~0"):
        table.lookup("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(UsageError):
        table.values("train")


def test_table_evaluator_scores_the_class_representative(tasks: dict[str, nb.NB201Task]) -> None:
    task = tasks["nasbench201/cifar10"]
    table = task.table()
    evaluator = TableEvaluator(task, NB201Space(), budget=5)
    dead = NB201Arch.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|none~2|")
    rep = canonical_arch(dead)
    assert rep != dead
    first = evaluator.query(dead)
    assert first.arch == str(rep) and first.val == table.lookup(rep).val
    evaluator.query(rep)  # the same class: free
    assert evaluator.n_queries == 1 and evaluator.duplicates == 1
    assert evaluator.cost_model == nb.CSV_COST_MODEL


# --- the compact table ------------------------------------------------------------------------


def test_parquet_round_trip(compact: Path, tasks: dict[str, nb.NB201Task], csv_folder: Path) -> None:
    data = nb.read_compact(compact)
    assert compact.stat().st_size < 3_000_000
    reference = tasks["nasbench201/cifar10"].table().data
    assert data.archs == reference.archs
    for name in nb.ACCURACY_COLUMNS:
        np.testing.assert_array_equal(data.columns[name], reference.columns[name])
    meta = data.metadata
    assert meta["format_version"] == nb.FORMAT_VERSION and meta["hp"] == "200" and meta["is_random"] is False
    sums = {f.relpath: f.sha256 for f in nb.CSV_FILES}
    assert {s["file"]: s["sha256"] for s in meta["sources"]} == sums
    assert set(sums) == {
        line.split()[1].lstrip("./")
        for line in (csv_folder / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    }
    assert all("_hp200" in s["file"] for s in meta["sources"] if s["file"] != nb.NATS_CSV)  # 200 epochs only
    assert all(column in meta["columns"] for column in nb.ACCURACY_COLUMNS)


def test_compact_file_in_data_dir_takes_precedence(compact: Path, tmp_path: Path) -> None:
    (tmp_path / "nasbench201").mkdir()
    shutil.copy(compact, tmp_path / "nasbench201" / nb.COMPACT_NAME)
    task = nb.NB201ImageNet16(data_dir=tmp_path)
    assert task.table().data.path == tmp_path / "nasbench201" / nb.COMPACT_NAME
    assert round(float(task.table().test.max()), 2) == 47.31
    assert nb.check_data(tmp_path)[0].status == "found"


def test_cache_is_built_atomically_and_reused(
    csv_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NASREPRO_CACHE", str(tmp_path / "cache"))
    built = nb.locate(csv_folder.parent)
    assert built == tmp_path / "cache" / "nasbench201" / nb.COMPACT_NAME
    assert [p.name for p in built.parent.iterdir()] == [nb.COMPACT_NAME]  # no temporary files left
    stamp = built.stat().st_mtime_ns
    assert nb.locate(csv_folder.parent) == built and built.stat().st_mtime_ns == stamp
    built.write_bytes(b"damaged")  # a damaged cache is rebuilt, not reported
    assert nb.read_compact(nb.locate(csv_folder.parent)).metadata["rows"] == 15625


# --- errors -----------------------------------------------------------------------------------


def test_missing_data_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        nb.NB201Cifar10(data_dir=tmp_path).table()
    message = str(info.value)
    assert str(tmp_path / "nasbench201") in message and nb.COMPACT_NAME in message
    assert "nats_tss_hp200_test_acc.csv" in message and "nasrepro data convert-nb201" in message
    assert "\n" not in message
    assert nb.check_data(tmp_path)[0].status == "missing"


def test_partial_or_altered_csvs_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "nasbench201"
    folder.mkdir()
    (folder / "nats_tss_hp200_test_acc.csv").write_text("CIFAR10TestAccuracy200Epochs\n1.0\n")
    with pytest.raises(DataError, match="missing nasgraph_nb201_cifar10_hp200.csv") as info:
        nb.NB201Cifar10(data_dir=tmp_path).table()
    assert "sha256 mismatch" in str(info.value)
    assert nb.check_data(tmp_path)[0].status == "corrupt"


def test_csvs_in_a_different_order_are_rejected(csv_folder: Path, tmp_path: Path) -> None:
    for f in nb.CSV_FILES:
        shutil.copy(csv_folder / f.relpath, tmp_path / f.relpath)
    lines = (tmp_path / nb.NATS_CSV).read_text().splitlines(keepends=True)
    (tmp_path / nb.NATS_CSV).write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))
    with pytest.raises(DataError, match="sha256 mismatch"):
        nb.convert_from_csvs(tmp_path, tmp_path / "out.parquet")
    with pytest.raises(DataError, match="different order"):
        nb.convert_from_csvs(tmp_path, tmp_path / "out.parquet", verify_hash=False)
    assert not (tmp_path / "out.parquet").exists()


def test_damaged_compact_tables_are_rejected(compact: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    cases = {
        garbage: "not a readable Parquet file",
        write_with_metadata(compact, tmp_path / "v99.parquet", format_version=99): "format version 99",
        write_with_metadata(compact, tmp_path / "hp12.parquet", hp="12"): "hp='12'",
        write_with_metadata(
            compact, tmp_path / "other.parquet", format="something-else"
        ): "no nasrepro-nb201",
    }
    table = pq.read_table(compact)
    pq.write_table(table.drop_columns(["cifar100_test"]), tmp_path / "nocol.parquet")
    cases[tmp_path / "nocol.parquet"] = "missing columns ['cifar100_test']"
    pq.write_table(table.slice(0, 100), tmp_path / "short.parquet")
    cases[tmp_path / "short.parquet"] = "100 rows"
    pq.write_table(table.take(np.r_[1, 0, 2:15625]), tmp_path / "shuffled.parquet")
    cases[tmp_path / "shuffled.parquet"] = "NB201 index order"
    for path, fragment in cases.items():
        with pytest.raises(DataError) as info:
            nb.read_compact(path)
        assert fragment in str(info.value) and str(path) in str(info.value)
    # the same file placed as a data folder's table: one corrupt row from `data check`, an error on use
    (tmp_path / "nasbench201").mkdir()
    shutil.copy(tmp_path / "v99.parquet", tmp_path / "nasbench201" / nb.COMPACT_NAME)
    assert nb.check_data(tmp_path)[0].status == "corrupt"
    with pytest.raises(DataError, match="convert-nb201"):
        nb.NB201Cifar100(data_dir=tmp_path).table()


# --- the official-file converter (no official file here: a fake API object) -------------------


class FakeNB201API:
    """Mimics the NATS-Bench / NB201 API calls the converter makes: len, arch, get_more_info."""

    def __init__(self, archs: list[str], drop: str | None = None) -> None:
        self.archs, self.drop, self.calls = archs, drop, 0

    def __len__(self) -> int:
        return len(self.archs)

    def arch(self, index: int) -> str:
        return self.archs[index]

    def get_more_info(self, index: int, dataset: str, iepoch=None, hp: str = "12", is_random: bool = True):
        assert hp == "200" and is_random is False, "the converter must ask for 200-epoch seed means"
        self.calls += 1
        base = {"cifar10-valid": 80.0, "cifar10": 90.0, "cifar100": 60.0, "ImageNet16-120": 30.0}[dataset]
        info = {
            "train-accuracy": 99.0,
            "train-all-time": 1000.0 + index,
            "valid-accuracy": base + index / 1e4,
            "test-accuracy": base + 1 + index / 1e4,
        }
        if self.drop:
            info.pop(self.drop)
        return info


def test_convert_from_official_keeps_training_time(tmp_path: Path) -> None:
    archs = sorted(str(a) for a in NB201Space().enumerate())[::-1]
    api = FakeNB201API(archs)
    out = nb.convert_from_official(tmp_path / "NATS-tss-v1_0-3ffb9-simple", tmp_path / "t.parquet", api=api)
    assert api.calls == 4 * 15625
    data = nb.read_compact(out)
    assert data.archs == archs and data.metadata["sources"] == [{"file": "NATS-tss-v1_0-3ffb9-simple"}]
    table = nb.NB201Table(data, nb.DATASETS["cifar10"])
    assert table.cost_model == nb.OFFICIAL_COST_MODEL
    entry = table.lookup(archs[5])
    assert entry.val == pytest.approx(80.0005) and entry.test == pytest.approx(
        91.0005
    )  # cifar10-valid / cifar10
    assert entry.train_seconds == 1005.0
    c100 = nb.NB201Table(data, nb.DATASETS["cifar100"]).lookup(archs[7])
    assert (c100.val, c100.test) == (pytest.approx(60.0007), pytest.approx(61.0007))


def test_convert_from_official_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archs = [str(a) for a in NB201Space().enumerate()]
    with pytest.raises(DataError, match="no 'test-accuracy'"):
        nb.convert_from_official(
            tmp_path / "x", tmp_path / "t.parquet", api=FakeNB201API(archs, "test-accuracy")
        )
    with pytest.raises(DataError, match="lists 10 cells"):
        nb.convert_from_official(tmp_path / "x", tmp_path / "t.parquet", api=FakeNB201API(archs[:10]))
    with pytest.raises(DataError, match="does not exist"):
        nb.convert_from_official(tmp_path / "missing.pth", tmp_path / "t.parquet")
    official = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    official.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # neither API installed
    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    with pytest.raises(DataError, match="pip install nats_bench"):
        nb.convert_from_official(official, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()
