"""Kill a search with SIGKILL at random points, resume it, and compare with an uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nasrepro.errors import UsageError
from nasrepro.tracking.records import read_record, strip_volatile

SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from conftest import CategoricalToySpace, ToyTable, ToyTask
    from nasrepro import tasks
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.search import run_search

    class SlowTable(ToyTable):
        def lookup(self, arch):
            time.sleep(0.02)  # long enough to be killed in the middle of a search
            with open({log!r}, "a") as log:
                log.write(arch + "\\n")
            return super().lookup(arch)

    class SlowTask(ToyTask):
        def table(self):
            return SlowTable()

        def space(self):
            return CategoricalToySpace()

    tasks._load()
    tasks._instances["toy"] = SlowTask()
    req = SearchRequest(method=sys.argv[1], task="toy", seed=int(sys.argv[2]), budget=30, preset="smoke",
                        out=Path(sys.argv[3]), wandb="disabled", resume=sys.argv[4] == "1",
                        checkpoint_seconds=0.0, method_config={config})
    print(run_search(req)[1], flush=True)
""")


def run_script(tmp_path, method, seed, out, resume, config):
    path = tmp_path / "run.py"
    log = tmp_path / f"evaluated-{out.name}.log"
    path.write_text(SCRIPT.format(tests=os.path.dirname(__file__), log=str(log), config=config))
    args = [sys.executable, str(path), method, str(seed), str(out), "1" if resume else "0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE), log


@pytest.mark.parametrize(
    "method, config, trials",
    [
        ("evolution", {"population": 6, "sample_size": 3}, 2),
        ("agnn", {"ctrl_steps": 4}, 2),
        pytest.param("graphnas-rl", {"ctrl_steps": 4}, 3, marks=pytest.mark.slow),
        pytest.param("random", {}, 3, marks=pytest.mark.slow),
        pytest.param("evolution", {"population": 6, "sample_size": 3}, 6, marks=pytest.mark.slow),
    ],
)
def test_sigkill_and_resume_equals_uninterrupted(tmp_path, method, config, trials):
    reference_out = tmp_path / "reference"
    proc, _ = run_script(tmp_path, method, 4, reference_out, False, config)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    (reference_path,) = reference_out.rglob("*.json")
    reference = read_record(reference_path)

    rng = random.Random(0)
    for trial in range(trials):
        out = tmp_path / f"killed{trial}"
        proc, log = run_script(tmp_path, method, 4, out, False, config)
        deadline = time.monotonic() + 60
        target = rng.randint(3, 25)  # kill after a random number of evaluations
        while not log.exists() or len(log.read_text().split()) < target:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        evaluated_before = log.read_text().split()
        assert not list(out.rglob("*.json")), "a killed search must not leave a record"
        proc, _ = run_script(tmp_path, method, 4, out, True, config)
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
        (path,) = out.rglob("*.json")
        resumed = read_record(path)
        assert strip_volatile(resumed) == strip_volatile(reference) | {
            "config": strip_volatile(resumed["config"])
        }
        assert resumed["history"] == [
            dict(
                q,
                cost_seconds=r["cost_seconds"],
                cumulative_cost=r["cumulative_cost"],
                wall_seconds=r["wall_seconds"],
            )
            for q, r in zip(reference["history"], resumed["history"], strict=True)
        ]
        evaluated = log.read_text().split()
        # Nothing finished was lost: every evaluation is done once, except at most the ones after the last save.
        assert len(evaluated) - len(evaluated_before) <= 30 - len(evaluated_before) + 1
        assert len(set(evaluated)) == 30
        assert not list(out.rglob("*.checkpoint")), "the checkpoint is removed once the record exists"


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
