"""The AWD-LSTM / DARTS language-model training schedule, as a PTB recipe option.

``recipe.extra["lm_schedule"]`` chooses how the PTB task trains a language model:

* ``plain`` (default): consecutive fixed windows of ``bptt`` tokens, cross-entropy, the recipe's
  optimiser and schedule (optionally Zaremba's per-epoch decay, ``extra["lr_decay"]``).
* ``darts``: the final training of Merity et al. (2018, AWD-LSTM, Sec. 3-4) as DARTS ``rnn/train.py``
  and NAO ``NAO/rnn/train.py`` (``train_ptb_final.sh``) run it:

  - **non-monotonically triggered averaged SGD** (NT-ASGD): after every epoch's validation, while
    still on SGD, switch to ``torch.optim.ASGD(lr=recipe.lr, t0=0, lambd=0, weight_decay)`` when
    ``len(history) > nonmono and val_loss > min(history[:-nonmono])`` (history: the earlier
    validation losses; the code's ``best_val_loss``); after the switch every evaluation uses the
    averaged weights (the code's ``ax`` swap), and so does everything after the fit;
  - **AR / TAR** added to the training loss: ``ar_alpha * mean(dropped_output ** 2)`` and
    ``tar_beta * mean((h_t - h_{t-1}) ** 2)`` over the raw cell outputs (the model offers
    `ActivationOutputs`);
  - **variable window length**: per window ``b = bptt`` with probability 0.95, else ``bptt / 2``,
    then ``seq_len = min(max(5, int(N(b, 5))), bptt + max_seq_len_delta)``, the learning rate of that
    step scaled by ``seq_len / bptt`` (the drawn length, as the code, even where the stream's end
    truncates the last window); windows start while ``i < rows - 2``. Lengths are drawn from
    ``numpy.random.default_rng([seed, epoch])``: deterministic per seed and epoch (the code draws
    from numpy's global stream seeded once).

  Keys with their defaults (the code's ``train.py`` arguments): ``nonmono`` 5 (``null``: never
  switch), ``ar_alpha`` 0, ``tar_beta`` 1e-3, ``variable_bptt`` true, ``max_seq_len_delta`` 20.
  The switch reads every epoch's validation, so it needs ``select`` other than ``final`` (the code
  tests its best-validation-loss checkpoint: ``select: min-val-loss``); it replaces an SGD optimiser
  with a constant rate, so ``optimizer: sgd``, ``schedule: constant`` and no ``lr_decay``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Sampler

from nasrepro.errors import UsageError
from nasrepro.harness.recipe import Preset
from nasrepro.tasks.models.lstm import detach_hidden
from nasrepro.tasks.ptb import LanguageModelModule

LM_SCHEDULES = ("plain", "darts")
#: the ``darts`` schedule's `extra` keys and defaults (DARTS / NAO ``rnn/train.py`` arguments)
DARTS_DEFAULTS: Mapping[str, Any] = {
    "nonmono": 5,
    "ar_alpha": 0.0,
    "tar_beta": 1e-3,
    "variable_bptt": True,
    "max_seq_len_delta": 20,
}
#: AWD-LSTM's window-length rule: the half-length draw's probability, the spread and the floor
FULL_WINDOW_P, SEQ_LEN_STD, MIN_SEQ_LEN = 0.95, 5.0, 5


@dataclass(frozen=True)
class DartsSchedule:
    """The ``darts`` schedule's settings (`DARTS_DEFAULTS`)."""

    nonmono: int | None = 5
    ar_alpha: float = 0.0
    tar_beta: float = 1e-3
    variable_bptt: bool = True
    max_seq_len_delta: int = 20

    @property
    def regularises(self) -> bool:
        return self.ar_alpha > 0 or self.tar_beta > 0


def schedule_of(recipe: Any) -> DartsSchedule | None:
    """The recipe's ``darts`` settings, or None for ``plain``; refuses what nothing would apply."""
    extra = recipe.extra
    name = extra.get("lm_schedule", "plain")
    if name not in LM_SCHEDULES:
        raise UsageError(f"unknown lm_schedule {name!r}; use {', '.join(LM_SCHEDULES)}")
    keys = sorted(set(extra) & set(DARTS_DEFAULTS))
    if name == "plain":
        if keys:
            raise UsageError(f"recipe extra key(s) {keys} apply to lm_schedule: darts only")
        return None
    values = {**DARTS_DEFAULTS, **{k: extra[k] for k in keys}}
    nonmono = values["nonmono"]
    if nonmono is not None and (isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1):
        raise UsageError(  # 0 would read the code's best_val_loss[:-0], an empty list: it crashes there
            f"lm_schedule darts: nonmono must be an epoch count >= 1 or null, got {nonmono!r}"
        )
    for key in ("ar_alpha", "tar_beta"):
        if isinstance(values[key], bool) or not isinstance(values[key], int | float) or values[key] < 0:
            raise UsageError(f"lm_schedule darts: {key} must be a weight >= 0, got {values[key]!r}")
    if not isinstance(values["variable_bptt"], bool):
        raise UsageError(
            f"lm_schedule darts: variable_bptt must be true or false, got {values['variable_bptt']!r}"
        )
    delta = values["max_seq_len_delta"]
    if isinstance(delta, bool) or not isinstance(delta, int) or delta < 0:
        raise UsageError(f"lm_schedule darts: max_seq_len_delta must be >= 0, got {delta!r}")
    if "lr_decay" in extra or recipe.schedule != "constant":
        raise UsageError(
            "lm_schedule darts trains at a constant rate (then averaged SGD): set schedule: constant "
            "and drop extra.lr_decay"
        )
    if nonmono is not None:
        if recipe.optimizer != "sgd":
            raise UsageError(f"lm_schedule darts switches SGD to averaged SGD, not {recipe.optimizer!r}")
        if recipe.select == "final":
            raise UsageError(
                "lm_schedule darts switches on every epoch's validation loss, which a fit with select: "
                "final never computes; use select: min-val-loss (the code keeps that checkpoint) or nonmono: null"
            )
    return DartsSchedule(
        nonmono, float(values["ar_alpha"]), float(values["tar_beta"]), values["variable_bptt"], delta
    )


@runtime_checkable
class ActivationOutputs(Protocol):
    """A language model that returns the recurrent outputs AR and TAR read: ``(logits, hidden,
    raw, dropped)``, ``raw`` the cell outputs ``(seq_len, batch, hidden)`` before the output
    dropout, ``dropped`` after it (equal to ``raw`` in eval mode); logits are the decoder of ``dropped``."""

    def forward_with_activations(
        self, tokens: Tensor, hidden: Any = None
    ) -> tuple[Tensor, Any, Tensor, Tensor]: ...


def activation_penalty(raw: Tensor, dropped: Tensor, alpha: float, beta: float) -> Tensor:
    """AR + TAR (Merity et al. 2018, Sec. 4.6): ``alpha * mean(dropped ** 2) + beta *
    mean((raw[t] - raw[t-1]) ** 2)``, means over every element (time, batch, unit); a zero weight
    contributes nothing."""
    penalty = raw.new_zeros(())
    if alpha > 0:
        penalty = penalty + alpha * dropped.pow(2).mean()
    if beta > 0 and raw.shape[0] > 1:
        penalty = penalty + beta * (raw[1:] - raw[:-1]).pow(2).mean()
    return penalty


def should_switch(history: list[float], val_loss: float, nonmono: int) -> bool:
    """The non-monotone trigger: more than `nonmono` earlier validations, and this one worse than
    the best of all but the last `nonmono` of them."""
    return len(history) > nonmono and val_loss > min(history[: len(history) - nonmono])


def window_lengths(rows: int, bptt: int, seed: int, epoch: int, max_delta: int) -> list[tuple[int, int]]:
    """One epoch's ``(start, drawn length)`` windows over a stream of `rows` steps (module docstring)."""
    rng = np.random.default_rng([seed, epoch])
    out, i = [], 0
    while i < rows - 2:
        centre = bptt if rng.random() < FULL_WINDOW_P else bptt / 2.0
        seq_len = min(max(MIN_SEQ_LEN, int(rng.normal(centre, SEQ_LEN_STD))), bptt + max_delta)
        out.append((i, seq_len))
        i += seq_len
    return out


class VariableWindowSampler(Sampler):
    """Yields one epoch's ``(start, drawn length)`` windows; Lightning's fit loop calls `set_epoch`
    before every epoch (as for a distributed sampler). No ``__len__``: the count varies by epoch."""

    def __init__(self, rows: int, bptt: int, seed: int, max_delta: int) -> None:
        if bptt < 1:
            raise UsageError(f"bptt must be positive, got {bptt}")
        self.rows, self.bptt, self.seed, self.max_delta, self.epoch = rows, bptt, seed, max_delta, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(window_lengths(self.rows, self.bptt, self.seed, self.epoch, self.max_delta))


class StreamWindows(Dataset):
    """``(inputs, targets, drawn length)`` of a batchified stream at a ``(start, length)`` index;
    the window is cut at the stream's end (``get_batch``), the drawn length kept for the lr scale."""

    def __init__(self, data: Tensor) -> None:
        self.data = data

    def __getitem__(self, index: tuple[int, int]) -> tuple[Tensor, Tensor, int]:
        start, drawn = index
        length = min(drawn, len(self.data) - 1 - start)
        return self.data[start : start + length], self.data[start + 1 : start + 1 + length], drawn


class AveragedSGDSwitch(L.Callback):
    """NT-ASGD (module docstring) on the fit's optimiser, read from ``val/loss`` after each validation.

    After the switch, each validation of the fit runs with the averaged weights (ASGD's ``ax``)
    copied into the parameters; the trained weights are put back when the next training epoch
    starts. After the last epoch the averaged weights stay, so the scoring after the fit (and a
    `KeepBestValidation` snapshot) sees them, as the code saves and tests the averaged model.
    `switched_epoch` is the 0-based epoch whose validation triggered the switch.
    """

    def __init__(self, nonmono: int, lr: float, weight_decay: float, key: str = "val/loss") -> None:
        self.nonmono, self.lr, self.weight_decay, self.key = nonmono, lr, weight_decay, key
        self.history: list[float] = []
        self.switched_epoch: int | None = None
        self._trained: list[tuple[Tensor, Tensor]] | None = None  # (parameter, its trained value)

    def _fitting(self, trainer: L.Trainer) -> bool:
        return trainer.state.fn == "fit" and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.switched_epoch is None or self._trained is not None or not self._fitting(trainer):
            return
        optimizer = trainer.optimizers[0]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        averaged = [(p, optimizer.state[p]["ax"]) for p in params if "ax" in optimizer.state[p]]
        if not averaged:  # switched at the last validation: no averaged step yet
            return
        with torch.no_grad():
            self._trained = [(p, p.detach().clone()) for p, _ in averaged]
            for p, ax in averaged:
                p.copy_(ax)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._trained is None:
            return
        with torch.no_grad():
            for p, value in self._trained:
                p.copy_(value)
        self._trained = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.switched_epoch is not None or not self._fitting(trainer):
            return
        if self.key not in trainer.callback_metrics:
            raise UsageError(f"the averaged-SGD switch reads {self.key!r}, which the module did not log")
        val_loss = float(trainer.callback_metrics[self.key])
        if should_switch(self.history, val_loss, self.nonmono):
            old = trainer.optimizers[0]
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in old.param_groups]
            trainer.optimizers = [
                torch.optim.ASGD(groups, lr=self.lr, t0=0, lambd=0.0, weight_decay=self.weight_decay)
            ]
            self.switched_epoch = trainer.current_epoch
        self.history.append(val_loss)

    def fit_report(self) -> dict[str, float | int | None]:
        """The switch epoch, for the record (`nasrepro.harness.training.FitReporter`)."""
        return {"asgd_switch_epoch": self.switched_epoch}


class DartsLanguageModelModule(LanguageModelModule):
    """`LanguageModelModule` under the ``darts`` schedule: AR/TAR in the training loss, each step's
    learning rate scaled by its drawn window length, and the averaged-SGD switch as a callback of
    the module (`configure_callbacks`), so any Trainer that fits it applies it. ``train/loss`` stays
    the cross-entropy alone (the code's ``raw_loss``)."""

    def __init__(self, model: nn.Module, preset: Preset) -> None:
        super().__init__(model, preset)
        schedule = schedule_of(preset.recipe)
        if schedule is None:
            raise UsageError("DartsLanguageModelModule needs a recipe with extra.lm_schedule: darts")
        if schedule.regularises and not isinstance(model, ActivationOutputs):
            raise UsageError(
                f"lm_schedule darts with ar_alpha {schedule.ar_alpha} / tar_beta {schedule.tar_beta} needs "
                f"the network's recurrent outputs, but {type(model).__name__} has no forward_with_activations "
                f"(nasrepro.tasks.lm_schedule.ActivationOutputs); set both to 0 to train it without"
            )
        self.schedule = schedule
        self.bptt = int(preset.recipe.extra.get("bptt", 35))
        self.lr_scale = 1.0
        self.switch = (
            AveragedSGDSwitch(schedule.nonmono, preset.recipe.lr, preset.recipe.weight_decay)
            if schedule.nonmono is not None
            else None
        )

    def configure_callbacks(self) -> list[L.Callback]:
        return [] if self.switch is None else [self.switch]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        drawn = batch[2] if len(batch) > 2 else batch[0].shape[0]
        self.lr_scale = float(drawn) / self.bptt if self.schedule.variable_bptt else 1.0

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        inputs, targets = batch[0], batch[1]
        if not self.schedule.regularises:
            return self._step((inputs, targets), "train")
        logits, hidden, raw, dropped = self.model.forward_with_activations(inputs, self._hidden.get("train"))
        self._hidden["train"] = detach_hidden(hidden)
        loss = self._cross_entropy(logits, targets, "train")
        return loss + activation_penalty(raw, dropped, self.schedule.ar_alpha, self.schedule.tar_beta)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """The step at ``lr * seq_len / bptt``, the rate put back after it (``lr2`` in the code)."""
        rates = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * self.lr_scale
        try:
            optimizer.step(closure=optimizer_closure)
        finally:
            for group, rate in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = rate
