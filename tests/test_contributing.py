"""CONTRIBUTING.md's example method is real: its code block registers a method that the runner
resolves by name, searches within budget, and that the conformance rules hold for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import toys

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.harness.method import METHODS

DOC = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


@pytest.fixture
def example_method(monkeypatch):
    text = DOC.read_text()
    block = re.search(r"<!-- example:begin -->\s*```python\n(.*?)```\s*<!-- example:end -->", text, re.S)
    assert block, "CONTRIBUTING.md lost its example block"
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # unregistered after the test
    namespace: dict = {}
    exec(compile(block[1], str(DOC), "exec"), namespace)  # noqa: S102 -- our own documentation
    return namespace["HillClimb"]


def test_the_documented_example_method_runs_through_the_harness(example_method, tmp_path):
    toys.register()
    request = dict(task="toy-table", budget=8, preset="smoke", wandb="disabled", measure=False)
    record, _ = run_search(SearchRequest(method="example-hill-climb", out=tmp_path / "a", **request))
    again, _ = run_search(SearchRequest(method="example-hill-climb", out=tmp_path / "b", **request))
    archs = [q["arch"] for q in record["history"]]
    assert len(archs) == 8 == len(set(archs))
    assert [q["arch"] for q in again["history"]] == archs
    best = max(record["history"], key=lambda q: q["val"])
    assert record["best_arch"] == best["arch"]  # the climber keeps the best it saw
