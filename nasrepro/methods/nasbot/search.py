"""The ``nasbot`` method: Bayesian optimisation with the OTMANN kernel, EI maximised by NASBOT's
evolutionary algorithm (Kandasamy et al. 2018, Algorithm 1 / Sec. 4; code `opt/nasbot.py`).

Loop: evaluate the initial pool (``num_init_evals`` = 20, capped by the pool); then at every step
build the GP on all evaluations so far (distances cached, hyper-parameters from the weighted
random sample refreshed every 7 builds), add the pending evaluations hallucinated at their
posterior mean (``acq='hei'``), maximise EI with the GA starting from the evaluated and pending
networks plus the initial pool, and evaluate the arg-max among networks not yet evaluated.

Workers (``--workers k``, the evaluator's `workers`). ``scheduler='async'`` (the default) is the
paper's asynchronous scheduler (its experiments run asynchronous parallel evaluations, fact
sheet §4.1; code ``mode='asy'`` in `opt/blackbox_optimiser.py`, the default): k evaluations are kept in flight (`Evaluator.submit`); whenever one
finishes (`Evaluator.wait_any`) the GP is refitted on the completed evaluations, the k - 1 still
running are hallucinated at their posterior mean, and one new network is proposed and submitted.
The initial pool is dispatched the same way, and a free worker waits for a first completed
evaluation rather than propose from nothing. ``scheduler='batch'`` is the synchronous variant
(code ``mode='syn'``): k proposals per batch, each made with the earlier ones of the batch
pending, evaluated together (`Evaluator.query_many`), kept as a recorded switch for comparison.
With k = 1 both are the sequential loop and give the same search.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasrepro.errors import UsageError
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.run import Run
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task

if TYPE_CHECKING:
    import numpy as np

    from nasrepro.methods.nasbot.bo import BayesOpt


@dataclass
class NASBOTConfig(MethodConfig):
    #: evaluations of the initial pool before the GP takes over (code ``num_init_evals`` = 20,
    #: capped by the pool's size; NB201 draws this many random cells)
    init_evals: int = 20
    #: hyper-parameter vectors per refresh; None = the preset's: the code's min(1e5, max(500,
    #: 400 x 11)) = 4400 at paper, 1000 at cpu, 200 at smoke (CPU scale, README "Deviations")
    hp_samples: int | None = None
    #: GP builds between hyper-parameter refreshes (code ``build_new_model_every`` = 7)
    refresh_every: int = 7
    #: acquisition evaluations per step = clip(acq_lead x sqrt(t), acq_min, acq_max); the code's
    #: lead_const = min(5, dim)^2 = 25, bounds 50 and 500
    acq_lead: float = 25.0
    acq_min: int = 50
    #: None = the preset's: the code's 500 at paper, 100 at cpu, 20 at smoke (CPU scale)
    acq_max: int | None = None
    #: non-assignment penalty of OTMANN (code default 1.0)
    non_assignment_penalty: float = 1.0
    #: with k > 1 workers: "async" = the paper's asynchronous scheduler (code ``mode='asy'``, the
    #: default), "batch" = synchronous batches of k (code ``mode='syn'``); the same with k = 1
    scheduler: str = "async"


@register_method
class NASBOT(Method):
    name = "nasbot"
    Config = NASBOTConfig
    paper = "Kandasamy, Neiswanger, Schneider, Poczos & Xing, NeurIPS 2018"
    task_kinds = frozenset({"table", "train"})
    #: the paper's two live settings: MLPs on UCI regression, CNNs on CIFAR-10 (Sec. 5)
    default_spaces = {"uci/*": "nasbot-mlp", "cifar10": "nasbot-cnn"}
    conformance_options = {"init_evals": 4, "hp_samples": 200, "acq_min": 10, "acq_max": 20}
    conformance_tasks = ("nasbench201/cifar10",)

    @classmethod
    def incompatibility(cls, task: Task, space: Space) -> str | None:
        from nasrepro.methods.nasbot.views import view_for

        found = super().incompatibility(task, space)
        if found is None and view_for(space) is None:
            return (
                f"needs a layer-graph view of its space for the OTMANN kernel; {space.name!r} has none "
                "(NASBOT searches nasbot-mlp, nasbot-cnn and nasbench201)"
            )
        return found

    def search(self, run: Run) -> SearchResult:
        from nasrepro.methods.nasbot.bo import BayesOpt
        from nasrepro.methods.nasbot.views import view_for

        cfg = resolved(self.config, run.preset_name)
        if cfg.init_evals < 1 or cfg.refresh_every < 1 or not (1 <= cfg.acq_min <= cfg.acq_max):
            raise UsageError(
                "nasbot needs init_evals >= 1, refresh_every >= 1 and 1 <= acq_min <= acq_max, got "
                f"{cfg.init_evals}, {cfg.refresh_every}, {cfg.acq_min}, {cfg.acq_max}"
            )
        if cfg.scheduler not in SCHEDULERS:
            raise UsageError(
                f"nasbot scheduler must be one of {', '.join(SCHEDULERS)}, got {cfg.scheduler!r}"
            )
        view = view_for(run.space)
        if view is None:
            raise UsageError(self.incompatibility(run.task, run.space) or "no layer-graph view")
        bo = BayesOpt(cfg, view, run.space, seed=run.seed)
        rng = run.rng(1)
        workers = max(1, int(run.evaluator.workers))
        # at most half the budget goes to the pool, so small budgets still run BO steps; at least one
        # network per worker (code: num_init_evals = max(num_workers, num_init_evals))
        n_pool = max(workers, min(cfg.init_evals, (run.budget or 2 * cfg.init_evals) // 2))
        pool = view.initial_pool(rng, n_pool)
        loop = asynchronous if cfg.scheduler == "async" else synchronous_batches
        steps, overhead = loop(run, bo, pool, workers, rng)
        return SearchResult(
            best_arch=run.evaluator.best().arch,
            extra={
                "workers": workers,
                "scheduler": "sequential" if workers == 1 else SCHEDULERS[cfg.scheduler],
                "initial_pool": len(pool),
                "acquisition_evaluations": [s.get("acq_evals", 0) for s in steps],
                "gp_hypers_last": bo.last_hypers,
                "resolved_config": cfg.to_dict(),
                "note": "naszilla's 'NASBOT' is a different, simplified algorithm; this is OTMANN + GP + EI + EA",
            },
            overhead_seconds=round(overhead, 3),
        )


#: `NASBOTConfig.scheduler` -> how a record's report names it when k > 1
SCHEDULERS = {
    "async": "asynchronous (hallucinated pending)",
    "batch": "synchronous-batch (hallucinated pending)",
}
#: empty proposals (the GA found nothing unevaluated) tolerated before the search stops early
MAX_STUCK = 20


def _propose(
    bo: BayesOpt, pending: list[Any], pool: list[Any], rng: np.random.Generator, steps: list[dict[str, Any]]
) -> tuple[Any, float]:
    """One BO proposal with `pending` hallucinated; returns it (None if none) and its wall time."""
    start = time.perf_counter()
    proposal, info = bo.propose(pending, pool, rng)
    steps.append(info)
    return proposal, time.perf_counter() - start


def asynchronous(
    run: Run, bo: BayesOpt, pool: list[Any], workers: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], float]:
    """The paper's asynchronous scheduler (fact sheet §4.1; code `_asynchronous_optimise_routine`).

    Keeps `workers` evaluations in flight. Initial-pool networks are dispatched first, one per free
    worker (code `perform_initial_queries`); after them every free worker gets a BO proposal made
    with the evaluations still running hallucinated (``acq='hei'``). A worker that frees up before
    any evaluation succeeded waits for one (nothing to fit a GP on); with no evaluation running the
    proposal is made anyway and, like the sequential loop, falls back to a random network when the
    GA finds nothing unevaluated. With one worker this is the sequential loop, step for step.
    Returns the proposals' reports and their wall time (the method's overhead).
    """
    evaluator, space = run.evaluator, run.space
    queue = [a for a in pool if not evaluator.seen(a)]  # the initial pool, in order
    pending: dict[str, Any] = {}  # key -> network, in submission order
    steps: list[dict[str, Any]] = []
    overhead, stuck, stopped = 0.0, 0, False
    while True:
        while not stopped and len(pending) < workers and not evaluator.exhausted:
            if queue:
                arch = queue.pop(0)
                if space.key(arch) in pending:  # a pool duplicate of a running evaluation
                    continue
            elif pending and not bo.archs:
                break  # wait for a completed evaluation to fit the GP on
            else:
                arch, seconds = _propose(bo, list(pending.values()), pool, rng, steps)
                overhead += seconds
                if arch is None:  # nothing new near the known networks: widen from a random one
                    stuck += 1
                    if stuck > MAX_STUCK:
                        stopped = True
                        break
                    arch = space.sample(rng)
                    if evaluator.seen(arch) or space.key(arch) in pending:
                        continue
            evaluator.submit(arch)
            pending[space.key(arch)] = arch
        if not pending:
            return steps, overhead
        query = evaluator.wait_any()
        bo.record([pending.pop(query.arch)], [query], evaluator)


def synchronous_batches(
    run: Run, bo: BayesOpt, pool: list[Any], workers: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], float]:
    """The synchronous variant (code ``mode='syn'``): the initial pool in batches of `workers`,
    then batches of `workers` proposals, each made with the earlier ones of its batch pending
    (hallucinated), evaluated together by `Evaluator.query_many`."""
    evaluator = run.evaluator
    steps: list[dict[str, Any]] = []
    overhead = 0.0
    # initial pool: evaluated first (code: num_init_evals), in batches of the worker count
    pending_init = [a for a in pool if not evaluator.seen(a)]
    while pending_init and not evaluator.exhausted:
        batch, pending_init = pending_init[:workers], pending_init[workers:]
        bo.record(batch, evaluator.query_many(batch), evaluator)
    # BO steps: k proposals per batch, the earlier ones pending (hallucinated) for the later
    stuck = 0
    while not evaluator.exhausted:
        batch: list[Any] = []
        for _ in range(int(min(workers, evaluator.remaining))):
            proposal, seconds = _propose(bo, batch, pool, rng, steps)
            overhead += seconds
            if proposal is None:
                break
            batch.append(proposal)
        if not batch:  # the GA found nothing new near the known networks: widen from random ones
            stuck += 1
            if stuck > MAX_STUCK:
                break
            batch = [a for a in (run.space.sample(rng) for _ in range(workers)) if not evaluator.seen(a)]
            if not batch:
                continue
        bo.record(batch, evaluator.query_many(batch), evaluator)
    return steps, overhead


#: (hp_samples, acq_max) per preset where the config leaves them to the preset
PRESET_SCALE: dict[str, tuple[int | None, int]] = {
    "paper": (None, 500),
    "cpu": (1000, 100),
    "smoke": (200, 20),
}


def resolved(cfg: NASBOTConfig, preset: str) -> NASBOTConfig:
    """`cfg` with the preset's acquisition and hyper-parameter sample sizes filled in."""
    hp_samples, acq_max = PRESET_SCALE.get(preset, PRESET_SCALE["paper"])
    acq_max = cfg.acq_max if cfg.acq_max is not None else acq_max
    return dataclasses.replace(
        cfg,
        hp_samples=cfg.hp_samples if cfg.hp_samples is not None else hp_samples,
        acq_max=acq_max,
        acq_min=cfg.acq_min if cfg.acq_max is not None else min(cfg.acq_min, acq_max),
    )
