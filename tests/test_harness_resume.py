"""Resumption rules of the runner (the SIGKILL-and-resume test of every method is in test_conformance.py)."""

import pytest

from nasrepro.errors import UsageError


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    from nasrepro.harness.checkpoint import SearchCheckpoint

    ckpt = SearchCheckpoint(tmp_path / ".c.checkpoint", {"budget": 10, "seed": 0})
    ckpt.path.write_text('{"format": 1, "fingerprint": {"budget": 20, "seed": 0}, "history": []}')
    with pytest.raises(UsageError, match="different budget"):
        ckpt.load()
    ckpt.path.write_text("{not json")
    from nasrepro.errors import DataError

    with pytest.raises(DataError, match="corrupt"):
        ckpt.load()


def test_a_fresh_run_never_overwrites_an_interrupted_one(tmp_path, toy_task, monkeypatch):
    """Without --resume a left-over checkpoint is finished work: refuse, and say how to go on."""
    from nasrepro import tasks
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.search import run_search

    tasks._load()
    monkeypatch.setitem(tasks._instances, "toy", toy_task)
    request = dict(
        method="random", task="toy", seed=0, budget=5, preset="smoke", out=tmp_path, wandb="disabled"
    )
    _, path = run_search(SearchRequest(**request))
    left_over = path.with_name(f".{path.stem}.checkpoint")
    path.unlink()
    left_over.write_text("{}")
    with pytest.raises(UsageError, match="rerun with --resume to continue it, or delete it"):
        run_search(SearchRequest(**request))
    assert left_over.read_text() == "{}"
    left_over.unlink()
    left_over.with_suffix(".artifacts").mkdir()  # killed before its first checkpoint: cleaned up
    run_search(SearchRequest(**request))
    assert path.exists() and not left_over.with_suffix(".artifacts").exists()
