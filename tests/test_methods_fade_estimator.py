"""The FaDE estimator (nasrepro/methods/fade/estimator.py): mixing, eval path, cost, ranks."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.harness.run import TrainerFactory
from nasrepro.harness.table import TABLE_PRESETS
from nasrepro.harness.task import Metric, Task
from nasrepro.methods.fade.estimator import EstimatorSettings, FadeEstimator, MixedStage
from nasrepro.methods.fade.region import HierView, RegionSize
from nasrepro.spaces.hierarchical import HierarchicalMLPSpace, parse_cell


class _Flat(Task):
    name = "fade-flat"
    metric = Metric("accuracy", "max")
    kind = "train"
    presets = TABLE_PRESETS
    input_shape = (12,)
    num_classes = 3


def _candidates(k: int) -> list[nn.Module]:
    return [nn.Linear(4, 4) for _ in range(k)]


@pytest.mark.parametrize("sampling", [False, True])
def test_mixing_weights_sum_to_one_per_stage(sampling):
    torch.manual_seed(0)
    stage = MixedStage(_candidates(5), sampling=sampling, random_init=True)
    for _ in range(5):
        weights = stage.mixing_weights()
        assert torch.isclose(weights.sum(), torch.tensor(1.0))
        if sampling:  # hard Gumbel: one-hot samples
            assert sorted(weights.tolist()) == [0.0] * 4 + [1.0]
    assert torch.isclose(stage.ranks().sum(), torch.tensor(1.0))


def test_eval_mode_is_the_one_hot_argmax_path():
    torch.manual_seed(1)
    stage = MixedStage(_candidates(3))
    with torch.no_grad():
        stage.alphas.copy_(torch.tensor([0.1, 2.0, -1.0]))
    stage.eval()
    assert stage.mixing_weights().tolist() == [0.0, 1.0, 0.0]
    x = torch.randn(2, 4)
    assert torch.equal(stage(x), stage.candidates[1](x))
    stage.train()
    assert not torch.equal(stage(x), stage.candidates[1](x))


def _region(stages: int, k: int) -> nn.Module:
    space = HierarchicalMLPSpace(stages=stages, width=8)
    cell = parse_cell('{"1":[0,1],"2":[0,0]}')
    return HierView(space).build([[cell] * k] * stages, _Flat(), RegionSize(), False, False)


def test_parameter_count_is_linear_in_depth_k_times_l_cells():
    k = 4
    counts = [sum(p.numel() for p in _region(depth, k).parameters()) for depth in (1, 2, 3, 4)]
    per_stage = {b - a for a, b in zip(counts, counts[1:], strict=False)}
    cell = 2 * (8 * 8 + 8)  # two Linear(8, 8) edges: 1->2 and 2->OUTPUT
    assert per_stage == {k * cell + k}  # k cells and k alphas per added stage
    stages = [m for m in _region(3, k).modules() if isinstance(m, MixedStage)]
    assert len(stages) == 3 and all(len(s.candidates) == k for s in stages)  # k*L cell modules for k**L paths


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def _synthetic_fit(seed: int, mode: str, epochs: int = 4) -> list[float]:
    """A region whose stage holds an identity cell and a zeroed cell: only the identity lets the
    classifier see the input, so the identity cell is strictly better."""
    gen = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(256, 6, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    L.seed_everything(seed, verbose=False)
    network = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), MixedStage([_Zero(), nn.Identity()]), nn.Linear(8, 2))
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    alpha = DataLoader(
        TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    settings = EstimatorSettings(
        mode=mode, epochs=epochs, lr_start=0.05, lr_end=0.01, alpha_lr_start=0.1, alpha_lr_end=0.05
    )
    module = FadeEstimator(network, settings, alpha)
    TrainerFactory(accelerator="cpu", devices=1)(max_epochs=epochs, limit_val_batches=0).fit(module, train)
    assert len(module.alpha_history) == epochs
    return module.ranks()[0]


@pytest.mark.parametrize("mode", ["first_order", "trivial", "second_order"])
def test_fade_ranks_the_better_cell_higher_across_seeds(mode):
    wins = sum(ranks[1] > ranks[0] for ranks in (_synthetic_fit(seed, mode) for seed in range(3)))
    assert wins >= 2


def test_linear_lr_factor_schedule_over_min_5_epochs():
    network = nn.Sequential(MixedStage(_candidates(2)))
    settings = EstimatorSettings(
        mode="first_order", epochs=8, lr_start=1.0, lr_end=0.1, alpha_lr_start=0.5, alpha_lr_end=0.05
    )
    module = FadeEstimator(network, settings, alpha_loader=DataLoader([]))
    optimizers, schedulers = module.configure_optimizers()
    lrs = []
    for _ in range(7):
        lrs.append(round(optimizers[0].param_groups[0]["lr"], 6))
        for s in schedulers:
            s.step()
    assert lrs == [1.0, 0.82, 0.64, 0.46, 0.28, 0.1, 0.1]  # base lr 1 x factor, flat after 5 epochs
    assert optimizers[1].param_groups[0]["lr"] == pytest.approx(0.05)
