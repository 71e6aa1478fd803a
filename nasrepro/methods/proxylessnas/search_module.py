"""The ProxylessNAS search loop as a LightningModule with manual optimisation (Cai et al. 2019, Sec. 3.2).

Per training batch (released ``ArchSearchRunManager.train`` / ``warm_up``):

1. **Weight step** (Sec. 3.2): sample one path per decision (``g ~ p``), forward the train batch, CE
   with label smoothing 0.1, SGD Nesterov momentum 0.9, weight decay 4e-5, learning rate cosine *per
   batch* (0.05 over the warm-up epochs, then 0.025 over the joint epochs; the released
   ``adjust_learning_rate``). All weight grads are set to None first, so an unsampled path gets no
   momentum or decay update (released ``binarize()``). Weight decay reaches every weight, BN and
   biases included: the search script's ``--no_decay_keys`` defaults to None (the retraining script
   and NNI's port exclude BN; set ``no_decay_keys`` to ``"bn"`` or ``"bn#bias"`` for that).
2. **Architecture step** (gradient, Sec. 3.2.1), after every ``arch_update_every`` (5) batches of a
   joint epoch other than joint epoch 0: one batch of the held-out split, network in *train* mode
   (BN batch statistics), plain CE, ``sample_arch_paths`` (mode ``two``/``full``/``full_v2``), the
   regulariser on E[cost] (Sec. 3.3.1), backward, ``set_arch_grads`` (Eq. (4); None on a zero-active
   edge), Adam(lr 1e-3, betas (0, 0.999), eps 1e-8) step, ``rescale`` (``two`` mode). Weights are
   frozen (``requires_grad`` off) during this step, so only the alphas change.
3. **REINFORCE** (Proxyless-R, Sec. 3.3.2) instead of 2: ``rl_updates_per_epoch`` updates spread over
   the epoch's batches; each samples ``rl_batch_size`` (10) architectures, scores each by top-1 on one
   held-out batch (no grad, train mode), reward R = acc * (ref / cost)^0.1 (`cost.reinforce_reward`),
   baseline b (`cost.RewardBaseline`, the released 0.99-step quirk by default), and Adam on
   mean_j (R_j - b) * grad(-log p(g_j)).

Warm-up epochs train weights only (alpha frozen at its N(0, 1e-3) init). `COLUMNS` records which
settings a run follows: the paper's, the released code's, or NNI v3's.

An ``edge="all"`` supernet (DARTS-style `AllPathsEdge`) runs the same loop without sampling: the
weight step trains every path, the architecture step backpropagates into alpha directly (first-order
DARTS) -- the memory baseline of Sec. 3.2.

Resuming. A Lightning checkpoint taken at an epoch end holds the supernet (weights and alphas) and
both optimisers (`configure_optimizers` returns both, so Lightning saves both states); the learning
rate is a function of (epoch, batch), restored with the loop state. What Lightning does not know
about is added by `on_save_checkpoint` and put back by `on_load_checkpoint`: the epoch log, the
REINFORCE baseline, the position of the held-out iterator (its generator's state when it was
created and how many batches it has given), and the global RNG states (torch CPU/CUDA, numpy,
python `random`) -- the gates are sampled from the global torch RNG (`MixedEdge.sample_*` get no
generator) and the train loader shuffles and augments from it, so the continuation then draws
exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from nasrepro.errors import UsageError
from nasrepro.harness.metrics import MIB, peak_training_memory
from nasrepro.harness.oneshot import capture_rng_state, restore_rng_state
from nasrepro.methods.proxylessnas.cost import RewardBaseline, make_regularizer, reinforce_reward
from nasrepro.methods.proxylessnas.supernet import EdgeCosts, Supernet


@dataclass(frozen=True)
class Column:
    """One column of the paper-vs-code comparison (fact sheet Sec. 5): the settings that differ."""

    name: str
    mode: str
    regularizer: str | None
    arch_lr: float
    arch_betas: tuple[float, float]
    arch_weight_decay: float
    arch_update_every: int
    skip_first_joint_epoch: bool
    description: str


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column(
            "paper", "two", "add", 1e-3, (0.0, 0.999), 0.0, 5, True,
            "Sec. 3.2-3.3: two sampled paths + rescaling, loss = CE + lambda2 * E[cost]",
        ),
        Column(
            "code", "full_v2", "mul#log", 1e-3, (0.0, 0.999), 0.0, 5, True,
            "released imagenet_arch_search.py defaults: full_v2 gates, 0.2 * CE * (log E / log ref)^0.3",
        ),
        Column(
            "nni3", "full_v2", None, 3e-4, (0.5, 0.999), 1e-3, 1, False,
            "NNI v3 oneshot Proxyless (DARTS Lightning module): Adam 3e-4 betas (0.5, 0.999) wd 1e-3, "
            "an architecture step every batch, no cost penalty unless one is configured",
        ),
    )
}  # fmt: skip

ALGORITHMS = ("grad", "rl")


@dataclass(frozen=True)
class SearchSettings:
    """Everything the loop needs besides the supernet and the cost objective (released defaults)."""

    column: str = "code"
    algorithm: Literal["grad", "rl"] = "grad"
    warmup_epochs: int = 40
    epochs: int = 120
    warmup_lr: float = 0.05
    lr: float = 0.025
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    no_decay_keys: str | None = None
    label_smoothing: float = 0.1
    arch_lr: float = 1e-3
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_eps: float = 1e-8
    arch_weight_decay: float = 0.0
    arch_update_every: int = 5
    arch_steps: int = 1
    skip_first_joint_epoch: bool = True
    rl_batch_size: int = 10
    rl_updates_per_epoch: int = 300
    rl_tradeoff: float = 0.1
    rl_baseline_decay: float = 0.99
    rl_baseline_quirk: bool = True
    #: analytic peak memory (harness.metrics) of the first weight/arch step of every epoch (CPU);
    #: on CUDA the allocator's real peak of every step is recorded instead
    measure_memory: bool = True
    #: held-out batches on which the argmax network is scored at each epoch end (train-mode BN)
    derived_eval_batches: int = 1

    def __post_init__(self) -> None:
        if self.column not in COLUMNS:
            raise UsageError(f"unknown ProxylessNAS column {self.column!r}; choose one of {sorted(COLUMNS)}")
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"unknown ProxylessNAS algorithm {self.algorithm!r}; choose one of {ALGORITHMS}")
        if self.warmup_epochs < 0 or self.epochs < 1:
            raise UsageError(
                f"need warmup_epochs >= 0 and epochs >= 1, got {self.warmup_epochs}, {self.epochs}"
            )
        if self.arch_update_every < 1 or self.arch_steps < 0 or self.rl_batch_size < 1:
            raise UsageError("arch_update_every and rl_batch_size must be >= 1, arch_steps >= 0")
        if self.no_decay_keys not in (None, "bn", "bn#bias"):
            raise UsageError(f"no_decay_keys must be None, 'bn' or 'bn#bias', got {self.no_decay_keys!r}")

    @property
    def total_epochs(self) -> int:
        return self.warmup_epochs + self.epochs


@dataclass
class ArchObjective:
    """What the architecture step minimises besides CE: `regularizer(ce, E[cost])` (Sec. 3.3.1)."""

    costs: EdgeCosts | None = None
    regularizer: str | None = None
    params: dict[str, float] | None = None
    #: the target cost (ref of ``mul#log``/``add#linear``, T of the REINFORCE reward)
    ref: float | None = None

    def __post_init__(self) -> None:
        self._loss = None
        if self.regularizer is not None:
            if self.costs is None:
                raise UsageError(f"regulariser {self.regularizer!r} needs per-edge costs")
            self._loss = make_regularizer(self.regularizer, **(self.params or {}))

    def loss(self, ce: Tensor, supernet: Supernet) -> tuple[Tensor, Tensor | None]:
        if self._loss is None or self.costs is None:
            return ce, None
        expected = supernet.expected_cost(self.costs)
        return self._loss(ce, expected), expected


def cosine_lr(lr_max: float, step: int, total: int) -> float:
    """0.5 * lr_max * (1 + cos(pi * t / T)), per batch (released `warm_up` / `adjust_learning_rate`)."""
    return 0.5 * lr_max * (1 + math.cos(math.pi * step / max(total, 1)))


def spread(updates: int, batches: int) -> list[int]:
    """`updates` steps spread evenly over `batches` (released RL `get_update_schedule`)."""
    return [(i + 1) * updates // batches - i * updates // batches for i in range(batches)]


def _weight_groups(supernet: Supernet, settings: SearchSettings) -> list[dict[str, Any]]:
    """SGD parameter groups: all weights decay unless `no_decay_keys` exempts BN (and biases)."""
    weights = supernet.weight_parameters()
    if settings.no_decay_keys is None:
        return [{"params": weights, "weight_decay": settings.weight_decay}]
    exempt: set[int] = set()
    for module in supernet.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            exempt.update(id(p) for p in module.parameters(recurse=False))
    if settings.no_decay_keys == "bn#bias":
        exempt.update(id(p) for name, p in supernet.named_parameters() if name.endswith("bias"))
    return [
        {"params": [p for p in weights if id(p) not in exempt], "weight_decay": settings.weight_decay},
        {"params": [p for p in weights if id(p) in exempt], "weight_decay": 0.0},
    ]


class ProxylessSearchModule(L.LightningModule):
    """Fits a supernet's weights and alphas; `epoch_log` keeps one dict per epoch (see `_epoch_end`)."""

    def __init__(
        self,
        supernet: Supernet,
        settings: SearchSettings,
        objective: ArchObjective,
        arch_loader: DataLoader,
    ) -> None:
        super().__init__()
        if settings.algorithm == "rl" and not supernet.binary:
            raise UsageError("REINFORCE samples binary gates; build the supernet with edge='binary'")
        self.supernet, self.settings, self.objective = supernet, settings, objective
        self.arch_loader = arch_loader
        self.automatic_optimization = False
        self.baseline = RewardBaseline(settings.rl_baseline_decay, settings.rl_baseline_quirk)
        self.epoch_log: list[dict[str, Any]] = []
        self._valid: Iterator[Any] | None = None
        #: where `_valid` stands: the loader generator's state before `iter()`, batches taken since
        self._valid_origin: Tensor | None = None
        self._valid_taken = 0
        self._reset_epoch()

    # --- optimisers -----------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        s = self.settings
        weights = torch.optim.SGD(
            _weight_groups(self.supernet, s), lr=s.warmup_lr, momentum=s.momentum, nesterov=s.nesterov
        )
        arch = torch.optim.Adam(
            self.supernet.arch_parameters(),
            lr=s.arch_lr,
            betas=s.arch_betas,
            eps=s.arch_eps,
            weight_decay=s.arch_weight_decay,
        )
        return [weights, arch]

    # --- data -----------------------------------------------------------------------------------------
    def _next_valid(self) -> tuple[Tensor, Tensor]:
        """The next held-out batch (the released `valid_next_batch`: cycles through a shuffled loader)."""
        if self._valid is None:
            self._restart_valid()
        try:
            images, labels = next(self._valid)  # type: ignore[call-overload]
        except StopIteration:
            self._restart_valid()
            images, labels = next(self._valid)  # type: ignore[call-overload]
        self._valid_taken += 1
        return images.to(self.device), labels.to(self.device)

    def _restart_valid(self, origin: Tensor | None = None) -> None:
        """A fresh pass over the held-out loader; `origin` replays a pass from its generator state."""
        generator = self.arch_loader.generator
        if generator is not None:
            if origin is not None:
                generator.set_state(origin)
            self._valid_origin = generator.get_state()
        self._valid = iter(self.arch_loader)
        self._valid_taken = 0

    # --- resuming (see the module docstring) ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["proxyless"] = {
            "epoch_log": self.epoch_log,
            "baseline": self.baseline.value,
            "valid": None
            if self._valid is None
            else {"origin": self._valid_origin, "taken": self._valid_taken},
            "rng": capture_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["proxyless"]
        self.epoch_log = list(state["epoch_log"])
        self.baseline.value = state["baseline"]
        self._valid = None
        if state["valid"] is not None:
            # Re-walk the pass to where it stood. Exact when the loader shuffles with its own generator
            # (search.arch_loader) or not at all; a generator-less shuffle draws from the global RNG.
            self._restart_valid(state["valid"]["origin"])
            for _ in range(state["valid"]["taken"]):
                next(self._valid)  # type: ignore[call-overload]
            self._valid_taken = state["valid"]["taken"]
        restore_rng_state(state["rng"])  # last: re-walking the held-out pass may draw from it

    # --- phases ---------------------------------------------------------------------------------------
    @property
    def in_warmup(self) -> bool:
        return self.current_epoch < self.settings.warmup_epochs

    @property
    def joint_epoch(self) -> int:
        return self.current_epoch - self.settings.warmup_epochs

    def _learning_rate(self, batch_idx: int, n_batches: int) -> float:
        s = self.settings
        if self.in_warmup:
            return cosine_lr(
                s.warmup_lr, self.current_epoch * n_batches + batch_idx, s.warmup_epochs * n_batches
            )
        return cosine_lr(s.lr, self.joint_epoch * n_batches + batch_idx, s.epochs * n_batches)

    def arch_updates_after(self, batch_idx: int, n_batches: int) -> int:
        """How many architecture updates follow weight step `batch_idx` of this epoch."""
        s = self.settings
        if self.in_warmup or (s.skip_first_joint_epoch and self.joint_epoch == 0):
            return 0
        if s.algorithm == "rl":
            return spread(s.rl_updates_per_epoch, n_batches)[batch_idx]
        return s.arch_steps if (batch_idx + 1) % s.arch_update_every == 0 else 0

    # --- the loop -------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        n_batches = int(self.trainer.num_training_batches)
        w_opt, a_opt = self.optimizers()  # type: ignore[misc]
        lr = self._learning_rate(batch_idx, n_batches)
        for group in w_opt.param_groups:
            group["lr"] = lr
        self.weight_step(batch, w_opt)
        for _ in range(self.arch_updates_after(batch_idx, n_batches)):
            if self.settings.algorithm == "rl":
                self.rl_step(a_opt)
            else:
                self.arch_step(a_opt)

    def _memory(self, kind: str, start: bool, inputs: tuple[Tensor, ...], loss_fn: Any) -> None:
        """Peak memory of this step: the CUDA allocator's peak, else the analytic count once per epoch."""
        key = f"{kind}_memory_mb"
        if self.device.type == "cuda":
            if not start:
                self._epoch[key] = max(
                    self._epoch.get(key, 0.0), torch.cuda.max_memory_allocated(self.device) / MIB
                )
            else:
                torch.cuda.reset_peak_memory_stats(self.device)
        elif start and self.settings.measure_memory and key not in self._epoch:
            self._epoch[key] = peak_training_memory(self.supernet, inputs, loss_fn)["peak_memory_mb"]

    def weight_step(self, batch: tuple[Tensor, Tensor], w_opt: Any) -> Tensor:
        """One SGD step on the train batch with one sampled path per decision (Sec. 3.2)."""
        images, labels = batch
        self.supernet.train()
        if self.supernet.binary:
            self.supernet.sample_weight_paths()
        for p in self.supernet.parameters():
            p.grad = None  # unsampled paths: no grad -> no momentum / weight-decay update
        smoothing = self.settings.label_smoothing
        self._memory(  # before the timer: the analytic probe runs an extra forward
            "weight", True, (images,), lambda out: F.cross_entropy(out, labels, label_smoothing=smoothing)
        )
        start = time.perf_counter()
        logits = self.supernet(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        self._backward(loss)
        w_opt.step()
        self._memory("weight", False, (), None)
        self._epoch["weight_ms"].append((time.perf_counter() - start) * 1e3)
        self._epoch["loss"] += float(loss.detach()) * labels.numel()
        self._epoch["correct"] += int((logits.detach().argmax(-1) == labels).sum())
        self._epoch["seen"] += labels.numel()
        return loss.detach()

    def _backward(self, loss: Tensor) -> None:
        """`manual_backward` under a Trainer; plain backward when a step is driven directly (tests)."""
        if self._trainer is None:
            loss.backward()
        else:
            self.manual_backward(loss)

    def arch_step(self, a_opt: Any) -> Tensor:
        """One gradient step on alpha from one held-out batch (Sec. 3.2.1 + Sec. 3.3.1)."""
        images, labels = self._next_valid()
        self.supernet.train()  # BN batch statistics, as the released gradient_step
        with self.supernet.weights_frozen():
            if self.supernet.binary:
                self.supernet.sample_arch_paths()
            for alpha in self.supernet.arch_parameters():
                alpha.grad = None
            self._memory("arch", True, (images,), lambda out: F.cross_entropy(out, labels))
            start = time.perf_counter()
            ce = F.cross_entropy(self.supernet(images), labels)  # plain CE: no smoothing here
            loss, expected = self.objective.loss(ce, self.supernet)
            self._backward(loss)
            if self.supernet.binary:
                self.supernet.set_arch_grads()
            a_opt.step()
            self.supernet.rescale()
            self._memory("arch", False, (), None)
        self._epoch["arch_ms"].append((time.perf_counter() - start) * 1e3)
        self._epoch["arch_loss"].append(float(loss.detach()))
        return loss.detach()

    def rl_step(self, a_opt: Any) -> list[float]:
        """One Proxyless-R update (released `rl_update_step`); returns the rewards."""
        s, obj = self.settings, self.objective
        images, labels = self._next_valid()
        start = time.perf_counter()
        self.supernet.train()
        alphas = self.supernet.arch_parameters()
        rewards, grads = [], []
        for _ in range(s.rl_batch_size):
            chosen = self.supernet.sample_weight_paths()
            with torch.no_grad():
                acc = float((self.supernet(images).argmax(-1) == labels).float().mean())
            if obj.costs is not None and obj.ref is not None:
                reward = reinforce_reward(acc, obj.costs.arch_cost(chosen), obj.ref, s.rl_tradeoff)
            else:
                reward = acc  # released: no target hardware -> the reward is the accuracy
            rewards.append(reward)
            grads.append(torch.autograd.grad(-self.supernet.log_prob(), alphas))
        baseline = self.baseline.update(rewards)  # updated before the advantages, as released
        for k, alpha in enumerate(alphas):
            alpha.grad = sum((r - baseline) * g[k] for r, g in zip(rewards, grads, strict=True)) / len(
                rewards
            )
        a_opt.step()
        self._epoch["arch_ms"].append((time.perf_counter() - start) * 1e3)
        self._epoch["rewards"].extend(rewards)
        return rewards

    # --- logging --------------------------------------------------------------------------------------
    def _reset_epoch(self) -> None:
        self._epoch: dict[str, Any] = {
            "weight_ms": [], "arch_ms": [], "arch_loss": [], "rewards": [], "loss": 0.0, "correct": 0, "seen": 0,
        }  # fmt: skip

    def on_train_epoch_start(self) -> None:
        self._reset_epoch()

    @torch.no_grad()
    def derived_accuracy(self) -> float | None:
        """Top-1 (%) of the argmax network on `derived_eval_batches` held-out batches, train-mode BN
        (the released per-epoch `validate(use_train_mode=True)`)."""
        if not self.supernet.binary or self.settings.derived_eval_batches < 1:
            return None
        self.supernet.train()
        self.supernet.use_argmax()
        correct = seen = 0
        for _ in range(self.settings.derived_eval_batches):
            images, labels = self._next_valid()
            correct += int((self.supernet(images).argmax(-1) == labels).sum())
            seen += labels.numel()
        return 100.0 * correct / max(seen, 1)

    def on_train_epoch_end(self) -> None:
        e, net, obj = self._epoch, self.supernet, self.objective
        arch = net.derive()
        chosen = net.chosen()
        row: dict[str, Any] = {
            "epoch": self.current_epoch,
            "phase": "warmup" if self.in_warmup else "joint",
            "lr": self.optimizers()[0].param_groups[0]["lr"],  # type: ignore[index]
            "train_loss": e["loss"] / max(e["seen"], 1),
            "train_acc": 100.0 * e["correct"] / max(e["seen"], 1),
            "entropy": net.entropy(),
            "derived_arch": str(arch),
            "derived_val_acc": self.derived_accuracy(),
            "weight_step_ms": sum(e["weight_ms"]) / max(len(e["weight_ms"]), 1),
            "arch_step_ms": sum(e["arch_ms"]) / len(e["arch_ms"]) if e["arch_ms"] else None,
            "arch_steps": len(e["arch_ms"]),
            "arch_loss": sum(e["arch_loss"]) / len(e["arch_loss"]) if e["arch_loss"] else None,
            "mean_reward": sum(e["rewards"]) / len(e["rewards"]) if e["rewards"] else None,
            "weight_memory_mb": e.get("weight_memory_mb"),
            "arch_memory_mb": e.get("arch_memory_mb"),
            "probs": dict(zip(net.group_names, net.probabilities(), strict=True)),
        }
        if obj.costs is not None:
            row["expected_cost"] = net.mean_cost(obj.costs)
            row["derived_cost"] = obj.costs.arch_cost(chosen)
        self.epoch_log.append(row)
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "epoch":
                self.log(f"search/{key}", float(value), on_step=False, on_epoch=True)
        for name, cands, probs in zip(
            net.group_names, net.candidate_names(), net.probabilities(), strict=True
        ):
            for cand, p in zip(cands, probs, strict=True):
                self.log(f"alpha/{name}/{cand}", p, on_step=False, on_epoch=True)

    def summary(self) -> dict[str, Any]:
        """Settings, column and per-epoch log (what the method puts in SearchResult.extra)."""
        return {"settings": asdict(self.settings), "column": self.settings.column, "epochs": self.epoch_log}
