"""ProxylessNAS's central claim as behaviour, not timings (Cai, Zhu & Han, ICLR 2019, Sec. 3.2; fact
sheet item 7): with binary gates a supernet training step keeps the activations of ONE path, like training
the standalone network, while a DARTS-style mixed op (all paths weighted by softmax(alpha)) keeps the
activations of all N candidates, so its memory grows with N.

Memory is the analytic activation memory of one step (`harness.metrics.peak_training_memory`: what autograd
saves for backward), batch 8 at 32x32 on proxyless-cifar. The ``two``-mode architecture step also runs
the inactive path of each sampled pair (detached); `peak_training_memory` counts everything its saved-tensor
hook sees, including what that discarded sub-graph saved and freed at once, so for that step we count only
the saved tensors still alive at the end of the forward pass (`retained_activation_mb`), which is what
autograd really holds until backward.
"""

from __future__ import annotations

import dataclasses
import gc
import types
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.harness.metrics import MIB, peak_training_memory
from nasrepro.methods.proxylessnas.spaces import (
    CIFAR_SPACE,
    MBCONV_CODES,
    ProxylessArch,
    ProxylessSpace,
)
from nasrepro.methods.proxylessnas.supernet import MBConvSupernet

BATCH = 8
LIMIT = 1.3  # binary-gate step vs the standalone network of the same path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine two OpenMP threads can be many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def activation_mb(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    x, y = data
    return peak_training_memory(model, (x,), lambda out: F.cross_entropy(out, y))["activations_mb"]


def retained_activation_mb(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Bytes of distinct non-parameter storages that autograd saved AND still holds after the forward.

    Saved tensors are tracked by weak reference, so a tensor saved by a sub-graph that was discarded
    during the forward pass (an output computed with grad and then detached) is not counted.
    """
    x, y = data
    exclude = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    refs: list[weakref.ref] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        refs.append(weakref.ref(tensor))
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    gc.collect()
    storages: dict[int, int] = {}
    for ref in refs:
        tensor = ref()
        if tensor is not None and tensor.untyped_storage().data_ptr() not in exclude:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    del loss
    return sum(storages.values()) / MIB


def standalone(space: ProxylessSpace, arch: ProxylessArch) -> nn.Module:
    return space.to_model(arch, types.SimpleNamespace(num_classes=10))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mode", ["two", "full_v2"])
def test_binary_steps_keep_one_paths_activations(mode: str, seed: int, data) -> None:
    torch.manual_seed(seed)
    space = ProxylessSpace(CIFAR_SPACE)
    arch = space.sample(np.random.default_rng(seed))
    indices = space.encode(arch)
    path = activation_mb(standalone(space, arch), data)
    net = MBConvSupernet(CIFAR_SPACE, 10, mode=mode)

    # weight step: one sampled path per edge (here: the path of `arch`)
    net.set_active(indices)
    weight = activation_mb(net, data)
    assert weight <= LIMIT * path
    assert weight == pytest.approx(path, rel=0.02)  # the same path: the same saved activations

    # architecture step with the same active paths (partner of the pair: the next candidate)
    for group, index in zip(net.groups, indices, strict=True):
        partner = (index + 1) % len(group[0].names) if mode == "two" else None
        group[0].set_arch_paths(index, partner)
    arch_step = retained_activation_mb(net, data) if mode == "two" else activation_mb(net, data)
    assert arch_step <= LIMIT * path


def test_all_paths_memory_grows_with_the_number_of_candidates(data) -> None:
    """DARTS-style edges keep every candidate's activations: memory rises with the number of MBConv
    candidates (1, 2, 4, 6; zero where allowed) and the full 6-candidate supernet needs several times a
    single path's."""
    torch.manual_seed(0)
    memory = []
    for k in (1, 2, 4, 6):
        config = dataclasses.replace(CIFAR_SPACE, mbconv_codes=MBCONV_CODES[:k])
        memory.append(activation_mb(MBConvSupernet(config, 10, edge="all"), data))
    assert all(b > a for a, b in zip(memory, memory[1:], strict=False)), memory
    space = ProxylessSpace(CIFAR_SPACE)
    biggest_path = max(
        activation_mb(standalone(space, space.sample(np.random.default_rng(s))), data) for s in range(3)
    )
    assert memory[-1] > 3 * biggest_path
    # ...while a binary supernet over the same 6 candidates stays at one path
    net = MBConvSupernet(CIFAR_SPACE, 10, mode="two")
    torch.manual_seed(1)
    net.sample_weight_paths()
    assert activation_mb(net, data) < memory[-1] / 3
