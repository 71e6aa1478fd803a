"""Rerunning committed table searches: a record is replaced only by a rerun with its very history."""

import json

import toys

from nasrepro.app.requests import SearchRequest
from nasrepro.app.rerun import main
from nasrepro.app.search import run_search

toys.register()


def _records(out, seeds):
    paths = []
    for seed in seeds:
        request = SearchRequest(
            method="evolution",
            task="toy-table",
            seed=seed,
            budget=6,
            preset="smoke",
            out=out,
            wandb="disabled",
            method_config={"population": 3, "sample_size": 2},
        )
        paths.append(run_search(request)[1])
    return paths


def test_a_faithful_rerun_replaces_the_record_and_a_differing_one_is_kept(tmp_path, capsys):
    same, planted = _records(tmp_path, [0, 1])
    for path in (same, planted):  # as committed before the harness recorded the charged cost
        data = json.loads(path.read_text())
        data["search_cost"].pop("charged_cost")
        path.write_text(json.dumps(data))
    data = json.loads(planted.read_text())
    data["history"][2]["test"] += 1.0  # a record whose meaning the code no longer reproduces
    planted.write_text(json.dumps(data))
    before = planted.read_text()
    assert main(["--results", str(tmp_path)]) == 1
    assert "charged_cost" in json.loads(same.read_text())["search_cost"]
    assert planted.read_text() == before and str(planted) in capsys.readouterr().err
    assert not list(tmp_path.glob(".rerun-*"))  # the scratch folder is gone


def test_missing_reruns_only_records_without_a_charged_cost(tmp_path):
    done, todo = _records(tmp_path, [0, 1])
    data = json.loads(todo.read_text())
    data["search_cost"].pop("charged_cost")
    todo.write_text(json.dumps(data))
    data = json.loads(done.read_text())
    data["history"][2]["test"] += 1.0  # would differ if it were rerun
    done.write_text(json.dumps(data))
    assert main(["--results", str(tmp_path), "--missing"]) == 0
    assert "charged_cost" in json.loads(todo.read_text())["search_cost"]
    assert json.loads(done.read_text())["history"][2]["test"] == data["history"][2]["test"]
