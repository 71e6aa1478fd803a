"""MemNet's augment-trim (grow-trim) search (Liu et al., arXiv 1907.09569; MemNAS, CVPR 2020).

One round (MemNAS Sec. 3, Fig. 2; memnet.md Sec. 3.2-3.5 and the Sec. 5 reconstruction):
1. candidates = every grown and every trimmed variant of the incumbent (`grow_trim`);
2. the hard memory upper bound drops every candidate with M > M_max before anything else, so no
   network above it is ever trained or chosen (`harness.arch_memory.within_bound`);
3. the LSTM ranker, refitted on every (network, S) evaluated so far, ranks the rest by predicted
   100*S (`ranker`); the random-ranking ablation shuffles them instead;
4. the top K are trained as one batch (`evaluator.query_many`, so an executor trains them at once);
5. S of each against the previous round's best (`score.score`); the best becomes the incumbent if
   its S > 0, otherwise the round did not improve and, after `patience` such rounds, the search stops.
Round 0 trains every single-cell network (the prototype's 98 generated nets; 28 distinct here) and
takes the most accurate within the bound as the first incumbent [reconstruction].
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.arch_memory import NetMemory, check_bound, network_memory, within_bound
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.methods.memnet.grow_trim import adapter_for, require_adapter
from nasrepro.methods.memnet.recipe import final_recipe
from nasrepro.methods.memnet.score import check_lambda, score

RANKINGS = ("lstm", "random")


@dataclass
class MemNetConfig(MethodConfig):
    #: lambda = k1, the accuracy weight of S (prototype call site 0.7; README rows 0.5 and 0.8) [inference]
    lam: float = 0.7
    #: the hard memory upper bound M_max in MemNAS MB (4 B/element); None = unbounded
    memory_bound_mb: float | None = None
    #: candidates trained per round (the prototype's file names imply 100; cpu scale 5-10)
    top_k: int = 5
    #: grow-trim rounds after round 0 (unknown in the paper; the budget usually ends a search first)
    rounds: int = 50
    #: rounds without improvement (best S <= 0) tolerated before stopping (paper: stop at once)
    patience: int = 0
    #: round-0 networks trained: 0 = all (the prototype), n = n of them drawn by the seed
    round0: int = 0
    #: "lstm" (the paper) or "random" (the random-ranking ablation: K random candidates per round)
    ranking: str = "lstm"
    #: ranker fit: epochs over all evaluated networks (batch 16), LSTM units (Keras LSTM(100)), Adam lr
    ranker_epochs: int = 30
    ranker_hidden: int = 100
    ranker_lr: float = 3e-3
    #: on table tasks, AP@K / NDCG@K of each round's LSTM ranking against the true S of every
    #: candidate, looked up uncharged and never shown to the search (`ranking_quality`)
    ranker_diagnostics: bool = True


def _check(cfg: MemNetConfig) -> None:
    check_lambda(cfg.lam)
    if cfg.ranking not in RANKINGS:
        raise UsageError(f"memnet ranking must be one of {', '.join(RANKINGS)}, got {cfg.ranking!r}")
    for name in ("top_k", "rounds", "ranker_epochs", "ranker_hidden"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise UsageError(f"memnet {name} must be a positive integer, got {getattr(cfg, name)!r}")
    if (
        not isinstance(cfg.patience, int)
        or cfg.patience < 0
        or not isinstance(cfg.round0, int)
        or cfg.round0 < 0
    ):
        raise UsageError(
            f"memnet patience and round0 must be integers >= 0, got {cfg.patience!r}, {cfg.round0!r}"
        )
    check_bound(cfg.memory_bound_mb, "memnet")


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


@register_method
class MemNet(Method):
    """Grow-trim search ranked by an LSTM on cell sequences, under a hard memory upper bound."""

    name = "memnet"
    Config = MemNetConfig
    paper = "Liu, Wu, Ma & Seok, arXiv 1907.09569 (MemNAS, CVPR 2020)"
    default_spaces = {"cifar10": "memnet-cells"}
    conformance_options = {"top_k": 3, "rounds": 3, "ranker_epochs": 10, "ranker_hidden": 16}
    conformance_tasks = ("nasbench201/cifar10",)

    @classmethod
    def incompatibility(cls, task: Task, space: Space) -> str | None:
        found = super().incompatibility(task, space)
        if found is None and adapter_for(space) is None:
            return f"defines grow/trim on the memnet-cells spaces and nasbench201 only, not {space.name!r}"
        if found is None and "model" not in space.views():
            return f"measures memory on real networks, and {space.name!r} builds none"
        return found

    def final_recipe(self, task: Task, preset_name: str) -> dict[str, Any]:
        """The prototype's ``train.py`` recipe (300 epochs, milestones 60/180/240, Cutout 16) on
        CIFAR-10 at ``paper`` (`recipe`); the evaluator trains every candidate with it there."""
        return final_recipe(task.name, preset_name)

    def search(self, run: Run) -> SearchResult:
        cfg = self.config
        assert isinstance(cfg, MemNetConfig)
        _check(cfg)
        space, evaluator = run.space, run.evaluator
        adapter = require_adapter(space)
        rng = run.rng(1)
        overhead = 0.0

        def memory(arch: Any) -> NetMemory:
            nonlocal overhead
            start = time.perf_counter()
            try:
                return network_memory(space, run.task, arch)
            finally:
                overhead += time.perf_counter() - start

        data: list[tuple[Any, float]] = []  # (network, S) for the ranker
        trained: dict[str, dict[str, Any]] = {}  # key -> accuracy, memory, round
        rounds: list[dict[str, Any]] = []

        # Round 0: the single-cell networks within the bound.
        first = adapter.round0()
        sizes = {space.key(a): memory(a) for a in first}
        allowed = [a for a in first if within_bound(sizes[space.key(a)], cfg.memory_bound_mb)]
        if not allowed:
            smallest = min(m.total_mb for m in sizes.values())
            raise UsageError(
                f"memory bound {cfg.memory_bound_mb} MB is below the smallest round-0 network of "
                f"{space.name} ({smallest:.4f} MB); raise memory_bound_mb"
            )
        if cfg.round0:
            picks = sorted(rng.choice(len(allowed), size=min(cfg.round0, len(allowed)), replace=False))
            allowed = [allowed[i] for i in picks]
        done = [
            (a, q) for a, q in zip(allowed, evaluator.query_many(allowed), strict=False) if q.status == "ok"
        ]
        if not done:
            return self.result(evaluator, stop_reason="round 0 produced no successful evaluation")
        incumbent, inc_query = max(done, key=lambda pair: evaluator.fitness(pair[1]))
        base_acc, base_mem = float(inc_query.score), memory(incumbent)
        for arch, query in done:
            s = score(float(query.score), memory(arch), base_acc, base_mem, cfg.lam)
            data.append((arch, s))
            trained[space.key(arch)] = {"round": 0, "acc": query.score, "score": s, **memory(arch).to_dict()}
        rounds.append(
            {
                "round": 0,
                "candidates": len(first),
                "over_bound": sum(not within_bound(m, cfg.memory_bound_mb) for m in sizes.values()),
                "trained": len(done),
                "incumbent": space.key(incumbent),
            }
        )

        stop_reason, stale = "rounds ran out", 0
        for r in range(1, cfg.rounds + 1):
            if evaluator.exhausted:
                stop_reason = "budget spent"
                break
            grown, trimmed = adapter.grow(incumbent), adapter.trim(incumbent)
            fresh = [a for a in grown + trimmed if not evaluator.seen(a)]
            # the bound needs every candidate's memory; without one, only trained networks are measured
            candidates = [
                a
                for a in fresh
                if cfg.memory_bound_mb is None or within_bound(memory(a), cfg.memory_bound_mb)
            ]
            log: dict[str, Any] = {
                "round": r,
                "grown": len(grown),
                "trimmed": len(trimmed),
                "unseen": len(fresh),
                "over_bound": len(fresh) - len(candidates),
            }
            if not candidates:
                rounds.append(log)
                stop_reason = "no unseen candidate within the memory bound"
                break
            order, predicted, seconds = self._rank(adapter, candidates, data, run, r, rng)
            overhead += seconds
            if predicted is not None:
                log["ranker_seconds"] = round(seconds, 6)
                if cfg.ranker_diagnostics and getattr(evaluator, "table", None) is not None:
                    log["ranker_quality"] = self._diagnose(
                        candidates, predicted, evaluator, run, base_acc, base_mem
                    )
            top = [candidates[i] for i in order[: int(min(cfg.top_k, evaluator.remaining))]]
            answered = list(zip(top, evaluator.query_many(top), strict=False))
            scored = []
            for arch, query in answered:
                if query.status != "ok":
                    continue
                s = score(float(query.score), memory(arch), base_acc, base_mem, cfg.lam)
                data.append((arch, s))
                scored.append((arch, query, s))
                trained[space.key(arch)] = {
                    "round": r,
                    "acc": query.score,
                    "score": s,
                    **memory(arch).to_dict(),
                }
            log["trained"] = len(answered)
            if predicted is not None and scored:
                index = {space.key(a): i for a, i in zip(candidates, range(len(candidates)), strict=True)}
                pred = np.array([predicted[index[space.key(a)]] for a, _, _ in scored])
                log["ranker_spearman_trained"] = _spearman(pred, np.array([s for _, _, s in scored]))
            best = max(scored, key=lambda t: t[2], default=None)
            log["best_score"] = None if best is None else best[2]
            if best is not None and best[2] > 0:
                incumbent, base_acc, base_mem, stale = best[0], float(best[1].score), memory(best[0]), 0
            else:
                stale += 1
            log["incumbent"] = space.key(incumbent)
            rounds.append(log)
            if stale > cfg.patience:
                stop_reason = "S stopped improving"
                break
        else:
            stop_reason = "rounds ran out"
        return SearchResult(
            best_arch=space.key(incumbent),
            extra=self._report(space, evaluator, incumbent, trained, rounds, stop_reason, memory),
            overhead_seconds=round(overhead, 6),
        )

    def _rank(
        self, adapter: Any, candidates: list[Any], data: list[tuple[Any, float]], run: Run, r: int, rng: Any
    ) -> tuple[list[int], np.ndarray | None, float]:
        """Candidate indices, best predicted first (LSTM), or a random order (ablation, or < 2 data);
        the predictions; the seconds spent fitting."""
        cfg = self.config
        assert isinstance(cfg, MemNetConfig)
        if cfg.ranking == "random" or len(data) < 2:
            return [int(i) for i in rng.permutation(len(candidates))], None, 0.0
        from nasrepro.methods.memnet.ranker import fit_ranker, predict

        start = time.perf_counter()
        x = adapter.sequences([a for a, _ in data] + candidates)
        model = fit_ranker(
            x[: len(data)],
            np.array([s for _, s in data]),
            seed=int(run.rng(100 + r).integers(2**31)),
            trainer_factory=run.trainer,
            epochs=cfg.ranker_epochs,
            hidden=cfg.ranker_hidden,
            lr=cfg.ranker_lr,
        )
        predicted = predict(model, x[len(data) :])
        return [int(i) for i in np.argsort(-predicted, kind="stable")], predicted, time.perf_counter() - start

    def _diagnose(
        self,
        candidates: list[Any],
        predicted: np.ndarray,
        evaluator: Any,
        run: Run,
        base_acc: float,
        base_mem: NetMemory,
    ) -> dict[str, Any]:
        """AP@K and NDCG@K of the ranker's order against every candidate's true S (MemNAS's ranker
        measures, fact sheet 3.5) at K = the round's top-K, 2K and all: table look-ups outside the
        evaluator (nothing booked or charged) and memory traces outside the method's overhead, so the
        search and its record are the same with the diagnostic off."""
        from nasrepro.methods.memnet.ranking_quality import ranking_quality

        cfg = self.config
        assert isinstance(cfg, MemNetConfig)
        start = time.perf_counter()
        truth = []
        for arch in candidates:
            entry = evaluator.table.lookup(arch)
            acc = float(entry.val if evaluator.reward == "val" else entry.test)
            truth.append(score(acc, network_memory(run.space, run.task, arch), base_acc, base_mem, cfg.lam))
        quality: dict[str, Any] = {"n": len(candidates)}
        quality.update(ranking_quality(predicted, truth, (cfg.top_k, 2 * cfg.top_k, len(candidates))))
        quality["random_precision_at_k"] = round(min(cfg.top_k, len(candidates)) / len(candidates), 6)
        quality["seconds"] = round(time.perf_counter() - start, 6)
        return quality

    def _report(
        self,
        space: Space,
        evaluator: Any,
        incumbent: Any,
        trained: dict,
        rounds: list,
        stop: str,
        memory: Any,
    ) -> dict[str, Any]:
        """The incumbent's memory, the memory saving against the most accurate network trained in this
        search, every trained network's memory and S, and per-round candidate counts."""
        cfg = self.config
        assert isinstance(cfg, MemNetConfig)
        best_acc = evaluator.best()
        inc_mem, acc_mem = memory(incumbent), memory(space.parse(best_acc.arch))
        inc_key = space.key(incumbent)
        return {
            "incumbent_memory": inc_mem.to_dict(),
            "incumbent_memory_mb": inc_mem.total_mb,
            "memory_bound_mb": cfg.memory_bound_mb,
            "lambda": cfg.lam,
            "ranking": cfg.ranking,
            "most_accurate": {"arch": best_acc.arch, "val": best_acc.val, **acc_mem.to_dict()},
            "memory_saving_vs_most_accurate": 1.0 - inc_mem.total_mb / acc_mem.total_mb,
            "val_loss_vs_most_accurate": (best_acc.val or 0.0) - (trained.get(inc_key, {}).get("acc") or 0.0),
            "stop_reason": stop,
            "rounds": rounds,
            "trained": trained,
        }


@dataclass
class MemNetRandomConfig(MemNetConfig):
    ranking: str = "random"


@register_method
class MemNetRandom(MemNet):
    """The random-ranking ablation: K random grown/trimmed candidates per round, same bound and score."""

    name = "memnet-random"
    Config = MemNetRandomConfig
