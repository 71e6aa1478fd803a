import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from nasrepro.errors import DataError
from nasrepro.tracking import records


def minimal_record(**changes):
    record = {
        "schema_version": 1,
        "kind": "search",
        "method": "random",
        "task": "toy",
        "space": {"name": "toy"},
        "seed": 0,
        "preset": "smoke",
        "best_arch": "000011",
        "metrics": {"val": 60.0, "test": 59.0},
        "search_cost": {"wall_seconds": 0.1, "device": "cpu", "device_hours": 0.0, "queries": 1},
        "history": [{"index": 0, "arch": "000011", "score": 60.0, "cumulative_cost": 1.0, "status": "ok"}],
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
    "change",
    [
        {"seed": -1},
        {"preset": "gpu"},
        {"kind": "other"},
        {"metrics": {"val": 1.0}},
        {"history": [{"index": 0, "arch": "x", "score": 1.0, "cumulative_cost": 0.0, "status": "maybe"}]},
    ],
)
def test_schema_rejects_broken_records(tmp_path, change):
    with pytest.raises(jsonschema.ValidationError):
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
        "import sys; from pathlib import Path; from nasrepro.tracking.records import atomic_write_text\n"
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
