"""NAO-WS's search fit on PTB: the CIFAR-10 fit (`ws_module.WSSearchModule`) with language-model
weight steps and perplexity scoring (renqianluo/NAO ``NAO-WS/rnn/model_search.py`` ``train`` and
``evaluate``; Luo et al. 2018, Sec. 3.4 and 4.2).

* **Weight steps** (``train``): consecutive BPTT windows of the training stream, the recurrent
  state carried across windows and detached (truncated BPTT), reset at every epoch; each window
  trains the path of one cell drawn uniformly from the pool (``np.random.randint(N)`` per batch).
  Loss: cross-entropy + ``tar_beta`` x DARTS's temporal activation regularisation on the raw cell
  outputs (``beta`` 1e-3; ``alpha`` is 0 in the code); SGD without momentum, lr 0.25, weight decay
  5e-7, gradient-norm clip 10 (``train_search.sh``), constant learning rate (no schedule).
* **Evaluation points** (``evaluate``): every pool member scored with the shared weights on
  held-out windows of the validation stream, from a zero state, no dropout. The score is the
  negative mean cross-entropy, so higher is better and exp(-score) is the perplexity; the code
  min-max normalises the loss, which is 1 - the normalised score (`ws_controller`'s targets).
  ``scoring="as-released"``: one fresh random window per cell (the code's
  ``np.random.randint`` per architecture); ``"faithful"``: the same windows for the whole pool.
* Controller rounds, replacement of the worst and resuming are the CIFAR-10 module's.

Deviation (labelled): the code draws each window's length as bptt (p = 0.95) or bptt / 2 and scales
the learning rate by it; here every window has the data module's fixed bptt.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nasrepro.methods.nao.ws_module import WSSearchModule
from nasrepro.spaces.nao_rnn_cells import RecurrentArch
from nasrepro.tasks.lm_schedule import activation_penalty


class WSLanguageModelSearch(WSSearchModule):
    """The NAO-WS search fit over `NAORnnSupernet`; `tar_beta` weighs the TAR term."""

    def __init__(self, *args: Any, tar_beta: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tar_beta = tar_beta
        self._hidden: Tensor | None = None

    def sample_arch(self) -> RecurrentArch:
        """One cell, uniformly from the pool (the code) or every integer uniform over its range."""
        if self.settings.sample_from == "pool":
            return self.pool[int(torch.randint(len(self.pool), (1,), generator=self.sampler))]
        ints = [slot[int(torch.randint(len(slot), (1,), generator=self.sampler))] for slot in self._slots]
        return self.space.from_ints(ints)

    def on_train_start(self) -> None:
        pass  # no drop-path schedule to size

    def on_train_epoch_start(self) -> None:
        self._hidden = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, targets = batch
        arch = self.sample_arch()
        logits, hidden, raw = self.supernet(inputs, self._hidden, arch)
        self._hidden = hidden.detach()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        # TAR only (alpha 0, as NAO-WS's search script): the final training's AR/TAR term, shared
        loss = nll + activation_penalty(raw, raw, 0.0, self.tar_beta) if self.tar_beta else nll
        self.log("supernet/loss", nll, on_step=False, on_epoch=True, batch_size=targets.numel())
        return loss

    def score(self, archs: list[RecurrentArch]) -> list[float]:
        """Negative held-out cross-entropy of each cell with the shared weights, each window from a
        zero state (``model.init_hidden`` per architecture in ``evaluate``)."""
        shared = self._batches(self.settings.score_batches) if self.settings.scoring == "faithful" else None
        was = self.supernet.training
        self.supernet.eval()
        scores = []
        with torch.no_grad():
            for arch in archs:
                windows = shared if shared is not None else self._batches(1)
                nll = tokens = 0.0
                for inputs, targets in windows:
                    logits, _, _ = self.supernet(inputs, None, arch)
                    loss = F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
                    )
                    nll, tokens = nll + float(loss), tokens + targets.numel()
                scores.append(-nll / tokens)
        self.supernet.train(was)
        return scores

    def on_train_epoch_end(self) -> None:
        before = len(self.rounds)
        super().on_train_epoch_end()
        if len(self.rounds) > before:  # an evaluation point: the perplexities beside the scores
            info = self.rounds[-1]
            info["ws_best_perplexity"] = round(math.exp(-info["ws_best"]), 3)
            info["ws_mean_perplexity"] = round(math.exp(-info["ws_mean"]), 3)
