"""Evaluating a batch of architectures on several cores: the Ray executor with 2 workers vs 1.

The batch is 8 CPU-bound trainings of the reference GCN on Cora at the `cpu` preset (200 full-batch
epochs, seeds 0-7, about 6 s each on one thread); every item gets one intra-op thread, so two
workers on two cores do not oversubscribe them. The `local` row (sequential, in-process) is the
zero-overhead baseline. Each row is one round (pedantic): worker start-up and the first import of
torch/PyG/Cora in each worker happen in an untimed warm-up. The last test prints the speed-up and
checks that all three rows produced identical results (issue "Scale out", target >= 1.7x on 2 cores).

Run: `NASREPRO_DATA=/path/to/datasets pytest benchmarks/test_executors_bench.py` (needs the `ray`
extra; about 2.5 minutes on 2 cores).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from nasrepro.harness.executors import get_executor, is_failure
from nasrepro.harness.executors.jobs import train_evaluation
from nasrepro.tasks import get_task

GROUP = "executors: 8 GCN fits on Cora (cpu preset, 1 thread each)"
SEEDS = list(range(8))
CASES = [("local", 1), ("ray", 1), ("ray", 2)]
#: case id -> (seconds, results), filled by the timed tests and read by the summary
MEASURED: dict[str, tuple[float, list]] = {}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = os.environ.get("NASREPRO_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("set NASREPRO_DATA to the datasets folder")
    # Workers inherit the environment when the cluster starts: derived caches go to one place.
    os.environ.setdefault("NASREPRO_CACHE", str(tmp_path_factory.mktemp("nasrepro-cache")))
    return root


@pytest.mark.parametrize(("name", "workers"), CASES, ids=[f"{n}-{w}w" for n, w in CASES])
def test_eight_gcn_fits(benchmark, data_root, name, workers):
    if name == "ray":
        pytest.importorskip("ray", reason="install the ray extra: pip install 'nasrepro[ray]'")
    task = get_task("cora")
    job = partial(train_evaluation, task, None, "gcn", task.preset("cpu"), data_dir=data_root)  # item = seed
    warm_up = partial(train_evaluation, task, None, "gcn", task.preset("smoke"), data_dir=data_root)
    opened = []

    def setup():
        executor = get_executor(name, workers=workers)
        opened.append(executor)
        executor.map(warm_up, list(range(workers)))  # one item per worker: imports, data, caches
        return (executor,), {}

    benchmark.group = GROUP
    try:
        results = benchmark.pedantic(lambda ex: ex.map(job, SEEDS), setup=setup, rounds=1, iterations=1)
    finally:
        for executor in opened:
            executor.close()
    assert not [r for r in results if is_failure(r)], results
    seconds = benchmark.stats.stats.max
    MEASURED[f"{name}-{workers}w"] = (seconds, results)
    benchmark.extra_info["evaluations_per_minute"] = round(60 * len(SEEDS) / seconds, 2)


def test_speedup_and_identical_results(request):
    missing = [f"{n}-{w}w" for n, w in CASES if f"{n}-{w}w" not in MEASURED]
    if missing:
        pytest.skip(f"not measured in this session: {', '.join(missing)}")
    keys = ("val", "test", "params", "epochs")
    rows = {case: [tuple(r[k] for k in keys) for r in results] for case, (_, results) in MEASURED.items()}
    assert rows["ray-1w"] == rows["ray-2w"] == rows["local-1w"]
    assert len(set(rows["local-1w"])) > 1  # the seeds really differ
    one, two, local = MEASURED["ray-1w"][0], MEASURED["ray-2w"][0], MEASURED["local-1w"][0]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = (
        f"8 GCN fits: local {local:.1f} s, ray 1 worker {one:.1f} s, ray 2 workers {two:.1f} s; "
        f"speed-up 2 vs 1 workers {one / two:.2f}x (target >= 1.7x), ray 2 workers vs local {local / two:.2f}x; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    if reporter is not None:
        reporter.write_line("\n" + line)
    print(line)
