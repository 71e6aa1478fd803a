"""The structure-correlation ranker (memnet.md Sec. 3.5; MemNAS Sec. 3.3, `controller.py`).

Networks are sequences of cell vectors (61 bits per cell in MemNet's space, zero-padded evenly over
the five blocks); an LSTM with 100 units reads the sequence and a linear layer maps its last output
to 100*S. Trained with MSE and Adam on every (network, S) evaluated so far, then used to rank the
next round's candidates. The prototype (Keras) trained up to 10,000 epochs with a 50-network
validation hold-out for checkpointing; here a fixed number of full-data epochs (`epochs`), since the
cpu-scale searches see tens of networks, not thousands [deviation, README].
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

TARGET_SCALE = 100.0  # the prototype predicts 100 * S


class LSTMRanker(L.LightningModule):
    """LSTM(hidden) -> Linear(1) over (batch, length, features), predicting 100*S.

    The targets are standardised for the fit (`center`, `scale` map the head's output back to 100*S):
    a ranking is unchanged by it, and a few hundred Adam steps then suffice where the raw 100*S,
    far from zero on average, would spend them learning the mean [deviation, README].
    """

    def __init__(self, features: int, hidden: int = 100, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.lr = lr
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def predict_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """100*S in the original units."""
        return self(x) * self.scale + self.center

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def fit_ranker(
    x: np.ndarray,
    scores: np.ndarray,
    seed: int,
    trainer_factory: Callable[..., L.Trainer],
    epochs: int = 150,
    hidden: int = 100,
    lr: float = 3e-3,
    batch_size: int = 16,
) -> LSTMRanker:
    """A fresh ranker fitted on `x` (batch, length, features) -> 100 * `scores`, seeded."""
    # `epochs` passes over the data as minibatches drawn up front, fed as one Lightning epoch: the
    # per-epoch bookkeeping of a Trainer costs more than a step on these tiny sets
    gen = torch.Generator().manual_seed(seed)
    xs = torch.as_tensor(x, dtype=torch.float32)
    ys = torch.as_tensor(scores, dtype=torch.float32) * TARGET_SCALE
    center, scale = ys.mean(), ys.std() if len(ys) > 1 and ys.std() > 0 else torch.tensor(1.0)
    ys = (ys - center) / scale
    batches = [
        (xs[chunk], ys[chunk])
        for _ in range(epochs)
        for chunk in torch.randperm(len(xs), generator=gen).split(batch_size)
    ]
    with torch.random.fork_rng(devices=[]):  # the search's own random state is left untouched
        torch.manual_seed(seed)
        model = LSTMRanker(x.shape[-1], hidden, lr)
        model.center.fill_(center)
        model.scale.fill_(scale)
        trainer = trainer_factory(max_epochs=1, limit_val_batches=0, log_every_n_steps=max(len(batches), 1))
        trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    return model.eval().cpu()


def predict(model: LSTMRanker, x: np.ndarray) -> np.ndarray:
    """Predicted S (not scaled) of each network in `x`."""
    with torch.no_grad():
        return model.predict_scaled(torch.as_tensor(x, dtype=torch.float32)).numpy() / TARGET_SCALE
