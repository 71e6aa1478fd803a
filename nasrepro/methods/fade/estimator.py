"""The FaDE estimator: DARTS over a finite region of whole cells, as a LightningModule.

Neumeyer, Stier & Granitzer (IDA 2024), Sec. 3, and the authors' ``fade/diffNN.py`` / ``fade/train.py``:

* **Region** (`MixedStage` = the code's ``DiffNN``): each of the L stages holds k candidate cells with
  *no weight sharing* between them (the code asserts ``stage_shared_weights == 0``); the stage output is
  ``sum_g w_g * cell_g(x)`` with ``w = softmax(alpha)`` or, with ``sampling``, a hard Gumbel-softmax
  sample (tau = 1). ``alpha`` starts at ones (or uniform random with ``random_init``); a stage with one
  candidate has a frozen alpha. A region of k cells per stage represents k**L architectures with k*L
  cell modules: its cost is linear in depth.
* **Eval mode** replaces w by the one-hot argmax (``_calculate_alphas(train_mode=False)``): the network
  then computes exactly the current argmax path (only that candidate is run here; the code multiplies
  the others by zero).
* **FaDE-rank** of a candidate = its softmax weight (``DiffNN.get_alpha``, sampling off), logged per
  epoch for every candidate of every stage (`alpha_history`).
* **Optimisation** (``Trainer``), three modes: ``trivial`` (one Adam over weights and alphas on one
  loader), ``first_order`` (per step an alpha step on the alpha loader, then a weight step on the
  weight loader; the code's two loaders are separately shuffled views of the same 90% of the data),
  ``second_order`` (unrolled DARTS exactly as ``_train_batch_second_order``: virtual step w' = w -
  eps*grad_w L_train with eps = 0.001, validation gradients at w', finite differences at w +- R*grad
  with R = 0.01/||w'||, alpha grad = g_alpha - eps * (g+ - g-)/(2R), then a weight step).
  Optimisers have base lr 1 and a `LinearLR` from the start to the end factor over min(5, epochs)
  epochs, stepped at every epoch end, so the effective lr is the factor; Adam, or SGD momentum 0.8.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LinearLR
from torch.utils.data import DataLoader

from nasrepro.errors import UsageError

MODES = ("trivial", "first_order", "second_order")
#: the code's finite-difference constants (``_train_batch_second_order``)
EPSILON = 0.001
RADIUS = 0.01


class MixedStage(nn.Module):
    """One stage of a region: k candidate cells (own weights each) mixed by softmax(alpha)."""

    def __init__(
        self, candidates: Sequence[nn.Module], sampling: bool = False, random_init: bool = False
    ) -> None:
        super().__init__()
        if len(candidates) < 1:
            raise UsageError("a region stage needs at least one candidate cell (k >= 1)")
        self.candidates = nn.ModuleList(candidates)
        self.sampling = sampling
        k = len(candidates)
        init = torch.rand(k) if random_init and k > 1 else torch.ones(k)
        self.alphas = nn.Parameter(init, requires_grad=k > 1)

    def ranks(self) -> Tensor:
        """FaDE-ranks: softmax(alpha), whatever the sampling mode (the code's ``get_alpha``)."""
        return F.softmax(self.alphas.detach(), dim=0)

    def mixing_weights(self) -> Tensor:
        """softmax / hard Gumbel (tau 1) in training, the one-hot argmax in eval mode."""
        if not self.training:
            return torch.zeros_like(self.alphas).scatter_(0, torch.argmax(self.alphas).view(1), 1.0)
        if self.sampling:
            return F.gumbel_softmax(self.alphas, tau=1.0, hard=True)
        return F.softmax(self.alphas, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:  # the argmax path alone
            return self.candidates[int(torch.argmax(self.alphas))](x)
        weights = self.mixing_weights()
        out = weights[0] * self.candidates[0](x)
        for w, cell in zip(weights[1:], self.candidates[1:], strict=True):
            out = out + w * cell(x)
        return out


@dataclass(frozen=True)
class EstimatorSettings:
    """The code's optimisation settings (``Constants.optimization_*`` / ``darts_*``)."""

    mode: Literal["trivial", "first_order", "second_order"] = "first_order"
    optimizer: Literal["adam", "sgd"] = "adam"
    epochs: int = 5
    #: LinearLR factors of the weight (and trivial joint) optimiser; base lr is 1
    lr_start: float = 0.01
    lr_end: float = 0.001
    #: LinearLR factors of the alpha optimiser
    alpha_lr_start: float = 0.1
    alpha_lr_end: float = 0.01
    sampling: bool = False
    random_init: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(
                f"unknown FaDE optimisation mode {self.mode!r}; choose one of {', '.join(MODES)}"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise UsageError(f"FaDE optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.epochs < 1:
            raise UsageError(f"FaDE needs at least one region epoch, got {self.epochs}")


def _cycle(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


class FadeEstimator(L.LightningModule):
    """Trains a region network (any module containing `MixedStage`s) and reads its FaDE-ranks."""

    def __init__(
        self, network: nn.Module, settings: EstimatorSettings, alpha_loader: DataLoader | None
    ) -> None:
        super().__init__()
        self.network = network
        self.settings = settings
        self.automatic_optimization = False
        self.stages = [m for m in network.modules() if isinstance(m, MixedStage)]
        if not self.stages:
            raise UsageError("a FaDE region needs at least one stage (L >= 1)")
        if settings.mode != "trivial" and alpha_loader is None:
            raise UsageError(f"FaDE mode {settings.mode!r} needs an alpha loader")
        self._alpha_loader = alpha_loader
        self._alpha_iter: Iterator[Any] | None = None
        #: per finished epoch: the FaDE-ranks of every stage's candidates
        self.alpha_history: list[list[list[float]]] = []
        self.train_losses: list[float] = []

    # --- parameters ---------------------------------------------------------------------------------
    def alpha_parameters(self) -> list[nn.Parameter]:
        return [s.alphas for s in self.stages if s.alphas.requires_grad]

    def weight_parameters(self) -> list[nn.Parameter]:
        alphas = {id(s.alphas) for s in self.stages}
        return [p for p in self.network.parameters() if id(p) not in alphas]

    def ranks(self) -> list[list[float]]:
        return [s.ranks().tolist() for s in self.stages]

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    # --- optimisers (base lr 1, LinearLR factors over min(5, epochs)) -----------------------------------
    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if not params:  # a region of single-candidate stages has nothing to learn in alpha
            params = [nn.Parameter(torch.zeros(1))]
        if self.settings.optimizer == "adam":
            return torch.optim.Adam(params, lr=1.0)
        return torch.optim.SGD(params, lr=1.0, momentum=0.8)

    def configure_optimizers(self) -> Any:
        s, iters = self.settings, min(5, self.settings.epochs)
        if s.mode == "trivial":
            joint = self._optimizer(self.weight_parameters() + self.alpha_parameters())
            return [joint], [LinearLR(joint, s.lr_start, s.lr_end, total_iters=iters)]
        weights = self._optimizer(self.weight_parameters())
        alphas = self._optimizer(self.alpha_parameters())
        return [weights, alphas], [
            LinearLR(weights, s.lr_start, s.lr_end, total_iters=iters),
            LinearLR(alphas, s.alpha_lr_start, s.alpha_lr_end, total_iters=iters),
        ]

    # --- steps --------------------------------------------------------------------------------------
    def _alpha_batch(self) -> tuple[Tensor, Tensor]:
        if self._alpha_iter is None:
            assert self._alpha_loader is not None
            self._alpha_iter = _cycle(self._alpha_loader)
        x, y = next(self._alpha_iter)
        return x.to(self.device), y.to(self.device)

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.network(x), y)

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        mode = self.settings.mode
        if mode == "trivial":
            loss = self._loss(batch)
            self._step(optimizers[0], loss)
        elif mode == "first_order":  # the code steps alpha first, then the weights
            self._step(optimizers[1], self._loss(self._alpha_batch()))
            loss = self._loss(batch)
            self._step(optimizers[0], loss)
        else:
            loss = self._second_order(batch, optimizers[0], optimizers[1])
        self.train_losses.append(float(loss.detach()))

    def _second_order(self, train: tuple[Tensor, Tensor], w_opt: Any, a_opt: Any) -> Tensor:
        """Unrolled DARTS as the code's ``_train_batch_second_order`` (eps = 0.001, R = 0.01/||w'||)."""
        weights, alphas = self.weight_parameters(), self.alpha_parameters()
        valid = self._alpha_batch()
        w = [p.detach().clone() for p in weights]
        grads = torch.autograd.grad(self._loss(train), weights, allow_unused=True)
        w_virtual = [v - EPSILON * (g if g is not None else 0) for v, g in zip(w, grads, strict=True)]
        self._set(weights, w_virtual)
        valid_loss = self._loss(valid)
        g_w = torch.autograd.grad(valid_loss, weights, retain_graph=True, allow_unused=True)
        g_w = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_w, weights, strict=True)]
        g_alpha = torch.autograd.grad(valid_loss, alphas) if alphas else []
        radius = RADIUS / math.sqrt(float(sum((v * v).sum() for v in w_virtual)))
        self._set(weights, [v - radius * g for v, g in zip(w, g_w, strict=True)])
        g_minus = torch.autograd.grad(self._loss(train), alphas) if alphas else []
        self._set(weights, [v + radius * g for v, g in zip(w, g_w, strict=True)])
        g_plus = torch.autograd.grad(self._loss(train), alphas) if alphas else []
        self._set(weights, w)
        for p, gl, gp, gm in zip(alphas, g_alpha, g_plus, g_minus, strict=True):
            p.grad = gl - EPSILON * (gp - gm) / (2 * radius)
        a_opt.step()
        loss = self._loss(train)
        self._step(w_opt, loss)
        return loss

    @staticmethod
    @torch.no_grad()
    def _set(params: list[nn.Parameter], values: list[Tensor]) -> None:
        for p, v in zip(params, values, strict=True):
            p.copy_(v)

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()
        self.alpha_history.append(self.ranks())

    def summary(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "alpha_history": [
                [[round(v, 6) for v in stage] for stage in epoch] for epoch in self.alpha_history
            ],
            "final_loss": round(self.train_losses[-1], 6) if self.train_losses else None,
        }
