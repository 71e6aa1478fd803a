"""Speed of one FaDE region training step against one step of a single architecture of the region.

Run: `pytest benchmarks/test_fade_bench.py`. The region holds k = 4 candidate cells in each of L
stages (k**L architectures, k*L cell modules; FaDE, Sec. 3); the single architecture is one path of
it (the first candidate of every stage), built by the space's own `to_model`. A region step is a
forward + backward through all k*L cells, so it should cost about k times a path's step for every L,
not k**L times: the linear-in-depth claim, as wall time. `test_region_cost_is_linear_in_depth`
checks the ratio directly (loosely: timing noise on a shared CPU).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasrepro.harness.table import TABLE_PRESETS
from nasrepro.harness.task import Metric, Task
from nasrepro.methods.fade.region import HierView, RegionSize
from nasrepro.spaces.hierarchical import HierArch, HierarchicalSpace

K = 4


class _Images(Task):
    name = "fade-bench"
    metric = Metric("accuracy", "max")
    kind = "train"
    presets = TABLE_PRESETS
    input_shape = (3, 32, 32)
    num_classes = 10


def _models(stages: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    space = HierarchicalSpace(stages=stages, min_vertices=3, max_vertices=3, channels=16)
    rng = np.random.default_rng(0)
    candidates = []
    for _ in range(stages):
        cells: list = []
        while len(cells) < K:
            cell = space.sample_cell(rng)
            if cell not in cells:
                cells.append(cell)
        candidates.append(cells)
    torch.manual_seed(0)
    region = HierView(space).build(candidates, _Images(), RegionSize(), False, False)
    path = space.to_model(HierArch(tuple(c[0] for c in candidates)), _Images())
    return region, path


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


@pytest.mark.benchmark(group="FaDE region step vs one path's step (batch 32, CIFAR-sized)")
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("what", ["region", "path"])
def test_training_step_speed(benchmark, stages, what):
    region, path = _models(stages)
    model = region if what == "region" else path
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    benchmark(_step, model, x, y)


def test_region_cost_is_linear_in_depth():
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    for stages in (2, 3):
        region, path = _models(stages)
        times = {}
        for name, model in (("region", region), ("path", path)):
            _step(model, x, y)  # warm-up
            start = time.perf_counter()
            for _ in range(3):
                _step(model, x, y)
            times[name] = time.perf_counter() - start
        ratio = times["region"] / times["path"]
        assert ratio < 2 * K < K**stages, (stages, ratio)
