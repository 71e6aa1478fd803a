"""The image step's training hooks (`harness.model_hooks`): an auxiliary loss with the recipe's
weight, in training only; drop-path ramped per epoch; and a network without hooks trained exactly
as before. Tiny linear models and one N = 1, F = 8 NAO network; the fits are a few CPU batches."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.errors import UsageError
from nasrepro.harness.method import training_preset
from nasrepro.harness.model_hooks import AuxiliaryLogits, ScheduledDropPath, drop_path_at
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.training import trainer_for
from nasrepro.spaces import get_space
from nasrepro.spaces.nao_cells_net import NAONetwork, drop_path_keep
from nasrepro.tasks import get_task
from nasrepro.tasks.image_classification import ImageClassificationModule


def recipe(**changes) -> TrainRecipe:
    return TrainRecipe(epochs=1, lr=0.1, batch_size=8, schedule="constant", momentum=0.0).replace(**changes)


def fixed_linear(scale: float = 1.0) -> nn.Linear:
    """A 4 -> 3 linear layer with fixed, non-random weights (golden values do not depend on torch's RNG)."""
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(12.0).reshape(3, 4).sin() * scale)
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return layer


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(32.0).reshape(8, 4).cos()
    return x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


class Hooked(nn.Module):
    """A network offering both hooks; it records what the training step asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = fixed_linear()
        self.aux: nn.Module | None = None
        self.drop_probs: list[float] = []
        self.aux_calls = 0

    def enable_auxiliary_head(self) -> None:
        self.aux = fixed_linear(scale=-2.0)  # a head whose loss differs clearly from the main one

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.aux_calls += 1
        aux = self.aux(x) if self.training and self.aux is not None else None
        return self.body(x), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def set_drop_path(self, prob: float) -> None:
        self.drop_probs.append(prob)


# --- auxiliary loss --------------------------------------------------------------------------------
def test_auxiliary_loss_is_added_with_the_recipe_s_weight():
    x, y = batch()
    model = Hooked()
    assert isinstance(model, AuxiliaryLogits) and isinstance(model, ScheduledDropPath)
    module = ImageClassificationModule(model, Preset("x", recipe(aux_weight=0.4), 1))
    assert model.aux is not None  # built by the hook because the recipe asks for it
    loss = module.training_step((x, y), 0)
    main, aux = F.cross_entropy(model.body(x), y), F.cross_entropy(model.aux(x), y)
    assert aux > 0.5 and not torch.isclose(main, aux)  # the checks below can tell the terms apart
    assert torch.allclose(loss, main + 0.4 * aux)
    for wrong in (main, main - 0.4 * aux, main + aux):  # weight ignored, sign flipped, weight 1
        assert not torch.isclose(loss, wrong)
    loss.backward()
    assert model.aux.weight.grad is not None and model.aux.weight.grad.abs().sum() > 0  # the head trains
    # label smoothing is the criterion of both heads (NAO_V1 uses one criterion)
    smooth = ImageClassificationModule(Hooked(), Preset("s", recipe(aux_weight=1.5, label_smoothing=0.1), 1))
    got = smooth.training_step((x, y), 0)
    expect = F.cross_entropy(smooth.model.body(x), y, label_smoothing=0.1) + 1.5 * F.cross_entropy(
        smooth.model.aux(x), y, label_smoothing=0.1
    )
    assert torch.allclose(got, expect)


def test_auxiliary_head_is_off_in_evaluation():
    x, y = batch()
    model = Hooked()
    module = ImageClassificationModule(model, Preset("x", recipe(aux_weight=0.4), 1))
    module.eval()
    module.validation_step((x, y), 0)
    assert model.aux_calls == 0  # evaluation calls the plain forward
    assert torch.allclose(module.eval_loss["val"].compute(), F.cross_entropy(model.body(x), y))
    # the NAO network: no auxiliary logits in eval mode, and the head never changes a prediction
    space = get_space("nao-cells-n1f8")
    net = space.to_model(space.sample(np.random.default_rng(0)), get_task("cifar10"))
    bare = sum(p.numel() for p in net.parameters())
    images = torch.randn(2, 3, 32, 32)
    net.eval()
    before = net(images)
    net.enable_auxiliary_head()
    assert sum(p.numel() for p in net.parameters()) > bare  # the head exists only on request
    assert net.forward_with_aux(images)[1] is None and torch.equal(net(images), before)
    net.train()
    logits, aux = net.forward_with_aux(images)
    assert logits.shape == aux.shape == (2, 10)


# --- drop-path schedule -----------------------------------------------------------------------------
def test_drop_path_ramps_linearly_per_epoch_in_a_fit():
    assert [drop_path_at(0.2, e, 4) for e in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.15])
    r = recipe(epochs=4, batch_size=4, drop_path=0.2)
    model = Hooked()
    data = TensorDataset(*batch())
    trainer = trainer_for(Preset("x", r, 1), accelerator="cpu", devices=1)
    trainer.fit(ImageClassificationModule(model, Preset("x", r, 1)), DataLoader(data, r.batch_size))
    assert model.drop_probs == pytest.approx([0.0, 0.05, 0.1, 0.15])  # once per epoch, before it
    with pytest.raises(UsageError):
        drop_path_at(0.2, 0, 0)


def test_nao_network_scales_the_epoch_s_probability_by_depth_as_nao_v1():
    net = NAONetwork(get_space("nao-cells-n1f8").sample(np.random.default_rng(1)), layers=1, channels=8)
    cells = len(net.cells)  # 3N + 2 = 5
    net.train()
    assert [net._keep(layer, None) for layer in range(cells)] == [1.0] * cells  # off until set
    epochs, steps_per_epoch = 10, 7
    for epoch in (1, 4, 9):
        net.set_drop_path(drop_path_at(0.2, epoch, epochs))
        # NAO_V1 apply_drop_path (keep 0.8) at the last step of the previous epoch: the same ramp
        step = epoch * steps_per_epoch - 1
        nao_v1 = [drop_path_keep(0.8, layer, cells, step, epochs * steps_per_epoch) for layer in range(cells)]
        assert [net._keep(layer, None) for layer in range(cells)] == pytest.approx(nao_v1)
    assert net._keep(cells - 1, None) == pytest.approx(1 - 0.2 * 9 / 10)
    net.eval()
    assert net._keep(cells - 1, None) == 1.0  # never in evaluation


# --- a network without hooks ------------------------------------------------------------------------
def test_a_network_without_hooks_trains_exactly_as_before():
    x, y = batch()
    model = fixed_linear()
    module = ImageClassificationModule(model, Preset("x", recipe(), 1))
    loss = module.training_step((x, y), 0)
    assert torch.equal(loss, F.cross_entropy(fixed_linear()(x), y))  # the plain step, bit for bit
    # golden values, computed with the image step as it was before the hooks (commit 19296b0)
    assert loss.item() == pytest.approx(1.0368612, abs=1e-6)
    # one SGD step through a real fit: w - lr * grad, as the step before the hooks existed
    L.seed_everything(0, verbose=False)
    reference = fixed_linear()
    F.cross_entropy(reference(x), y).backward()
    expected = reference.weight.detach() - 0.1 * reference.weight.grad
    trained = fixed_linear()
    r = recipe(batch_size=8)
    trainer = trainer_for(Preset("x", r, 1), accelerator="cpu", devices=1)
    trainer.fit(ImageClassificationModule(trained, Preset("x", r, 1)), DataLoader(TensorDataset(x, y), 8))
    assert torch.allclose(trained.weight, expected, atol=1e-7)
    golden = [[0.0332836, 0.8624532, 0.8986872, 0.1086724], [-0.7687804, -0.9506398, -0.2584854, 0.6713193],
              [0.9680525, 0.3828519, -0.5543410, -0.9818753]]  # fmt: skip
    assert torch.allclose(trained.weight, torch.tensor(golden), atol=1e-6)


def test_a_recipe_needing_a_hook_the_network_lacks_is_refused():
    with pytest.raises(UsageError, match="aux_weight 0.4.*Linear"):
        ImageClassificationModule(nn.Linear(4, 3), Preset("x", recipe(aux_weight=0.4), 1))
    with pytest.raises(UsageError, match="drop_path 0.2"):
        ImageClassificationModule(nn.Linear(4, 3), Preset("x", recipe(drop_path=0.2), 1))


# --- the recipe fields --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [{"aux_weight": -0.4}, {"aux_weight": math.nan}, {"aux_weight": True}, {"drop_path": 1.0},
     {"drop_path": -0.1}, {"drop_path": "0.2"}],
)  # fmt: skip
def test_malformed_hook_fields_are_usage_errors(changes):
    with pytest.raises(UsageError):
        recipe(**changes)


def test_hook_fields_are_declared_recorded_and_refused_where_not_applied():
    r = recipe(aux_weight=0.4, drop_path=0.2)
    assert r.to_dict()["aux_weight"] == 0.4 and r.to_dict()["drop_path"] == 0.2
    get_task("cifar10").check_recipe(r)
    with pytest.raises(UsageError, match="aux_weight"):
        get_task("ptb").check_recipe(recipe(aux_weight=0.4))


def test_the_nao_network_trains_with_both_hooks_and_the_paper_recipe_builds():
    space = get_space("nao-cells-n1f8")
    net = space.to_model(space.sample(np.random.default_rng(2)), get_task("cifar10"))
    r = recipe(epochs=2, batch_size=4, aux_weight=0.4, drop_path=0.2, limit_train_batches=2)
    module = ImageClassificationModule(net, Preset("x", r, 1))
    head = [p.detach().clone() for p in net.aux_head.parameters()]
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.arange(8) % 10)
    trainer = trainer_for(Preset("x", r, 1), accelerator="cpu", devices=1)
    trainer.fit(module, DataLoader(data, 4))
    assert net.drop_path_prob == pytest.approx(0.1)  # the second (last) epoch's: 0.2 * 1 / 2
    assert any(not torch.equal(a, b) for a, b in zip(head, net.aux_head.parameters(), strict=True))
    assert math.isfinite(float(trainer.callback_metrics["train/aux_loss"]))
    # the space's protocol at the CIFAR-10 paper preset (cosine; the task's multistep epochs cleared)
    assert training_preset(get_task("cifar10"), space, None, "paper").recipe.schedule == "cosine"


def test_nao_ws_final_training_uses_the_auxiliary_loss_and_drop_path():
    from nasrepro.methods.nao.ws_search import NAOWS

    task, space = get_task("cifar10"), get_space("nao-cells-n1f8")
    for preset in ("smoke", "cpu", "paper"):
        trained = training_preset(task, space, NAOWS(), preset).recipe
        assert (trained.aux_weight, trained.drop_path) == (0.4, 0.2)  # NAO_V1 train_cifar.py
    assert training_preset(task, space, NAOWS(), "paper").recipe.epochs == 600
