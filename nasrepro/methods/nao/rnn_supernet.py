"""NAO-WS's weight-sharing supernet over the PTB recurrent cell (renqianluo/NAO
``NAO-WS/rnn/model_search.py``, ``NAOCellSearch`` and ``RNNModelSearch``).

Luo et al. 2018, Sec. 3.4: every cell of `nasrepro.spaces.nao_rnn_cells` is a path through one
language model, and a cell uses exactly the weights of its choices. As in the released code:

* the embedding, the tied decoder and the first state's W0 are used by every cell;
* node i holds one (hidden, 2 hidden) matrix *per (predecessor, activation) pair*: the code's
  ``_Ws[i]`` is (4 (i + 1) hidden, 2 hidden) and node i with predecessor p and activation a reads
  its rows ``(4 p + a) hidden .. (4 p + a + 1) hidden``. Two cells share node i's weights exactly
  when they agree on node i's predecessor *and* activation (the brief's "per (node, input) edge"
  is this edge-and-activation slice in the code). Slices are indexed by this suite's activation
  numbering, a relabelling of the code's, which shares the same way;
* the search cell's output is the mean of *all* 12 states including s0 (``torch.stack(states)``
  in ``NAOCellSearch.cell``), where the final cell averages nodes 1..11 (``NAOCell``): kept as
  released (``include_s0``);
* dropouts as the final model's (``train_search.py`` defaults: 0.75 / 0.25 / 0.75 / 0.2 / 0).

The code's ``drop_path`` (freezing a node's whole matrix for a batch with some probability) is 0
in every released script and not implemented.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nasrepro.spaces.nao_rnn_cells import ACTIVATIONS, RNN_STEPS, LMSize, RecurrentArch
from nasrepro.spaces.nao_rnn_net import INIT_RANGE, RecurrentLMBase, highway


class NAORnnSupernet(RecurrentLMBase):
    """``RNNModelSearch``: one LM whose node matrices are sliced by each cell's choices."""

    def __init__(self, vocab_size: int, size: LMSize, include_s0: bool = True) -> None:
        super().__init__(vocab_size, size)
        self.include_s0 = include_s0
        acts = len(ACTIVATIONS)
        self.ws = nn.ParameterList(
            nn.Parameter(
                torch.empty(acts * (i + 1) * size.hidden, 2 * size.hidden).uniform_(-INIT_RANGE, INIT_RANGE)
            )
            for i in range(RNN_STEPS)
        )

    def node_weight(self, node: int, pred: int, activation: str) -> Tensor:
        """Node `node`'s (hidden, 2 hidden) slice for this (predecessor, activation)."""
        start = (pred * len(ACTIVATIONS) + ACTIVATIONS.index(activation)) * self.nhid
        return self.ws[node][start : start + self.nhid]

    def step_of(self, arch: RecurrentArch):  # noqa: ANN201 (a `Step`)
        def step(x: Tensor, h_prev: Tensor, x_mask: Tensor | None, h_mask: Tensor | None) -> Tensor:
            states = [self.start(x, h_prev, x_mask, h_mask)]
            for i, (pred, activation) in enumerate(arch.nodes):
                states.append(
                    highway(states[pred], self.node_weight(i, pred, activation), activation, h_mask)
                )
            used = states if self.include_s0 else states[1:]
            return torch.stack(used, dim=-1).mean(-1)

        return step

    def forward(
        self, tokens: Tensor, hidden: Tensor | None, arch: RecurrentArch
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, last hidden, raw cell outputs) of `arch`'s path over one window."""
        return self.unroll(tokens, hidden, self.step_of(arch))
