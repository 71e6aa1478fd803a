"""The PTB task's ``lm_schedule: darts`` (AWD-LSTM / DARTS / NAO final LM training): the averaged-SGD
switch on planted validation losses, evaluation with the averaged weights, AR/TAR against their closed
forms, and the variable window lengths with their learning-rate scale."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nasrepro.tasks.ptb as ptb
from nasrepro.errors import UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.training import KeepBestValidation, trainer_for
from nasrepro.spaces.nao_rnn_cells import PAPER_CELLS, LMSize
from nasrepro.spaces.nao_rnn_net import CellLanguageModel
from nasrepro.tasks import lm_schedule as lms
from nasrepro.tasks.models.lstm import LSTMLanguageModel

BPTT = 8
DATA = os.environ.get("NASREPRO_DATA")


def darts_preset(epochs: int = 1, select: str = "min-val-loss", **extra) -> Preset:
    recipe = TrainRecipe(
        epochs=epochs, lr=2.0, optimizer="sgd", momentum=0.0, weight_decay=1e-4, batch_size=2,
        schedule="constant", grad_clip=0.25, select=select, limit_train_batches=3,
        extra={"bptt": BPTT, "eval_batch_size": 2, "test_batch_size": 1, "lm_schedule": "darts", **extra},
    )  # fmt: skip
    return Preset("t", recipe, 1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> ptb.Corpus:
    folder = tmp_path_factory.mktemp("ptb")
    text = "".join(f"{' '.join(str((i * 7 + k) % 11) for k in range(6))}\n" for i in range(40))
    for split, part in (("train", text), ("valid", text[:90]), ("test", text[:60])):
        (folder / f"ptb.{split}.txt").write_text(part)
    return ptb.build_corpus(folder, None, None)


def cell_model(corpus: ptb.Corpus, dropout: float = 0.0) -> CellLanguageModel:
    torch.manual_seed(0)
    size = LMSize(hidden=6, dropout=dropout, dropouth=0.0, dropoutx=0.0, dropouti=0.0)
    return CellLanguageModel(PAPER_CELLS["nao"], len(corpus.words), size)


class PlantedValidation(lms.DartsLanguageModelModule):
    """Logs a planted ``val/loss`` per epoch of the fit instead of the measured one."""

    planted: list[float] = []

    def _epoch_end(self, stage):
        if stage != "val" or self.trainer.state.fn != "fit":
            return super()._epoch_end(stage)
        self.sums["val_nll"].reset()
        self.sums["val_tokens"].reset()
        loss = torch.tensor(self.planted[self.current_epoch])
        self.log("val/loss", loss)
        self.log("val/perplexity", loss.exp())


def fit(corpus, preset, *callbacks, seed=0, planted=None):
    module = ptb.PTBTask().lightning_module(cell_model(corpus), preset)
    if planted is not None:
        module = PlantedValidation(module.model, preset)
        module.planted = planted
    data = ptb.PTBDataModule(corpus, preset.recipe, seed)
    trainer = trainer_for(preset, callbacks=list(callbacks), accelerator="cpu", devices=1)
    trainer.fit(module, datamodule=data)
    return module, trainer


class Optimizers(L.Callback):
    """The optimiser each epoch trains with."""

    def __init__(self):
        self.names = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.names.append(type(trainer.optimizers[0]).__name__)


# --- the non-monotone trigger -----------------------------------------------------------------
def test_rule_by_hand():
    assert not lms.should_switch([3.0, 4.0], 9.0, 2)  # not more than nonmono earlier validations
    assert lms.should_switch([3.0, 4.0, 5.0], 6.0, 2)  # 6 > min([3])
    assert not lms.should_switch([5.0, 4.0, 3.0], 4.5, 2)  # 4.5 < min([5])
    assert lms.should_switch([5.0, 4.0, 3.0, 4.5], 4.2, 2)  # 4.2 > min([5, 4])
    assert not lms.should_switch([5.0, 4.0, 3.0, 4.5], 4.0, 2)  # a tie is no worsening
    assert not lms.should_switch([5.0] * 5, 6.0, 5) and lms.should_switch([5.0] * 6, 6.0, 5)


def test_switch_happens_at_the_epoch_the_rule_says(corpus):
    # nonmono 2: epoch 5 is the first whose loss (4.1) exceeds the best of all but the last two
    # earlier ones (min(5, 4, 3) = 3). A rule reading all earlier losses would switch at 3, one
    # keeping one more (or requiring only nonmono earlier ones) at 4.
    planted = [5.0, 4.0, 3.0, 3.5, 3.9, 4.1, 4.0, 3.0]
    seen = Optimizers()
    module, trainer = fit(corpus, darts_preset(epochs=8, nonmono=2), seen, planted=planted)
    assert module.switch.switched_epoch == 5 and module.switch.fit_report() == {"asgd_switch_epoch": 5}
    assert seen.names == ["SGD"] * 6 + ["ASGD"] * 2
    assert module.switch.history == pytest.approx(planted[:6])
    asgd = trainer.optimizers[0]
    assert isinstance(asgd, torch.optim.ASGD)
    group = asgd.param_groups[0]
    assert (group["lr"], group["t0"], group["lambd"], group["weight_decay"]) == (2.0, 0, 0.0, 1e-4)


def test_no_switch_while_the_loss_keeps_improving(corpus):
    seen = Optimizers()
    module, trainer = fit(
        corpus, darts_preset(epochs=8, nonmono=2), seen, planted=[10.0 - k for k in range(8)]
    )
    assert module.switch.switched_epoch is None and seen.names == ["SGD"] * 8
    assert module.switch.fit_report() == {"asgd_switch_epoch": None}
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)


class Watch(L.Callback):
    """What the parameters hold during each validation and at each training step after the switch."""

    def __init__(self, switch_epoch):
        self.at, self.checked_val, self.checked_train = switch_epoch, 0, 0
        self.averaged = self.trained = None
        self.by_epoch = {}

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.current_epoch <= self.at or batch_idx:
            return
        state = trainer.optimizers[0].state
        params = list(pl_module.model.parameters())
        assert all(torch.equal(p, state[p]["ax"]) for p in params)
        switch = pl_module.switch
        assert switch._trained is not None
        assert any(not torch.equal(p, value) for p, value in switch._trained)
        self.averaged = [p.detach().clone() for p in params]
        self.by_epoch[trainer.current_epoch] = self.averaged
        self.trained = [value.clone() for _, value in switch._trained]
        self.checked_val += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.trained is None or batch_idx:
            return
        params = list(pl_module.model.parameters())
        assert all(torch.equal(p, v) for p, v in zip(params, self.trained, strict=True))
        assert any(not torch.equal(p, v) for p, v in zip(params, self.averaged, strict=True))
        self.checked_train += 1


def test_evaluation_uses_the_averaged_weights_after_the_switch(corpus):
    planted = [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # nonmono 1: switch at epoch 2
    watch = Watch(2)
    module, trainer = fit(corpus, darts_preset(epochs=6, nonmono=1), watch, planted=planted)
    assert module.switch.switched_epoch == 2
    assert watch.checked_val == 3 and watch.checked_train == 2  # epochs 3-5 validated, 4-5 restored
    state = trainer.optimizers[0].state
    after = [p.detach().clone() for p in module.model.parameters()]
    assert all(torch.equal(p, state[p]["ax"]) for p in module.model.parameters())  # kept after the fit
    module.eval()
    data = ptb.PTBDataModule(corpus, darts_preset().recipe)
    with torch.no_grad():  # the averaged weights' own validation loss, by hand
        total, count, hidden = 0.0, 0, None
        for inputs, targets in data.val_dataloader():
            logits, hidden = module.model(inputs, hidden)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
    val = trainer.validate(module, datamodule=data, verbose=False)[0]["val/perplexity"]
    assert math.isclose(val, math.exp(total / count), rel_tol=1e-5)
    assert all(torch.equal(p, a) for p, a in zip(module.model.parameters(), after, strict=True))


def test_the_selected_epoch_after_the_switch_keeps_its_averaged_weights(corpus):
    planted = [3.0, 4.0, 5.0, 2.5, 1.0, 2.0]  # switch at 2; least validation loss at epoch 4
    watch, keep = Watch(2), KeepBestValidation.for_rule("min-val-loss", "perplexity", "min")
    module, _ = fit(corpus, darts_preset(epochs=6, nonmono=1), watch, keep, planted=planted)
    assert keep.best_epoch == 4 and set(watch.by_epoch) == {3, 4, 5}
    kept = list(module.model.parameters())
    assert all(torch.equal(p, a) for p, a in zip(kept, watch.by_epoch[4], strict=True))
    assert any(not torch.equal(p, a) for p, a in zip(kept, watch.by_epoch[5], strict=True))


@pytest.mark.skipif(not DATA, reason="NASREPRO_DATA is not set")
def test_a_darts_fit_on_real_ptb_through_the_harness():
    from nasrepro.harness.training import fit_and_evaluate

    task = ptb.PTBTask()
    corpus = task.corpus(Path(DATA))
    preset = darts_preset(epochs=3, nonmono=1)
    preset = Preset("t", preset.recipe.replace(limit_eval_batches=2, batch_size=4), 1)
    result = fit_and_evaluate(task, cell_model(corpus), preset, seed=0, data_dir=Path(DATA))
    assert math.isfinite(result["val"]) and math.isfinite(result["test"]) and result["val"] > 1
    assert len(result["best_epochs"]) == 1
    assert list(result["reported"]) == ["asgd_switch_epochs"]  # the record keeps the switch epoch


# --- AR / TAR ---------------------------------------------------------------------------------
RAW = torch.tensor([[[0.0, 0.0]], [[1.0, 2.0]], [[3.0, 2.0]]])  # (time 3, batch 1, units 2)
DROPPED = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]], [[0.0, 3.0]]])
TAR = (1 + 4 + 4 + 0) / 4  # steps (1, 2), (2, 0)
AR = (0 + 4 + 1 + 0 + 0 + 9) / 6


def test_penalty_equals_its_closed_form():
    assert lms.activation_penalty(RAW, DROPPED, 0.0, 1.0).item() == pytest.approx(TAR)
    assert lms.activation_penalty(RAW, DROPPED, 1.0, 0.0).item() == pytest.approx(AR)
    assert lms.activation_penalty(RAW, DROPPED, 0.5, 1e-3).item() == pytest.approx(0.5 * AR + 1e-3 * TAR)
    assert lms.activation_penalty(RAW, DROPPED, 0.0, 0.0).item() == 0.0


class Planted(nn.Module):
    """Logits from a parameter; the planted raw and dropped outputs as the activations."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(3, 1, 5, generator=torch.Generator().manual_seed(0)))
        self.scale = nn.Parameter(torch.ones(()))

    def forward_with_activations(self, tokens, hidden=None):
        return self.logits, torch.zeros(1), RAW * self.scale, DROPPED * self.scale

    def forward(self, tokens, hidden=None):
        return self.logits, torch.zeros(1)


@pytest.mark.parametrize("alpha,beta", [(0.0, 1e-3), (0.0, 0.5), (2.0, 0.5)])
def test_training_loss_adds_ar_and_tar(alpha, beta):
    module = ptb.PTBTask().lightning_module(
        Planted(), darts_preset(nonmono=None, select="final", ar_alpha=alpha, tar_beta=beta)
    )
    assert isinstance(module, lms.DartsLanguageModelModule)
    tokens, targets = torch.zeros(3, 1, dtype=torch.long), torch.tensor([[1], [4], [2]])
    loss = module.training_step((tokens, targets, 3), 0)
    ce = F.cross_entropy(module.model.logits.reshape(3, 5), targets.reshape(-1))
    assert loss.item() == pytest.approx(ce.item() + alpha * AR + beta * TAR, rel=1e-6)
    loss.backward()  # the penalty reaches the network: d/dscale = 2 (alpha AR + beta TAR)
    assert module.model.scale.grad.item() == pytest.approx(2 * (alpha * AR + beta * TAR), rel=1e-5)
    assert module.sums["train_nll"].compute().item() == pytest.approx(3 * ce.item(), rel=1e-6)


def test_cell_model_exposes_raw_and_dropped_outputs(corpus):
    model = cell_model(corpus, dropout=0.5).train()
    tokens = torch.randint(0, len(corpus.words), (5, 3))
    torch.manual_seed(1)
    logits, hidden, raw, dropped = model.forward_with_activations(tokens)
    torch.manual_seed(1)
    assert torch.equal(model(tokens)[0], logits)
    assert torch.allclose(logits, model.decoder(dropped))
    ratio = dropped / raw
    assert torch.all((ratio.abs() < 1e-6) | ((ratio - 2.0).abs() < 1e-4)) and (ratio == 0).any()
    assert torch.equal(hidden[0], raw[-1])
    model.eval()
    _, _, raw, dropped = model.forward_with_activations(tokens)
    assert torch.equal(raw, dropped)


def test_regularising_a_model_without_activations_is_refused():
    lstm = LSTMLanguageModel(10, hidden_size=4, num_layers=1, dropout=0.0)
    with pytest.raises(UsageError, match="forward_with_activations"):
        ptb.PTBTask().lightning_module(lstm, darts_preset())
    ptb.PTBTask().lightning_module(lstm, darts_preset(tar_beta=0.0))  # nothing to read: allowed


# --- variable windows -------------------------------------------------------------------------
def test_window_lengths_follow_the_rule():
    rows, bptt, delta = 200_000, 35, 20
    windows = lms.window_lengths(rows, bptt, seed=3, epoch=1, max_delta=delta)
    assert windows == lms.window_lengths(rows, bptt, seed=3, epoch=1, max_delta=delta)
    assert windows != lms.window_lengths(rows, bptt, seed=3, epoch=2, max_delta=delta)
    assert windows != lms.window_lengths(rows, bptt, seed=4, epoch=1, max_delta=delta)
    starts, lengths = (np.array(x) for x in zip(*windows, strict=True))
    assert starts[0] == 0 and np.array_equal(starts[1:], np.cumsum(lengths)[:-1])
    assert starts[-1] < rows - 2 <= starts[-1] + lengths[-1]
    assert lengths.min() >= 5 and lengths.max() <= bptt + delta
    rng = np.random.default_rng([3, 1])  # the rule, draw by draw
    for _, length in windows[:200]:
        centre = bptt if rng.random() < 0.95 else bptt / 2
        assert length == min(max(5, int(rng.normal(centre, 5))), bptt + delta)
    # The mixture: P(len <= 26) = 0.05 Phi(1.9) + 0.95 Phi(-1.6) ~= 0.101 (0.055 without the half draws)
    assert abs((lengths <= 26).mean() - 0.101) < 0.015
    assert abs(lengths.mean() - (0.95 * 34.5 + 0.05 * 17.0)) < 0.4


def test_windows_of_the_data_module_are_seeded_per_epoch(corpus):
    recipe = darts_preset().recipe
    loader = ptb.PTBDataModule(corpus, recipe, seed=7).train_dataloader()
    rows = len(ptb.batchify(corpus.train, 2))
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        drawn = [(int(x[0][0, 0]), n) for x in loader for n in [x[2]]]
        expected = lms.window_lengths(rows, BPTT, 7, epoch, 20)
        assert [n for _, n in drawn] == [n for _, n in expected]
        data = ptb.batchify(corpus.train, 2)
        assert [first for first, _ in drawn] == [int(data[s, 0]) for s, _ in expected]
    inputs, targets, _ = list(loader)[-1]
    assert len(inputs) == len(targets) >= 1 and torch.equal(targets[-1], ptb.batchify(corpus.train, 2)[-1])


class Rates(L.Callback):
    def __init__(self):
        self.steps, self.after = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.drawn = int(batch[2])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps.append((trainer.current_epoch, self.drawn, optimizer.param_groups[0]["lr"]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_learning_rate_scales_with_the_drawn_length(corpus):
    rates = Rates()
    preset = darts_preset(epochs=2, select="final", nonmono=None)
    fit(corpus, preset, rates, seed=5)
    rows = len(ptb.batchify(corpus.train, 2))
    for epoch in (0, 1):
        expected = [n for _, n in lms.window_lengths(rows, BPTT, 5, epoch, 20)[:3]]
        assert [d for e, d, _ in rates.steps if e == epoch] == expected
    assert len({d for _, d, _ in rates.steps}) > 1
    assert all(lr == pytest.approx(2.0 * d / BPTT) for _, d, lr in rates.steps)
    assert rates.after == [2.0] * 6


# --- recipes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes,message",
    [
        ({"extra": {"lm_schedule": "awd"}}, "unknown lm_schedule"),
        ({"extra": {"lm_schedule": "plain", "tar_beta": 1e-3}}, "darts only"),
        ({"select": "final"}, "select: min-val-loss"),
        ({"schedule": "cosine"}, "constant"),
        ({"optimizer": "adam"}, "averaged SGD"),
        ({"extra": {"lm_schedule": "darts", "nonmono": -1}}, "nonmono"),
        ({"extra": {"lm_schedule": "darts", "nonmono": 0}}, "nonmono"),
        ({"extra": {"lm_schedule": "darts", "tar_beta": -1.0}}, "tar_beta"),
    ],
)
def test_recipes_the_schedule_would_not_apply_are_refused(changes, message):
    recipe = darts_preset().recipe.replace(**changes)
    with pytest.raises(UsageError, match=message):
        ptb.PTBTask().check_recipe(recipe)


def test_presets_record_the_schedule_and_nao_ws_paper_uses_darts():
    from nasrepro.harness.method import training_preset
    from nasrepro.methods import get_method
    from nasrepro.spaces import get_space

    task = ptb.PTBTask()
    assert {task.preset(p).recipe.extra["lm_schedule"] for p in ("smoke", "cpu", "paper")} == {"plain"}
    method, space = get_method("nao-ws")(), get_space("nao-rnn-cells-h32")
    paper = training_preset(task, space, method, "paper")
    assert lms.schedule_of(paper.recipe) == lms.DartsSchedule(5, 0.0, 1e-3, True, 20)
    assert paper.recipe.select == "min-val-loss" and paper.recipe.lr == 20.0
    assert lms.schedule_of(training_preset(task, space, method, "cpu").recipe) is None
    module = task.lightning_module(space.to_model(PAPER_CELLS["nao"], task), paper)
    assert isinstance(module, lms.DartsLanguageModelModule) and module.switch.nonmono == 5
