"""Executors: input order, per-item failures, identical results under `local` and `ray`; one item
at a time (`submit` / `wait_any`) in submission order locally, in finishing order on Ray.

The Ray tests share one embedded 2-CPU cluster for the whole session (`ray_executor`), since
starting one costs seconds; they are skipped only where the optional `ray` extra is not installed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from functools import partial

import numpy as np
import pytest
import torch

from nasrepro.errors import UsageError
from nasrepro.harness.executors import (
    EXECUTORS,
    THREADS_ENV,
    Failure,
    LocalExecutor,
    get_executor,
    is_failure,
)
from nasrepro.harness.executors.jobs import train_evaluation
from nasrepro.harness.executors.ray_executor import INSTALL_HINT
from nasrepro.harness.recipe import with_overrides
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task

# --- top-level (picklable) functions the executors run ----------------------------------------


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is refused\non purpose")
    return x * x


def sleep_then_echo(item: tuple[int, float]) -> int:
    """Sleeps longer for earlier items, so a parallel executor finishes them out of order."""
    index, seconds = item
    time.sleep(seconds)
    return index


def seeded_draws(seed: int) -> tuple[list[float], list[float]]:
    """Deterministic numpy and torch computations that depend only on `seed`."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(64, 64, generator=generator)
    return rng.normal(size=4).tolist(), (a @ a.T).sum(dim=1)[:4].tolist()


def thread_settings(_: object) -> tuple[int, str | None]:
    return torch.get_num_threads(), os.environ.get(THREADS_ENV)


def crash_worker(x: int) -> int:
    if x == 1:
        os._exit(3)  # a worker that dies (segfault, OOM kill) rather than raising
    return x


def hold_lock(lock: object, x: int) -> int:
    return x


#: what `record_run` ran, in order (the local executor runs items in this process)
RAN: list[int] = []


def record_run(x: int) -> int:
    RAN.append(x)
    return square_or_fail(x)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_executor():
    """One embedded 2-CPU Ray cluster shared by every Ray test of the session."""
    ray = pytest.importorskip(
        "ray", reason="the optional ray extra is not installed (pip install 'nasrepro[ray]')"
    )
    # Workers cannot import this test module by name (pytest put tests/ on the path, not Ray), so
    # its functions travel by value; nasrepro's own jobs are imported by name as usual.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with get_executor("ray", workers=2) as executor:
        yield executor


@pytest.fixture
def local_executor():
    with get_executor("local") as executor:
        yield executor


# --- registry and errors ------------------------------------------------------------------------


def test_registry_names_and_unknown_executor():
    assert EXECUTORS.names() == ["local", "ray"]
    with pytest.raises(UsageError, match=r"unknown executor 'dask'.*Known: local, ray"):
        get_executor("dask")


def test_missing_ray_is_a_one_line_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(UsageError) as caught:
        get_executor("ray", workers=2)
    assert str(caught.value) == INSTALL_HINT == "install ray: pip install 'nasrepro[ray]'"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"workers": 0}, "--workers must be a positive integer"),
        ({"workers": 2}, "local executor runs one evaluation at a time"),
        ({"cpus_per_task": 0}, "cpus_per_task must be positive"),
        ({"gpus_per_task": -1}, "gpus_per_task must be zero or positive"),
    ],
)
def test_bad_local_settings(kwargs, pattern):
    with pytest.raises(UsageError, match=pattern):
        get_executor("local", **kwargs)


# --- local executor -----------------------------------------------------------------------------


def test_local_keeps_order_and_isolates_failures(local_executor):
    results = local_executor.map(square_or_fail, [5, 3, 0, 4])
    assert results[0] == 25 and results[2] == 0 and results[3] == 16
    assert is_failure(results[1]) and not any(is_failure(r) for r in (results[0], results[2], results[3]))
    assert results[1] == Failure("ValueError", "item 3 is refused | on purpose")
    assert "square_or_fail" in results[1].traceback
    assert str(results[1]) == "ValueError: item 3 is refused | on purpose"


def test_local_applies_and_restores_the_thread_limit():
    before = torch.get_num_threads()
    with LocalExecutor(cpus_per_task=1) as executor:
        assert executor.map(thread_settings, [None]) == [(1, "1")]
    assert torch.get_num_threads() == before
    assert THREADS_ENV not in os.environ


def test_local_does_not_swallow_keyboard_interrupt(local_executor):
    def interrupt(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        local_executor.map(interrupt, [1])


def test_local_submit_runs_nothing_until_wait_any_then_in_submission_order(local_executor):
    """The sequential executor's completion order is deterministic: the earliest submitted of the
    handles waited for, whatever order they are passed in; each result is its own item's."""
    RAN.clear()
    handles = [local_executor.submit(record_run, x) for x in (4, 2, 5)]
    assert RAN == [] and [h.number for h in handles] == [0, 1, 2]
    pending = list(reversed(handles))
    done = []
    while pending:
        handle, result = local_executor.wait_any(pending)
        pending.remove(handle)
        done.append((handle.number, result))
    assert done == [(0, 16), (1, 4), (2, 25)] and RAN == [4, 2, 5]
    later = local_executor.submit(record_run, 1)
    assert later.number == 3 and local_executor.wait_any([later]) == (later, 1)


def test_local_wait_any_returns_failures_like_map(local_executor):
    handles = [local_executor.submit(square_or_fail, x) for x in (3, 2)]
    failed, result = local_executor.wait_any(handles)
    assert failed is handles[0] and result == local_executor.map(square_or_fail, [3])[0]
    assert is_failure(result) and result == Failure("ValueError", "item 3 is refused | on purpose")
    assert local_executor.wait_any(handles[1:]) == (handles[1], 4)


def test_wait_any_refuses_returned_handles_and_nothing(local_executor):
    handle = local_executor.submit(square_or_fail, 2)
    assert local_executor.wait_any([handle])[1] == 4
    with pytest.raises(UsageError, match="not a pending handle"):
        local_executor.wait_any([handle])
    with pytest.raises(UsageError, match="at least one"):
        local_executor.wait_any([])


# --- ray executor ---------------------------------------------------------------------------------


def test_ray_wait_any_returns_whichever_finishes_first(ray_executor, local_executor):
    """`ray.wait(num_returns=1)`: the quick item comes back before the slow one submitted before it,
    a failing item comes back as the same `Failure` as locally, and nothing is returned twice."""
    slow = ray_executor.submit(sleep_then_echo, (0, 1.5))
    quick = ray_executor.submit(sleep_then_echo, (1, 0.0))
    failing = ray_executor.submit(square_or_fail, 3)
    order, results = [], {}
    pending = [slow, quick, failing]
    while pending:
        handle, result = ray_executor.wait_any(pending)
        pending.remove(handle)
        order.append(handle)
        results[handle.number] = result
    assert order[-1] is slow and set(order) == {slow, quick, failing}
    assert results[quick.number] == 1 and results[slow.number] == 0
    assert results[failing.number] == local_executor.map(square_or_fail, [3])[0]
    with pytest.raises(UsageError, match="not a pending handle"):
        ray_executor.wait_any([quick])


def test_ray_keeps_input_order_when_items_finish_out_of_order(ray_executor):
    items = [(0, 0.6), (1, 0.3), (2, 0.0), (3, 0.0), (4, 0.2)]
    assert ray_executor.map(sleep_then_echo, items) == [0, 1, 2, 3, 4]


def test_ray_failure_is_per_item_and_equals_the_local_one(ray_executor, local_executor):
    items = [5, 3, 0, 4]
    remote = ray_executor.map(square_or_fail, items)
    assert remote == local_executor.map(square_or_fail, items)
    assert [is_failure(r) for r in remote] == [False, True, False, False]


def test_ray_equals_local_for_seeded_functions(ray_executor, local_executor):
    seeds = [0, 1, 2, 7, 1]
    remote = ray_executor.map(seeded_draws, seeds)
    assert remote == local_executor.map(seeded_draws, seeds)
    assert remote[1] == remote[4] and remote[0] != remote[1]


def test_ray_tasks_run_with_one_thread_each(ray_executor):
    assert ray_executor.map(thread_settings, [None, None]) == [(1, "1"), (1, "1")]


def test_ray_crashed_worker_becomes_a_failure(ray_executor):
    results = ray_executor.map(crash_worker, [0, 1, 2])
    assert results[0] == 0 and results[2] == 2
    assert is_failure(results[1]) and "Crash" in results[1].error_type + results[1].message


def test_ray_rejects_an_unpicklable_function(ray_executor):
    with pytest.raises(UsageError, match="picklable top-level function"):
        ray_executor.map(partial(hold_lock, threading.Lock()), [1])


def test_ray_joins_an_existing_connection_without_closing_it(ray_executor):
    import ray

    with get_executor("ray", workers=2) as inner:
        assert inner.map(square_or_fail, [2]) == [4]
    assert ray.is_initialized()  # the session's cluster is still up
    assert ray_executor.describe()["cluster"] == (os.environ.get("RAY_ADDRESS") or "embedded")


def test_ray_refuses_gpu_tasks_on_a_cluster_without_gpus(ray_executor):
    import ray

    if ray.cluster_resources().get("GPU", 0) >= 1:
        pytest.skip("this cluster has a GPU")
    with pytest.raises(UsageError, match=r"asks for 1 GPU\(s\) but the embedded cluster has 0"):
        get_executor("ray", workers=1, gpus_per_task=1)


# --- a real training job ------------------------------------------------------------------------


def test_train_evaluation_is_identical_locally_and_on_ray(ray_executor, local_executor, data_root):
    """The reference GCN on Cora (smoke preset), plus a malformed NAS-Bench-Graph architecture."""
    task = get_task("cora")
    job = partial(train_evaluation, task, None, preset=task.preset("smoke"), seed=0, data_dir=data_root)
    space = get_space("nasbench-graph")
    arch_job = partial(train_evaluation, task, space, preset=task.preset("smoke"), seed=0, data_dir=data_root)
    remote = ray_executor.map(job, ["gcn"]) + ray_executor.map(arch_job, ["0,1,2,3:gcn,fc,nope,skip"])
    local = local_executor.map(job, ["gcn"]) + local_executor.map(arch_job, ["0,1,2,3:gcn,fc,nope,skip"])
    assert not is_failure(remote[0]), remote[0]
    keys = ("val", "test", "epochs", "params")
    assert {k: remote[0][k] for k in keys} == {k: local[0][k] for k in keys}
    assert remote[0]["params"] == 1433 * 16 + 16 + 16 * 7 + 7  # Kipf & Welling's 2-layer GCN
    assert remote[0]["val"] > 2 * 100 / 7  # it learned in its 2 smoke epochs (twice chance, 7 classes)
    assert is_failure(remote[1]) and remote[1] == local[1]
    assert remote[1].error_type == "UsageError" and "nope" in remote[1].message


@pytest.mark.slow
def test_train_evaluation_nasbench_graph_arch_locally_and_on_ray(ray_executor, local_executor, data_root):
    """A NAS-Bench-Graph architecture string of the `cora` task's own space (~15 s per fit)."""
    task, space = get_task("cora"), get_space("nasbench-graph")
    preset = with_overrides(task.preset("smoke"), space.recipe_overrides(task))
    job = partial(train_evaluation, task, space, preset=preset, seed=1, data_dir=data_root)
    [remote] = ray_executor.map(job, ["0,1,2,3:gcn,fc,skip,skip"])
    [local] = local_executor.map(job, ["0,1,2,3:gcn,fc,skip,skip"])
    assert not is_failure(remote), remote
    assert (remote["val"], remote["test"], remote["params"]) == (local["val"], local["test"], local["params"])
