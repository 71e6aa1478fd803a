"""MemNet on its own CIFAR-10 cell space, children trained by the harness (slow: real training)."""

from __future__ import annotations

import pytest

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.harness.arch_memory import network_memory
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task


@pytest.mark.slow
def test_memnet_grows_and_trims_on_cifar10_cells_within_the_bound(tmp_path, data_root):
    space, task = get_space("memnet-cells-w8"), get_task("cifar10")
    config = {"round0": 2, "top_k": 2, "rounds": 1, "ranker_epochs": 3, "ranker_hidden": 8}
    config["memory_bound_mb"] = 0.2  # 6 of the 28 round-0 networks at w = 8 are above it
    request = SearchRequest(
        method="memnet",
        task="cifar10",
        space="memnet-cells-w8",
        seed=0,
        budget=4,
        preset="smoke",
        method_config=config,
        out=tmp_path,
        wandb="disabled",
        measure=False,
        data_dir=data_root,
    )
    record, _ = run_search(request)
    extra = record["method_extra"]
    assert record["search_cost"]["queries"] == 4
    assert extra["rounds"][0]["over_bound"] > 0 and extra["rounds"][1]["trained"] == 2
    for query in record["history"]:
        assert network_memory(space, task, space.parse(query["arch"])).total_mb <= 0.2
    assert extra["incumbent_memory_mb"] <= 0.2
