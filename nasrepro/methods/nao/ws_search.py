"""The registered method ``nao-ws``: NAO with weight sharing on CIFAR-10 and PTB (Luo et al. 2018,
Sec. 3.4, 4.1.2 and 4.2; NAO_pytorch ``NAO_V1/train_search.py``, renqianluo/NAO
``NAO-WS/rnn/train_search.py``). What differs per task (the cell space, supernet, held-out scoring,
option defaults, re-ranking and final recipe) is a `ws_tasks.WSTask`, looked up once by task name.

One search (`NAOWS.search`):

1. **Seed pool** (``controller_seed_arch``): `seed_archs` distinct uniformly drawn cells.
2. **One supernet fit** (`ws_module.WSSearchModule` on `harness.oneshot.fit_supernet`): weight steps
   on the task's train part, each batch through one architecture drawn uniformly from the pool;
   after every `eval_every` epochs the pool is scored with the shared weights on held-out batches
   (`harness.oneshot.arch_loader`) and, except at the last, a controller round trains the EPD on
   the scores and replaces the pool's worst with generated architectures (`ws_controller`).
3. **Re-ranking** (``train_and_evaluate_top_on_cifar10``, `ws_rerank`): the `rerank_top` best of
   the last scoring are each trained from scratch at the search size for `rerank_epochs` epochs and
   validated on the held-out split; sorted by that accuracy they are the code's ``arch_pool.final``.
4. **Final training**: the best `final_queries` (1: the paper trains the winner) go to the run's
   evaluator, trained under the task's preset, the space's optimiser and this method's
   `final_recipe` (at ``paper``: NAO_V1 ``train_cifar.py``); the incumbent is the best by reward.

The budget counts those final evaluations (as ProxylessNAS's): `final_queries` is capped by it.
The supernet fit and the re-ranking are the method's overhead. Sizes per preset are data
(`WS_PRESETS`); every option left None takes the preset's value. Resuming: the fit continues from
its last finished epoch (`fit_supernet`), with the pool, round log and generators restored by the
module; the re-ranking, seeded per rank, is redone identically.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from nasrepro.errors import UsageError
from nasrepro.harness.method import Method, MethodConfig, SearchResult, register_method
from nasrepro.harness.oneshot import PresetSizes
from nasrepro.harness.run import Run
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task
from nasrepro.methods.nao.ws_tasks import FINAL_REGULARISERS as FINAL_REGULARISERS  # re-exported
from nasrepro.methods.nao.ws_tasks import WS_TASKS, WSTask

#: uniform draws per seed architecture when looking for distinct ones
DRAW_TRIES = 1000


@dataclass(frozen=True)
class WSBudget:
    """How big one NAO-WS search is at one preset (a row of `WS_PRESETS`)."""

    batch_size: int
    #: held-out images per scoring batch (NAO_V1 ``child_eval_batch_size`` 500)
    arch_batch_size: int
    train_subset: int | None
    train_batches: int | None
    epochs: int
    eval_every: int
    #: the supernet's size: N cells per stage and F channels (CIFAR-10); 1 and the hidden units (PTB)
    layers: int
    channels: int
    seed_archs: int
    new_archs: int
    top_k: int
    epd_epochs: int
    #: the final pool's best re-ranked by short stand-alone training (`ws_rerank`), for how many epochs,
    #: on how many held-out batches (None: all)
    rerank_top: int
    rerank_epochs: int
    rerank_eval_batches: int | None
    #: uniform architectures added per round beside the generated ones (NAO_V1: 0; TF NAO-WS and
    #: ``NAO-WS/rnn``: 50)
    random_new: int = 0
    note: str = ""


WS_PRESETS: PresetSizes[WSBudget] = PresetSizes("nao-ws", {
    ("nao-cells", "smoke"): WSBudget(
        batch_size=16, arch_batch_size=32, train_subset=64, train_batches=2, epochs=2, eval_every=1,
        layers=1, channels=8, seed_archs=6, new_archs=3, top_k=6, epd_epochs=3,
        rerank_top=2, rerank_epochs=1, rerank_eval_batches=1,
        note="supernet N=1, F=8; 2 epochs x 2 batches of 16, scored after each; 6 seeds, 3 new; top 2 "
        "re-ranked after 1 epoch of 2 batches: seconds",
    ),
    ("nao-cells", "cpu"): WSBudget(
        batch_size=64, arch_batch_size=250, train_subset=2_560, train_batches=None, epochs=20, eval_every=5,
        layers=1, channels=16, seed_archs=50, new_archs=25, top_k=25, epd_epochs=100,
        rerank_top=3, rerank_epochs=2, rerank_eval_batches=None,
        note="supernet N=1, F=16 on 2,560 images (40 batches of 64), 20 epochs, scored every 5 (3 "
        "controller rounds); 50 seeds, 25 new per round; top 3 re-ranked after 2 epochs (estimated)",
    ),
    ("nao-cells", "paper"): WSBudget(
        batch_size=128, arch_batch_size=500, train_subset=None, train_batches=None, epochs=150, eval_every=30,
        layers=3, channels=20, seed_archs=600, new_archs=300, top_k=100, epd_epochs=1000,
        rerank_top=5, rerank_epochs=10, rerank_eval_batches=None,
        note="NAO_V1 NAO-WS search: N=3, F=20, 150 epochs scored every 30 (4 controller rounds), 600 "
        "seeds, 300 new from the top 100, EPD 1000 epochs per round, top 5 re-ranked after 10 epochs",
    ),
    # PTB: ``arch_batch_size`` is the number of parallel validation streams of one scoring window
    ("nao-rnn-cells", "smoke"): WSBudget(
        batch_size=8, arch_batch_size=4, train_subset=None, train_batches=3, epochs=2, eval_every=1,
        layers=1, channels=16, seed_archs=6, new_archs=3, top_k=6, epd_epochs=3,
        rerank_top=2, rerank_epochs=1, rerank_eval_batches=1, random_new=1,
        note="supernet with 16 hidden units; 2 epochs x 3 windows of 10 x 8 tokens, scored after each; "
        "6 seeds, 3 new + 1 random; top 2 re-ranked after 1 epoch: seconds",
    ),
    ("nao-rnn-cells", "cpu"): WSBudget(
        batch_size=64, arch_batch_size=64, train_subset=None, train_batches=100, epochs=12, eval_every=3,
        layers=1, channels=64, seed_archs=50, new_archs=25, top_k=25, epd_epochs=100,
        rerank_top=3, rerank_epochs=1, rerank_eval_batches=10, random_new=5,
        note="supernet with 64 hidden units; 12 epochs of 100 windows of 35 x 64 tokens, scored every 3 "
        "(3 controller rounds); 50 seeds, 25 new + 5 random per round; top 3 re-ranked after 1 epoch "
        "(about 36 min per seed with two seeds on 2 loaded cores)",
    ),
    ("nao-rnn-cells", "paper"): WSBudget(
        batch_size=256, arch_batch_size=256, train_subset=None, train_batches=None, epochs=1000, eval_every=200,
        layers=1, channels=300, seed_archs=1000, new_archs=300, top_k=100, epd_epochs=1000,
        rerank_top=1, rerank_epochs=0, rerank_eval_batches=None, random_new=50,
        note="NAO-WS/rnn search: nhid 300, batch 256, 1000 epochs scored every 200 (4 controller rounds), "
        "1000 seeds, 300 new from the top 100 + 50 random, EPD 1000 epochs; no re-ranking (the code has none)",
    ),
})  # fmt: skip


@dataclass
class NAOWSConfig(MethodConfig):
    """NAO-WS options; None takes the preset's row (`WS_PRESETS`) or the task's released default
    (`ws_tasks.WSOptions`: NAO_V1 ``train_search.py`` on CIFAR-10, ``NAO-WS/rnn`` on PTB)."""

    preset: str | None = None
    batch_size: int | None = None
    arch_batch_size: int | None = None
    train_subset: int | None = None
    train_batches: int | None = None
    epochs: int | None = None
    eval_every: int | None = None
    layers: int | None = None
    channels: int | None = None
    seed_archs: int | None = None
    new_archs: int | None = None
    top_k: int | None = None
    epd_epochs: int | None = None
    rerank_top: int | None = None
    rerank_epochs: int | None = None
    rerank_eval_batches: int | None = None
    #: the re-ranked best trained from scratch by the run's evaluator (capped by the budget)
    final_queries: int = 1
    #: "pool": each batch trains an architecture drawn uniformly from the pool (NAO_V1, TF);
    #: "space": uniformly from the whole space
    sample_from: str = "pool"
    #: "faithful": every pool member on the same held-out batches of the round; "as-released": one
    #: fresh random batch per architecture (NAO_V1 ``child_valid``, fact sheet section 5)
    scoring: str = "faithful"
    score_batches: int = 1
    #: random architectures added per round beside the generated ones (TF NAO-WS: 50; NAO_V1: 0)
    random_new: int | None = None
    # supernet training (child_*; None: the task's `WSOptions`)
    lr: float | None = None
    lr_min: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    #: DARTS's temporal activation regularisation of the recurrent supernet (PTB: 1e-3)
    tar_beta: float | None = None
    drop_path_keep: float | None = 0.9
    auxiliary: bool = False
    aux_weight: float = 0.4
    # controller (the NAO-WS CNN EPD, `epd.EPD` defaults; `ws_controller`)
    hidden_size: int = 96
    mlp_layers: int | None = None
    mlp_hidden_size: int = 200
    mlp_dropout: float | None = None
    encoder_dropout: float | None = None
    trade_off: float = 0.8
    epd_lr: float = 1e-3
    epd_weight_decay: float = 1e-4
    epd_batch_size: int = 100
    max_eta: float | None = None
    eta_step: float = 1.0
    augment: bool = True

    def size(self, row: WSBudget) -> WSBudget:
        """The preset's row with this config's non-None sizes on top, checked."""
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(WSBudget) if f.name != "note"}
        size = dataclasses.replace(row, **{k: v for k, v in changes.items() if v is not None})
        for name in (
            "batch_size",
            "arch_batch_size",
            "epochs",
            "eval_every",
            "layers",
            "seed_archs",
            "top_k",
        ):
            if getattr(size, name) < 1:
                raise UsageError(f"nao-ws: {name} must be >= 1, got {getattr(size, name)}")
        if min(size.new_archs, size.epd_epochs, size.rerank_epochs) < 0 or size.channels % 2:
            raise UsageError("nao-ws: need new_archs, epd_epochs, rerank_epochs >= 0 and an even channels")
        if size.rerank_top < 1 or self.final_queries < 1:
            raise UsageError("nao-ws: rerank_top and final_queries must be >= 1")
        if self.score_batches < 1 or size.random_new < 0 or self.eta_step <= 0:
            raise UsageError("nao-ws: need score_batches >= 1, random_new >= 0 and eta_step > 0")
        return size


def eval_epochs(epochs: int, every: int) -> tuple[int, ...]:
    """The evaluation points: every `every` epochs, and always the last epoch."""
    points = list(range(every, epochs + 1, every))
    return tuple(points if points and points[-1] == epochs else [*points, epochs])


@register_method
class NAOWS(Method):
    """NAO-WS: a weight-sharing supernet scores the pool; EPD rounds renew it; the best are trained."""

    name = "nao-ws"
    Config = NAOWSConfig
    paper = "Luo, Tian, Qin, Chen & Liu, NeurIPS 2018"
    task_kinds = frozenset({"train"})
    needs = frozenset({"model"})
    #: smoke-size final networks by default; ``--space nao-cells`` / ``nao-rnn-cells`` are the paper's
    default_spaces = {"cifar10": "nao-cells-n1f8", "ptb": "nao-rnn-cells-h32"}
    conformance_tasks = ("cifar10", "ptb")
    conformance_options = {"seed_archs": 4, "new_archs": 2, "epd_epochs": 2, "epochs": 1, "rerank_top": 1}

    @classmethod
    def incompatibility(cls, task: Task, space: Space) -> str | None:
        reason = super().incompatibility(task, space)
        if reason is not None:
            return reason
        if task.name not in WS_TASKS.names():
            return (
                f"has supernets for {' and '.join(WS_TASKS.names())} only (CIFAR-10's 32x32 images, PTB's "
                f"word streams), not {task.name}"
            )
        return WS_TASKS.get(task.name).incompatibility(space)

    def final_recipe(self, task: Task, preset_name: str) -> dict[str, Any]:
        """The task's final-training settings beyond the space's optimiser (`WSTask.final_recipe`)."""
        if task.name not in WS_TASKS.names():
            return {}
        return WS_TASKS.get(task.name).final_recipe(preset_name)

    def search(self, run: Run) -> SearchResult:
        import lightning as L

        from nasrepro.harness.oneshot import fit_supernet, search_preset
        from nasrepro.methods.nao.encoding import get_codec
        from nasrepro.methods.nao.epd import EPD
        from nasrepro.methods.nao.ws_controller import ControllerSettings
        from nasrepro.methods.nao.ws_module import WSSettings
        from nasrepro.methods.nao.ws_rerank import rerank

        cfg: NAOWSConfig = self.config  # type: ignore[assignment]
        reason = self.incompatibility(run.task, run.space)
        if reason is not None:  # the runner refuses this first; library use may not
            raise UsageError(f"nao-ws cannot search {run.space.name!r} on {run.task.name!r}: it {reason}")
        kind: WSTask = WS_TASKS.get(run.task.name)  # the one task lookup; objects from here on
        space = run.space
        preset = cfg.preset or run.preset_name
        size = cfg.size(WS_PRESETS.size(kind.family, preset))
        opts = kind.options(cfg)
        if not cfg.eta_step <= opts.max_eta:
            raise UsageError(f"nao-ws: need eta_step <= max_eta, got {cfg.eta_step} > {opts.max_eta}")
        settings = WSSettings(
            epochs=size.epochs,
            eval_epochs=eval_epochs(size.epochs, size.eval_every),
            lr=opts.lr,
            lr_min=opts.lr_min,
            momentum=opts.momentum,
            weight_decay=opts.weight_decay,
            grad_clip=opts.grad_clip,
            aux_weight=cfg.aux_weight,
            sample_from=cfg.sample_from,
            scoring=cfg.scoring,
            score_batches=cfg.score_batches,
        )
        settings.check()
        controller = ControllerSettings(
            new_archs=size.new_archs,
            top_k=size.top_k,
            epd_epochs=size.epd_epochs,
            random_new=size.random_new,
            epd_batch_size=cfg.epd_batch_size,
            max_eta=opts.max_eta,
            eta_step=cfg.eta_step,
            augment=cfg.augment,
        )

        start = time.perf_counter()
        L.seed_everything(run.seed, workers=True, verbose=False)
        pool = seed_pool(space, run, size.seed_archs)
        codec = get_codec(kind.codec)
        supernet = kind.supernet(run, space, size, cfg)
        epd = EPD(
            codec,
            hidden_size=cfg.hidden_size,
            tokens_per_step=kind.tokens_per_step,
            encoder_dropout=opts.encoder_dropout,
            mlp_layers=opts.mlp_layers,
            mlp_hidden_size=cfg.mlp_hidden_size,
            mlp_dropout=opts.mlp_dropout,
            trade_off=cfg.trade_off,
            lr=cfg.epd_lr,
            weight_decay=cfg.epd_weight_decay,
        )
        search = search_preset(run.task, preset, size)  # type: ignore[arg-type]
        datamodule = run.task.datamodule(search, run.data_dir, run.seed)
        held_out = kind.held_out(datamodule, size, run.seed)
        module = kind.module_class()(
            supernet,
            epd,
            space,
            codec,
            pool,
            held_out,
            settings,
            controller,
            run.seed,
            **kind.module_kwargs(opts),
        )
        setup_seconds = time.perf_counter() - start
        fit_seconds = fit_supernet(
            run,
            module,
            datamodule.train_dataloader(),
            size.epochs,
            devices=1,  # one process: each batch's sampled path must be the same on every rank
            num_nodes=1,
            limit_train_batches=size.train_batches or 1.0,
            limit_val_batches=0,
        )

        # the best few re-ranked by short training (NAO_V1 ``train_and_evaluate_top_on_cifar10``)
        start = time.perf_counter()
        head = [space.parse(a) for a, _ in module.final_ranking[: size.rerank_top]]
        ranked: list[tuple[Any, float | None]] = [(a, None) for a in head]
        if len(head) > 1 and size.rerank_epochs > 0:
            spec = kind.rerank_spec(run, space, size, opts)
            ranked = rerank(run, search, datamodule, head, spec, size.rerank_epochs, size.train_batches,  # type: ignore[assignment]
                            size.rerank_eval_batches)  # fmt: skip
        rerank_seconds = time.perf_counter() - start
        # the winner(s) trained from scratch by the run's evaluator: the derived network's final training
        queries = run.evaluator.query_many(
            [a for a, _ in ranked[: int(min(cfg.final_queries, run.evaluator.remaining))]]
        )
        overhead = setup_seconds + fit_seconds + rerank_seconds
        extra = {
            "search_preset": {"preset": preset, **dataclasses.asdict(size)},
            "options": dataclasses.asdict(opts),
            "eval_epochs": list(settings.eval_epochs),
            "sample_from": cfg.sample_from,
            "scoring": cfg.scoring,
            "supernet_params": sum(p.numel() for p in supernet.parameters()),
            "rounds": module.rounds,
            "final_ranking_head": [[a, round(s, 4)] for a, s in module.final_ranking[:10]],
            "reranked": [[str(a), metric] for a, metric in ranked],
            "final_queries": [q.arch for q in queries],
            "supernet_seconds": round(setup_seconds + fit_seconds, 3),
            "rerank_seconds": round(rerank_seconds, 3),
        }
        return SearchResult(best_arch=run.evaluator.best().arch, extra=extra, overhead_seconds=overhead)


def seed_pool(space: Space, run: Run, count: int) -> list[Any]:
    """`count` distinct uniformly drawn architectures (``utils.generate_arch`` of NAO_V1 and
    ``NAO-WS/rnn``), canonical."""
    rng, pool, keys = run.rng(1), [], set()
    for _ in range(count * DRAW_TRIES):
        if len(pool) == count:
            break
        arch = space.sample(rng)
        if space.key(arch) not in keys:
            keys.add(space.key(arch))
            pool.append(arch)
    return pool
