"""NAO-WS's search as one Lightning fit: supernet training with controller rounds at its evaluation
points (Luo et al. 2018, Sec. 3.4; NAO_pytorch ``NAO_V1/train_search.py`` ``main``).

* **Weight steps** (``child_train``): every mini-batch trains the path of one architecture drawn
  uniformly from the current pool (``utils.sample_arch(arch_pool, None)``; ``sample_from="space"``
  draws uniformly from the whole space instead), cross-entropy (+ 0.4 x the auxiliary head's, if
  any), SGD with momentum, cosine learning rate per epoch, gradient-norm clip, scheduled drop-path.
* **Evaluation points** (``child_valid``): after each epoch of `eval_epochs`, every pool member is
  scored with the shared weights on held-out images, BN using *batch* statistics (``bn_train=True``)
  and no dropout or drop-path. ``scoring="as-released"`` gives each architecture one fresh random
  held-out batch (``next(iter(valid_queue))`` per architecture: the noisy ranking the fact sheet
  flags); ``"faithful"`` scores all of them on the same `score_batches` batches of the round, so
  the ranking compares architectures, not batches (our reading of the paper's "evaluate on the
  held-out set"; labelled an interpretation in the README).
* **Controller round** (`ws_controller.controller_round`) at every evaluation point but the last:
  the pool sorted by score, the EPD trained on it, and the ``new_archs`` generated (+ ``random_new``)
  replace the pool's worst (``old_archs[:len - n_new] + new_archs``).
* At the last point the sorted pool is `final_ranking`; the search driver re-ranks its head by
  training (``train_and_evaluate_top_on_cifar10``'s role, see `ws_search`).

Resuming: everything outside Lightning's own state (the pool, the round log, the sampler's and the
held-out loader's generators, the global torch RNG) is saved by ``on_save_checkpoint``; the EPD is a
child module, so its weights are in the state dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from nasrepro.errors import UsageError
from nasrepro.harness.oneshot import capture_rng_state, restore_rng_state
from nasrepro.methods.nao.encoding import Codec
from nasrepro.methods.nao.epd import EPD
from nasrepro.methods.nao.supernet import NAOSupernet
from nasrepro.methods.nao.ws_controller import ControllerSettings, controller_round
from nasrepro.spaces.nao_cells import ConvArch, NaoCellSpace

SAMPLE_FROM = ("pool", "space")
SCORING = ("faithful", "as-released")


@dataclass(frozen=True)
class WSSettings:
    """The supernet fit (NAO_V1 ``train_search.py`` defaults where not sized by the preset)."""

    epochs: int
    eval_epochs: tuple[int, ...]
    lr: float = 0.025  # child_lr_max
    lr_min: float = 0.001  # child_lr_min
    momentum: float = 0.9
    weight_decay: float = 3e-4  # child_l2_reg
    grad_clip: float = 5.0  # child_grad_bound
    aux_weight: float = 0.4
    sample_from: str = "pool"
    scoring: str = "faithful"
    score_batches: int = 1

    def check(self) -> None:
        if self.sample_from not in SAMPLE_FROM:
            raise UsageError(f"nao-ws: sample_from must be one of {SAMPLE_FROM}, got {self.sample_from!r}")
        if self.scoring not in SCORING:
            raise UsageError(f"nao-ws: scoring must be one of {SCORING}, got {self.scoring!r}")
        if not self.eval_epochs or self.eval_epochs[-1] != self.epochs or min(self.eval_epochs) < 1:
            raise UsageError(f"nao-ws: evaluation epochs {self.eval_epochs} must end at epoch {self.epochs}")


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Evaluation mode, except that BN normalises with the batch's statistics and leaves its
    running averages untouched (NAO_V1 scores with ``bn_train=True``)."""
    was = model.training
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in norms]
    model.eval()
    for m in norms:
        m.train()
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, track in zip(norms, saved, strict=True):
            m.track_running_stats = track
        model.train(was)


class WSSearchModule(L.LightningModule):
    def __init__(self, supernet: NAOSupernet, epd: EPD, space: NaoCellSpace, codec: Codec[Any],
                 pool: list[ConvArch], held_out: DataLoader, settings: WSSettings,
                 controller: ControllerSettings, seed: int) -> None:  # fmt: skip
        super().__init__()
        settings.check()
        self.supernet, self.epd = supernet, epd
        self.space, self.codec, self.held_out = space, codec, held_out
        self.settings, self.controller, self.seed = settings, controller, seed
        self.pool = list(pool)
        self.rounds: list[dict[str, Any]] = []
        self.final_ranking: list[tuple[str, float]] = []
        self.sampler = torch.Generator().manual_seed(seed)
        self._slots = [list(s) for s in space.slots()]
        self._total_steps = 0

    # --- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        s = self.settings
        optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs, eta_min=s.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:  # fmt: skip
        self.clip_gradients(
            optimizer, gradient_clip_val=self.settings.grad_clip, gradient_clip_algorithm="norm"
        )

    # --- weight steps ----------------------------------------------------------------------------
    def sample_arch(self) -> ConvArch:
        """One architecture, uniformly from the pool (the code) or from the space."""
        if self.settings.sample_from == "pool":
            return self.pool[int(torch.randint(len(self.pool), (1,), generator=self.sampler))]
        ints = [slot[int(torch.randint(len(slot), (1,), generator=self.sampler))] for slot in self._slots]
        return ConvArch(tuple(ints[:20]), tuple(ints[20:]))

    def on_train_start(self) -> None:
        self._total_steps = int(self.trainer.estimated_stepping_batches)  # drop-path's ``steps``

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        arch = self.sample_arch()
        logits, aux = self.supernet(images, arch, self.global_step, self._total_steps)
        loss = F.cross_entropy(logits, labels)
        if aux is not None:
            loss = loss + self.settings.aux_weight * F.cross_entropy(aux, labels)
        self.log("supernet/loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    # --- evaluation points -----------------------------------------------------------------------
    def _batches(self, count: int) -> list[tuple[Tensor, Tensor]]:
        out: list[tuple[Tensor, Tensor]] = []
        while len(out) < count:
            for images, labels in self.held_out:
                out.append((images.to(self.device), labels.to(self.device)))
                if len(out) == count:
                    break
        return out

    def score(self, archs: list[ConvArch]) -> list[float]:
        """Held-out accuracy (0-1) of each architecture with the shared weights (``child_valid``)."""
        shared = self._batches(self.settings.score_batches) if self.settings.scoring == "faithful" else None
        scores = []
        with batch_statistics(self.supernet), torch.no_grad():
            for arch in archs:
                batches = shared if shared is not None else self._batches(1)  # a fresh random batch
                correct = total = 0
                for images, labels in batches:
                    logits, _ = self.supernet(images, arch)
                    correct += int((logits.argmax(-1) == labels).sum())
                    total += len(labels)
                scores.append(correct / total)
        return scores

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch + 1
        if epoch not in self.settings.eval_epochs:
            return
        scores = self.score(self.pool)
        order = sorted(range(len(self.pool)), key=lambda i: (-scores[i], i))
        ranked, ranked_scores = [self.pool[i] for i in order], [scores[i] for i in order]
        info: dict[str, Any] = {
            "epoch": epoch,
            "pool": len(ranked),
            "ws_best": round(ranked_scores[0], 4),
            "ws_mean": round(float(np.mean(ranked_scores)), 4),
            "ws_top": str(ranked[0]),
        }
        if epoch == self.settings.epochs:
            self.final_ranking = [(str(a), float(s)) for a, s in zip(ranked, ranked_scores, strict=True)]
        else:
            new, report = controller_round(
                self.epd,
                self.codec,
                self.space,
                ranked,
                ranked_scores,
                self.controller,
                self.seed * 1009 + epoch,
            )
            # the new architectures replace the worst (``old_archs[:len - num_new] + new_archs``)
            self.pool = ranked[: max(len(ranked) - len(new), 0)] + new
            info.update(report, new=[str(a) for a in new])
        self.rounds.append(info)
        self.log("ws/best", info["ws_best"])

    # --- resuming --------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        generator = self.held_out.generator
        checkpoint["nao_ws"] = {
            "pool": [str(a) for a in self.pool],
            "rounds": self.rounds,
            "final_ranking": [[a, s] for a, s in self.final_ranking],
            "sampler": self.sampler.get_state(),
            "held_out": generator.get_state() if generator is not None else None,
            "rng": capture_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["nao_ws"]
        self.pool = [self.space.parse(a) for a in state["pool"]]
        self.rounds = list(state["rounds"])
        self.final_ranking = [(a, float(s)) for a, s in state["final_ranking"]]
        self.sampler.set_state(state["sampler"])
        if state["held_out"] is not None and self.held_out.generator is not None:
            self.held_out.generator.set_state(state["held_out"])
        restore_rng_state(state["rng"])

    def summary(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "final_pool": len(self.final_ranking)}
