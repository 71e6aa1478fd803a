"""W&B in offline mode, for real: a search's runs are written from its records by a detached
process, the run folder and its summary exist, and nothing leaks credentials."""

import json

import pytest

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.cli import main
from nasrepro.tracking import wandb_log
from nasrepro.tracking.wandb_log import log_in_background, log_record


def _toy(monkeypatch, toy_task):
    from nasrepro import tasks

    tasks._load()
    monkeypatch.setitem(tasks._instances, "toy", toy_task)
    if "toy" not in tasks.TASKS:
        tasks.TASKS.add("toy", lambda: toy_task)


def test_background_logger_writes_each_record_as_an_offline_run(tmp_path, monkeypatch, toy_task):
    _toy(monkeypatch, toy_task)
    fake_key = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", fake_key)
    record, path = run_search(
        SearchRequest(
            method="random", task="toy", seed=0, budget=6, preset="smoke", out=tmp_path, wandb="disabled"
        )
    )
    assert not (tmp_path / "wandb").exists()  # a search never logs by itself
    process = log_in_background([path], "offline", tmp_path / "wandb")
    assert process.wait(timeout=120) == 0, (tmp_path / "wandb" / "logger.log").read_text()[-2000:]
    (folder,) = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    (run_file,) = folder.glob("run-*.wandb")  # the offline transaction log `wandb sync` uploads
    data = run_file.read_bytes()
    # protobuf stores keys and JSON-encoded values as plain bytes: history rows and the summary are there
    assert data.count(b"best_so_far") >= len(record["history"])
    assert b"final/test" in data and json.dumps(record["best_arch"]).encode() in data
    for file in [path, *tmp_path.rglob("*")]:
        if file.is_file():
            assert fake_key.encode() not in file.read_bytes(), f"credential leaked into {file}"


def test_search_command_hands_only_its_new_records_to_the_logger(tmp_path, monkeypatch, toy_task, capsys):
    _toy(monkeypatch, toy_task)
    handed: list[list] = []
    monkeypatch.setattr(wandb_log, "log_in_background", lambda paths, mode, folder: handed.append(paths))
    argv = ["search", "--task", "toy", "--method", "random", "--budget", "3", "--seeds", "0-1"]
    argv += ["--out", str(tmp_path), "--wandb", "offline", "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in handed[0]) == ["cpu-b3-s0.json", "cpu-b3-s1.json"]
    assert main([*argv, "--resume"]) == 0  # both seeds finished earlier: logged back then
    assert handed[1] == []


def test_disabled_mode_writes_nothing(tmp_path):
    assert log_record({"task": "t"}, "disabled", tmp_path / "wandb") is None
    assert log_in_background([tmp_path / "r.json"], "disabled", tmp_path / "wandb") is None
    assert not (tmp_path / "wandb").exists()


def test_wandb_log_command_names_a_missing_record(tmp_path, capsys):
    assert main(["wandb-log", "--results", str(tmp_path), str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.json" in err


@pytest.mark.slow  # starts W&B's service: ~10 s
def test_leaderboard_is_logged_as_wandb_tables_offline(tmp_path):
    """Issue 16 item 4: with W&B on, the leaderboard's rows (and claims) become `wandb.Table`s."""
    rows = [
        {"task": "toy", "method": "random", "n": 3, "test_mean": 60.5, "flags": ""},
        {"task": "toy", "method": "evolution", "n": 3, "test_mean": 61.0, "vs_random_p": 0.2},
    ]
    claims = [{"method": "m", "task": "toy", "claim": 80.0, "verdict": "not yet run", "ours_mean": None}]
    assert wandb_log.log_leaderboard(rows, claims, "disabled", tmp_path / "off") is None
    folder = wandb_log.log_leaderboard(rows, claims, "offline", tmp_path / "wandb")
    assert folder is not None and folder.name.startswith("offline-run-")
    (run_file,) = folder.glob("run-*.wandb")
    assert run_file.stat().st_size > 0
    tables = list(folder.rglob("*.table.json"))
    assert {p.name.split("_")[0] for p in tables} >= {"leaderboard", "paper"}
    logged = json.loads(next(p for p in tables if p.name.startswith("leaderboard")).read_text())
    assert logged["columns"] == sorted({k for row in rows for k in row}) and len(logged["data"]) == 2
