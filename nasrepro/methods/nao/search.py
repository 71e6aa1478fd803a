"""The NAO search driver (``nao``): Luo et al. 2018, Sec. 3.4 and Algorithm 1, on table tasks.

One search (`NAO.search`):

1. **Seed pool** (Alg. 1 line 1; ``NAO/README.md`` step 1): `seed_archs` distinct random
   architectures, evaluated as one batch.
2. **Train the EPD** (Sec. 3.2, Eq. 1-3; README steps 2-3) on *every* architecture evaluated so far
   (``convert_arch_to_seq.py`` trains on all of them), targets min-max normalised per round with 1
   = best (`normalise_scores`), loss 0.8 MSE + 0.2 NLL, with the symmetric augmentation of Sec. 3.4
   when the space has branch symmetries. One EPD is trained further every round, as NAO_V1's
   ``train_search.py`` keeps its controller.
3. **Seeds for generation** (README step 4): the `top_k` best evaluated architectures.
4. **Gradient ascent in the embedding space** (Sec. 3.3, Eq. 4, ``Encoder.infer``): either the
   code's growing step, eta = 1, 2, ... up to `max_eta`, until `new_archs` unseen architectures
   (NAO_V1, NAO-WS), or the TF non-WS pipeline's fixed steps `etas` (``--predict_lambda`` 10, 20,
   30), every seed once per step. Decoding is grammar-masked, so each candidate is valid; all
   candidates are de-duplicated against everything evaluated under the space's isomorphism key.
5. **Evaluate the candidates as one batch** (`Evaluator.query_many`), add them to the pool and
   repeat from 2 until the budget (unique queries) is spent.

A round whose generation yields nothing new (the EPD collapsed onto known architectures) or whose
EPD training failed (e.g. a NaN loss) falls back, with `when_stuck="random"`, to unseen uniformly
drawn architectures, so the budget is still spent; each record reports how many queries came from
that fallback. NAO-WS adds `random_new` random architectures every round on purpose
(``train_search.py``: 500 generated + 50 random); the default here is 0, as in the non-WS pipeline.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nasrepro.errors import NasreproError, UsageError
from nasrepro.harness.evaluator import Evaluator, Query
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.harness.space import Arch, Space
from nasrepro.methods.nao.encoding import CategoricalCodec

#: uniform draws tried per architecture when looking for an unseen one (seed pool, fallback)
DRAW_TRIES = 1000
ETA_SCHEDULES = ("grow", "fixed")
SEED_SELECTIONS = ("top-k", "as-released")


@dataclass
class NAOConfig(MethodConfig):
    """Defaults: NAO_V1's controller at CPU table scale (see README, "Deviations", for the counts)."""

    #: random architectures of the seed pool (paper/README: 600; NAO-WS 1000) -- scaled to budgets 100-500
    seed_archs: int = 50
    #: seeds of each generation round: the best `top_k` evaluated (README step 4: top 100)
    top_k: int = 50
    #: unseen architectures generated per round (NAO_V1 ``controller_new_arch`` 300; TF <= 300)
    new_archs: int = 25
    #: random architectures added per round beside the generated ones (NAO-WS: 50; non-WS: 0)
    random_new: int = 0
    #: "grow": eta = eta_step, 2 eta_step, ... <= max_eta until `new_archs` unseen (NAO_V1, NAO-WS);
    #: "fixed": each of `etas` once from every seed (TF non-WS ``generate.sh``)
    eta_schedule: str = "grow"
    max_eta: float = 50.0  # NAO_V1 ``controller_max_step_size``
    eta_step: float = 1.0
    #: TF non-WS ``--predict_lambda`` (a list, so the config survives a JSON round trip unchanged)
    etas: list[float] = field(default_factory=lambda: [10.0, 20.0, 30.0])
    #: "top-k": generate from the best `top_k` (README step 4, what the paper describes);
    #: "as-released": the TF pipeline's ``get_top100.py`` neither sorts nor truncates, so every
    #: evaluated architecture seeds generation, in evaluation order (README, known bug 2)
    seed_selection: str = "top-k"
    #: EPD epochs per round (NAO_V1 1000 from scratch; here the EPD continues across rounds)
    epochs: int = 100
    batch_size: int = 100  # NAO_V1 ``controller_batch_size``
    #: symmetric augmentation (Sec. 3.4): on in NAO_V1 / NAO-WS, off in TF non-WS ``epd/train.sh``
    augment: bool = True
    # EPD (NAO_V1 ``train_search.py`` defaults; `epd.EPD`)
    hidden_size: int = 96
    encoder_dropout: float = 0.0
    mlp_layers: int = 3
    mlp_hidden_size: int = 200
    mlp_dropout: float = 0.1
    trade_off: float = 0.8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    #: a round with nothing new: "random" draws unseen architectures instead (reported), "stop" ends
    when_stuck: str = "random"

    def check(self) -> None:
        for name in ("seed_archs", "top_k", "new_archs", "epochs", "batch_size", "hidden_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"nao: {name} must be >= 1, got {getattr(self, name)}")
        if self.random_new < 0:
            raise UsageError(f"nao: random_new must be >= 0, got {self.random_new}")
        if self.eta_schedule not in ETA_SCHEDULES:
            raise UsageError(f"nao: eta_schedule must be one of {ETA_SCHEDULES}, got {self.eta_schedule!r}")
        if self.seed_selection not in SEED_SELECTIONS:
            raise UsageError(
                f"nao: seed_selection must be one of {SEED_SELECTIONS}, got {self.seed_selection!r}"
            )
        if self.when_stuck not in ("random", "stop"):
            raise UsageError(f"nao: when_stuck must be 'random' or 'stop', got {self.when_stuck!r}")
        if not (self.eta_step > 0 and self.max_eta >= self.eta_step):
            raise UsageError(f"nao: need 0 < eta_step <= max_eta, got {self.eta_step}, {self.max_eta}")
        if not self.etas or any(not (e > 0 and math.isfinite(e)) for e in self.etas):
            raise UsageError(f"nao: etas must be positive step sizes, got {self.etas}")

    def epd_kwargs(self) -> dict[str, Any]:
        return dict(
            hidden_size=self.hidden_size,
            encoder_dropout=self.encoder_dropout,
            mlp_layers=self.mlp_layers,
            mlp_hidden_size=self.mlp_hidden_size,
            mlp_dropout=self.mlp_dropout,
            trade_off=self.trade_off,
            lr=self.lr,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
        )


@dataclass
class _Round:
    """One controller round, as the record reports it."""

    index: int
    pool: int
    epd_seconds: float = 0.0
    pairwise_accuracy: float | None = None
    reconstruction_exact: float | None = None
    generated: int = 0
    #: NAO-WS's deliberate random architectures (`random_new`)
    random: int = 0
    #: unseen random architectures drawn because generation gave nothing (`when_stuck="random"`)
    fallback: int = 0
    last_eta: float | None = None
    failure: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _draw_unseen(space: Space, evaluator: Evaluator, rng: np.random.Generator, count: int,
                 taken: set[str]) -> list[Arch]:  # fmt: skip
    """Up to `count` uniformly drawn architectures that are neither evaluated nor in `taken`."""
    out: list[Arch] = []
    for _ in range(count * DRAW_TRIES):
        if len(out) == count:
            break
        arch = space.sample(rng)
        key = space.key(arch)
        if key not in taken and not evaluator.seen(arch):
            taken.add(key)
            out.append(arch)
    return out


def _n_seeds(cfg: NAOConfig, run: Run) -> int:
    """The seed pool's size: `seed_archs`, but at most half the budget, so that at least half the
    unique queries are NAO's own proposals whatever the budget (our interpretation; README)."""
    budget = run.evaluator.budget
    return cfg.seed_archs if budget is None else max(1, min(cfg.seed_archs, math.ceil(budget / 2)))


def _ok(evaluator: Evaluator) -> list[Query]:
    return [q for q in evaluator.history if q.status == "ok" and q.score is not None]


@register_method
class NAO(Method):
    """Neural Architecture Optimization: an encoder-predictor-decoder proposes by gradient ascent."""

    name = "nao"
    Config = NAOConfig
    paper = "Luo, Tian, Qin, Chen & Liu, NeurIPS 2018"
    task_kinds = frozenset({"table"})
    needs = frozenset({"categorical"})
    default_spaces = {"nasbench201/*": "nasbench201"}
    conformance_options = {
        "seed_archs": 4, "top_k": 4, "new_archs": 4, "epochs": 2, "hidden_size": 16, "mlp_hidden_size": 16,
    }  # fmt: skip

    def search(self, run: Run) -> SearchResult:
        cfg = self.config
        assert isinstance(cfg, NAOConfig)
        cfg.check()
        from nasrepro.methods.nao.epd import EPD  # torch/Lightning only once a search runs

        space, evaluator = run.space, run.evaluator
        codec = CategoricalCodec(space)
        rng = run.rng()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            epd = EPD(codec, **cfg.epd_kwargs())
        rounds: list[_Round] = []
        overhead = 0.0

        # Alg. 1 line 1: the seed pool, evaluated as one batch.
        n_seeds = len(evaluator.query_many(_draw_unseen(space, evaluator, rng, _n_seeds(cfg, run), set())))
        while not evaluator.exhausted:
            info = _Round(index=len(rounds), pool=evaluator.n_queries)
            start = time.perf_counter()
            candidates = self._propose(run, epd, codec, info)
            info.epd_seconds = round(time.perf_counter() - start, 3)
            overhead += time.perf_counter() - start
            room = int(min(cfg.new_archs + cfg.random_new, evaluator.remaining))
            candidates = candidates[:room]
            info.generated = len(candidates)
            taken = {space.key(a) for a in candidates}
            if cfg.random_new and len(candidates) < room:
                extra = _draw_unseen(
                    space, evaluator, rng, min(cfg.random_new, room - len(candidates)), taken
                )
                candidates += extra
                info.random += len(extra)
            if not candidates:
                if cfg.when_stuck == "stop":
                    info.failure = info.failure or "no unseen architecture generated; stopping"
                    rounds.append(info)
                    break
                candidates = _draw_unseen(space, evaluator, rng, min(cfg.new_archs, room), taken)
                info.fallback += len(candidates)
                if not candidates:
                    info.failure = "the space holds no unseen architecture"
                    rounds.append(info)
                    break
            rounds.append(info)
            # Candidates of one round are one executor batch (README step 6); all fit the budget.
            evaluator.query_many(candidates)

        return SearchResult(
            best_arch=evaluator.best().arch,
            extra={
                "codec": codec.name,
                "rounds": [vars(r) for r in rounds],
                "seed_queries": n_seeds,
                "generated_queries": sum(r.generated for r in rounds),
                "random_new_queries": sum(r.random for r in rounds),
                "fallback_queries": sum(r.fallback for r in rounds),
                "epd_seconds": round(overhead, 3),
            },
            overhead_seconds=overhead,
        )

    # --- one round: train the EPD, then generate ------------------------------------------------------
    def _propose(self, run: Run, epd: Any, codec: CategoricalCodec, info: _Round) -> list[Arch]:
        """Train the EPD on the pool, then decode up to `new_archs` unseen candidates (README steps
        3-5). A failure of the EPD is recorded in `info` and yields no candidates."""
        cfg = self.config
        assert isinstance(cfg, NAOConfig)
        space, evaluator = run.space, run.evaluator
        pool = _ok(evaluator)
        if len(pool) < 2:
            info.failure = f"{len(pool)} successful evaluation(s): too few to train the EPD"
            return []
        tokens = [codec.to_tokens(space.parse(q.arch)) for q in pool]
        fitness = [evaluator.fitness(q) for q in pool]
        try:
            self._fit(run, epd, codec, tokens, fitness, info)
        except NasreproError as error:
            info.failure = f"EPD training failed: {error}"
            return []
        if cfg.seed_selection == "top-k":
            order = sorted(range(len(pool)), key=lambda i: (-fitness[i], i))[: cfg.top_k]
        else:  # as released: every evaluated architecture, in evaluation order (get_top100.py)
            order = list(range(len(pool)))
        seeds = [tokens[i] for i in order]
        seen = {q.arch for q in evaluator.history}

        def key(seq: tuple[int, ...]) -> str | None:
            arch = codec.decodes(seq)
            return None if arch is None else space.key(arch)

        count = int(min(cfg.new_archs, evaluator.remaining))
        new, info.last_eta = _generate(epd, seeds, count, seen, _schedule(cfg), key)
        return [codec.decodes(seq) for seq in new]

    def _fit(self, run: Run, epd: Any, codec: CategoricalCodec, tokens: list[tuple[int, ...]],
             fitness: list[float], info: _Round) -> None:  # fmt: skip
        """Train the EPD `epochs` more epochs on the whole pool (Eq. 3), then measure it there."""
        from torch.utils.data import DataLoader

        from nasrepro.methods.nao.epd import (
            ArchDataset,
            hamming_distance,
            kendall_tau_b,
            normalise_scores,
            pairwise_accuracy,
        )

        cfg = self.config
        assert isinstance(cfg, NAOConfig)
        targets = normalise_scores(fitness, maximise=True)  # fitness is oriented: larger is better
        seed = int(run.rng(1 + info.index).integers(2**31))
        augment = cfg.augment and bool(codec.swap_groups)
        data = ArchDataset(codec, tokens, targets, augment=augment, seed=seed)
        loader = DataLoader(
            data, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        trainer = run.trainer(
            max_epochs=cfg.epochs, logger=run.logger or False, limit_val_batches=0, log_every_n_steps=1
        )
        # Lightning (>= 2.2) keeps each submodule's train/eval mode at fit start, and the previous
        # round left the EPD in eval mode: without this its dropout (Sec. 3.2's MLP dropout) would
        # be off from the second round on
        epd.train()
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # the search measures the EPD on the pool below, not through a validation loader
            warnings.filterwarnings("ignore", message=r"You defined a `validation_step` but have no")
            torch.manual_seed(seed)
            trainer.fit(epd, train_dataloaders=loader)
        epd.eval()
        with torch.no_grad():
            batch = torch.tensor(tokens, dtype=torch.long)
            memory, emb = epd.encode(batch)
            predicted = epd.predict(emb)
            decoded = epd.generate(memory, emb)
        if not torch.isfinite(predicted).all():
            raise NasreproError("EPD predicts a non-finite score after training")
        if len(tokens) >= 2:
            info.pairwise_accuracy = round(pairwise_accuracy(targets, predicted), 4)
            tau = kendall_tau_b(targets, predicted)
            info.extra["kendall_tau_b"] = None if tau is None else round(tau, 4)
        info.reconstruction_exact = round(float((decoded == batch).all(-1).double().mean()), 4)
        info.extra["hamming_distance"] = round(hamming_distance(decoded, batch), 4)


def _generate(epd: Any, seeds: Sequence[Sequence[int]], count: int, seen: set[str],
              etas: Iterable[float], key: Any) -> tuple[list[tuple[int, ...]], float | None]:  # fmt: skip
    """Up to `count` unseen sequences: every seed moved by each eta in turn (Eq. 4, ``Encoder.infer``),
    stopping as soon as `count` are found; also the last eta used. With the growing schedule this is
    NAO_V1's ``generate_new_arch`` loop; with (10, 20, 30) the TF non-WS ``generate.sh`` runs."""
    known: set[Any] = set(seen)
    out: list[tuple[int, ...]] = []
    seeds_t = torch.tensor([list(s) for s in seeds], dtype=torch.long)
    last = None
    for eta in etas:
        last = float(eta)
        for row in epd.improve(seeds_t, last).tolist():
            k = key(tuple(row))
            if k is not None and k not in known:
                known.add(k)
                out.append(tuple(row))
                if len(out) == count:
                    return out, last
    return out, last


def _schedule(cfg: NAOConfig) -> list[float]:
    """The step sizes of one round: eta_step, 2 eta_step, ... <= max_eta, or the fixed `etas`."""
    if cfg.eta_schedule == "fixed":
        return [float(e) for e in cfg.etas]
    steps = int(math.floor(cfg.max_eta / cfg.eta_step + 1e-9))
    return [cfg.eta_step * (i + 1) for i in range(steps)]
