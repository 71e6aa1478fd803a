"""The controllers of AGNN (Auto-GNN, Zhou et al. 2019, arXiv 1909.03184) and of GraphNAS, its ablation.

Both are LSTM policies over a space's categorical view (`Space.fields()`), trained by REINFORCE with
an exponential-moving-average baseline (fact sheet ``agnn.md`` section 3 and 5). The only public code
is AutoGL's re-implementation (``autogl/module/nas/algorithm/agnn_rl.py`` and ``rl.py``); the paper
body is unverified, so every constant here follows that code and GraphNAS ``main.py``:

* `FieldLSTM` -- one LSTM cell that walks a sequence of fields. *Conditioning* fields are fed in as
  given values (AGNN: the incumbent's values outside the class being modified); *decoded* fields are
  sampled from ``tanh_c * tanh(logits / temperature)``, and each sampled value's embedding is the next
  input (GraphNAS controller; ENAS-style decoding).
* `GraphNASController` -- one `FieldLSTM` decoding every field: a whole architecture per sample.
* `AGNNController` -- the reinforced conservative controller: one `FieldLSTM` per action class (the
  "architecture modifiers", paper Sec. 4 [UNVERIFIED]), each conditioned on the incumbent and decoding
  only its class; the *guided architecture modifier* keeps one class's proposal, chosen by the
  proposals' sampling entropies (`GUIDES`).

Training follows AutoGL/GraphNAS exactly: one Adam step per evaluated child; the entropy bonus is
added to the reward (GraphNAS ``entropy_mode='reward'``), the baseline is updated *before* the
advantage is taken, and the loss is ``-log pi(child) * (reward - baseline)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.harness.space import Field

P = ParamSpec("P")
R = TypeVar("R")

# --- threading ----------------------------------------------------------------------------------------


def one_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` with one intra-op thread, then restore the caller's setting.

    A controller step is a few hundred tiny, sequential ops: extra threads cannot speed them up,
    and on a busy machine their synchronisation made each update up to 100x slower (measured:
    ~2 ms -> ~200 ms with two threads on two shared cores). Evaluations between controller steps
    (e.g. in-process training) keep the caller's thread count.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


# --- entropy estimators ---------------------------------------------------------------------------


def _sampled_term(logp: torch.Tensor, choice: int) -> torch.Tensor:
    """AutoGL/NNI's estimate: the sampled choice's own term of the entropy, ``-p(s) log p(s)``
    (``rl.py``: ``log_prob * exp(-log_prob)`` with ``log_prob`` the cross-entropy of the sample)."""
    return -logp[choice] * logp[choice].exp()


def _full(logp: torch.Tensor, choice: int) -> torch.Tensor:
    """The distribution's exact entropy ``-sum p log p`` (GraphNAS ``graphnas_controller.py``)."""
    return -(logp * logp.exp()).sum()


#: per-field entropy estimate -> function(log-probabilities, sampled choice); summed over fields
ENTROPY_ESTIMATES: Mapping[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "sampled": _sampled_term,
    "full": _full,
}


def _check_estimate(name: str) -> None:
    if name not in ENTROPY_ESTIMATES:
        raise UsageError(f"entropy_estimate must be one of {sorted(ENTROPY_ESTIMATES)}, got {name!r}")


# --- one LSTM over a field sequence ---------------------------------------------------------------


@dataclass
class Decoded:
    """What one pass of a `FieldLSTM` produced."""

    values: dict[int, int]  # field position -> chosen index (decoded fields only)
    log_prob: torch.Tensor  # sum of log pi over the decoded fields, differentiable
    entropy: float  # the chosen estimate, summed over the decoded fields (detached)


class FieldLSTM(nn.Module):
    """An LSTM that reads the `condition` fields' given values, then decodes the `decode` fields.

    Shapes follow NNI/AutoGL's ``ReinforceController``: a bias-free LSTM cell of `lstm_size`, one
    embedding per field sized by its number of choices, one bias-free decoder per decoded field, and
    a fixed random start input (NNI feeds ``g_emb.data``, so it never learns).
    """

    def __init__(
        self,
        fields: Sequence[Field],
        condition: Sequence[int],
        decode: Sequence[int],
        *,
        lstm_size: int = 100,
        temperature: float = 5.0,
        tanh_c: float = 2.5,
        entropy_estimate: str = "sampled",
    ) -> None:
        super().__init__()
        _check_estimate(entropy_estimate)
        if not decode:
            raise UsageError("a controller needs at least one field to decode")
        self.condition, self.decode = tuple(condition), tuple(decode)
        self.temperature, self.tanh_c = temperature, tanh_c
        self.entropy_of = ENTROPY_ESTIMATES[entropy_estimate]
        self.cell = nn.LSTMCell(lstm_size, lstm_size, bias=False)
        self.register_buffer("start", torch.randn(1, lstm_size) * 0.1)
        self.embeddings = nn.ModuleList(nn.Embedding(len(f.choices), lstm_size) for f in fields)
        self.decoders = nn.ModuleList(
            nn.Linear(lstm_size, len(fields[i].choices), bias=False) for i in decode
        )

    def logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Decoder k's logits, softened by the temperature and squashed by ``tanh_c * tanh``."""
        logit = self.decoders[k](h)[0] / self.temperature
        return self.tanh_c * torch.tanh(logit)

    def forward(
        self,
        given: Sequence[int],
        generator: torch.Generator | None = None,
        forced: Mapping[int, int] | None = None,
    ) -> Decoded:
        """Condition on ``given[i]`` for i in `condition`, then decode; `forced` scores given values
        of the decoded fields instead of sampling them (for tests and off-line scoring)."""
        size = self.start.shape[1]
        x, state = self.start, (self.start.new_zeros(1, size), self.start.new_zeros(1, size))
        for i in self.condition:  # AutoGL ``_update_state``: one LSTM step, then embed the given value
            state = self.cell(x, state)
            x = self.embeddings[i](torch.tensor([int(given[i])]))
        values: dict[int, int] = {}
        log_prob = self.start.new_zeros(())
        entropy = 0.0
        for k, i in enumerate(self.decode):
            state = self.cell(x, state)
            logp = F.log_softmax(self.logits(state[0], k), dim=-1)
            if forced is not None:
                choice = int(forced[i])
            else:
                choice = int(torch.multinomial(logp.detach().exp(), 1, generator=generator))
            values[i] = choice
            log_prob = log_prob + logp[choice]
            entropy += float(self.entropy_of(logp.detach(), choice))
            x = self.embeddings[i](torch.tensor([choice]))
        return Decoded(values, log_prob, entropy)


# --- REINFORCE with an EMA baseline -----------------------------------------------------------------


class ReinforceModule(L.LightningModule):
    """REINFORCE with an EMA baseline, stepped manually: a search samples, asks the evaluator, then
    calls `reinforce` once per evaluated child (no Trainer: the data are the evaluator's answers)."""

    def __init__(self, *, lr: float, entropy_weight: float, baseline_decay: float) -> None:
        super().__init__()
        if not 0.0 <= baseline_decay < 1.0:
            raise UsageError(f"baseline decay must be in [0, 1), got {baseline_decay}")
        if lr <= 0:
            raise UsageError(f"controller learning rate must be positive, got {lr}")
        self.automatic_optimization = False
        self.lr, self.entropy_weight, self.baseline_decay = lr, entropy_weight, baseline_decay
        self.baseline: float | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam at 3.5e-4 (GraphNAS ``main.py`` ``controller_lr``; AutoGL ``ctrl_lr``)."""
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = self.configure_optimizers()
        return self._optimizer

    def reset_baseline(self, value: float | None) -> None:
        """AGNN seeds the baseline with the incumbent's reward every controller epoch; GraphNAS
        starts each epoch without one (the first reward becomes the baseline)."""
        self.baseline = value

    @one_thread
    def reinforce(self, log_prob: torch.Tensor, entropy: float, reward: float) -> float:
        """One policy-gradient step on one child; returns the loss.

        GraphNAS/AutoGL order: the entropy bonus joins the reward, the EMA baseline absorbs the
        shaped reward, then the advantage is the shaped reward minus the *updated* baseline.
        """
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        shaped = reward + self.entropy_weight * entropy
        if self.baseline is None:
            self.baseline = shaped
        else:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * shaped
        loss = -log_prob * (shaped - self.baseline)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


# --- GraphNAS: one LSTM, whole architectures --------------------------------------------------------


@dataclass
class Proposal:
    """One child: its full index vector, the class that was changed (None = whole architecture),
    the log-probability and entropy REINFORCE uses, and every class's entropy (AGNN's guide)."""

    indices: tuple[int, ...]
    action_class: str | None
    log_prob: torch.Tensor
    entropy: float
    class_entropies: dict[str, float]


class GraphNASController(ReinforceModule):
    """GraphNAS's controller (Gao et al. 2020): one LSTM sampling every field in order."""

    def __init__(
        self,
        fields: Sequence[Field],
        *,
        lstm_size: int = 100,
        temperature: float = 5.0,
        tanh_c: float = 2.5,
        entropy_estimate: str = "sampled",
        lr: float = 3.5e-4,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.95,
    ) -> None:
        super().__init__(lr=lr, entropy_weight=entropy_weight, baseline_decay=baseline_decay)
        self.fields = tuple(fields)
        self.lstm = FieldLSTM(
            self.fields,
            (),
            range(len(self.fields)),
            lstm_size=lstm_size,
            temperature=temperature,
            tanh_c=tanh_c,
            entropy_estimate=entropy_estimate,
        )

    @one_thread
    def propose(self, generator: torch.Generator | None = None) -> Proposal:
        out = self.lstm((), generator)
        indices = tuple(out.values[i] for i in range(len(self.fields)))
        return Proposal(indices, None, out.log_prob, out.entropy, {})

    @one_thread
    def log_prob(self, indices: Sequence[int]) -> torch.Tensor:
        """log pi(indices): the probability this controller samples exactly this architecture."""
        return self.lstm((), forced=dict(enumerate(indices))).log_prob


# --- AGNN: one modifier per action class and an entropy-guided choice among them --------------------


def _most_uncertain(entropies: torch.Tensor, generator: torch.Generator | None) -> int:
    """guide_type 0: the class whose proposal had the highest sampling entropy."""
    return int(torch.argmax(entropies))


def _entropy_softmax(entropies: torch.Tensor, generator: torch.Generator | None) -> int:
    """guide_type 1 (AutoGL default): a class drawn with probability softmax(entropies)."""
    return int(torch.multinomial(F.softmax(entropies, dim=0), 1, generator=generator))


#: AGNN's guided architecture modifier: guide_type -> how one class is picked from the proposals
GUIDES: Mapping[int, Callable[[torch.Tensor, torch.Generator | None], int]] = {
    0: _most_uncertain,
    1: _entropy_softmax,
}


def action_classes(fields: Sequence[Field]) -> dict[str, tuple[int, ...]]:
    """Field positions per action class (`Field.group`), classes in order of first appearance.

    AutoGL groups fields by name substrings (op/in/act/concat), which silently drops every field of
    the GraphNAS macro space (fact sheet section 3, caveats); explicit groups cannot miss one.
    """
    classes: dict[str, list[int]] = {}
    for i, field in enumerate(fields):
        if not field.group:
            raise UsageError(
                f"field {field.name!r} has no action class (Field.group); AGNN needs one per field"
            )
        classes.setdefault(field.group, []).append(i)
    return {name: tuple(pos) for name, pos in classes.items()}


class AGNNController(ReinforceModule):
    """AGNN's reinforced conservative controller (arXiv 1909.03184, Sec. 4 [UNVERIFIED]; AutoGL
    ``AGNNActionGuider`` + ``AGNNReinforceController``).

    Every class modifier conditions its LSTM on the incumbent's values of all fields *outside* its
    class (in field order) and re-samples only its own class; the guide keeps one proposal, and that
    proposal's log-probability and entropy are what REINFORCE sees.
    """

    def __init__(
        self,
        fields: Sequence[Field],
        *,
        guide_type: int = 1,
        lstm_size: int = 100,
        temperature: float = 5.0,
        tanh_c: float = 2.5,
        entropy_estimate: str = "sampled",
        lr: float = 3.5e-4,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.95,
    ) -> None:
        super().__init__(lr=lr, entropy_weight=entropy_weight, baseline_decay=baseline_decay)
        if guide_type not in GUIDES:
            raise UsageError(f"guide_type must be one of {sorted(GUIDES)}, got {guide_type!r}")
        self.fields = tuple(fields)
        self.guide = GUIDES[guide_type]
        self.classes = action_classes(self.fields)
        self.class_names = tuple(self.classes)
        self.modifiers = nn.ModuleList(
            FieldLSTM(
                self.fields,
                [i for i in range(len(self.fields)) if i not in positions],
                positions,
                lstm_size=lstm_size,
                temperature=temperature,
                tanh_c=tanh_c,
                entropy_estimate=entropy_estimate,
            )
            for positions in self.classes.values()
        )

    @one_thread
    def propose(
        self,
        incumbent: Sequence[int],
        generator: torch.Generator | None = None,
        allowed: Collection[str] | None = None,
    ) -> Proposal:
        """One child of `incumbent`: every modifier proposes, the guide keeps one class.

        `allowed` restricts the guide to some classes (the search drops a class once its one-class
        neighbourhood of the incumbent only yields evaluated or invalid architectures).
        """
        if len(incumbent) != len(self.fields):
            raise UsageError(
                f"incumbent has {len(incumbent)} indices, the space has {len(self.fields)} fields"
            )
        names = [c for c in self.class_names if allowed is None or c in allowed]
        if not names:
            raise ValueError("no action class left to modify")
        outs = [self.modifiers[self.class_names.index(c)](incumbent, generator) for c in names]
        entropies = torch.tensor([out.entropy for out in outs], dtype=torch.float64)
        k = self.guide(entropies, generator)
        child = list(incumbent)
        for i, value in outs[k].values.items():
            child[i] = value
        return Proposal(
            tuple(child),
            names[k],
            outs[k].log_prob,
            outs[k].entropy,
            dict(zip(names, entropies.tolist(), strict=True)),
        )

    @one_thread
    def log_prob(self, incumbent: Sequence[int], action_class: str, child: Sequence[int]) -> torch.Tensor:
        """log pi(child's `action_class` values | incumbent) under that class's modifier."""
        k = self.class_names.index(action_class)
        forced = {i: int(child[i]) for i in self.classes[action_class]}
        return self.modifiers[k](incumbent, forced=forced).log_prob
