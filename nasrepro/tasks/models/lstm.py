"""The LSTM language model of Zaremba, Sutskever & Vinyals (2014), "Recurrent neural network regularization".

Model API shared by every PTB language model in nasrepro (searched RNN cells such as NAO's reuse it):

- `forward(tokens, hidden=None) -> (logits, hidden)`: `tokens` is a time-major `(seq_len, batch)`
  int64 tensor of word ids, `logits` is `(seq_len, batch, vocab_size)`. `hidden` is the recurrent
  state returned by the previous call (or `init_hidden(batch)`); `None` means a zero state.
- `init_hidden(batch_size)`: the zero state, on the model's device. Its structure is the model's
  own business (here an `(h, c)` pair of `(layers, batch, hidden)` tensors); the training module
  only carries it from batch to batch and detaches it, via `detach_hidden`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Hidden = Any


def detach_hidden(hidden: Hidden) -> Hidden:
    """The same state cut from the graph of earlier batches (truncated BPTT), for any nesting of tensors."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return type(hidden)(detach_hidden(h) for h in hidden)


class LSTMLanguageModel(nn.Module):
    """Embedding -> stacked LSTM -> linear decoder, dropout on every non-recurrent connection.

    Zaremba et al. (2014), Section 4: dropout is applied to the embedding output, between LSTM
    layers and before the softmax, never to the recurrent connections; parameters are initialised
    uniformly in [-0.05, 0.05] (medium) or [-0.1, 0.1] (small). Word embedding size equals hidden size.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 650,
        num_layers: int = 2,
        dropout: float = 0.5,
        init_range: float = 0.05,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)
        if tie_weights:
            # Press & Wolf (2017); not part of Zaremba et al.'s models, available for searched cells.
            self.decoder.weight = self.embedding.weight

    def init_hidden(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.decoder.weight
        shape = (self.num_layers, batch_size, self.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    def forward(self, tokens: torch.Tensor, hidden: Hidden = None) -> tuple[torch.Tensor, Hidden]:
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        output, hidden = self.lstm(self.dropout(self.embedding(tokens)), hidden)
        return self.decoder(self.dropout(output)), hidden


def zaremba_medium(vocab_size: int = 10_000) -> LSTMLanguageModel:
    """Zaremba et al.'s "medium" regularised LSTM: 2 x 650 units, dropout 0.5 (Table 1: 86.2 valid / 82.7 test perplexity)."""
    return LSTMLanguageModel(vocab_size, hidden_size=650, num_layers=2, dropout=0.5, init_range=0.05)


def zaremba_small(vocab_size: int = 10_000) -> LSTMLanguageModel:
    """Zaremba et al.'s "small" non-regularised LSTM: 2 x 200 units, no dropout (Table 1: 120.7 valid / 114.5 test)."""
    return LSTMLanguageModel(vocab_size, hidden_size=200, num_layers=2, dropout=0.0, init_range=0.1)
