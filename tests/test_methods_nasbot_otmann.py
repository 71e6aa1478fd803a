"""OTMANN (nasrepro.methods.nasbot.otmann): reference goldens and the distance's properties.

The goldens (tests/goldens/otmann_dragonfly.json) were computed by dragonfly-opt's own
`nn/otmann.py` on its example networks (tests/goldens/make_otmann_dragonfly.py, run in a separate
venv); dragonfly is never needed here.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.graph import LABELS, LayerGraph
from nasrepro.methods.nasbot.otmann import (
    DEFAULT_STRUCT_COEFFS,
    OTMANN,
    REPLACE_INF_WITH,
    label_mismatch_costs,
)

GOLDEN = Path(__file__).parent / "goldens" / "otmann_dragonfly.json"
FAMILIES = ("cnn", "mlp-reg", "mlp-class")


@functools.cache
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@functools.cache
def networks(family: str) -> tuple[LayerGraph, ...]:
    return tuple(
        LayerGraph(n["kind"], n["labels"], n["units"], n["strides"], tuple(map(tuple, n["edges"])))
        for n in golden()["families"][family]["networks"]
    )


def test_golden_provenance() -> None:
    data = golden()
    assert data["versions"]["dragonfly-opt"] == "0.1.7" and data["versions"]["POT"].startswith("0.9.")
    assert data["struct_coeffs"] == list(DEFAULT_STRUCT_COEFFS)
    assert [len(data["families"][f]["networks"]) for f in FAMILIES] == [12, 8, 8]


@pytest.mark.parametrize("family", FAMILIES)
def test_masses_and_path_lengths_match_the_reference(family: str) -> None:
    for g, ref in zip(networks(family), golden()["families"][family]["networks"], strict=True):
        np.testing.assert_allclose(g.masses, ref["masses"], rtol=1e-12)
        from_ip, to_op = g.path_lengths
        np.testing.assert_allclose(from_ip, ref["from_ip"], rtol=1e-12)
        np.testing.assert_allclose(to_op, ref["to_op"], rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_cost_matrices_match_the_reference(family: str) -> None:
    nets = networks(family)
    otmann = OTMANN(nets[0].kind)
    for case in golden()["families"][family]["cost_matrices"]:
        i, j = case["pair"]
        index = DEFAULT_STRUCT_COEFFS.index(case["struct_coeff"])
        np.testing.assert_allclose(otmann.transport(nets[i], nets[j], index).cost, case["cost"], rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_distances_match_the_reference(family: str) -> None:
    """All 8 distances of every pair (ordered pairs, so both triangles) to 1e-9 relative."""
    nets = networks(family)
    ref = np.array(golden()["families"][family]["distances"])
    ours = OTMANN(nets[0].kind).matrix(nets, list(nets))
    scale = np.abs(ref).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12 * float(scale.max()))
    assert (ref[1::2] > 0.01).sum() > 0.5 * ref[1::2].size  # the goldens are not trivially small


def test_label_mismatch_costs_are_the_code_values() -> None:
    cnn = label_mismatch_costs("cnn", 1.0)
    idx = {label: i for i, label in enumerate(LABELS["cnn"])}
    assert cnn[idx["conv3"], idx["conv5"]] == pytest.approx(0.2)
    assert cnn[idx["conv3"], idx["conv7"]] == pytest.approx(np.sqrt(2) / 10 * 2)
    assert cnn[idx["res3"], idx["res5"]] == pytest.approx(0.2)
    assert cnn[idx["conv3"], idx["res3"]] == pytest.approx(0.1)  # 0.9 * 0 + 0.1 * nas
    assert cnn[idx["conv3"], idx["res5"]] == pytest.approx(0.9 * 0.2 + 0.1)
    assert cnn[idx["max-pool"], idx["avg-pool"]] == 0.5
    assert np.isinf(cnn[idx["conv3"], idx["fc"]]) and np.isinf(cnn[idx["ip"], idx["op"]])
    assert (np.diag(cnn) == 0).all() and (cnn == cnn.T).all()
    mlp = label_mismatch_costs("mlp-reg", 2.0)  # everything scales with nas
    mdx = {label: i for i, label in enumerate(LABELS["mlp-reg"])}
    assert mlp[mdx["relu"], mdx["elu"]] == pytest.approx(0.2)
    assert mlp[mdx["logistic"], mdx["tanh"]] == pytest.approx(0.2)
    assert mlp[mdx["relu"], mdx["tanh"]] == pytest.approx(0.5)
    assert np.isinf(mlp[mdx["relu"], mdx["linear"]])


@pytest.mark.parametrize("family", FAMILIES)
def test_self_distance_zero_symmetry_and_bounds(family: str) -> None:
    nets = networks(family)
    for nas in (1.0, 2.5):
        d = OTMANN(nets[0].kind, non_assignment_penalty=nas).matrix(nets, list(nets))
        totals = np.array([g.masses.sum() for g in nets])
        assert np.all(np.abs(np.diagonal(d, axis1=1, axis2=2)) <= 1e-12 * 2 * totals)
        np.testing.assert_allclose(d, d.transpose(0, 2, 1), rtol=1e-9, atol=1e-9)
        normalised = d[1::2]
        assert normalised.min() >= -1e-12 and normalised.max() <= nas + 1e-12
        np.testing.assert_allclose(d[0::2] / (totals[:, None] + totals[None, :]), normalised, rtol=1e-12)
    # the symmetric fill (only i <= j solved) equals the full computation
    otmann = OTMANN(nets[0].kind)
    np.testing.assert_allclose(otmann.matrix(nets), otmann.matrix(nets, list(nets)), rtol=1e-9, atol=1e-9)


def test_pseudo_distance_zero_between_different_networks() -> None:
    """OTMANN is a pseudo-distance: dragonfly's cnn_1 splits cnn_2's middle conv3:16 into two parallel
    conv3:8 layers (same total mass, same path lengths), so the reference and we both give 0."""
    cnn_1, cnn_2 = networks("cnn")[:2]
    assert cnn_1 != cnn_2
    assert np.array(golden()["families"]["cnn"]["distances"])[:, 0, 1].max() == 0.0
    assert np.abs(OTMANN("cnn").pair(cnn_1, cnn_2)).max() <= 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_transport_plan_marginals(family: str) -> None:
    nets = networks(family)
    otmann = OTMANN(nets[0].kind)
    for g1, g2 in zip(nets, nets[1:] + nets[:1], strict=True):
        for k in range(len(DEFAULT_STRUCT_COEFFS)):
            t = otmann.transport(g1, g2, k)
            assert t.plan.min() >= 0
            np.testing.assert_allclose(t.plan.sum(axis=1), np.append(g1.masses, g2.masses.sum()), rtol=1e-9)
            np.testing.assert_allclose(t.plan.sum(axis=0), np.append(g2.masses, g1.masses.sum()), rtol=1e-9)
            assert t.cost[-1, -1] == 0 and np.all(t.cost[-1, :-1] == 1.0) and np.all(t.cost[:-1, -1] == 1.0)
            assert t.cost.max() <= REPLACE_INF_WITH
            assert t.plan[t.cost == REPLACE_INF_WITH].sum() == pytest.approx(0.0, abs=1e-9)
            np.testing.assert_allclose(
                [t.distance, t.normalised], otmann.pair(g1, g2)[2 * k : 2 * k + 2], rtol=1e-9
            )


@pytest.mark.parametrize("family", FAMILIES)
def test_invariant_to_layer_order(family: str) -> None:
    nets = networks(family)
    rng = np.random.default_rng(0)
    shuffled = [g.renumbered(list(rng.permutation(g.num_layers))) for g in nets]
    otmann = OTMANN(nets[0].kind)
    np.testing.assert_allclose(
        otmann.matrix(shuffled, nets), otmann.matrix(nets, list(nets)), rtol=1e-9, atol=1e-9
    )


def _chain(labels: list[str], units: list[int]) -> LayerGraph:
    layers = ["ip"] + [f"{label}:{u}<{i}" for i, (label, u) in enumerate(zip(labels, units, strict=True))]
    n = len(layers)
    return LayerGraph.parse("|".join(["mlp-reg", *layers, f"linear<{n - 1}", f"op<{n}"]))


def test_distance_grows_as_networks_diverge() -> None:
    base = _chain(["relu"] * 8, [32] * 8)
    relabelled = [_chain(["tanh"] * k + ["relu"] * (8 - k), [32] * 8) for k in range(9)]
    deeper = [_chain(["relu"] * (8 + k), [32] * (8 + k)) for k in range(0, 9, 2)]
    wider = [_chain(["relu"] * 8, [32 + 16 * k] * 8) for k in range(5)]
    otmann = OTMANN("mlp-reg")
    for family in (relabelled, deeper, wider):
        d = otmann.matrix([base], family)[:, 0, :]
        assert np.all(d[:, 0] == pytest.approx(0.0, abs=1e-6))
        assert np.all(np.diff(d, axis=1) > -1e-9), d  # never shrinks ...
        below_cap = (
            d[1::2, :-1] < 1.0 - 1e-9
        )  # ... and grows strictly until all mass goes unassigned (dbar = nas)
        assert np.all(np.diff(d[1::2], axis=1)[below_cap] > 1e-6), d
        assert np.all(d[1::2] <= 1.0 + 1e-12)
    # only the units change in `wider`: the structural coefficient does not matter there
    d = otmann.matrix([base], wider)[1::2, 0, :]
    np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), rtol=1e-9)
    # a larger structural coefficient weighs the same structural change more
    d = otmann.pair(base, deeper[-1])
    assert d[0] < d[2] < d[4] < d[6]


def test_wrong_inputs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="compares cnn networks, got a mlp-reg graph"):
        OTMANN("cnn").pair(networks("cnn")[0], networks("mlp-reg")[0])
    with pytest.raises(UsageError, match="one mislabel coefficient per structural coefficient"):
        OTMANN("cnn", mislabel_coeffs=(1.0,), struct_coeffs=(0.1, 0.2))
    with pytest.raises(UsageError, match="unknown NASBOT network kind"):
        OTMANN("rnn")


def test_direct_solver_call_equals_ot_emd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path calls POT's `emd_c` directly; `ot.emd` itself must give the same distances."""
    from nasrepro.methods.nasbot import otmann as module

    nets = networks("cnn")[6:10]
    fast = OTMANN("cnn").matrix(nets, list(nets))
    monkeypatch.setattr(module, "_emd_c", None)
    np.testing.assert_allclose(OTMANN("cnn").matrix(nets, list(nets)), fast, rtol=1e-12, atol=1e-9)
