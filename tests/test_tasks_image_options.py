"""The image-training recipe options: cutout, label smoothing, no-decay keys, dropout, colour jitter,
the hold-out size and the multistep and per-step cosine schedules, on tiny tensors and fake data (no
real training; the per-step cosine is checked inside a tiny Lightning fit)."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.errors import UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe, configure_optimizers, param_groups
from nasrepro.harness.training import trainer_for
from nasrepro.methods.proxylessnas.spaces import CIFAR_SPACE, ProxylessSpace
from nasrepro.tasks import get_task
from nasrepro.tasks.cifar10 import Cifar10DataModule, CifarArrays
from nasrepro.tasks.image_classification import ImageClassificationModule, cutout
from nasrepro.tasks.imagenet import eval_transform, train_transform


def recipe(**changes) -> TrainRecipe:
    return TrainRecipe(epochs=1, lr=0.1, batch_size=8).replace(**changes)


def zero_square(image: torch.Tensor) -> tuple[range, range] | None:
    """The rows and columns of `image`'s zeros, asserted to be one axis-aligned rectangle in every
    channel at once (None when nothing is zero)."""
    zero = image == 0
    assert torch.equal(zero, zero[:1].expand_as(zero)), "cutout masks all channels alike"
    rows = zero[0].any(dim=1).nonzero().flatten().tolist()
    cols = zero[0].any(dim=0).nonzero().flatten().tolist()
    if not rows:
        return None
    assert rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
    assert bool(zero[0, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()), "the square is solid"
    assert int(zero[0].sum()) == len(rows) * len(cols), "nothing outside the square is zeroed"
    return range(rows[0], rows[-1] + 1), range(cols[0], cols[-1] + 1)


def assert_one_clipped_square(image: torch.Tensor, length: int, size: int) -> tuple[int, int]:
    rows, cols = zero_square(image)  # type: ignore[misc]
    for span in (rows, cols):
        # a full side, unless the border clipped it (the centre is anywhere in the image)
        assert len(span) == length or span.start == 0 or span.stop == size
        assert length // 2 <= len(span) <= length
    return len(rows), len(cols)


# --- cutout --------------------------------------------------------------------------------------
def test_cutout_zeroes_exactly_one_square_per_image_clipped_at_the_border():
    images = torch.rand(400, 3, 32, 32) + 0.5  # no zeros of their own
    out = cutout(images, 16, generator=torch.Generator().manual_seed(0))
    sides = [assert_one_clipped_square(image, 16, 32) for image in out]
    assert (16, 16) in sides and any(s != (16, 16) for s in sides)  # whole squares and clipped ones
    kept = out != 0
    assert torch.equal(out[kept], images[kept])  # every other pixel unchanged
    odd = cutout(images[:50], 5, generator=torch.Generator().manual_seed(1))
    assert (5, 5) in [assert_one_clipped_square(image, 5, 32) for image in odd]
    assert cutout(images, 0) is images


def _fake_cifar(n: int = 48) -> CifarArrays:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 10
    return CifarArrays(images, labels, images[:16].clone(), labels[:16].clone(), source="fake", layout="fake")


def test_cifar_cutout_in_training_batches_only():
    # Normalised CIFAR pixels are never exactly 0 (the means are not multiples of 1/255), so every
    # zero below is cutout's.
    data = Cifar10DataModule(_fake_cifar(), recipe(cutout=16, valid_size=16), seed=0)
    torch.manual_seed(0)
    images, _ = next(iter(data.train_dataloader()))
    for image in images:
        assert_one_clipped_square(image, 16, 32)
    for loader in (data.val_dataloader(), data.test_dataloader()):
        images, _ = next(iter(loader))
        assert not bool((images == 0).any())
    plain = Cifar10DataModule(_fake_cifar(), recipe(valid_size=16), seed=0)
    images, _ = next(iter(plain.train_dataloader()))
    assert not bool((images == 0).any())  # the default trains without cutout, as before


def test_imagenet_transforms_cutout_and_colour_jitter():
    from torchvision import transforms as T

    pixels = np.random.default_rng(0).integers(1, 255, (80, 80, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    torch.manual_seed(0)
    assert_one_clipped_square(train_transform(64, cutout=16)(image), 16, 64)
    assert not bool((eval_transform(64)(image) == 0).any())
    assert not any(isinstance(t, T.ColorJitter) for t in train_transform(64).transforms)  # default
    (jitter,) = [
        t for t in train_transform(64, (0.4, 0.4, 0.4, 0.1)).transforms if isinstance(t, T.ColorJitter)
    ]
    assert (jitter.brightness, jitter.contrast, jitter.saturation) == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4))
    assert jitter.hue == (-0.1, 0.1)


def test_tasks_refuse_the_options_they_do_not_apply():
    get_task("imagenet").check_recipe(recipe(color_jitter=(0.4, 0.4, 0.4, 0.1), cutout=16))
    get_task("cifar10").check_recipe(recipe(cutout=16, label_smoothing=0.1, no_decay_keys="bn"))
    with pytest.raises(UsageError, match="color_jitter"):
        get_task("cifar10").check_recipe(recipe(color_jitter=(0.4, 0.4, 0.4, 0.1)))
    with pytest.raises(UsageError, match="cutout"):
        get_task("ptb").check_recipe(recipe(cutout=16))
    for image_task in ("cifar10", "imagenet"):  # the hold-out is each image datamodule's own
        get_task(image_task).check_recipe(recipe(valid_size=50_000))
    with pytest.raises(UsageError, match="valid_size"):
        get_task("ptb").check_recipe(recipe(valid_size=50_000))


# --- label smoothing -----------------------------------------------------------------------------
def test_label_smoothing_is_torch_s_formula_in_training_and_off_in_evaluation():
    torch.manual_seed(0)
    model = nn.Linear(5, 4)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 0, 1])
    eps = 0.1
    smooth = ImageClassificationModule(model, Preset("x", recipe(label_smoothing=eps), 1))
    loss = smooth.training_step((x, y), 0)
    log_p = F.log_softmax(model(x), dim=-1)
    # Szegedy et al. 2016 / torch: (1 - eps) * CE(y) + eps * mean over the K classes of -log p_k
    expected = (1 - eps) * F.nll_loss(log_p, y) + eps * (-log_p.mean(dim=-1)).mean()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    smooth._evaluate((x, y), "val")  # evaluation scores the plain cross-entropy
    assert float(smooth.eval_loss["val"].compute()) == pytest.approx(float(F.nll_loss(log_p, y)), rel=1e-6)
    plain = ImageClassificationModule(model, Preset("y", recipe(), 1)).training_step((x, y), 0)
    assert float(plain.detach()) == pytest.approx(float(F.nll_loss(log_p, y)), rel=1e-6)
    assert float(loss.detach()) != pytest.approx(float(plain.detach()))


# --- no decay on BatchNorm -----------------------------------------------------------------------
def test_no_decay_keys_bn_exempts_exactly_the_batchnorm_parameters():
    net = ProxylessSpace(CIFAR_SPACE).to_model(
        ProxylessSpace(CIFAR_SPACE).sample(np.random.default_rng(0)), None
    )
    bn = {id(p) for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    module = ImageClassificationModule(net, Preset("x", recipe(weight_decay=4e-5, no_decay_keys="bn"), 1))
    decayed, exempt = module.configure_optimizers()["optimizer"].param_groups
    assert {id(p) for p in exempt["params"]} == bn and exempt["weight_decay"] == 0.0
    assert decayed["weight_decay"] == 4e-5 and not bn & {id(p) for p in decayed["params"]}
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(net.parameters()))
    (only,) = (
        ImageClassificationModule(net, Preset("y", recipe(weight_decay=4e-5), 1))
        .configure_optimizers()["optimizer"]
        .param_groups
    )
    assert only["weight_decay"] == 4e-5 and len(only["params"]) == len(list(net.parameters()))  # default
    with pytest.raises(UsageError, match="matches no parameter"):
        param_groups(nn.Linear(2, 2).named_parameters(), recipe(no_decay_keys="bn"))


# --- dropout -------------------------------------------------------------------------------------
def test_recipe_dropout_reaches_the_network_s_dropout_layer():
    space = ProxylessSpace(CIFAR_SPACE)
    net = space.to_model(space.sample(np.random.default_rng(0)), None)
    assert net.classifier.dropout.p == 0.0
    ImageClassificationModule(net, Preset("x", recipe(dropout=0.3), 1))
    assert net.classifier.dropout.p == 0.3
    with pytest.raises(UsageError, match="no dropout layer"):
        ImageClassificationModule(nn.Linear(2, 2), Preset("y", recipe(dropout=0.3), 1))
    keep = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2))
    ImageClassificationModule(keep, Preset("z", recipe(), 1))
    assert keep[0].p == 0.5  # dropout 0 (the default) leaves the network's own rate alone


# --- multistep schedule --------------------------------------------------------------------------
def test_multistep_learning_rate_at_the_milestones():
    r = recipe(epochs=300, lr=0.01, schedule="multistep", milestones=[60, 180, 240], gamma=0.1)
    assert r.milestones == (60, 180, 240)  # YAML lists become tuples
    config = configure_optimizers([nn.Parameter(torch.zeros(1))], r)
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(r.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = {0: 1e-2, 59: 1e-2, 60: 1e-3, 179: 1e-3, 180: 1e-4, 239: 1e-4, 240: 1e-5, 299: 1e-5}
    assert {epoch: rates[epoch] for epoch in expected} == pytest.approx(expected)


# --- per-step cosine schedule ---------------------------------------------------------------------
class _RatePerStep(L.Callback):
    """The learning rate each training batch's optimizer step uses (read before the step)."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def _rates_in_a_tiny_fit(r: TrainRecipe) -> list[float]:
    """The per-step rates of a real fit of the image module under `r` (harness Trainer, 1 CPU)."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(20, 4), torch.randint(0, 3, (20,)))
    record = _RatePerStep()
    trainer = trainer_for(Preset("x", r, 1), accelerator="cpu", devices=1, callbacks=[record])
    trainer.fit(ImageClassificationModule(nn.Linear(4, 3), Preset("x", r, 1)), DataLoader(data, r.batch_size))
    return record.rates


def test_cosine_step_anneals_every_optimizer_step_as_the_released_run_manager():
    # 3 epochs of 4 batches (5 exist; limit_train_batches keeps 4): T_total = 12 optimizer steps
    r = recipe(epochs=3, lr=0.05, batch_size=4, schedule="cosine-step", limit_train_batches=4)
    rates = _rates_in_a_tiny_fit(r)
    total = 3 * 4
    # released RunConfig._calc_learning_rate: 0.5 lr0 (1 + cos(pi T_cur / T_total)), T in batches,
    # set before batch T_cur's step
    closed = [0.5 * 0.05 * (1 + math.cos(math.pi * k / total)) for k in range(total)]
    assert rates == pytest.approx(closed, rel=1e-12, abs=1e-15)
    per_epoch = _rates_in_a_tiny_fit(r.replace(schedule="cosine"))
    assert per_epoch == pytest.approx(
        [0.5 * 0.05 * (1 + math.cos(math.pi * (k // 4) / 3)) for k in range(12)]
    )
    assert len(set(per_epoch)) == 3 and len(set(rates)) == total  # one rate per epoch vs per step
    assert r.to_dict()["schedule"] == "cosine-step"  # recorded with the recipe
    with pytest.raises(UsageError, match="number of optimizer steps"):
        configure_optimizers([nn.Parameter(torch.zeros(1))], r)  # outside a fit: no step count


@pytest.mark.parametrize(
    "changes",
    [
        {"schedule": "cosine-epoch"},
        {"valid_size": 0},
        {"valid_size": 2.5},
        {"extra": {"valid_size": 5_000}},  # a recipe field now: never silently ignored
        {"schedule": "multistep"},
        {"schedule": "multistep", "milestones": (60, 30)},
        {"schedule": "multistep", "milestones": (0, 30)},
        {"milestones": (30, 60)},  # the default cosine schedule would not apply them
        {"extra": {"lr_milestones": (30, 60)}},  # moved to a field: never silently ignored
        {"label_smoothing": 1.0},
        {"cutout": -1},
        {"color_jitter": (0.4, 0.4)},
    ],
)
def test_malformed_options_are_usage_errors(changes):
    with pytest.raises(UsageError):
        recipe(**changes)
