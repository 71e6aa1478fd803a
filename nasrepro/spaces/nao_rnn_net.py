"""The DARTS-style recurrent-cell language model of NAO's PTB cells (``NAO/rnn/model.py``, after
DARTS ``rnn/model.py``; Liu et al. 2019, Sec. 2.1, Appendix A.1.2 and A.2.2), and the pieces the
NAO-WS supernet reuses (`highway`, `RecurrentLMBase`).

Model: word embedding (whole-word dropout ``dropoute``, then locked dropout ``dropouti``) -> one
recurrent cell unrolled over time -> locked dropout ``dropout`` -> a decoder tied to the embedding
(Press & Wolf 2017; ``decoder.weight = encoder.weight``). Inside the cell, one variational mask
per window on the input (``dropoutx``) and one on every state fed to a weight matrix
(``dropouth``), as ``mask2d`` of the code. Weights uniform in [-0.04, 0.04] (``INITRANGE``), decoder
bias 0. The API is the harness's PTB model API (`nasrepro.tasks.models.lstm`): ``forward(tokens,
hidden=None) -> (logits, hidden)``, time-major, ``hidden`` a ``(1, batch, hidden)`` tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from nasrepro.spaces.nao_rnn_cells import LMSize, RecurrentArch

#: ``INITRANGE`` of the NAO and DARTS RNN code
INIT_RANGE = 0.04
ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}
#: a cell step: (x_t, h_prev, x_mask, h_mask) -> h_t
Step = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]


def variational_mask(like: Tensor, shape: tuple[int, ...], dropout: float) -> Tensor | None:
    """An inverted-dropout mask fixed over a whole window (``mask2d``, ``LockedDropout``); None
    when nothing is dropped."""
    if dropout <= 0:
        return None
    keep = 1.0 - dropout
    return like.new_empty(shape).bernoulli_(keep) / keep


def highway(s_prev: Tensor, w: Tensor, activation: str, h_mask: Tensor | None) -> Tensor:
    """One node (DARTS Appendix A.1.2): [c, h] = (s_prev * mask) W, s = s_prev + sigmoid(c) *
    (act(h) - s_prev); W is (hidden, 2 hidden)."""
    c, h = torch.split((s_prev if h_mask is None else s_prev * h_mask) @ w, s_prev.shape[-1], dim=-1)
    return s_prev + c.sigmoid() * (ACTIVATION_FNS[activation](h) - s_prev)


class RecurrentLMBase(nn.Module):
    """Embedding, dropouts, unrolling and the tied decoder; subclasses provide the cell's step.

    ``unroll(tokens, hidden, step)`` returns (logits, last hidden, raw cell outputs): the raw
    outputs (before the output dropout) are what DARTS's temporal activation regularisation reads;
    ``unroll_activations`` adds the dropped outputs (after it), which activation regularisation reads
    (DARTS ``model.py``: ``rnn_hs``, ``dropped_rnn_hs``).
    """

    def __init__(self, vocab_size: int, size: LMSize) -> None:
        super().__init__()
        self.vocab_size, self.nhid, self.size = vocab_size, size.hidden, size
        self.embedding = nn.Embedding(vocab_size, size.hidden)
        self.decoder = nn.Linear(size.hidden, vocab_size)
        self.decoder.weight = self.embedding.weight  # tied (``self.decoder.weight = self.encoder.weight``)
        self.w0 = nn.Parameter(
            torch.empty(2 * size.hidden, 2 * size.hidden).uniform_(-INIT_RANGE, INIT_RANGE)
        )
        nn.init.uniform_(self.embedding.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch_size: int) -> Tensor:
        return self.decoder.weight.new_zeros(1, batch_size, self.nhid)

    def embed(self, tokens: Tensor) -> Tensor:
        """Whole-word embedding dropout, then one locked mask over time (``embedded_dropout``,
        ``LockedDropout`` with ``dropouti``)."""
        weight = self.embedding.weight
        if self.training and self.size.dropoute > 0:
            mask = variational_mask(weight, (weight.shape[0], 1), self.size.dropoute)
            weight = weight * mask
        emb = F.embedding(tokens, weight)
        if self.training:
            mask = variational_mask(emb, (1, emb.shape[1], emb.shape[2]), self.size.dropouti)
            emb = emb if mask is None else emb * mask
        return emb

    def unroll(self, tokens: Tensor, hidden: Tensor | None, step: Step) -> tuple[Tensor, Tensor, Tensor]:
        logits, hidden, raw, _ = self.unroll_activations(tokens, hidden, step)
        return logits, hidden, raw

    def unroll_activations(
        self, tokens: Tensor, hidden: Tensor | None, step: Step
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        emb = self.embed(tokens)
        batch = tokens.shape[1]
        x_mask = h_mask = None
        if self.training:
            x_mask = variational_mask(emb, (batch, self.nhid), self.size.dropoutx)
            h_mask = variational_mask(emb, (batch, self.nhid), self.size.dropouth)
        h = hidden[0]
        outputs = []
        for t in range(tokens.shape[0]):
            h = step(emb[t], h, x_mask, h_mask)
            outputs.append(h)
        raw = torch.stack(outputs)
        out = raw
        if self.training:
            mask = variational_mask(raw, (1, batch, self.nhid), self.size.dropout)
            out = raw if mask is None else raw * mask
        return self.decoder(out), h.unsqueeze(0), raw, out

    def start(self, x: Tensor, h_prev: Tensor, x_mask: Tensor | None, h_mask: Tensor | None) -> Tensor:
        """s0 = h + sigmoid(c0) * (tanh(h0) - h), [c0, h0] = [x, h] W0, with the window's masks on
        x and h (``_compute_init_state``; DARTS Appendix A.1.2)."""
        x = x if x_mask is None else x * x_mask
        hm = h_prev if h_mask is None else h_prev * h_mask
        c0, h0 = torch.split(torch.cat([x, hm], dim=-1) @ self.w0, self.nhid, dim=-1)
        return h_prev + c0.sigmoid() * (h0.tanh() - h_prev)


class CellLanguageModel(RecurrentLMBase):
    """The language model of one cell: node i owns W_i of shape (hidden, 2 hidden) (``NAOCell``)."""

    def __init__(self, arch: RecurrentArch, vocab_size: int, size: LMSize) -> None:
        super().__init__(vocab_size, size)
        self.arch = arch
        self.ws = nn.ParameterList(
            nn.Parameter(torch.empty(size.hidden, 2 * size.hidden).uniform_(-INIT_RANGE, INIT_RANGE))
            for _ in arch.nodes
        )

    def step(self, x: Tensor, h_prev: Tensor, x_mask: Tensor | None, h_mask: Tensor | None) -> Tensor:
        """s0, the 11 highway nodes (each input masked by ``dropouth``), the mean of nodes 1..11."""
        states = [self.start(x, h_prev, x_mask, h_mask)]
        for (pred, activation), w in zip(self.arch.nodes, self.ws, strict=True):
            states.append(highway(states[pred], w, activation, h_mask))
        return torch.stack(states[1:], dim=-1).mean(-1)

    def forward(self, tokens: Tensor, hidden: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logits, hidden, _ = self.unroll(tokens, hidden, self.step)
        return logits, hidden

    def forward_with_activations(
        self, tokens: Tensor, hidden: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(logits, hidden, raw, dropped) for AR/TAR (`nasrepro.tasks.lm_schedule.ActivationOutputs`)."""
        return self.unroll_activations(tokens, hidden, self.step)
