"""Every CLI error path is one line on stderr with exit status 2 (usage) or 1 (runtime)."""

import json
import subprocess
import sys

import pytest

from nasrepro.cli import main, parse_seeds
from nasrepro.tasks import TASKS, get_task


@pytest.fixture
def toy_registered(toy_task):
    from nasrepro import tasks

    tasks._load()
    if "toy" not in TASKS:
        TASKS.add("toy", lambda: toy_task)
    tasks._instances.pop("toy", None)
    yield "toy"


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["search", "--method", "evolutoin", "--task", "toy"],
            "unknown method 'evolutoin'. Did you mean evolution?",
        ),
        (["search", "--task", "nope"], "unknown task 'nope'"),
        (["search", "--task", "toy", "--preset", "gpu"], "preset"),
        (["search", "--task", "toy", "--budget", "x"], "budget"),
        (["search", "--task", "toy", "--budget", "0"], "--budget must be a positive"),
        (["search", "--task", "nasbench201/cifar10", "--budget", "5045"], "holds (5044 isomorphism classes)"),
        (
            ["search", "--task", "nasbench201/cifar10", "--space", "nasbench-graph"],
            "table of the 'nasbench201' space",
        ),
        (["search", "--task", "toy", "--preset", "fast"], "choose one of 'smoke', 'cpu', 'paper'"),
        (["search", "--task", "toy", "--out", ""], "--out is empty"),
        (["data", "check", "--data-dir", "/nonexistent/dir"], "does not exist"),
        (["search", "--task", "toy", "--method-config", "{population: 10"], "not a YAML/JSON mapping"),
        (
            ["search", "--task", "cifar10", "--space", "nasbench-graph"],
            "does not build networks for task 'cifar10'",
        ),
        (
            ["search", "--task", "toy", "--method", "evolution", "--method-config", "{population: ten}"],
            "option 'population' must be an integer",
        ),
        (
            ["search", "--task", "toy", "--method", "evolution", "--method-config", "{population: null}"],
            "got None",
        ),
        (["search", "--task", "toy", "--seeds", "5-2"], "runs backwards"),
        (["search", "--task", "toy", "--seeds", "a-b"], "--seeds takes ranges"),
        (["search", "--task", "toy", "--seed", "1", "--seeds", "0-3"], "not both"),
        (["search", "--task", "toy", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["search", "--task", "toy", "--reward", "train"], "reward"),
        (["search", "--task", "toy", "--wandb", "maybe"], "wandb"),
        (["search", "--task", "toy", "--executor", "slurm"], "executor"),
        (["search", "--task", "toy", "--tag", "a/b"], "--tag 'a/b'"),
        (["search", "--task", "toy", "--workers", "0"], "--workers must be at least 1"),
        (
            ["search", "--task", "toy", "--method", "evolution", "--method-config", "{tournament: 3}"],
            "no option",
        ),
        (["evaluate", "--task", "toy", "--arch", "gcn"], "is a table task"),
        (["evaluate", "--task", "cora", "--arch", "0,1,2,9:gcn"], "malformed NAS-Bench-Graph architecture"),
        (["evaluate", "--task", "cora"], "arch"),
        (["data", "download", "mnist"], "name"),
        (["leaderboard", "--results", "/nonexistent/dir"], "no records"),
        (["proxylessnas", "build-lut", "--space", "nope", "--out", "x.json"], "unknown space 'nope'"),
        (["proxylessnas", "build-lut", "--device", "cuda:7", "--out", "x.json"], "cuda"),
        (["proxylessnas", "export-lut"], "needs a tool, one of build-lut, check-lut, export-config"),
        (["proxylessnas", "export-config", "--out", "x.config"], "needs --record RECORD.json or --arch"),
        (["proxylessnas", "export-config", "--out", "x", "--arch", "3E3", "--space", "graphnas"], "graphnas"),
        (
            ["proxylessnas", "export-config", "--out", "x", "--record", "/nonexistent.json"],
            "no search record",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, needle, capsys, toy_registered):
    code, out, err = run(argv, capsys)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("nasrepro: error: ")
    assert needle in err


def test_config_file_errors(tmp_path, capsys, toy_registered):
    assert run(["search", "--config", str(tmp_path / "missing.yaml")], capsys)[0] == 2
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("task: toy\nbudgett: 5\n")
    code, _, err = run(["search", "--config", str(bad_key)], capsys)
    assert code == 2 and "budgett" in err
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("task: toy\nbudget: many\n")
    code, _, err = run(["search", "--config", str(bad_type)], capsys)
    assert code == 2 and "budget" in err and err.count("\n") == 1


def test_config_file_with_override(tmp_path, capsys, toy_registered):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"task: toy\nmethod: random\nbudget: 7\nseeds: 0-1\nout: {tmp_path / 'out'}\nwandb: disabled\n"
    )
    code, out, err = run(["search", "--config", str(cfg), "--budget", "5", "--workers", "1"], capsys)
    assert code == 0, err
    recs = sorted((tmp_path / "out" / "runs" / "toy" / "random").glob("*.json"))
    assert [p.name for p in recs] == ["cpu-b5-s0.json", "cpu-b5-s1.json"]
    assert json.loads(recs[0].read_text())["search_cost"]["queries"] == 5
    assert "(mean ± std over n=2 seeds)" in out


def test_missing_data_is_a_runtime_error_exit_1(capsys, tmp_path):
    code, _, err = run(
        ["evaluate", "--task", "pubmed", "--arch", "gcn", "--wandb", "disabled", "--out", str(tmp_path)],
        capsys,
    )
    assert code == 1 and "ind.pubmed.allx" in err and err.count("\n") == 1


def test_parse_seeds():
    assert parse_seeds("0-3,7,5-5") == [0, 1, 2, 3, 5, 7]


def test_tasks_and_methods_listings(capsys):
    code, out, _ = run(["tasks"], capsys)
    assert code == 0 and "nasbench-graph/cora" in out and "cifar10" in out and "ptb" in out
    code, out, _ = run(["methods"], capsys)
    assert code == 0 and {"random", "random-sampling", "evolution"} <= {
        line.split()[0] for line in out.splitlines()
    }


def test_data_check_table(data_root, capsys):
    code, out, _ = run(["data", "check", "--data-dir", str(data_root)], capsys)
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert rows["Cora"] == "found" and rows["CiteSeer"] == "found" and rows["PubMed"] == "corrupt"


def test_console_script_help():
    proc = subprocess.run(
        [sys.executable, "-m", "nasrepro.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "search" in proc.stdout and "leaderboard" in proc.stdout


def test_evaluate_gcn_writes_a_valid_record(data_root, tmp_path, capsys):
    from nasrepro.tracking.records import read_record

    code, out, err = run(
        [
            "evaluate",
            "--task",
            "cora",
            "--arch",
            "gcn",
            "--preset",
            "smoke",
            "--seed",
            "0",
            "--out",
            str(tmp_path),
            "--wandb",
            "disabled",
            "--data-dir",
            str(data_root),
        ],
        capsys,
    )
    assert code == 0, err
    (path,) = (tmp_path / "runs" / "cora").rglob("*.json")
    record = read_record(path)
    assert (
        record["kind"] == "evaluate"
        and record["best_arch"] == "gcn"
        and record["metrics"]["test"] > 2 * 100 / 7
    )
    assert record["metrics"]["params"] == 23063 and record["metrics"]["flops"] > 0
    assert record["scale"] == "smoke test (not a result)"


def test_default_command_is_the_main_job(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        ["--seeds", "0-1", "--workers", "1", "--wandb", "disabled", "--preset", "smoke"], capsys
    )
    assert code == 0, err
    assert "evolution on nasbench-graph/cora [smoke]" in out
    assert (
        len(list((tmp_path / "results" / "runs" / "nasbench-graph" / "cora" / "evolution").glob("*.json")))
        == 2
    )
    assert get_task("nasbench-graph/cora").kind == "table"


def test_out_dir_check_is_safe_for_searches_started_together(tmp_path):
    """Two searches started at once into one --out must not trip over each other's write probe."""
    from concurrent.futures import ThreadPoolExecutor

    from nasrepro.cli import _out_dir

    with ThreadPoolExecutor(4) as pool:
        assert all(p == tmp_path for p in pool.map(lambda _: _out_dir(str(tmp_path)), range(2000)))
    assert list(tmp_path.iterdir()) == []  # no probe left behind
