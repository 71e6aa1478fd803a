"""What the liveness-exact memory accounting (`harness.memory.measure_memory`: FLOPs, an inference trace
and a training-step trace) costs on a full CIFAR network (ResNet-20) and on torchvision's MobileNetV2 at
224 px, side by side with one plain training step (forward + backward) of the same model as the baseline.

Target: under 1 s each on the CPU (issue 12). Timing is reported, not asserted (a loaded machine would
fail it); the asserted numbers are deterministic: parameter counts, weight bytes and inference peaks,
each explained from the architecture. Run with `pytest benchmarks/test_memory_bench.py`.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from nasrepro.harness.memory import MemoryReport, measure_memory
from nasrepro.tasks.models.resnet import resnet20

F32 = 4


def _training_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()


def _bench_measure(benchmark, model: nn.Module, x: torch.Tensor) -> MemoryReport:
    report = benchmark.pedantic(measure_memory, args=(model, (x,)), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({k: v for k, v in report.to_dict().items() if k.endswith(("_mb", "params"))})
    return report


# --- ResNet-20 on CIFAR-10 --------------------------------------------------------------------------------
RESNET = "memory: resnet20 (nasrepro reference), batch 1, 3x32x32"


@pytest.fixture(scope="module")
def resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return resnet20(10), torch.randn(1, 3, 32, 32)


@pytest.mark.benchmark(group=RESNET)
def test_baseline_resnet20_training_step(benchmark, resnet):
    benchmark.pedantic(_training_step, args=resnet, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group=RESNET)
def test_measure_resnet20(benchmark, resnet):
    model, x = resnet
    report = _bench_measure(benchmark, model, x)
    assert report.params == sum(p.numel() for p in model.parameters()) == 269_722  # He et al.: 0.27M
    bn_channels = 16 * 7 + 32 * 6 + 64 * 6  # 19 BN layers: stem + 2 per block
    # parameters + BN running mean and var (fp32) + one int64 num_batches_tracked per BN layer
    assert report.weight_bytes == report.params * F32 + 2 * bn_channels * F32 + 19 * 8
    # peak at the first block's second BN: the block input (kept for the identity shortcut), conv2's
    # output and the BN output, each 16 x 32 x 32 fp32
    assert report.peak_inference_bytes == 3 * 16 * 32 * 32 * F32
    assert report.peak_training_bytes > report.peak_inference_bytes + report.params * F32  # + gradients
    assert 40e6 < report.macs < 42e6  # ~41M multiply-adds


# --- MobileNetV2 at 224 px ---------------------------------------------------------------------------------
MOBILENET = "memory: torchvision mobilenet_v2 (weights=None), batch 1, 3x224x224"


@pytest.fixture(scope="module")
def mobilenet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(weights=None), torch.randn(1, 3, 224, 224)


@pytest.mark.benchmark(group=MOBILENET)
def test_baseline_mobilenet_v2_training_step(benchmark, mobilenet):
    benchmark.pedantic(_training_step, args=mobilenet, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group=MOBILENET)
def test_measure_mobilenet_v2(benchmark, mobilenet):
    model, x = mobilenet
    report = _bench_measure(benchmark, model, x)
    assert report.params == torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"]
    # MemNAS README: "Params Memory 13.9 MB" = 3.47M x 4 B; torchvision's 3.50M params -> 14.0 MB
    assert round(report.params * F32 / 1e6, 1) == 14.0
    # peak at the first expanding block: its 1x1 conv output and that output's BN, 96 x 112 x 112 each
    assert report.peak_inference_bytes == 2 * 96 * 112 * 112 * F32
    assert 300e6 < report.macs < 301e6  # the 300M multiply-adds of Sandler et al. (2018), Table 3
