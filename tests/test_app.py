"""The orchestration layer: names resolved once, declarations enforced, progress, edges of the CLI."""

from __future__ import annotations

import io

import pytest
import toys

from nasrepro.app.progress import SearchProgress
from nasrepro.app.requests import SearchRequest
from nasrepro.app.resolve import resolve_search
from nasrepro.app.search import run_search
from nasrepro.cli import main
from nasrepro.errors import UsageError
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods import get_method

toys.register()


def test_evaluators_refuse_undeclared_attributes(toy_task, toy_space):
    """Methods cannot hang state on the evaluator (issue 11): its slots are all it has."""
    ev = TableEvaluator(toy_task, toy_space, budget=3)
    with pytest.raises(AttributeError):
        ev.warm_start = object()
    with pytest.raises(AttributeError):
        ev.preset_name = "cpu"


def test_an_incompatible_method_names_what_it_needs_and_where_it_runs(toy_task, monkeypatch):
    """AGNN needs the categorical view; the plain toy space has none: one usage error that lists
    the compatible tasks with the space each would search."""
    from nasrepro import tasks

    monkeypatch.setitem(tasks._instances, "toy-table", toy_task)  # the toy task without the view
    with pytest.raises(UsageError) as err:
        resolve_search("agnn", "toy-table", None, "smoke", 5, {}, None)
    message = str(err.value)
    assert "needs the categorical view" in message and "'toy'" in message
    assert "nasbench-graph/cora (nasbench-graph)" in message


def test_a_method_picks_its_own_default_space(monkeypatch):
    method = get_method("random")
    monkeypatch.setattr(method, "default_spaces", {"toy-l*": "graphnas"})
    resolved = resolve_search("random", "toy-live", None, "smoke", 2, {}, None)
    assert resolved.space.name == "graphnas"
    assert resolve_search("random", "toy-table", None, "smoke", 2, {}, None).space.name == "toy"


@pytest.mark.parametrize("tty", [False, True])
def test_progress_reports_every_query(tty, tmp_path, monkeypatch):
    stream = io.StringIO()
    seen = []

    class Recording(SearchProgress):
        def __init__(self, label, budget):
            super().__init__(label, budget, stream=stream, tty=tty)
            seen.append(self)

    monkeypatch.setattr("nasrepro.app.progress.SearchProgress", Recording)
    req = SearchRequest(
        method="random",
        task="toy-table",
        budget=6,
        preset="smoke",
        out=tmp_path,
        wandb="disabled",
        progress=True,
    )
    run_search(req)
    text = stream.getvalue()
    assert seen, "the runner did not attach progress"
    if tty:
        assert "6/6" in text and "best" in text
    else:
        lines = [line for line in text.splitlines() if line]
        assert len(lines) == 6 and lines[-1].startswith("random toy-table s0: query 6/6")
        assert "elapsed" in lines[0] and "left" in lines[0]


def toy_search(out, *extra: str) -> int:
    """`nasrepro search` of random search on the toy table, quiet, without W&B."""
    return main(
        ["search", "--method", "random", "--task", "toy-table", "--seeds", "0", "--preset", "smoke"]
        + ["--out", str(out), "--wandb", "disabled", "--quiet", *extra]
    )


def test_quiet_runs_print_no_progress(tmp_path, capsys):
    assert toy_search(tmp_path, "--budget", "4") == 0 and "query" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["search", "--task", "toy-table", "--out", "/proc/x"], "--out /proc/x: cannot write there"),
        (["search", "--task", "toy-table", "--workers", "2"], "use --executor ray"),
        (["search", "--task", "toy-table", "--parallel-seeds", "0"], "--parallel-seeds must be at least 1"),
        (
            ["search", "--task", "toy-table", "--budget", "lots"],
            "--budget (config key 'budget') got 'lots'; expected int",
        ),
    ],
)
def test_edges_are_one_line_usage_errors(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_methods_lists_papers_tasks_and_default_spaces(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "Real, Aggarwal, Huang & Le, AAAI 2019" in out
    assert "(space view: categorical)" in out


@pytest.mark.parametrize("flag", ["true", "false"])
def test_determinism_is_an_option_and_is_recorded(flag, tmp_path, capsys, monkeypatch):
    """The method's own fits take determinism from the run (issue 17); the record says which."""
    from nasrepro.harness.run import TrainerFactory

    seen = []

    class Recording(TrainerFactory):
        def __init__(self, **settings) -> None:
            super().__init__(**settings)
            seen.append(self.deterministic)

    monkeypatch.setattr("nasrepro.app.search.TrainerFactory", Recording)
    assert toy_search(tmp_path, "--budget", "3", "--deterministic", flag) == 0
    (path,) = tmp_path.rglob("*.json")
    from nasrepro.tracking.records import read_record

    assert read_record(path)["config"]["deterministic"] is (flag == "true")
    assert seen == [flag == "true"]


def test_records_carry_the_charged_cost_and_the_methods_own_overhead(tmp_path, monkeypatch):
    """The charged cost is the table's training time per unique query (1 simulated second on the toy
    table), whatever the look-up took; the overhead is the search's own time, not the set-up's."""
    import time

    from nasrepro.app import search as app_search

    real = app_search.build_evaluator

    def slow_setup(*args, **kwargs):  # a table that takes a second to load is the harness's cost
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_search, "build_evaluator", slow_setup)
    record, _ = run_search(
        SearchRequest(
            method="random",
            task="toy-table",
            seed=0,
            budget=5,
            preset="smoke",
            out=tmp_path,
            wandb="disabled",
        )
    )
    cost = record["search_cost"]
    assert cost["charged_cost"] == pytest.approx(5.0) and cost["queries"] == 5
    assert cost["wall_seconds"] >= 1.0 > cost["method_overhead_seconds"]
    # every answer is stamped with the search's clock, which starts after the set-up
    stamps = [q["elapsed_seconds"] for q in record["history"]]
    assert stamps == sorted(stamps) and 0 < stamps[-1] < cost["wall_seconds"] - 0.9
