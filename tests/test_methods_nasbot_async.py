"""NASBOT's asynchronous scheduler (Kandasamy et al. 2018, Sec. 4; code ``mode='asy'``): k
evaluations in flight, one new proposal whenever one finishes, the others hallucinated.

With one worker it is the sequential loop the committed records were made with (golden history
below, from the loop before the scheduler existed); with two it keeps two in flight, never
evaluates a network twice, survives failing evaluations, resumes after SIGKILL with evaluations in
flight, and runs on Ray.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from test_conformance import comparable

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.harness.run import run_of
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods.nasbot.search import NASBOT
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task
from nasrepro.tracking.records import read_record

TASK = "nasbench201/cifar10"
SMALL = {"init_evals": 4, "hp_samples": 200, "acq_min": 10, "acq_max": 20}  # the conformance options

#: `nasrepro search --method nasbot --task nasbench201/cifar10 --seed 3 --budget 12 --preset smoke`
#: with the sequential loop at f4e1232 (before the asynchronous scheduler): architecture, val
GOLDEN_SEED3_B12 = [
    (
        "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|",
        88.2066666788737,
    ),
    ("|none~0|+|nor_conv_1x1~0|none~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|", 86.71199999267579),
    ("|none~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|", 89.11199999837238),
    (
        "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        90.20533332845052,
    ),
    ("|none~0|+|avg_pool_3x3~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|", 78.90399998779297),
    (
        "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_1x1~2|",
        88.87400000122071,
    ),
    (
        "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        91.04933332763672,
    ),
    (
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        91.53333331461589,
    ),
    (
        "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        89.95599999267579,
    ),
    (
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        90.90199999267578,
    ),
    ("|none~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|none~2|", 71.32000000732423),
    (
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        89.98266665201822,
    ),
]


def request(out: Path, **changes) -> SearchRequest:
    fields = dict(
        method="nasbot", task=TASK, seed=3, budget=12, preset="smoke", wandb="disabled", measure=False
    )
    return SearchRequest(**{**fields, **changes, "out": out})


def without_scheduler(record: dict) -> dict:
    out = comparable(record)
    out["config"]["method_config"].pop("scheduler")
    out["method_extra"]["resolved_config"].pop("scheduler")
    return out


def test_one_worker_is_the_sequential_loop(tmp_path):
    """k = 1: the asynchronous scheduler makes the committed sequential loop's search, query for
    query (golden), and the batch scheduler's, record for record."""
    asynchronous, _ = run_search(request(tmp_path / "async"))
    assert [(q["arch"], q["val"]) for q in asynchronous["history"]] == GOLDEN_SEED3_B12
    assert asynchronous["method_extra"]["scheduler"] == "sequential"
    assert asynchronous["config"]["method_config"]["scheduler"] == "async"  # the default, recorded
    batch, _ = run_search(request(tmp_path / "batch", method_config={"scheduler": "batch"}))
    assert without_scheduler(batch) == without_scheduler(asynchronous)
    assert asynchronous["duplicates"] == batch["duplicates"]


class Recording(TableEvaluator):
    """The NB201 table with two simulated workers, noting how many evaluations are in flight at
    every `wait_any`."""

    __slots__ = ("in_flight_seen",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight_seen: list[int] = []

    def wait_any(self):
        self.in_flight_seen.append(len(self.in_flight))
        return super().wait_any()


def _two_worker_search(evaluator_cls, monkeypatch):
    """NASBOT with two workers; also returns how many pending networks each proposal saw."""
    from nasrepro.methods.nasbot.bo import BayesOpt

    pending_seen = []
    propose = BayesOpt.propose

    def spy_propose(self, pending, pool, rng):
        pending_seen.append(len(pending))
        return propose(self, pending, pool, rng)

    monkeypatch.setattr(BayesOpt, "propose", spy_propose)
    task = get_task(TASK)
    evaluator = evaluator_cls(task, get_space("nasbench201"), budget=12, workers=2)
    result = NASBOT(SMALL).search(run_of(evaluator, seed=3, preset_name="smoke"))
    return evaluator, result, pending_seen


def test_two_workers_keep_two_in_flight_and_propose_with_one_pending(monkeypatch):
    evaluator, result, pending_seen = _two_worker_search(Recording, monkeypatch)
    keys = [q.arch for q in evaluator.history]
    assert len(keys) == len(set(keys)) == 12
    assert result.extra["workers"] == 2 and result.extra["scheduler"] == "asynchronous (hallucinated pending)"
    # the initial pool (4) is dispatched without proposals; each of the 8 proposals is made while
    # the other worker's network runs (hallucinated); two in flight until the budget is submitted
    assert pending_seen == [1] * 8
    assert evaluator.in_flight_seen == [2] * 11 + [1]


def test_two_async_workers_never_repeat_and_survive_failures(monkeypatch):
    """A network whose evaluation fails is recorded once, never retried, and the search goes on."""
    from nasrepro.errors import EvaluationFailed

    class Failing(Recording):
        __slots__ = ()

        def _evaluate(self, arch):
            if "avg_pool_3x3~0" in str(arch):  # a worker that dies on some networks
                raise EvaluationFailed("worker died")
            return super()._evaluate(arch)

    evaluator, result, _ = _two_worker_search(Failing, monkeypatch)
    keys = [q.arch for q in evaluator.history]
    assert len(keys) == len(set(keys)) == 12
    assert any(q.status == "failed" for q in evaluator.history)
    assert result.best_arch in keys and max(evaluator.in_flight_seen) == 2


# --- SIGKILL with evaluations in flight, then --resume (as the conformance suite does) ----------


def _search_in_child(out: Path, resume: bool, log: Path) -> None:
    import torch

    from nasrepro.tasks.nasbench201 import NB201Table

    torch.set_num_threads(1)
    lookup = NB201Table.lookup

    def logged(self, arch):
        time.sleep(0.02)
        with open(log, "a") as file:
            file.write(str(arch) + "\n")
        return lookup(self, arch)

    NB201Table.lookup = logged  # in the forked child only
    run_search(request(out, budget=10, workers=2, method_config=SMALL, resume=resume, checkpoint_seconds=0.0))


def _launch(out: Path, resume: bool, log: Path):
    proc = multiprocessing.get_context("fork").Process(target=_search_in_child, args=(out, resume, log))
    proc.start()
    return proc


def test_sigkill_with_evaluations_in_flight_then_resume(tmp_path):
    reference, _ = run_search(
        request(tmp_path / "reference", budget=10, workers=2, method_config=SMALL, checkpoint_seconds=0.0)
    )
    n = len(reference["history"])
    out, log = tmp_path / "killed", tmp_path / "evaluated.log"
    proc = _launch(out, False, log)
    deadline = time.monotonic() + 120
    while not log.exists() or len(log.read_text().split()) < 6:
        assert proc.is_alive() and time.monotonic() < deadline, f"exit code {proc.exitcode}"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL and not list(out.rglob("*.json"))
    (checkpoint,) = out.rglob(".*.checkpoint")
    state = json.loads(checkpoint.read_text())
    answered, in_flight = [q["arch"] for q in state["history"]], state["in_flight"]
    assert answered and in_flight and not set(answered) & set(in_flight)

    proc = _launch(out, True, log)
    proc.join(timeout=300)
    assert proc.exitcode == 0, f"the resumed search exited with {proc.exitcode}"
    (path,) = out.rglob("*.json")
    record = read_record(path)
    assert comparable(record) == comparable(reference)
    keys = [q["arch"] for q in record["history"]]
    assert len(set(keys)) == len(keys) == n and set(in_flight) <= set(keys)
    evaluated = log.read_text().split()
    assert set(evaluated) == set(keys)  # every answer was evaluated, in flight ones included
    assert len(evaluated) <= n + 1  # at most the look-up caught by the kill before its booking


# --- Ray ------------------------------------------------------------------------------------------


def test_async_nasbot_on_ray_with_two_workers_completes_a_table_budget():
    """Look-ups as Ray tasks (real completion order): the budget is spent on unique networks."""
    pytest.importorskip("ray", reason="the optional ray extra is not installed (pip install 'nasrepro[ray]')")
    from nasrepro.harness.executors import get_executor

    task = get_task(TASK)
    sent: list[str] = []
    with get_executor("ray", workers=2) as executor:
        submit = executor.submit
        executor.submit = lambda fn, item: (sent.append(item), submit(fn, item))[1]
        evaluator = TableEvaluator(task, get_space("nasbench201"), budget=8, executor=executor)
        result = NASBOT(SMALL).search(run_of(evaluator, seed=0, preset_name="smoke"))
    keys = [q.arch for q in evaluator.history]
    assert len(keys) == len(set(keys)) == 8 and [q.index for q in evaluator.history] == list(range(8))
    assert sorted(sent) == sorted(keys)  # every look-up went to Ray, once
    assert all(q.status == "ok" for q in evaluator.history) and not evaluator.in_flight
    assert result.extra["workers"] == 2 and result.extra["scheduler"].startswith("asynchronous")
    assert result.best_arch in keys
