"""The committed table searches are the project's memory: rerunning one reproduces its history.

For every search method with committed NAS-Bench-Graph Cora records, seed 0 at each committed
budget is rerun from the record's own request and compared query by query (architecture,
validation and test score; timings aside). A change that silently alters what a committed record
means fails here, and the record must then be rerun, not left stale.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nasrepro.app.rerun import request_of, same_search
from nasrepro.app.search import run_search
from nasrepro.tracking.records import read_record

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs" / "nasbench-graph" / "cora"
RECORDS = sorted(p for p in RUNS.glob("*/cpu-b*-s0.json") if p.parent.name != "random-sampling")


def test_committed_records_exist():
    assert {p.parent.name for p in RECORDS} >= {"random", "evolution", "agnn", "graphnas-rl"}


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_committed_table_search_reruns_to_its_history(path, tmp_path):
    committed = read_record(path)
    rerun, _ = run_search(request_of(committed, tmp_path))
    assert same_search(committed, rerun)
