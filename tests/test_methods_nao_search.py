"""The ``nao`` search driver on a planted NAS-Bench-201 table: it climbs towards the planted optimum
(and does not when the predictor's sign is flipped), spends exactly its budget of unique queries,
is deterministic per seed, and survives a failing EPD round."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrepro.errors import NasreproError, UsageError
from nasrepro.harness.run import run_of
from nasrepro.harness.table import Table, TableEntry, TableTask
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.harness.task import Metric
from nasrepro.methods import get_method
from nasrepro.methods.nao import epd as epd_module
from nasrepro.methods.nao.encoding import CategoricalCodec, get_codec
from nasrepro.methods.nao.search import NAOConfig
from nasrepro.spaces.nasbench201 import OP_NAMES, NB201Arch, NB201Space

TARGET = OP_NAMES.index("nor_conv_3x3")
SMALL = dict(seed_archs=12, top_k=12, new_archs=8, epochs=25, hidden_size=32, mlp_hidden_size=32)


class PlantedTable(Table):
    """Validation accuracy = 50 + 8 x (edges carrying nor_conv_3x3): one planted optimum among the
    5,044 NB201 classes (all six edges 3x3), and a smooth slope towards it."""

    cost_model = "planted: free"
    records_training_time = False

    def lookup(self, arch: NB201Arch) -> TableEntry:
        hits = sum(code == TARGET for code in arch.codes)
        return TableEntry(val=50.0 + 8.0 * hits, test=50.0 + 8.0 * hits)

    def __len__(self) -> int:
        return NB201Space().size()

    def items(self):  # pragma: no cover - not used by the search
        return iter(())


class PlantedTask(TableTask):
    name = "planted-nb201"
    metric = Metric("accuracy", "max")

    def table(self) -> Table:
        return PlantedTable()

    def space(self) -> NB201Space:
        return NB201Space()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def search(seed: int, budget: int, **options):
    task = PlantedTask()
    evaluator = TableEvaluator(task, task.space(), budget)
    result = get_method("nao")({**SMALL, **options}).search(run_of(evaluator, seed))
    return result, evaluator


def best_hits(evaluator: TableEvaluator) -> int:
    return round((evaluator.fitness(evaluator.best()) - 50.0) / 8.0)


def test_categorical_tokens_are_the_nb201_codec() -> None:
    """The driver's codec over the NB201 space's categorical view is exactly the NB201 encoding."""
    space, rng = NB201Space(), np.random.default_rng(0)
    codec, reference = CategoricalCodec(space), get_codec("nasbench201")
    assert codec.grammar.vocab_size == reference.grammar.vocab_size
    assert (codec.grammar.mask() == reference.grammar.mask()).all()
    for _ in range(50):
        arch = space.sample(rng)
        assert codec.to_tokens(arch) == reference.to_tokens(arch)
        assert codec.from_tokens(codec.to_tokens(arch)) == arch


def generated_mean(evaluator: TableEvaluator) -> float:
    return float(np.mean([evaluator.fitness(q) for q in evaluator.history[SMALL["seed_archs"] :]]))


@pytest.mark.slow  # four searches: ~25 s alone on one core
def test_climbs_to_the_planted_optimum_and_the_sign_matters(monkeypatch) -> None:
    """NAO reaches the planted optimum; with the predictor's targets reversed (best = 0) its
    proposals are worse and it does not."""
    budget = 36
    normal = [search(seed, budget)[1] for seed in (0, 1)]
    found = [best_hits(e) for e in normal]
    # random search: P(optimum within 36 draws) ~ 36 x 0.2**6 < 0.3%; P(best >= 4 edges) ~ 0.46
    assert max(found) == 6 and min(found) >= 4, found
    normalise = epd_module.normalise_scores
    monkeypatch.setattr(epd_module, "normalise_scores", lambda s, maximise=True: 1.0 - normalise(s, maximise))
    flipped = [search(seed, budget)[1] for seed in (0, 1)]
    assert max(best_hits(e) for e in flipped) < 6
    assert np.mean([generated_mean(e) for e in flipped]) < np.mean([generated_mean(e) for e in normal])


def test_every_round_trains_the_epd_in_training_mode(monkeypatch) -> None:
    """The EPD is left in eval mode after a round's predictions; the next round must train with
    dropout on (Lightning keeps a submodule's mode at fit start)."""
    from nasrepro.methods.nao.epd import EPD

    modes = []
    step = EPD.training_step

    def traced(self, *args, **kwargs):
        modes.append(all(m.training for m in self.modules()))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(EPD, "training_step", traced)
    result, _ = search(0, 10, epochs=2, seed_archs=4, top_k=4, new_archs=3)
    assert len(result.extra["rounds"]) >= 2 and modes and all(modes)


@pytest.mark.slow  # three searches; the conformance suite checks determinism on every run too
def test_budget_is_exact_and_search_is_deterministic() -> None:
    result, evaluator = search(3, 29)
    keys = [q.arch for q in evaluator.history]
    assert len(keys) == 29 == len(set(keys))
    assert result.best_arch in keys
    extra = result.extra
    assert extra["seed_queries"] == 12
    assert extra["seed_queries"] + extra["generated_queries"] + extra["fallback_queries"] == 29
    assert result.overhead_seconds and result.overhead_seconds > 0
    assert all(r["reconstruction_exact"] is not None for r in extra["rounds"])
    again, evaluator2 = search(3, 29)
    assert [q.arch for q in evaluator2.history] == keys
    other = search(4, 29)[1]
    assert [q.arch for q in other.history] != keys


def test_fixed_steps_and_released_seed_selection_run_within_budget() -> None:
    result, evaluator = search(
        0, 22, eta_schedule="fixed", seed_selection="as-released", random_new=2, epochs=5
    )
    assert evaluator.n_queries == 22
    assert {r["last_eta"] for r in result.extra["rounds"] if r["generated"]} <= {10.0, 20.0, 30.0}
    assert result.extra["random_new_queries"] > 0


def test_seed_pool_takes_at_most_half_the_budget() -> None:
    result, evaluator = search(0, 10, epochs=2)
    assert result.extra["seed_queries"] == 5 and evaluator.n_queries == 10


def test_a_failing_epd_round_falls_back_and_goes_on(monkeypatch) -> None:
    def broken(self, batch, batch_idx):
        raise NasreproError("NAO EPD loss is nan at step 0")

    monkeypatch.setattr(epd_module.EPD, "training_step", broken)
    result, evaluator = search(0, 20)
    assert evaluator.n_queries == 20
    rounds = result.extra["rounds"]
    assert rounds and all("EPD training failed" in r["failure"] for r in rounds)
    assert result.extra["fallback_queries"] == 20 - 10
    stopped, evaluator = search(0, 20, when_stuck="stop")
    assert evaluator.n_queries == 10  # the seed pool only: the first failed round ends the search
    assert "EPD training failed" in stopped.extra["rounds"][-1]["failure"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("seed_archs", 0), ("eta_schedule", "sideways"), ("seed_selection", "best"), ("etas", []),
     ("max_eta", 0.5), ("when_stuck", "wait"), ("random_new", -1)],
)  # fmt: skip
def test_bad_options_are_one_line_usage_errors(option, value) -> None:
    with pytest.raises(UsageError, match=option.split("_")[0]):
        NAOConfig(**{option: value}).check()
