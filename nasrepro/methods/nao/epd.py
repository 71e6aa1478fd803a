"""NAO's encoder-predictor-decoder (EPD) as one LightningModule (Luo et al. 2018, Sec. 3).

The module follows NAO_pytorch (``NAO_V1/{encoder,decoder,controller}.py``) and the TF EPD
(``NAO/cnn/epd``), constants from the fact sheet ``nao.md`` section 2:

* **Encoder** (Sec. 3.1): token embedding; ``tokens_per_step`` consecutive embeddings concatenated
  per step (40 tokens -> 20 steps for the cells); one LSTM layer (hidden 96); every output h_t
  L2-normalised; their mean, L2-normalised again, is the architecture embedding e_x.
* **Predictor** (Sec. 3.2): an MLP on e_x, a linear layer and a sigmoid, regressed with MSE on
  scores min-max normalised to [0, 1] per round (`normalise_scores`).
* **Decoder** (Sec. 3.3): one LSTM layer started from (h0, c0) = (e_x, e_x), teacher-forced on
  [<sos>] + x[:-1] in training; Luong dot attention over the per-step encoder outputs,
  ``tanh(W [context; output])``; greedy decoding under the grammar mask (`generate`).
* **Joint loss** (Sec. 3.4, eq. 1 of the code): ``trade_off * MSE + (1 - trade_off) * NLL`` with
  trade_off = 0.8 in every released script; Adam, lr 1e-3, L2 1e-4 (coupled weight decay, as
  ``torch.optim.Adam(weight_decay=...)`` in NAO_V1), gradient-norm clip 5.
* **Architecture optimisation** (Sec. 3.3, ``Encoder.infer``): the gradient of the predicted score
  w.r.t. *each* per-step encoder output, h'_t = h_t + eta * grad, each h'_t re-normalised, mean-pooled
  and normalised into e'; decode with h' as attention memory and (e', e') as initial state.

Direction: targets are normalised so that 1 is the best architecture (`normalise_scores` flips
metrics to be minimised), so improvement is always ascent ("+"). On the TF non-WS code's
normalised *error* this is the same step as its "-" direction.

Deviations: encoder dropout acts on the LSTM outputs before normalisation (a 1-layer
``nn.LSTM(dropout=...)`` in NAO_V1 is a no-op); the decoder has no dropout for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasrepro.errors import NasreproError, UsageError
from nasrepro.methods.nao.encoding import SOS, Codec, get_codec

# --- metrics (NAO_V1 ``utils.py``) ------------------------------------------------------------------


def pairwise_accuracy(truth: Sequence[float] | Tensor, predicted: Sequence[float] | Tensor) -> float:
    """Share of pairs i < j ordered alike, with the code's tie convention: a pair counts when
    ``t_i >= t_j and p_i >= p_j`` or ``t_i < t_j and p_i < p_j``."""
    t, p = torch.as_tensor(truth, dtype=torch.float64), torch.as_tensor(predicted, dtype=torch.float64)
    n = len(t)
    if n < 2 or len(p) != n:
        raise UsageError(
            f"pairwise accuracy needs two equally long lists of >= 2 scores, got {n} and {len(p)}"
        )
    i, j = torch.triu_indices(n, n, offset=1)
    agree = ((t[i] >= t[j]) & (p[i] >= p[j])) | ((t[i] < t[j]) & (p[i] < p[j]))
    return float(agree.double().mean())


def kendall_tau_b(truth: Sequence[float] | Tensor, predicted: Sequence[float] | Tensor) -> float | None:
    """Kendall's tau-b of the predictions against the truth, beside the code's pairwise accuracy:
    that accuracy counts a pair tied in prediction as agreeing whenever ``t_i >= t_j``, so on a
    pool sorted best first (NAO-WS's) a constant predictor scores 1.0; tau-b scores it 0 (here
    None: undefined). None when either side is constant."""
    from scipy.stats import kendalltau

    t = torch.as_tensor(truth, dtype=torch.float64).numpy()
    p = torch.as_tensor(predicted, dtype=torch.float64).numpy()
    value = kendalltau(t, p).statistic
    return None if not np.isfinite(value) else float(value)


def hamming_distance(a: Tensor, b: Tensor) -> float:
    """Mean number of differing tokens per sequence (the README's "reconstruction Hamming")."""
    return float((a != b).sum(-1).double().mean())


def normalise_scores(scores: Sequence[float], maximise: bool = True) -> np.ndarray:
    """Min-max normalised targets in [0, 1], 1 = best (Sec. 3.2; ``train_search.py``).

    A round where all scores are equal gives 0.5 everywhere. A NaN/inf score is a `NasreproError`
    naming its index: the predictor's loss would be NaN.
    """
    s = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise NasreproError(
            f"NAO predictor targets: score {bad[0]} is {s[bad[0]]}; drop failed evaluations first"
        )
    if not maximise:
        s = -s
    span = s.max() - s.min() if s.size else 0.0
    return np.full_like(s, 0.5) if span == 0 else (s - s.min()) / span


class ArchDataset(torch.utils.data.Dataset):
    """(tokens, normalised target) pairs; with `augment`, each draw swaps one random node's branches
    per cell (Sec. 3.4's symmetric augmentation, NAO_V1 ``NAODataset(swap=True)``)."""

    def __init__(
        self, codec: Codec[Any], tokens: Sequence[Sequence[int]], targets: Sequence[float],
        augment: bool = False, seed: int = 0,
    ) -> None:  # fmt: skip
        if len(tokens) != len(targets):
            raise UsageError(f"ArchDataset: {len(tokens)} sequences but {len(targets)} targets")
        self.codec = codec
        self.tokens = [codec.grammar.check(t) for t in tokens]
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        seq = self.tokens[index]
        if self.augment:
            seq = self.codec.augment(seq, self.rng)
        return torch.tensor(seq, dtype=torch.long), self.targets[index]


# --- the module -------------------------------------------------------------------------------------


class EPD(L.LightningModule):
    """Encoder, predictor and decoder over the token grammar of one registered `Codec`.

    Defaults are NAO-WS's PyTorch CNN controller (emb 48 x 2 tokens per step, hidden 96, MLP 3 x 200
    with dropout 0.1, no encoder dropout). TF non-WS: ``mlp_layers=0, encoder_dropout=0.1``.
    """

    def __init__(
        self,
        codec: str | Codec[Any] = "nao-ws",
        hidden_size: int = 96,
        emb_size: int | None = None,
        tokens_per_step: int | None = None,
        encoder_dropout: float = 0.0,
        mlp_layers: int = 3,
        mlp_hidden_size: int = 200,
        mlp_dropout: float = 0.1,
        trade_off: float = 0.8,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        grad_clip: float = 5.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=[] if isinstance(codec, str) else ["codec"])
        self.codec = get_codec(codec) if isinstance(codec, str) else codec
        grammar = self.codec.grammar
        self.ratio = tokens_per_step or self.codec.tokens_per_step
        if grammar.length % self.ratio:
            raise UsageError(
                f"EPD: {grammar.length} tokens of {codec!r} do not split into steps of {self.ratio}"
            )
        if not 0.0 <= trade_off <= 1.0:
            raise UsageError(f"EPD: trade_off must lie in [0, 1], got {trade_off}")
        emb_size = emb_size or hidden_size // self.ratio
        vocab = grammar.vocab_size
        self.register_buffer("grammar_mask", torch.from_numpy(grammar.mask().copy()), persistent=False)

        self.encoder_embedding = nn.Embedding(vocab, emb_size)
        self.encoder_rnn = nn.LSTM(emb_size * self.ratio, hidden_size, batch_first=True)
        self.encoder_dropout = nn.Dropout(encoder_dropout)
        layers: list[nn.Module] = []
        width = hidden_size
        for _ in range(mlp_layers):
            layers += [nn.Linear(width, mlp_hidden_size), nn.ReLU(), nn.Dropout(mlp_dropout)]
            width = mlp_hidden_size
        self.predictor = nn.Sequential(*layers, nn.Linear(width, 1))

        self.decoder_embedding = nn.Embedding(vocab, hidden_size)
        self.decoder_rnn = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.attention_out = nn.Linear(2 * hidden_size, hidden_size)
        self.decoder_out = nn.Linear(hidden_size, vocab)
        self._val: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    # --- encoder and predictor ----------------------------------------------------------------------
    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(per-step outputs h_t, each L2-normalised [B, T, H]; architecture embedding e_x [B, H])."""
        emb = self.encoder_embedding(tokens)
        emb = emb.reshape(tokens.shape[0], tokens.shape[1] // self.ratio, -1)
        out, _ = self.encoder_rnn(emb)
        out = F.normalize(self.encoder_dropout(out), p=2, dim=-1)
        return out, self.pool(out)

    @staticmethod
    def pool(outputs: Tensor) -> Tensor:
        return F.normalize(outputs.mean(dim=1), p=2, dim=-1)

    def predict(self, arch_emb: Tensor) -> Tensor:
        """Predicted normalised score in (0, 1), one per architecture [B]."""
        return torch.sigmoid(self.predictor(arch_emb)).squeeze(-1)

    def score(self, tokens: Tensor) -> Tensor:
        return self.predict(self.encode(tokens)[1])

    # --- decoder --------------------------------------------------------------------------------------
    def _attend(self, output: Tensor, memory: Tensor) -> Tensor:
        weights = torch.softmax(torch.bmm(output, memory.transpose(1, 2)), dim=-1)
        context = torch.bmm(weights, memory)
        return torch.tanh(self.attention_out(torch.cat([context, output], dim=-1)))

    def decoder_logits(self, memory: Tensor, arch_emb: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits [B, L, V] for reconstructing `tokens` (input [<sos>] + tokens[:-1])."""
        inputs = torch.cat([torch.full_like(tokens[:, :1], SOS), tokens[:, :-1]], dim=1)
        state = (arch_emb.unsqueeze(0).contiguous(), arch_emb.unsqueeze(0).contiguous())
        out, _ = self.decoder_rnn(self.decoder_embedding(inputs), state)
        return self.decoder_out(self._attend(out, memory))

    def generate(self, memory: Tensor, arch_emb: Tensor) -> Tensor:
        """Greedy decoding under the grammar mask [B, L]: each step takes the best *allowed* token.

        Logits are sanitised first (NaN -> 0, +-inf -> finite extremes) and forbidden tokens set to
        -inf, so the argmax is always allowed, whatever the embedding or the weights.
        """
        batch = memory.shape[0]
        state = (arch_emb.unsqueeze(0).contiguous(), arch_emb.unsqueeze(0).contiguous())
        token = torch.full((batch, 1), SOS, dtype=torch.long, device=memory.device)
        out_tokens = []
        for step in range(self.grammar_mask.shape[0]):
            out, state = self.decoder_rnn(self.decoder_embedding(token), state)
            logits = torch.nan_to_num(self.decoder_out(self._attend(out, memory)).squeeze(1))
            logits = logits.masked_fill(~self.grammar_mask[step], float("-inf"))
            token = logits.argmax(dim=-1, keepdim=True)
            out_tokens.append(token)
        return torch.cat(out_tokens, dim=1)

    def reconstruct(self, tokens: Tensor) -> Tensor:
        memory, arch_emb = self.encode(tokens)
        return self.generate(memory, arch_emb)

    # --- training -------------------------------------------------------------------------------------
    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted scores [B], teacher-forced reconstruction logits [B, L, V])."""
        memory, arch_emb = self.encode(tokens)
        return self.predict(arch_emb), self.decoder_logits(memory, arch_emb, tokens)

    def _losses(self, batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tokens, targets = batch
        scores, logits = self(tokens)
        mse = F.mse_loss(scores, targets.float())
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        lam = self.hparams.trade_off
        return lam * mse + (1.0 - lam) * nll, mse, nll, scores

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        loss, mse, nll, _ = self._losses(batch)
        if not torch.isfinite(loss.detach()):
            raise NasreproError(
                f"NAO EPD loss is {loss.item()} at step {self.global_step} (mse {mse.item()}, nll {nll.item()}); "
                "check the targets are finite and normalised"
            )
        size = len(batch[0])
        self.log_dict(
            {"epd/loss": loss, "epd/mse": mse, "epd/nll": nll}, batch_size=size, on_epoch=True, on_step=False
        )
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        tokens, targets = batch
        memory, arch_emb = self.encode(tokens)
        self._val.append((targets, self.predict(arch_emb), tokens, self.generate(memory, arch_emb)))

    def on_validation_epoch_end(self) -> None:
        """Pairwise ranking accuracy and reconstruction quality (``controller_infer`` of the code)."""
        if not self._val:
            return
        targets, scores, tokens, decoded = (torch.cat(parts) for parts in zip(*self._val, strict=True))
        self._val.clear()
        metrics = {
            "epd/hamming_distance": hamming_distance(decoded, tokens),
            "epd/reconstruction_exact": float((decoded == tokens).all(-1).double().mean()),
            "epd/val_mse": float(F.mse_loss(scores, targets.float())),
        }
        if len(targets) >= 2:
            metrics["epd/pairwise_accuracy"] = pairwise_accuracy(targets, scores)
        self.log_dict(metrics, batch_size=len(targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """The paper's clip (norm 5) belongs to the method, whatever the Trainer was given."""
        self.clip_gradients(
            optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
        )

    # --- architecture optimisation (Sec. 3.3) -------------------------------------------------------
    def step_embedding(self, tokens: Tensor, eta: float) -> tuple[Tensor, Tensor, Tensor]:
        """(h, h', predicted score at h) with h'_t = normalise(h_t + eta * df/dh_t)."""
        with torch.enable_grad():
            memory = self.encode(tokens)[0].detach().requires_grad_(True)
            scores = self.predict(self.pool(memory))
            (grad,) = torch.autograd.grad(scores.sum(), memory)
        return memory.detach(), F.normalize(memory.detach() + eta * grad, p=2, dim=-1), scores.detach()

    def improve(self, tokens: Tensor, eta: float) -> Tensor:
        """New token sequences [B, L]: one gradient step of size `eta` from each row of `tokens`,
        decoded under the grammar (so every row is a valid architecture)."""
        was_training = self.training
        self.eval()
        try:
            _, moved, _ = self.step_embedding(tokens, eta)
            with torch.no_grad():
                return self.generate(moved, self.pool(moved))
        finally:
            self.train(was_training)

    def propose(
        self, seeds: Sequence[Sequence[int]], count: int, seen: Iterable[Hashable] = (),
        max_eta: float = 50.0, eta_step: float = 1.0,
        key: Callable[[tuple[int, ...]], Hashable | None] = tuple,
    ) -> list[tuple[int, ...]]:  # fmt: skip
        """Up to `count` new sequences, none in `seen` (compared by `key`), from the growing-eta loop
        of NAO_V1 ``train_search.py``: eta = 1, 2, ... until enough or eta would exceed `max_eta`.
        A `key` of None rejects the sequence (e.g. a space constraint the grammar cannot express)."""
        if count < 1:
            raise UsageError(f"NAO propose: count must be >= 1, got {count}")
        known = set(seen)
        new: list[tuple[int, ...]] = []
        seeds_t = torch.tensor(
            [self.codec.grammar.check(s) for s in seeds], dtype=torch.long, device=self.device
        )
        eta = eta_step
        while len(new) < count and eta <= max_eta:
            for row in self.improve(seeds_t, eta).tolist():
                k = key(tuple(row))
                if k is not None and k not in known:
                    known.add(k)
                    new.append(tuple(row))
                    if len(new) == count:
                        break
            eta += eta_step
        return new
