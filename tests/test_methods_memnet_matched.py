"""MemNet's comparison with its bounded baselines at equal numbers of evaluated networks
(`nasrepro.methods.memnet.matched`): the cut, the incumbents, and the table's two reference
architectures."""

from __future__ import annotations

import json

import pytest

from nasrepro.harness import arch_memory
from nasrepro.harness.arch_memory import NetMemory
from nasrepro.methods.memnet import matched
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task


def record(seed, scores, best=None, tag="bound1.5", method="random"):
    history = [
        {"arch": f"a{i}", "score": s, "val": s, "test": s + 3, "status": "ok"} for i, s in enumerate(scores)
    ]
    best = best if best is not None else max(range(len(scores)), key=lambda i: scores[i])
    return {
        "kind": "search",
        "preset": "cpu",
        "method": method,
        "tag": tag,
        "budget": 100,
        "seed": seed,
        "direction": "max",
        "history": history,
        "best_arch": f"a{best}",
        "metrics": {"val": scores[best], "test": scores[best] + 3},
    }


def test_a_baseline_is_cut_to_the_queries_of_the_same_memnet_seed():
    memnet = {0: record(0, [50, 60], best=0, method="memnet"), 1: record(1, [1, 2, 3], method="memnet")}
    baseline = {0: record(0, [10, 70, 65, 99]), 1: record(1, [80, 80, 90, 99]), 2: record(2, [1])}
    rows = matched.matched(memnet, baseline)
    assert [(r["seed"], r["queries"], r["arch"], r["val"]) for r in rows] == [
        (0, 2, "a1", 70),
        (1, 3, "a2", 90),
    ]
    # ties go to the first, as the evaluator's best does; failed queries never win
    tied = record(3, [80, 80])
    tied["history"].insert(0, {"arch": "x", "score": None, "val": None, "test": None, "status": "failed"})
    assert matched.first_n_incumbent(tied, 3)["arch"] == "a0"
    # MemNet's own incumbent is the one it chose (by S), not its most accurate query
    assert matched.own_incumbent(memnet[0]) == {"queries": 2, "arch": "a0", "val": 50, "test": 53}


def test_rows_are_read_by_method_tag_and_budget(tmp_path):
    folder = tmp_path / "runs" / "nasbench201" / "cifar10" / "random"
    folder.mkdir(parents=True)
    for seed in (0, 1):
        (folder / f"s{seed}.json").write_text(json.dumps(record(seed, [1, 2])))
    (folder / "smoke.json").write_text(json.dumps({**record(5, [1]), "preset": "smoke"}))
    rows = matched.records_by_row(tmp_path, "nasbench201/cifar10", "cpu")
    assert list(rows) == ["random[bound1.5] b100"] and sorted(rows["random[bound1.5] b100"]) == [0, 1]


def test_the_table_references_are_the_most_accurate_without_and_within_the_bound(data_root, monkeypatch):
    task, space = get_task("nasbench201/cifar10"), get_space("nasbench201")

    def memory(space, task, arch):  # a 3x3 conv is heavy, everything else light
        return NetMemory(10**6 if "nor_conv_3x3" in str(arch) else 1000, 0)

    monkeypatch.setattr(arch_memory, "network_memory", memory)
    found = matched.oracles(task, space, bound_mb=1.0)
    canonical = [(a, e) for a, e in task.table().items() if space.key(a) == str(a)]
    assert found["canonical"] == len(canonical) == 5044
    assert found["best"]["val"] == max(e.val for _, e in canonical)
    light = [e.val for a, e in canonical if "nor_conv_3x3" not in str(a)]
    assert found["within"] == len(light) and found["best_within"]["val"] == max(light)
    assert "nor_conv_3x3" not in found["best_within"]["arch"] and found["best_within"]["memory_mb"] <= 1.0
    assert found["best"]["val"] > found["best_within"]["val"]
    assert found["best"]["test"] == pytest.approx(94.37333333333333)  # results/table_optima.json
