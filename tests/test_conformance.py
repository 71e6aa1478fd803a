"""The conformance suite: every registered method, on every toy task its declarations admit.

As timm tests every registered model, this runs every registered method -- a method registered
tomorrow is covered with no edit here -- through the real runner (`nasrepro.app.search`) and
checks the contract every NAS comparison relies on: a smoke search finishes and writes a valid
record; it never spends more unique queries than its budget; the same seed gives the same record;
test scores never steer the search; a search killed with SIGKILL at a random point and resumed
gives the uninterrupted record; an unknown option is a usage error.

A method picks its tasks by its declarations (`task_kinds`, `needs`): the toy table task, the toy
live task, else the real tasks it names in `conformance_tasks` (run at the smoke preset).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import toys

from nasrepro.app.requests import SearchRequest
from nasrepro.app.resolve import space_for
from nasrepro.app.search import run_search
from nasrepro.errors import UsageError
from nasrepro.methods import get_method, method_names
from nasrepro.tasks import get_task
from nasrepro.tracking.records import read_record, strip_volatile, validate

toys.register()
BUDGET = {"toy-table": 12, "toy-live": 4}


def tasks_of(name: str) -> list[str]:
    method = get_method(name)
    fits = []
    for task_name in toys.TOY_TASKS:
        task = get_task(task_name)
        if method.incompatibility(task, space_for(method, task, None)) is None:
            fits.append(task_name)
    return fits or list(method.conformance_tasks)


CASES = [(m, t) for m in method_names() for t in tasks_of(m)]
IDS = [f"{m}@{t}" for m, t in CASES]


def request(method: str, task: str, out: Path, seed: int = 0, **changes) -> SearchRequest:
    return SearchRequest(
        method=method,
        task=task,
        seed=seed,
        budget=BUDGET.get(task),
        preset="smoke",
        method_config=dict(get_method(method).conformance_options),
        out=out,
        wandb="disabled",
        measure=False,
        **changes,
    )


def comparable(record: dict) -> dict:
    """What must be equal between two runs of one request (timings and provenance stripped)."""
    out = strip_volatile(record)
    out["history"] = [
        q | {"metrics": {k: v for k, v in q["metrics"].items() if "seconds" not in k}} for q in out["history"]
    ]
    out.pop("search_cost", None)
    out["config"] = {k: v for k, v in out["config"].items() if k not in ("out", "resume")}
    out["method_extra"] = strip_volatile(_no_seconds(record.get("method_extra", {})))
    return out


def _no_seconds(value):
    """Drop timings (`*seconds*`, `*_ms`) from a method's report: they differ between any two runs."""
    if isinstance(value, dict):
        return {k: _no_seconds(v) for k, v in value.items() if "seconds" not in k and not k.endswith("_ms")}
    if isinstance(value, list):
        return [_no_seconds(v) for v in value]
    return value


def test_every_method_is_covered():
    for name in method_names():
        assert tasks_of(name), f"{name}: no toy task fits and it declares no conformance_tasks"


#: the first smoke record of each case, reused as the reference of the test-scramble check
FIRST: dict[tuple[str, str], dict] = {}


def first_record(method: str, task: str, out: Path) -> tuple[dict, Path]:
    record, path = run_search(request(method, task, out))
    FIRST[(method, task)] = record
    return record, path


@pytest.mark.parametrize(("method", "task"), CASES, ids=IDS)
def test_smoke_search_is_valid_within_budget_and_deterministic(method, task, tmp_path):
    first, path = first_record(method, task, tmp_path / "a")
    validate(read_record(path))
    budget = first["budget"]
    archs = [q["arch"] for q in first["history"]]
    assert 1 <= len(archs) <= budget and len(set(archs)) == len(archs)
    assert first["search_cost"]["queries"] == len(archs)
    assert first["best_arch"] in archs
    again, _ = run_search(request(method, task, tmp_path / "b"))
    assert comparable(again) == comparable(first)


@pytest.mark.parametrize(
    ("method", "task"), [c for c in CASES if get_task(c[1]).kind == "table"], ids=lambda v: str(v)
)
def test_test_scores_never_steer_the_search(method, task, tmp_path, monkeypatch):
    """Scrambling every test value of the table leaves the searched architectures and the
    incumbent unchanged: selection reads validation only."""
    reference = FIRST.get((method, task)) or first_record(method, task, tmp_path / "a")[0]
    table = get_task(task).table()
    lookup, rng = table.lookup, np.random.default_rng(0)
    monkeypatch.setattr(
        table, "lookup", lambda arch: dataclasses.replace(lookup(arch), test=float(rng.uniform(0, 100)))
    )
    scrambled, _ = run_search(request(method, task, tmp_path / "b"))
    assert [q["arch"] for q in scrambled["history"]] == [q["arch"] for q in reference["history"]]
    assert scrambled["best_arch"] == reference["best_arch"]
    assert [q["test"] for q in scrambled["history"]] != [q["test"] for q in reference["history"]]


@pytest.mark.parametrize("method", method_names())
def test_unknown_option_is_a_usage_error(method):
    with pytest.raises(UsageError, match="no option"):
        get_method(method)({"no_such_option_anywhere": 1})


# --- SIGKILL at a random point, then --resume ----------------------------------------------------


class _LoggedTable(toys.ToyTable):
    """The toy table, slowed and logging every look-up, so a search can be killed mid-way and what
    it evaluated counted."""

    log: Path

    def lookup(self, arch):
        time.sleep(0.02)  # long enough to be killed in the middle of a search
        with open(self.log, "a") as log:
            log.write(arch + "\n")
        return super().lookup(arch)


def _search_in_child(method: str, task: str, out: Path, resume: bool, log: Path) -> None:
    import torch

    torch.set_num_threads(1)  # as DataLoader workers do: a forked child must not reuse the parent's pool
    _LoggedTable.log = log
    toys.ToyCategoricalTask.table = lambda self: _LoggedTable()  # noqa: ARG005
    run_search(request(method, task, out, seed=4, resume=resume, checkpoint_seconds=0.0))


def launch(tmp_path: Path, method: str, task: str, out: Path, resume: bool):
    """The search in a forked process: it is as separate as a fresh interpreter for SIGKILL (its own
    pid, nothing flushed at death) but starts without paying the imports again (seconds per case)."""
    log = tmp_path / f"evaluated-{out.name}.log"
    proc = multiprocessing.get_context("fork").Process(
        target=_search_in_child, args=(method, task, out, resume, log)
    )
    proc.start()
    return proc, log


@pytest.mark.parametrize("method", [m for m in method_names() if "toy-table" in tasks_of(m)])
def test_sigkill_then_resume_equals_the_uninterrupted_search(method, tmp_path):
    reference, _ = run_search(
        request(method, "toy-table", tmp_path / "reference", seed=4, checkpoint_seconds=0.0)
    )
    n = len(reference["history"])
    if n < 3:
        pytest.skip(f"{method} asks for {n} architecture(s) here: there is no middle to kill it in")

    out = tmp_path / "killed"
    proc, log = launch(tmp_path, method, "toy-table", out, False)
    target, deadline = random.Random(method).randint(1, n - 2), time.monotonic() + 60
    while not log.exists() or len(log.read_text().split()) < target:
        assert proc.is_alive() and time.monotonic() < deadline, f"exit code {proc.exitcode}"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert not list(out.rglob("*.json")), "a killed search must not leave a record"
    proc, _ = launch(tmp_path, method, "toy-table", out, True)
    proc.join(timeout=120)
    assert proc.exitcode == 0, f"the resumed search exited with {proc.exitcode}"
    (path,) = out.rglob("*.json")
    resumed = read_record(path)
    assert comparable(resumed) == comparable(reference)
    stamps = [q["elapsed_seconds"] for q in resumed["history"]]
    assert None not in stamps and stamps == sorted(stamps), "the search clock must go on across the kill"
    evaluated = log.read_text().split()
    assert len(set(evaluated)) == len(reference["history"])  # nothing evaluated that was not asked
    assert len(evaluated) <= len(reference["history"]) + 1  # at most the query in flight is redone
