import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasrepro.errors import DataError
from nasrepro.tracking import records
from nasrepro.tracking.record import ABSENT, InvalidRecord, Metrics, Record, SearchCost, validate


def minimal_record(**changes):
    record = {
        "schema_version": 1,
        "kind": "search",
        "method": "random",
        "tag": "",
        "task": "toy",
        "space": {"name": "toy"},
        "seed": 0,
        "preset": "smoke",
        "scale": "smoke test (not a result)",
        "budget": 1,
        "reward": "val",
        "direction": "max",
        "metric": "accuracy",
        "best_arch": "000011",
        "metrics": {"val": 60.0, "test": 59.0},
        "search_cost": {"wall_seconds": 0.1, "device": "cpu", "device_hours": 0.0, "queries": 1},
        "history": [{"index": 0, "arch": "000011", "score": 60.0, "cumulative_cost": 1.0, "status": "ok"}],
        "duplicates": 0,
        "config": {},
        "versions": records.versions(),
        "machine": {},
        "git_commit": "abc",
        "created": records.now(),
    }
    record.update(changes)
    return record


def test_valid_record_round_trips(tmp_path):
    path = records.write_record(minimal_record(), tmp_path / "r.json")
    assert records.read_record(path)["best_arch"] == "000011"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": -1}, "'seed'"),
        ({"preset": "gpu"}, "'preset'"),
        ({"kind": "other"}, "'kind'"),
        ({"metrics": {"val": 1.0}}, "'metrics.test' is missing"),
        (
            {"history": [{"index": 0, "arch": "x", "score": 1.0, "cumulative_cost": 0.0, "status": "maybe"}]},
            "'history[0].status'",
        ),
    ],
)
def test_schema_rejects_broken_records(tmp_path, change, field):
    with pytest.raises(InvalidRecord, match=re.escape(field)):
        records.write_record(minimal_record(**change), tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_nan_is_refused_not_written(tmp_path):
    with pytest.raises(ValueError):
        records.write_record(minimal_record(metrics={"val": float("nan"), "test": 1.0}), tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_record(tmp_path, monkeypatch):
    path = records.write_record(minimal_record(), tmp_path / "r.json")
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        records.write_record(minimal_record(seed=5), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_a_killed_writer_leaves_no_partial_record(tmp_path):
    """SIGKILL a process in the middle of writing a large record: the target holds the old
    record or the new one, never a prefix of either."""
    path = tmp_path / "r.json"
    old = records.dumps(minimal_record())
    path.write_text(old)
    code = (
        "import sys; from pathlib import Path; from nasrepro.atomic import atomic_write_text\n"
        "print('go', flush=True)\n"
        f"atomic_write_text(Path({str(path)!r}), 'x' * 400_000_000)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"go"
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 0 for p in tmp_path.glob(".r.json.*.tmp")):  # mid-write
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_text() == old
    assert [p for p in records.iter_records(tmp_path)] == []  # stray temp files are never read as records


def test_unreadable_record_is_one_clear_error(tmp_path):
    path = tmp_path / "runs" / "toy" / "random" / "bad.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 1, "kind": ')
    with pytest.raises(DataError, match="bad.json.*not JSON"):
        records.read_record(path)
    path.write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(DataError, match="does not match the record schema"):
        records.read_record(path)


def test_strip_volatile_keeps_what_must_be_reproducible():
    a = minimal_record()
    b = minimal_record(created="2000-01-01T00:00:00+00:00", git_commit="other")
    b["search_cost"]["wall_seconds"] = 99.0
    assert records.strip_volatile(a) == records.strip_volatile(b)
    b["best_arch"] = "111111"
    assert records.strip_volatile(a) != records.strip_volatile(b)


def test_record_paths_are_per_task_method_preset_budget_seed(tmp_path):
    path = records.record_path(tmp_path, "nasbench-graph/cora", "evolution", "cpu", 3, 100)
    assert path == tmp_path / "runs" / "nasbench-graph" / "cora" / "evolution" / "cpu-b100-s3.json"


def test_dumps_is_json_with_one_line_per_query():
    record = minimal_record()
    record["history"] = record["history"] * 3
    text = records.dumps(record)
    assert json.loads(text) == record
    assert sum(line.startswith('  {"arch"') for line in text.splitlines()) == 3
    assert json.loads(records.dumps(minimal_record(history=[])))["history"] == []


def test_records_are_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        path = records.write_record(minimal_record(), tmp_path / "r.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# --- the typed record -------------------------------------------------------------------------

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def typed_search(**changes):
    fields = dict(
        kind="search",
        method="evolution",
        tag="",
        task="toy",
        space={"name": "toy"},
        seed=3,
        preset="smoke",
        scale="smoke test (not a result)",
        budget=10,
        reward="val",
        direction="max",
        metric="accuracy",
        best_arch="000011",
        metrics=Metrics(val=60.0, test=59.0, extra={"params": 1234}),
        search_cost=SearchCost(
            wall_seconds=0.5,
            device="cpu:x",
            device_hours=0.5 / 3600,
            n_devices=1,
            queries=10,
            evaluation_seconds=1.0,
            cost_model="table",
            method_overhead_seconds=0.25,
        ),
        history=[
            {
                "index": i,
                "arch": f"00001{i}",
                "score": 50.0 + i,
                "val": 50.0 + i,
                "test": 49.0,
                "cost_seconds": 0.1,
                "cumulative_cost": 0.1 * (i + 1),
                "wall_seconds": 0.0,
                "status": "ok",
                "reason": "",
                "metrics": {},
            }
            for i in range(2)
        ],
        duplicates=4,
        method_extra={"population": ("000011", "000012")},
        config={"budget": 10},
        machine={"cpu_model": "x"},
        versions={"nasrepro": "0", "python": "3", "torch": "2"},
        git_commit="abc",
        created="2000-01-01T00:00:00+00:00",
    )
    fields.update(changes)
    return Record(**fields)


def typed_evaluate():
    return typed_search(
        kind="evaluate",
        method="gcn",
        budget=None,
        history=[],
        duplicates=None,
        method_extra=None,
        metrics=Metrics(val=80.0, test=None, extra={"train_seconds": 2.0}),
    )


@pytest.mark.parametrize("make", [typed_search, typed_evaluate], ids=["search", "evaluate"])
def test_typed_record_round_trips_and_validates(make):
    record = make()
    data = record.to_dict()
    validate(data)
    assert Record.from_dict(data) == record
    assert Record.from_dict(json.loads(records.dumps(data))) == record  # through the file format
    assert Record.from_dict(data).to_dict() == data


def test_evaluate_record_omits_search_only_fields():
    data = typed_evaluate().to_dict()
    assert "duplicates" not in data and "method_extra" not in data
    assert data["budget"] is None and data["metrics"]["test"] is None  # nullable fields stay, as null


def test_new_cost_fields_distinguish_absent_from_null():
    """A record older than `method_overhead_seconds`/`charged_cost` lacks the keys; a new one that did
    not measure them says null. Both validate and both round-trip as they were."""
    old = minimal_record()
    assert Record.from_dict(old).search_cost.method_overhead_seconds is ABSENT
    assert Record.from_dict(old).to_dict() == old
    unknown = typed_search(
        search_cost=SearchCost(
            wall_seconds=1.0,
            device="cpu",
            device_hours=0.0,
            queries=1,
            method_overhead_seconds=None,
            charged_cost=None,
        )
    )
    cost = unknown.to_dict()["search_cost"]
    assert cost["method_overhead_seconds"] is None and cost["charged_cost"] is None
    assert Record.from_dict(unknown.to_dict()) == unknown
    with pytest.raises(InvalidRecord, match="'search_cost.charged_cost'"):
        validate({**old, "search_cost": {**old["search_cost"], "charged_cost": -1.0}})


def test_method_extra_holds_json_values_only():
    record = typed_search(method_extra={"population": ("a", "b"), "path": Path("/x")})
    assert record.method_extra == {"population": ["a", "b"], "path": "/x"}


def test_to_dict_is_a_copy():
    record = typed_search()
    data = record.to_dict()
    data["history"][0]["score"] = -1.0
    data["config"]["budget"] = 0
    assert record.history[0]["score"] == 50.0 and record.config["budget"] == 10


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("seed"), "record field 'seed' is missing"),
        (lambda d: d.pop("duplicates"), "record field 'duplicates' is missing"),  # search records carry it
        (lambda d: d["search_cost"].pop("queries"), "record field 'search_cost.queries' is missing"),
        (lambda d: d.update(seed="3"), "record field 'seed' must be integer, got str"),
        (lambda d: d["search_cost"].update(queries="many"), "'search_cost.queries' must be integer"),
        (lambda d: d["metrics"].update(val="high"), "'metrics.val' must be ['number', 'null'], got str"),
        (lambda d: d.update(history={"0": {}}), "'history' must be array, got dict"),
        (lambda d: d.update(seeds=[0]), "'seeds' was unexpected"),
    ],
)
def test_an_invalid_record_is_refused_with_one_line_naming_the_field(mutate, field):
    data = typed_search().to_dict()
    mutate(data)
    with pytest.raises(InvalidRecord) as info:
        Record.from_dict(data)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_breaks_the_schema_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**minimal_record(), "seed": "three"}))
    with pytest.raises(DataError, match=r"r\.json does not match the record schema: record field 'seed'"):
        records.load_record(path)


def test_write_record_takes_the_typed_record(tmp_path):
    record = typed_search()
    path = records.write_record(record, tmp_path / "r.json")
    assert path.read_text() == records.dumps(record.to_dict())
    assert records.load_record(path) == record
    with pytest.raises(InvalidRecord, match="'seed'"):
        records.write_record(typed_search(seed=-1), tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def committed_records():
    paths = sorted(RUNS.rglob("*.json"))
    assert len(paths) > 100, f"expected the committed records under {RUNS}"
    return [(path, json.loads(path.read_text())) for path in paths]


def test_every_committed_record_round_trips_through_the_typed_record():
    """`to_dict(from_dict(d)) == d` byte for byte in JSON, and `from_dict(to_dict(r)) == r`, for every
    record under results/runs: old layouts (no tag, no method_extra) read and write back unchanged.
    Each record's head is schema-checked with its history cut to three queries (the full check of
    every history takes ~40 s: `test_every_committed_record_validates`, marked slow)."""
    broken = []
    for path, data in committed_records():
        record = Record.from_dict(data, check=False)
        if record.to_dict() != data or Record.from_dict(record.to_dict(), check=False) != record:
            broken.append(path)
            continue
        try:
            validate({**data, "history": data["history"][:3]})
        except InvalidRecord as err:
            broken.append(f"{path}: {err}")
    assert broken == []


@pytest.mark.slow
def test_every_committed_record_validates():
    assert [p for p, _ in records.iter_loaded(RUNS.parent)]


def test_fast_write_validation_decides_like_the_full_schema():
    """The runner validates a written record's history through a few representatives; for every
    single broken entry, anywhere in a long history, the verdict equals the full schema's."""
    import copy

    from nasrepro.tracking.record import HISTORY_KEYWORDS, validate, validate_fast

    items = records.schema()["properties"]["history"]["items"]
    used = set(items) | {k for spec in items["properties"].values() for k in spec}
    assert used <= HISTORY_KEYWORDS, f"new schema keywords {used - HISTORY_KEYWORDS}: revisit validate_fast"
    good = minimal_record()
    good["history"] = [
        {
            "index": i,
            "arch": f"a{i}",
            "score": 1.0,
            "val": 1.0,
            "test": 1.0,
            "cost_seconds": 0.5,
            "cumulative_cost": 0.5 * (i + 1),
            "wall_seconds": 0.1,
            "status": "ok",
            "reason": "",
            "metrics": {},
        }
        for i in range(40)
    ]
    validate_fast(good)
    breakages = [("cost_seconds", -1.0), ("status", "done"), ("score", "high"), ("index", 1.5), ("arch", 3)]
    for position in (0, 17, 39):
        for key, value in breakages:
            bad = copy.deepcopy(good)
            bad["history"][position][key] = value
            with pytest.raises(records.InvalidRecord):
                validate(bad)
            with pytest.raises(records.InvalidRecord):
                validate_fast(bad)
        missing = copy.deepcopy(good)
        del missing["history"][position]["cumulative_cost"]
        with pytest.raises(records.InvalidRecord):
            validate_fast(missing)
