"""FaDE's outer search (nasrepro/methods/fade/outer.py, search.py) without region training.

The region trainer is replaced by an oracle whose FaDE-ranks are a planted function of the cells
(more edges = better), so these tests check the reconstructed EA itself: it follows ranks, keeps no
state beyond its batch, is deterministic per seed, and spends its budget on region incumbents.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasrepro.errors import UsageError
from nasrepro.harness.evaluator import Evaluator, Outcome
from nasrepro.harness.run import run_of
from nasrepro.harness.table import TABLE_PRESETS
from nasrepro.harness.task import Metric, Task
from nasrepro.methods import get_method
from nasrepro.methods.fade import outer, training
from nasrepro.methods.fade.region import HierView
from nasrepro.spaces.hierarchical import HierarchicalSpace, parse_cell


class _Images(Task):
    name = "fade-images"
    metric = Metric("accuracy", "max")
    kind = "train"
    presets = TABLE_PRESETS
    input_shape = (3, 32, 32)
    num_classes = 10


class _EdgeCount(Evaluator):
    def _evaluate(self, arch):
        score = float(sum(len(c.edges) for c in arch.cells))
        return Outcome(val=score, test=score, cost_seconds=0.0)


class _Oracle:
    """Stands in for `training.RegionTrainer`: ranks = softmax(edges) per stage, sign chosen by the test."""

    sign = 1.0

    def __init__(self, run, view, cfg, size, data, preset):
        self.data_task = data

    def train(self, candidates, step):
        ranks = []
        for units in candidates:
            e = np.exp(self.sign * np.array([len(u.edges) for u in units], dtype=float))
            ranks.append((e / e.sum()).tolist())
        return ranks, {}


def _search(seed, budget=12, sign=1.0, **config):
    space = HierarchicalSpace(stages=3, max_vertices=4)
    evaluator = _EdgeCount(_Images(), space, budget=budget)
    _Oracle.sign = sign
    result = get_method("fade")(config).search(run_of(evaluator, seed=seed, preset_name="smoke"))
    return evaluator, result


@pytest.fixture
def oracle(monkeypatch):
    monkeypatch.setattr(training, "RegionTrainer", _Oracle)


def test_the_ea_follows_fade_ranks_and_a_flipped_sign_fails(oracle):
    better = [max(q.score for q in _search(seed)[0].history) for seed in range(5)]
    worse = [max(q.score for q in _search(seed, sign=-1.0)[0].history) for seed in range(5)]
    random = []
    for seed in range(5):
        space, rng = HierarchicalSpace(stages=3, max_vertices=4), np.random.default_rng(seed)
        random.append(max(sum(len(c.edges) for c in space.sample(rng).cells) for _ in range(12)))
    assert np.mean(better) > np.mean(random) > np.mean(worse)


def test_deterministic_per_seed_and_one_incumbent_query_per_region(oracle):
    a, ra = _search(3)
    b, rb = _search(3)
    assert [q.arch for q in a.history] == [q.arch for q in b.history]
    assert ra.extra["steps"] == rb.extra["steps"] and ra.best_arch == rb.best_arch
    steps = ra.extra["steps"]
    assert a.n_queries == 12 and len(steps) >= 12
    queried = [s["queried"] for s in steps if s["queried"]]
    assert queried == [q.arch for q in a.history]
    for s in steps:  # the incumbent is a member of that step's batch
        assert s["queried"] is None or s["queried"] in s["batch"]


def test_steps_bound_the_region_trainings(oracle):
    evaluator, result = _search(0, steps=3)
    assert result.extra["region_trainings"] == 3 and evaluator.n_queries <= 3


def test_the_step_keeps_no_state_beyond_the_batch():
    """The step is a function of (batch, region, ranks, rng) only: same inputs, same next batch."""
    space = HierarchicalSpace(stages=2, max_vertices=3)
    view = HierView(space)
    rng = np.random.default_rng(0)
    batch = [space.sample(rng) for _ in range(3)]
    cands = outer.region_candidates(view, batch, 4, np.random.default_rng(1))
    ranks = [[0.1, 0.2, 0.3, 0.4]] * 2
    scores = outer.path_scores(view, batch, cands, ranks)
    member = outer.batch_ranks(scores)
    grads = outer.pseudo_gradient(view, batch, cands, ranks, member)
    first = outer.pseudo_gradient_step(view, batch, cands, grads, member, 1, np.random.default_rng(5))
    again = outer.pseudo_gradient_step(view, batch, cands, grads, member, 1, np.random.default_rng(5))
    assert first == again
    assert first[:2] == [
        batch[i] for i in sorted(range(3), key=lambda i: member[i])[:2]
    ]  # the worst is replaced


def test_the_child_moves_along_the_pseudo_gradient():
    """A planted winner: the candidate with the top alpha at stage 1 enters the best member's child."""
    space = HierarchicalSpace(stages=2, max_vertices=3)
    view = HierView(space)
    a, b, c = (parse_cell(t) for t in ('{"1":[0]}', '{"1":[0,1],"2":[0,0]}', '{"1":[0,0],"2":[0,0]}'))
    winner = parse_cell('{"1":[0,1,1],"2":[0,0,1],"3":[0,0,0]}')
    batch = [view.join([a, a]), view.join([b, b]), view.join([c, c])]
    cands = [[a, b, c, winner], [a, b, c, winner]]
    ranks = [[0.3, 0.3, 0.3, 0.1], [0.2, 0.1, 0.1, 0.6]]
    member = outer.batch_ranks(outer.path_scores(view, batch, cands, ranks))
    assert member == [0, 1, 2]  # b and c tie at 0.2: batch order decides
    grads = outer.pseudo_gradient(view, batch, cands, ranks, member)
    new = outer.pseudo_gradient_step(view, batch, cands, grads, member, 1, np.random.default_rng(0), 0.0)
    assert new[-1] == view.join([a, winner])


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"region_size": 0}, "region_size k >= 1"),
        ({"region_size": 4, "batch_size": 5}, "batch_size <= region_size"),
        ({"replace": 3}, "replace < batch_size"),
        ({"mode": "third_order"}, "optimisation mode"),
    ],
)
def test_bad_settings_are_one_line_usage_errors(oracle, config, match):
    with pytest.raises(UsageError, match=match):
        _search(0, **config)


def test_a_region_larger_than_the_space_is_a_usage_error():
    space = HierarchicalSpace(stages=2, max_vertices=2)  # 1 + 2 = 3 distinct cells per stage
    evaluator = _EdgeCount(_Images(), space, budget=3)
    with pytest.raises(UsageError, match="larger than the space"):
        get_method("fade")({"region_size": 4}).search(run_of(evaluator, seed=0, preset_name="smoke"))


def test_correlation_helpers():
    from nasrepro.methods.fade.correlation import bootstrap, main

    lo, hi = bootstrap([0.2, 0.4, 0.6, 0.8], np.random.default_rng(0))
    assert 0.2 <= lo < 0.5 < hi <= 0.8
    assert bootstrap([0.5], np.random.default_rng(0)) is None
    assert main(["--seeds", "a-b", "--out", "/dev/null"]) == 2
    assert main(["--seeds", "3-1", "--out", "/dev/null"]) == 2  # ran with no seeds and wrote NaN
    assert main([]) == 2  # neither --out nor --summarise


def test_correlation_summary_counts_regions_not_their_seeds(tmp_path):
    """The seeds of a region share its cells and table values: two regions of three seeds are two
    draws (the summary once said n = 6), and the interval resamples regions first."""
    import json

    from nasrepro.methods.fade.correlation import main, overall

    def region(values):
        return {"per_seed": [{"kendall_tau_val": v, "spearman_val": v} for v in values]}

    regions = [region([0.4, 0.4, 0.2]), region([0.2, 0.2, float("nan")])]
    summary = overall(regions)
    assert summary["n"] == 2 and summary["n_runs"] == 5
    assert summary["spearman_mean"] == pytest.approx((1 / 3 + 0.2) / 2, abs=1e-4)
    lo, hi = summary["spearman_ci95"]
    # drawing region 1 twice (1 in 4) gives 0.2; pooling the five values as independent would not
    assert lo == pytest.approx(0.2) and summary["spearman_mean"] < hi <= 0.4
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"regions": regions, "overall": {"n": 6}}))
    assert main(["--summarise", str(path)]) == 0
    assert json.loads(path.read_text())["overall"]["n"] == 2
    path.write_text("{}")
    assert main(["--summarise", str(path)]) == 2


def test_a_resumed_search_reuses_the_regions_it_trained(oracle, tmp_path, monkeypatch):
    """Region checkpoints: a second attempt on the same artifacts folder trains no region again and
    ends with the same record; a cached step whose region differs is a divergence, not a retrain."""
    from nasrepro.errors import NasreproError
    from nasrepro.methods.fade.region_cache import FILE

    def search(budget=12):
        space = HierarchicalSpace(stages=3, max_vertices=4)
        evaluator = _EdgeCount(_Images(), space, budget=budget)
        run = run_of(evaluator, seed=2, preset_name="smoke", artifacts_dir=tmp_path)
        return evaluator, get_method("fade")({}).search(run)

    first, first_result = search()
    trained = []
    monkeypatch.setattr(_Oracle, "train", lambda self, c, step: trained.append(step))
    again, again_result = search()
    assert trained == [] and again_result.extra["steps"] == first_result.extra["steps"]
    assert [q.arch for q in again.history] == [q.arch for q in first.history]
    cache = json.loads((tmp_path / FILE).read_text())
    assert sorted(map(int, cache)) == list(range(len(first_result.extra["steps"])))
    cache["0"]["region"][0][0] = "tampered"
    (tmp_path / FILE).write_text(json.dumps(cache))
    with pytest.raises(NasreproError, match="diverged at step 0"):
        search()
