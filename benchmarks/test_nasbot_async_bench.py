"""NASBOT's parallel evaluation (issue 14 item 5): 2 workers vs 1 on the same number of evaluations,
and the asynchronous scheduler against synchronous batches at equal wall time.

One NASBOT search on `uci/protein` (cpu preset: MLPs of 500 Adam iterations, about 5-15 s each on
one thread, so training dominates the GP's own time) with 10 trained networks, seed 0, on Ray:
1 worker; 2 workers with the asynchronous scheduler (a new proposal as soon as one network
finishes, the other pending in the GP; the paper's mode); 2 workers in synchronous batches of 2.
Each row is one round (pedantic): a search is minutes, and the speed-up is the quantity of
interest. Equal wall time uses the records' search clock (`elapsed_seconds`): the networks each
search had finished by the time the fastest of them ended. The summary prints both; nothing
asserts a timing, only that each search booked its 10 unique networks.

Run: `NASREPRO_DATA=/path/to/datasets OMP_NUM_THREADS=1 pytest -s benchmarks/test_nasbot_async_bench.py`
(about 4 minutes on 2 quiet cores; needs the `ray` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nasrepro.app.search import SearchRequest, run_search

GROUP = "nasbot async: 10 MLPs on uci/protein (cpu preset, Ray)"
BUDGET = 10
CASES = [(1, "async"), (2, "async"), (2, "batch")]
#: case id -> history of the record, filled by the timed tests and read by the summary
MEASURED: dict[str, list[dict]] = {}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = os.environ.get("NASREPRO_DATA")
    if not root or not (Path(root) / "uci").is_dir():
        pytest.skip("set NASREPRO_DATA to the datasets folder (with uci/)")
    os.environ.setdefault("NASREPRO_CACHE", str(tmp_path_factory.mktemp("nasrepro-cache")))
    return root


@pytest.mark.parametrize(("workers", "scheduler"), CASES, ids=[f"{w}w-{s}" for w, s in CASES])
def test_nasbot_search(benchmark, data_root, tmp_path, workers, scheduler):
    pytest.importorskip("ray", reason="install the ray extra: pip install 'nasrepro[ray]'")
    request = SearchRequest(
        method="nasbot",
        task="uci/protein",
        seed=0,
        budget=BUDGET,
        preset="cpu",
        executor="ray",
        workers=workers,
        method_config={"scheduler": scheduler},
        out=tmp_path,
        wandb="disabled",
        data_dir=Path(data_root),
        measure=False,
    )
    benchmark.group = GROUP
    record, _ = benchmark.pedantic(lambda: run_search(request), rounds=1, iterations=1)
    history = record["history"]
    assert len({q["arch"] for q in history}) == len(history) == BUDGET
    MEASURED[f"{workers}w-{scheduler}"] = history
    benchmark.extra_info["networks_per_minute"] = round(60 * BUDGET / benchmark.stats.stats.max, 2)


def test_speedup_and_equal_wall_time(request):
    missing = [f"{w}w-{s}" for w, s in CASES if f"{w}w-{s}" not in MEASURED]
    if missing:
        pytest.skip(f"not measured in this session: {', '.join(missing)}")
    ends = {case: history[-1]["elapsed_seconds"] for case, history in MEASURED.items()}
    cut = min(ends.values())
    done = {case: sum(q["elapsed_seconds"] <= cut for q in h) for case, h in MEASURED.items()}
    line = (
        f"NASBOT, {BUDGET} networks on uci/protein: 1 worker {ends['1w-async']:.1f} s, 2 workers async "
        f"{ends['2w-async']:.1f} s ({ends['1w-async'] / ends['2w-async']:.2f}x), 2 workers batch "
        f"{ends['2w-batch']:.1f} s ({ends['1w-async'] / ends['2w-batch']:.2f}x); networks finished by "
        f"{cut:.1f} s: "
        + ", ".join(f"{case} {n}" for case, n in done.items())
        + f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    # After the shared initial pool each search proposes different networks, whose training times
    # differ several-fold: the wall-time ratio mixes parallelism with what was chosen. Parallel
    # efficiency divides out the work done: summed per-network job time / (workers x wall time).
    workers = {case: int(case.split("w-")[0]) for case in MEASURED}
    work = {case: sum(q.get("cost_seconds") or 0.0 for q in h) for case, h in MEASURED.items()}  # job time
    line += "; parallel efficiency " + ", ".join(
        f"{case} {work[case] / (workers[case] * ends[case]):.2f}" for case in MEASURED
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + line)
    print(line)
