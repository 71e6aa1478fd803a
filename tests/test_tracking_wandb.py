"""W&B in offline mode, for real: the run folder and its summary exist; nothing leaks credentials."""

import json

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.tracking.wandb_log import log_record


def test_offline_search_run_writes_history_and_summary(tmp_path, monkeypatch, toy_task):
    from nasrepro import tasks

    tasks._load()
    monkeypatch.setitem(tasks._instances, "toy", toy_task)
    fake_key = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", fake_key)
    record, path = run_search(
        SearchRequest(
            method="random", task="toy", seed=0, budget=6, preset="smoke", out=tmp_path, wandb="disabled"
        )
    )
    folder = log_record(record, "offline", tmp_path / "wandb")
    import wandb

    wandb.teardown()  # the service flushes its run files when it stops (at exit in a real command)
    assert folder is not None and folder.name.startswith("offline-run-")
    (run_file,) = folder.glob("run-*.wandb")  # the offline transaction log `wandb sync` uploads
    data = run_file.read_bytes()
    # protobuf stores keys and JSON-encoded values as plain bytes: history rows and the summary are there
    assert data.count(b"best_so_far") >= len(record["history"])
    assert b"final/test" in data and json.dumps(record["best_arch"]).encode() in data
    for file in [path, *tmp_path.rglob("*")]:
        if file.is_file():
            assert fake_key.encode() not in file.read_bytes(), f"credential leaked into {file}"


def test_disabled_mode_writes_nothing(tmp_path):
    assert log_record({"task": "t"}, "disabled", tmp_path / "wandb") is None
    assert not (tmp_path / "wandb").exists()
