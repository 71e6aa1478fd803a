"""Search drivers: AGNN's conservative explorer (``agnn``) and GraphNAS's REINFORCE (``graphnas-rl``).

AGNN (Zhou et al. 2019, arXiv 1909.03184; fact sheet ``agnn.md`` section 3): keep the best
architecture so far (the *incumbent*) and explore around it in small steps -- each child changes the
fields of exactly one action class -- updating the controller after every child and promoting the
epoch's best child at the end of each controller epoch only if it beats the incumbent. GraphNAS
(Gao et al., IJCAI 2020) samples whole architectures from one LSTM; it is AGNN's ablation without
the conservative explorer and the guided modifier.

Both run on any space with the categorical view (`Space.fields/encode/decode`). Rewards are the
evaluator's scores (validation unless the user asked for ``--reward test``), oriented by the task's
metric; the test split is never read here. Both are deterministic per seed -- numpy and torch
generators are local -- so the harness resumes them by replay (``harness/checkpoint.py``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator, Query
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.harness.space import Arch, Space
from nasrepro.harness.task import Task
from nasrepro.harness.train_evaluator import TrainEvaluator
from nasrepro.methods.agnn.controller import (
    ENTROPY_ESTIMATES,
    AGNNController,
    GraphNASController,
    Proposal,
    ReinforceModule,
)
from nasrepro.methods.agnn.sharing import ConstrainedSharing, attention_and_activation

#: uniform draws tried for an unseen architecture when the controller's neighbourhood is spent
JUMP_TRIES = 1000


@dataclass
class ReinforceConfig(MethodConfig):
    """Controller settings shared by GraphNAS and AGNN (GraphNAS ``main.py``; AutoGL ``rl.py``)."""

    #: children per controller epoch (AutoGL ``ctrl_steps_aggregate``: 100 by default, 10 in its
    #: NAS-Bench-Graph example, which runs 50 epochs x 10 = 500 samples). AGNN re-seeds its baseline
    #: and may promote a child once per epoch.
    ctrl_steps: int = 10
    lr: float = 3.5e-4
    #: weight of the sampling entropy added to the reward (GraphNAS ``entropy_mode='reward'``)
    entropy_weight: float = 1e-4
    #: EMA decay of the REINFORCE baseline
    baseline_decay: float = 0.95
    temperature: float = 5.0
    tanh_c: float = 2.5
    lstm_size: int = 100
    #: "sampled" = AutoGL/NNI's ``-p(s) log p(s)`` per field; "full" = ``-sum p log p`` (GraphNAS)
    entropy_estimate: str = "sampled"
    #: rewards are multiplied by this before REINFORCE: tasks report accuracy in percent, GraphNAS
    #: and AutoGL reward fractions, and lr 3.5e-4 was tuned for that scale
    reward_scale: float = 0.01
    #: failed controller draws in a row (invalid or already evaluated) before AGNN gives up on a
    #: class around the current incumbent, or GraphNAS on the controller for one child
    max_resample: int = 100
    #: what happens once `max_resample` draws in a row were all seen or invalid: "jump" evaluates a
    #: uniformly drawn unseen architecture instead (so the budget is spent; every record reports the
    #: jumps and their fraction, since those queries are random search, not the controller's), "stop"
    #: ends the search there with the budget unspent. Neither paper says; AutoGL resamples forever.
    when_spent: str = "jump"

    def check(self) -> None:
        if self.when_spent not in ("jump", "stop"):
            raise UsageError(f"when_spent must be 'jump' or 'stop', got {self.when_spent!r}")
        if self.ctrl_steps < 1:
            raise UsageError(f"ctrl_steps must be >= 1, got {self.ctrl_steps}")
        if self.max_resample < 1:
            raise UsageError(f"max_resample must be >= 1, got {self.max_resample}")
        if self.entropy_estimate not in ENTROPY_ESTIMATES:
            raise UsageError(
                f"entropy_estimate must be one of {sorted(ENTROPY_ESTIMATES)}, got {self.entropy_estimate!r}"
            )
        if not (self.reward_scale > 0 and math.isfinite(self.reward_scale)):
            raise UsageError(f"reward_scale must be a positive number, got {self.reward_scale}")

    def controller_kwargs(self) -> dict[str, Any]:
        return dict(
            lstm_size=self.lstm_size,
            temperature=self.temperature,
            tanh_c=self.tanh_c,
            entropy_estimate=self.entropy_estimate,
            lr=self.lr,
            entropy_weight=self.entropy_weight,
            baseline_decay=self.baseline_decay,
        )


@dataclass
class AGNNConfig(ReinforceConfig):
    #: 0 = modify the class with the highest sampling entropy; 1 = draw it from softmax(entropies)
    guide_type: int = 1
    #: constrained parameter sharing (paper Sec. 5, [UNVERIFIED]); needs an evaluator that trains
    share: bool = False
    #: epochs a child that inherited weights is fine-tuned for instead of the full recipe (provisional)
    share_epochs: int = 50
    #: which layers count as homogeneous (sharing.py rule 2): "paper" = same shapes, attention type
    #: and activation (AGNN's condition as we read it); "shapes" = same tensor names and shapes only
    share_homogeneity: Literal["paper", "shapes"] = "paper"


@dataclass
class _Child:
    query: Query
    indices: tuple[int, ...]
    reward: float  # task-oriented fitness (larger is better), before reward_scale


@dataclass
class _Bookkeeping:
    """What the search reports in `SearchResult.extra` besides the history."""

    resampled_invalid: int = 0
    resampled_seen: int = 0
    jumps: list[int] = field(default_factory=list)  # query indices of uniform jumps
    classes: Counter[str] = field(default_factory=Counter)
    losses: list[float] = field(default_factory=list)


def _generators(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed)


def _build(make: Callable[[], ReinforceModule], seed: int) -> ReinforceModule:
    """Initialise the controller from `seed` without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


class _Rewards:
    """Controller rewards from queries: the task-oriented score; a failed evaluation gets the worst
    reward seen so far (GraphNAS scores failures low; -inf would poison the baseline)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator, self.worst = evaluator, math.inf

    def __call__(self, query: Query) -> float:
        value = self.evaluator.fitness(query)
        if math.isfinite(value):
            self.worst = min(self.worst, value)
            return value
        return self.worst if math.isfinite(self.worst) else 0.0


def _draw(
    propose: Callable[[], Proposal], space: Space, evaluator: Evaluator, tries: int, book: _Bookkeeping
) -> tuple[Proposal, Arch] | None:
    """A controller proposal that decodes to a valid, not yet evaluated architecture; None after
    `tries` failures in a row. Discarded draws never reach REINFORCE (see README, deviations)."""
    for _ in range(tries):
        proposal = propose()
        arch = _accept(proposal, space, evaluator, book)
        if arch is not None:
            return proposal, arch
    return None


def _accept(proposal: Proposal, space: Space, evaluator: Evaluator, book: _Bookkeeping) -> Arch | None:
    """The proposal's architecture if it is valid (`decode` raises `UsageError` otherwise) and new."""
    try:
        arch = space.decode(proposal.indices)
    except UsageError:
        book.resampled_invalid += 1
        return None
    if evaluator.seen(arch):
        book.resampled_seen += 1
        return None
    return arch


class _Neighbourhood:
    """The action classes still worth modifying around the current incumbent.

    A class whose last `patience` proposals around this incumbent were all invalid or already
    evaluated is taken as spent (NAS-Bench-Graph's links class has only 24 raw values, many of them
    isomorphic); the guide then chooses among the others. Changing the incumbent reopens all
    classes. Counting failures *in a row* (not in total) keeps a large class open while the policy
    still finds new children in it, however long the incumbent stays.
    """

    def __init__(self, classes: tuple[str, ...], patience: int) -> None:
        self.classes, self.patience = classes, patience
        self.failures: Counter[str] = Counter()

    @property
    def open(self) -> list[str]:
        return [c for c in self.classes if self.failures[c] < self.patience]

    def draw(
        self,
        controller: AGNNController,
        parent: tuple[int, ...],
        gen: torch.Generator,
        space: Space,
        evaluator: Evaluator,
        book: _Bookkeeping,
    ) -> tuple[Proposal, Arch] | None:
        while self.open:
            proposal = controller.propose(parent, gen, allowed=self.open)
            cls = proposal.action_class or ""
            arch = _accept(proposal, space, evaluator, book)
            if arch is not None:
                self.failures[cls] = 0
                return proposal, arch
            self.failures[cls] += 1
        return None


def _jump(space: Space, evaluator: Evaluator, rng: np.random.Generator) -> Arch | None:
    """A uniformly drawn unseen architecture, once the controller only proposes seen ones."""
    for _ in range(JUMP_TRIES):
        arch = space.sample(rng)
        if not evaluator.seen(arch):
            return arch
    return None


@register_method
class AGNN(Method):
    """AGNN's reinforced conservative controller, without parameter sharing (as AutoGL)."""

    name = "agnn"
    Config = AGNNConfig
    paper = "Zhou, Song, Yang, Kong, Hu & Wang, arXiv 1909.03184 (Auto-GNN)"
    conformance_options = {"ctrl_steps": 4}
    needs = frozenset({"categorical"})

    def search(self, run: Run) -> SearchResult:
        cfg: AGNNConfig = self.config  # type: ignore[assignment]
        cfg.check()
        space, evaluator, seed = run.space, run.evaluator, run.seed
        sharing = self._sharing(evaluator) if cfg.share else None
        rng, gen = _generators(seed)
        controller: AGNNController = _build(
            lambda: AGNNController(space.fields(), guide_type=cfg.guide_type, **cfg.controller_kwargs()), seed
        )  # type: ignore[assignment]
        reward_of, book = _Rewards(evaluator), _Bookkeeping()

        # Conservative explorer, step 0: a uniformly sampled, successfully evaluated incumbent.
        # (AutoGL starts from the all-zeros selection with reward 0, never evaluated; see README.)
        incumbent: _Child | None = None
        while incumbent is None and not evaluator.exhausted:
            arch = space.sample(rng)
            query = evaluator.query(arch)
            if query.status == "ok":
                incumbent = _Child(query, tuple(space.encode(arch)), reward_of(query))
        if incumbent is None:
            return self.result(evaluator)  # raises: nothing was evaluated successfully
        trajectory = [self._entry(incumbent, epoch=0, since=evaluator.n_queries)]

        neighbourhood = _Neighbourhood(controller.class_names, cfg.max_resample)
        epoch = 0
        while not evaluator.exhausted:
            epoch += 1
            # AutoGL ``_train_controller``: the baseline restarts from the incumbent's reward.
            controller.reset_baseline(incumbent.reward * cfg.reward_scale)
            children: list[_Child] = []
            for _ in range(cfg.ctrl_steps):
                if evaluator.exhausted:
                    break
                drawn = neighbourhood.draw(controller, incumbent.indices, gen, space, evaluator, book)
                if drawn is None:  # every class's neighbourhood looks spent: jump, no policy update
                    arch = _jump(space, evaluator, rng) if cfg.when_spent == "jump" else None
                    if arch is None:
                        break
                    if sharing is not None:  # a uniform jump has no parent: trained from scratch
                        sharing.parent = None
                    query = evaluator.query(arch)
                    book.jumps.append(query.index)
                    children.append(_Child(query, tuple(space.encode(arch)), reward_of(query)))
                    continue
                proposal, arch = drawn
                if sharing is not None:  # a child inherits from its parent, the incumbent, only
                    sharing.parent = incumbent.query.arch
                query = evaluator.query(arch)
                child = _Child(query, proposal.indices, reward_of(query))
                children.append(child)
                book.classes[proposal.action_class or ""] += 1
                book.losses.append(
                    controller.reinforce(proposal.log_prob, proposal.entropy, child.reward * cfg.reward_scale)
                )
            if not children:
                break  # neither the controller nor uniform jumps find an unseen architecture
            # End of the controller epoch: promote the best child only if it beats the incumbent.
            best = max(children, key=lambda c: c.reward)  # first of equals, as numpy.argmax
            if best.reward > incumbent.reward:
                incumbent = best
                neighbourhood = _Neighbourhood(controller.class_names, cfg.max_resample)
                trajectory.append(self._entry(incumbent, epoch=epoch, since=evaluator.n_queries))
            if sharing is not None:  # only the incumbent can be a parent from now on
                sharing.retain([incumbent.query.arch])

        return SearchResult(
            best_arch=incumbent.query.arch,
            extra={
                "incumbent_trajectory": trajectory,
                "controller_epochs": epoch,
                "classes_modified": dict(book.classes),
                "resampled_invalid": book.resampled_invalid,
                "resampled_seen": book.resampled_seen,
                "jumps": book.jumps,
                "jump_fraction": len(book.jumps) / max(evaluator.n_queries, 1),
                "mean_controller_loss": float(np.mean(book.losses)) if book.losses else None,
            },
        )

    def warm_start(self, task: Task, space: Space, artifacts_dir: Path) -> ConstrainedSharing | None:
        """Constrained parameter sharing (paper Sec. 5) for the training evaluator, when asked for.

        Kept weights live in the run's artifacts folder, so a resumed search inherits as before.
        """
        cfg: AGNNConfig = self.config  # type: ignore[assignment]
        if not cfg.share:
            return None
        if cfg.share_homogeneity not in ("paper", "shapes"):
            raise UsageError(f"share_homogeneity must be 'paper' or 'shapes', got {cfg.share_homogeneity!r}")
        return ConstrainedSharing(
            fine_tune_epochs=cfg.share_epochs,
            store=artifacts_dir / "agnn-sharing",
            signature=attention_and_activation if cfg.share_homogeneity == "paper" else None,
        )

    @staticmethod
    def _sharing(evaluator: Evaluator) -> ConstrainedSharing:
        """The sharing the runner built into the training evaluator (see `warm_start`)."""
        if not isinstance(evaluator, TrainEvaluator) or not isinstance(
            evaluator.warm_start, ConstrainedSharing
        ):
            raise UsageError(
                "AGNN's constrained parameter sharing needs live training: a table evaluator has no "
                "weights to share; use a train task (e.g. cora) or share=false"
            )
        return evaluator.warm_start

    @staticmethod
    def _entry(child: _Child, epoch: int, since: int) -> dict[str, Any]:
        """One incumbent: found at query `child.query.index`, in charge from query `since` on."""
        return {
            "epoch": epoch,
            "query": child.query.index,
            "since": since,
            "arch": child.query.arch,
            "encoding": list(child.indices),
            "score": child.query.score,
        }


@dataclass
class GraphNASRLConfig(ReinforceConfig):
    pass


@register_method
class GraphNASRL(Method):
    """GraphNAS's REINFORCE controller sampling whole architectures (AGNN's ablation)."""

    name = "graphnas-rl"
    Config = GraphNASRLConfig
    paper = "Gao, Yang, Zhang, Zhou & Hu, IJCAI 2020 (GraphNAS)"
    conformance_options = {"ctrl_steps": 4}
    needs = frozenset({"categorical"})

    def search(self, run: Run) -> SearchResult:
        cfg: GraphNASRLConfig = self.config  # type: ignore[assignment]
        cfg.check()
        space, evaluator, seed = run.space, run.evaluator, run.seed
        rng, gen = _generators(seed)
        controller: GraphNASController = _build(
            lambda: GraphNASController(space.fields(), **cfg.controller_kwargs()), seed
        )  # type: ignore[assignment]
        reward_of, book = _Rewards(evaluator), _Bookkeeping()
        epoch = 0
        while not evaluator.exhausted:
            epoch += 1
            controller.reset_baseline(None)  # GraphNAS/AutoGL: ``baseline = None`` every epoch
            progressed = False
            for _ in range(cfg.ctrl_steps):
                if evaluator.exhausted:
                    break
                drawn = _draw(lambda: controller.propose(gen), space, evaluator, cfg.max_resample, book)
                if drawn is None:
                    arch = _jump(space, evaluator, rng) if cfg.when_spent == "jump" else None
                    if arch is None:
                        break
                    book.jumps.append(evaluator.query(arch).index)
                    progressed = True
                    continue
                proposal, arch = drawn
                reward = reward_of(evaluator.query(arch))
                book.losses.append(
                    controller.reinforce(proposal.log_prob, proposal.entropy, reward * cfg.reward_scale)
                )
                progressed = True
            if not progressed:
                break
        # GraphNAS re-evaluates its top 5 and keeps the best; a table answers identically, and a
        # trained evaluator's single score is what every method is selected on here.
        return self.result(
            evaluator,
            controller_epochs=epoch,
            resampled_invalid=book.resampled_invalid,
            resampled_seen=book.resampled_seen,
            jumps=book.jumps,
            jump_fraction=len(book.jumps) / max(evaluator.n_queries, 1),
            mean_controller_loss=float(np.mean(book.losses)) if book.losses else None,
        )
