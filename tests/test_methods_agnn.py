"""AGNN's reinforced conservative controller and the GraphNAS REINFORCE ablation on the
NAS-Bench-Graph Cora table (fact sheet agnn.md, "What a faithful implementation must show", 3/5/7)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import nasrepro.methods.agnn  # noqa: F401  (registration)
from nasrepro.errors import UsageError
from nasrepro.harness.method import METHODS
from nasrepro.harness.run import run_of
from nasrepro.harness.table import TableEntry
from nasrepro.harness.table_evaluator import TableEvaluator
from nasrepro.methods.agnn.controller import AGNNController, GraphNASController, _entropy_softmax
from nasrepro.tasks import get_task


@pytest.fixture(scope="module")
def cora():
    task = get_task("nasbench-graph/cora")
    task.table()
    return task, task.space()


def run(name, cora, budget, seed, config=None, spy=False, evaluator=None):
    """A search; with `spy`, also the raw encoding of every architecture handed to the evaluator."""
    task, space = cora
    asked = []

    class Spy(TableEvaluator):
        def query(self, arch):
            asked.append(space.encode(arch))
            return super().query(arch)

    ev = evaluator or (Spy if spy else TableEvaluator)(task, space, budget=budget)
    result = METHODS.get(name)(config).search(run_of(ev, seed, budget=budget))
    return result, ev, asked


def classes_changed(fields, a, b):
    return {f.group for f, x, y in zip(fields, a, b, strict=True) if x != y}


def test_methods_are_registered():
    assert {"agnn", "graphnas-rl"} <= set(METHODS.names())


@pytest.mark.parametrize("guide_type", [0, 1])
def test_every_child_changes_exactly_one_action_class_of_its_incumbent(cora, guide_type):
    result, ev, asked = run("agnn", cora, 100, 3, {"guide_type": guide_type}, spy=True)
    fields = cora[1].fields()
    trajectory = result.extra["incumbent_trajectory"]
    assert result.extra["jumps"] == []
    assert len(asked) == ev.n_queries == 100  # no duplicate ever reached the evaluator
    changed = set()
    for i, child in enumerate(asked[1:], start=1):
        incumbent = [t for t in trajectory if t["since"] <= i][-1]
        classes = classes_changed(fields, incumbent["encoding"], child)
        assert len(classes) == 1, (i, incumbent["encoding"], child)
        changed |= classes
    assert sum(result.extra["classes_modified"].values()) == 99
    if guide_type == 1:
        assert changed == {"links", "ops"}  # softmax guidance explores both classes


def test_incumbent_never_gets_worse_and_is_promoted_only_at_epoch_ends(cora):
    steps = 7
    result, ev, _ = run("agnn", cora, 100, 5, {"ctrl_steps": steps})
    trajectory = result.extra["incumbent_trajectory"]
    scores = [t["score"] for t in trajectory]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)  # strictly improving
    assert len(trajectory) >= 2, "the explorer should improve on a random start within 100 queries"
    # Epoch e's children are queries 1 + (e-1)*steps ... e*steps; the incumbent changes after an
    # epoch exactly when that epoch's best child beats it.
    incumbent = ev.history[0].score
    for epoch in range(1, result.extra["controller_epochs"] + 1):
        children = ev.history[1 + (epoch - 1) * steps : 1 + epoch * steps]
        best = max(children, key=lambda q: q.score)
        promoted = [t for t in trajectory if t["epoch"] == epoch]
        if best.score > incumbent:
            assert (
                promoted
                and promoted[0]["query"] == best.index
                and promoted[0]["since"] == children[-1].index + 1
            )
            incumbent = best.score
        else:
            assert not promoted
    assert result.best_arch == trajectory[-1]["arch"] == ev.best().arch
    assert incumbent == max(q.score for q in ev.history)


@pytest.mark.parametrize("name", ["agnn", "graphnas-rl"])
def test_budget_is_counted_exactly_and_same_seed_gives_same_history(cora, name):
    a, ev_a, _ = run(name, cora, 60, 11)
    b, ev_b, _ = run(name, cora, 60, 11)
    c, ev_c, _ = run(name, cora, 60, 12)
    assert ev_a.n_queries == 60 and len({q.arch for q in ev_a.history}) == 60
    assert [
        q.to_dict() | {"wall_seconds": 0, "cost_seconds": 0, "cumulative_cost": 0} for q in ev_a.history
    ] == [q.to_dict() | {"wall_seconds": 0, "cost_seconds": 0, "cumulative_cost": 0} for q in ev_b.history]
    assert [q.arch for q in ev_a.history] != [q.arch for q in ev_c.history]
    assert a.best_arch == b.best_arch == ev_a.best().arch


def test_search_does_not_touch_the_global_torch_rng(cora):
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    run("agnn", cora, 20, 0)
    assert torch.equal(torch.rand(3), before)


def test_test_accuracy_never_influences_the_search(cora, monkeypatch):
    """Selection uses validation only (fact sheet item 5): scrambling the test column of the table
    must leave the searched trajectory unchanged."""
    task, space = cora
    reference, ref_ev, _ = run("agnn", cora, 60, 2)
    ev = TableEvaluator(task, space, budget=60)
    lookup, rng = ev.table.lookup, np.random.default_rng(0)

    def scrambled(arch):
        entry = lookup(arch)
        return dataclasses.replace(entry, test=float(rng.uniform(0, 100)))

    monkeypatch.setattr(ev.table, "lookup", scrambled)  # the table is shared: undo after the test
    result, _, _ = run("agnn", cora, 60, 2, evaluator=ev)
    assert [q.arch for q in ev.history] == [q.arch for q in ref_ev.history]
    assert result.best_arch == reference.best_arch
    assert isinstance(lookup(space.parse(reference.best_arch)), TableEntry)


def test_graphnas_rl_samples_whole_architectures(cora):
    result, ev, asked = run("graphnas-rl", cora, 80, 4, spy=True)
    fields = cora[1].fields()
    assert ev.n_queries == 80 and result.best_arch == ev.best().arch
    # not conservative: consecutive samples regularly differ in both classes at once
    both = sum(len(classes_changed(fields, a, b)) == 2 for a, b in zip(asked, asked[1:], strict=False))
    assert both > 40


def test_invalid_encodings_are_resampled(cora, monkeypatch):
    """`decode` raising UsageError means "invalid architecture": the method draws again."""
    task, space = cora
    gat = space.ops.index("gat")
    decode = space.decode

    def no_gat(indices):
        if gat in indices[4:]:
            raise UsageError("gat forbidden in this test")
        return decode(indices)

    monkeypatch.setattr(space, "decode", no_gat)
    result, ev, asked = run("agnn", cora, 40, 1, spy=True)
    assert ev.n_queries == 40 and result.extra["resampled_invalid"] > 0
    assert all(gat not in child[4:] for child in asked[1:])


def test_resume_by_replay_reproduces_the_uninterrupted_search(cora, monkeypatch):
    """The harness resumes by replaying answered queries (harness/checkpoint.py); a deterministic
    method must ask for exactly the same architectures and then continue where it stopped."""
    task, space = cora
    reference, ref_ev, _ = run("agnn", cora, 50, 9)
    ev = TableEvaluator(task, space, budget=50)
    ev.resume_from(ref_ev.history[:23])
    lookups = []
    lookup = ev.table.lookup

    def counting(arch):
        lookups.append(arch)
        return lookup(arch)

    monkeypatch.setattr(ev.table, "lookup", counting)
    resumed, _, _ = run("agnn", cora, 50, 9, evaluator=ev)
    assert not ev.replaying
    assert len(lookups) == 27  # only the unanswered queries were evaluated
    assert [q.arch for q in ev.history] == [q.arch for q in ref_ev.history]
    assert resumed.extra["incumbent_trajectory"] == reference.extra["incumbent_trajectory"]


# --- the controllers ---------------------------------------------------------------------------------


def test_reinforce_moves_a_rewarded_sample_up_and_a_punished_one_down(cora):
    fields = cora[1].fields()
    gen = torch.Generator().manual_seed(0)
    for sign in (+1, -1):
        torch.manual_seed(0)
        ctrl = AGNNController(fields, lr=1e-2)
        incumbent = (0, 1, 2, 3, 0, 1, 2, 3)
        ctrl.reset_baseline(0.5)
        proposal = ctrl.propose(incumbent, gen)
        before = ctrl.log_prob(incumbent, proposal.action_class, proposal.indices).item()
        # baseline 0.5 -> 0.5 + 0.05 * (reward - 0.5) after the EMA, so the advantage has `sign`
        ctrl.reinforce(proposal.log_prob, proposal.entropy, 0.5 + sign * 0.4)
        after = ctrl.log_prob(incumbent, proposal.action_class, proposal.indices).item()
        assert (after - before) * sign > 1e-3, (sign, before, after)

        torch.manual_seed(0)
        plain = GraphNASController(fields, lr=1e-2)
        plain.reset_baseline(0.5)
        sample = plain.propose(gen)
        before = plain.log_prob(sample.indices).item()
        plain.reinforce(sample.log_prob, sample.entropy, 0.5 + sign * 0.4)
        assert (plain.log_prob(sample.indices).item() - before) * sign > 1e-3


def test_ema_baseline_is_updated_before_the_advantage():
    ctrl = GraphNASController(get_task("nasbench-graph/cora").space().fields(), entropy_weight=0.0)
    ctrl.reset_baseline(None)
    sample = ctrl.propose(torch.Generator().manual_seed(0))
    loss = ctrl.reinforce(sample.log_prob, sample.entropy, 0.8)
    assert ctrl.baseline == 0.8 and loss == 0.0  # the first reward is its own baseline
    sample = ctrl.propose(torch.Generator().manual_seed(1))
    ctrl.reinforce(sample.log_prob, sample.entropy, 0.4)
    assert math.isclose(ctrl.baseline, 0.95 * 0.8 + 0.05 * 0.4)


def test_a_modifier_conditions_on_the_incumbent_outside_its_class_only(cora):
    """Each class modifier reads the incumbent's out-of-class values (AutoGL `_update_state`) and
    re-samples its own class: in-class incumbent values must not change its distribution."""
    torch.manual_seed(0)
    ctrl = AGNNController(cora[1].fields())
    child = (0, 0, 1, 2, 4, 4, 4, 4)
    base = ctrl.log_prob((0, 1, 2, 3, 0, 1, 2, 3), "ops", child)
    same_outside = ctrl.log_prob((0, 1, 2, 3, 7, 7, 7, 7), "ops", child)
    other_outside = ctrl.log_prob((0, 0, 0, 0, 0, 1, 2, 3), "ops", child)
    assert torch.equal(base, same_outside)
    assert not torch.allclose(base, other_outside)


def test_guides_pick_the_most_uncertain_or_sample_by_softmax_entropy(cora):
    torch.manual_seed(0)
    ctrl = AGNNController(cora[1].fields(), guide_type=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = ctrl.propose((0, 1, 2, 3, 0, 1, 2, 3), gen)
        assert p.action_class == max(p.class_entropies, key=p.class_entropies.get)
        assert p.entropy == p.class_entropies[p.action_class]
    entropies = torch.tensor([0.0, math.log(3.0)])
    picks = [_entropy_softmax(entropies, gen) for _ in range(4000)]
    assert abs(np.mean(picks) - 0.75) < 0.03  # softmax([0, log 3]) = [1/4, 3/4]


def test_bad_configurations_are_usage_errors(cora, toy_task, toy_space):
    task, space = cora
    ev = TableEvaluator(task, space, budget=5)
    with pytest.raises(UsageError, match="live training"):
        METHODS.get("agnn")({"share": True}).search(run_of(ev, 0, budget=5))
    with pytest.raises(UsageError, match="guide_type"):
        METHODS.get("agnn")({"guide_type": 2}).search(run_of(ev, 0, budget=5))
    with pytest.raises(UsageError, match="ctrl_steps"):
        METHODS.get("graphnas-rl")({"ctrl_steps": 0}).search(run_of(ev, 0, budget=5))
    with pytest.raises(UsageError, match="entropy_estimate"):
        METHODS.get("agnn")({"entropy_estimate": "exact"}).search(run_of(ev, 0, budget=5))
    with pytest.raises(UsageError, match="no option"):
        METHODS.get("agnn")({"temperture": 3})
    assert "categorical" in METHODS.get("agnn").incompatibility(toy_task, toy_space)
    assert ev.n_queries == 0


@pytest.mark.parametrize("name", ["agnn", "graphnas-rl"])
def test_when_spent_jump_spends_the_budget_and_stop_does_not(name, toy_task):
    """On the 36-architecture toy space the controller's proposals are soon all seen: "jump" fills
    the budget with uniform draws and reports them; "stop" ends the search there, jumping never."""
    from conftest import CategoricalToySpace

    space = CategoricalToySpace()
    results = {}
    for policy in ("jump", "stop"):
        ev = TableEvaluator(toy_task, space, budget=36)
        config = {"ctrl_steps": 4, "max_resample": 5, "when_spent": policy}
        results[policy] = (METHODS.get(name)(config).search(run_of(ev, 3, budget=36)), ev)
    jumped, ev_jump = results["jump"]
    stopped, ev_stop = results["stop"]
    assert jumped.extra["jumps"] and ev_jump.n_queries == 36
    assert jumped.extra["jump_fraction"] == len(jumped.extra["jumps"]) / 36
    assert stopped.extra["jumps"] == [] and stopped.extra["jump_fraction"] == 0.0
    assert ev_stop.n_queries < 36
