"""How much a run record's hardware metrics cost: `model_metrics` on a ResNet-like CIFAR convnet, side by
side with `count_params` alone (the cheapest metric) as the baseline.

Run with `pytest benchmarks/test_metrics_bench.py` (not part of the default `tests/` run); < 30 s on 2 cores.
Timing the analytic memory estimate against real RSS growth was considered and dropped: RSS moves in
allocator pages and is too noisy for kilobyte-sized activations.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasrepro.harness.metrics import count_params, model_metrics

GROUP = "metrics: resnet-like convnet, batch 1, 3x32x32"


class Block(nn.Module):
    """A basic residual block (He et al. 2016): two 3x3 conv-BN, projection shortcut on downsampling."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet_like(widths: tuple[int, ...] = (16, 32, 64), blocks: int = 3, classes: int = 10) -> nn.Module:
    """ResNet-20's layout for CIFAR: a 3x3 stem, three stages of `blocks` blocks, global pool, linear."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(),
    ]
    c_in = widths[0]
    for stage, width in enumerate(widths):
        for i in range(blocks):
            layers.append(Block(c_in, width, 2 if stage > 0 and i == 0 else 1))
            c_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def model_and_inputs() -> tuple[nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    return resnet_like(), (torch.randn(1, 3, 32, 32),)


@pytest.mark.benchmark(group=GROUP)
def test_baseline_count_params(benchmark, model_and_inputs):
    model, _ = model_and_inputs
    n = benchmark(count_params, model)
    benchmark.extra_info["params"] = n
    assert n > 250_000  # ResNet-20 has ~0.27M parameters


@pytest.mark.benchmark(group=GROUP)
def test_model_metrics(benchmark, model_and_inputs):
    model, inputs = model_and_inputs
    result = benchmark.pedantic(
        model_metrics,
        args=(model, inputs),
        kwargs={"warmup": 3, "min_run_time": 0.1},
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )
    benchmark.extra_info.update(result)
    assert result["params"] == count_params(model)
    assert 35e6 < result["macs"] < 45e6  # ResNet-20: ~41M multiply-adds at 32x32
    assert result["latency_ms"] > 0 and result["peak_memory_mb"] > 0
