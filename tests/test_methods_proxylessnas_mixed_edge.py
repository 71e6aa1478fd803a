"""ProxylessNAS mixed edge (binary gates, three gate modes) and the expected-cost objective.

Fact sheet, "What a faithful implementation must show", items 1 (a)-(f), 3 and 4, checked on a tiny edge
of small linear / conv candidates in float64 so gradients can be compared to autograd tightly.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from nasrepro.errors import DataError, UsageError
from nasrepro.methods.proxylessnas.cost import (
    REGULARIZERS,
    LatencyTable,
    RewardBaseline,
    expected_cost,
    latency_key,
    make_regularizer,
    measure_latency,
    reinforce_reward,
)
from nasrepro.methods.proxylessnas.mixed_edge import (
    GATE_MODES,
    AllPathsEdge,
    MixedEdge,
    architecture_parameters,
    weight_parameters,
)

MODES = sorted(GATE_MODES)
DIM = 5


@pytest.fixture(autouse=True)
def _double_precision():
    torch.set_num_threads(1)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _candidates(seed: int = 0) -> tuple[list[nn.Module], list[str]]:
    torch.manual_seed(seed)
    ops = [
        nn.Linear(DIM, DIM),
        nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh()),
        nn.Sequential(nn.Linear(DIM, 2 * DIM), nn.ReLU(), nn.Linear(2 * DIM, DIM)),
        nn.Sequential(nn.Unflatten(1, (1, DIM)), nn.Conv1d(1, 1, 3, padding=1), nn.Flatten()),
    ]
    return ops, ["lin", "lin_tanh", "mlp", "conv3"]


def _edge(mode: str, alpha: list[float] | None = None, zero: bool = False, seed: int = 0) -> MixedEdge:
    ops, names = _candidates(seed)
    if zero:
        ops, names = [nn.Identity(), *ops[:3]], ["zero", *names[:3]]
    edge = MixedEdge(ops, names, mode=mode)
    if alpha is not None:
        with torch.no_grad():
            edge.alpha.copy_(torch.tensor(alpha))
    return edge


def _loss(y: torch.Tensor) -> torch.Tensor:
    """A non-linear loss, so dL/dy depends on y (a linear one would hide wrong gate gradients)."""
    weights = torch.linspace(-1.0, 2.0, y.numel()).reshape(y.shape)
    return (torch.tanh(y) * weights).sum() + 0.5 * (y**2).mean()


def _x(seed: int = 1) -> torch.Tensor:
    return torch.randn(6, DIM, generator=torch.Generator().manual_seed(seed))


def _reference_gate_grad(edge: MixedEdge, x: torch.Tensor) -> torch.Tensor:
    """dL/dg_k by plain autograd: y = sum_k g_k o_k(x) over every candidate, all with grad, g one-hot."""
    gates = torch.zeros(len(edge.names), requires_grad=True)
    with torch.no_grad():
        gates[edge.active_index] = 1.0
    y = sum(gates[k] * op(x) for k, op in enumerate(edge.candidates) if edge.names[k] != "zero")
    (grad,) = torch.autograd.grad(_loss(y), gates)
    return grad


def _estimator_by_loops(gate_grad: torch.Tensor, alpha: torch.Tensor, idx: tuple[int, ...]) -> torch.Tensor:
    """sum_j dL/dg_j p_j (delta_ij - p_i) over `idx`, p = softmax(alpha[idx]), written as the double sum."""
    p = torch.softmax(alpha[list(idx)], 0)
    out = torch.zeros_like(alpha)
    for a, i in enumerate(idx):
        for b, j in enumerate(idx):
            out[i] += gate_grad[j] * p[b] * ((1.0 if a == b else 0.0) - p[a])
    return out


# --- (a) forward value ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_forward_equals_active_op_exactly(mode):
    edge, x = _edge(mode, [0.3, -0.2, 0.1, 0.0]), _x()
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(12):
        active = edge.sample_arch_paths(gen)
        seen.add(active)
        assert torch.equal(edge(x), edge.candidates[active](x))
        active = edge.sample_weight_path(gen)
        assert torch.equal(edge(x), edge.candidates[active](x))
    assert len(seen) > 1  # the samples really moved between paths
    assert torch.equal(edge.candidates[edge.use_argmax()](x), edge(x))


def test_forward_without_sample_is_a_usage_error():
    with pytest.raises(UsageError, match="sample"):
        _edge("two")(_x())


def test_bad_mode_and_names_are_usage_errors():
    ops, names = _candidates()
    with pytest.raises(UsageError, match="gate mode"):
        MixedEdge(ops, names, mode="three")
    with pytest.raises(UsageError, match="one name per candidate"):
        MixedEdge(ops, names[:2])
    with pytest.raises(UsageError, match="partner"):
        _edge("two").set_arch_paths(1, 1)


# --- (b) binary-gate gradient ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_gate_grad_is_inner_product_of_output_and_output_grad(mode):
    edge, x = _edge(mode), _x()
    n = len(edge.names)
    for active in range(n):
        partner = (active + 2) % n
        edge.set_arch_paths(active, partner)
        y = edge(x)
        y.retain_grad()
        _loss(y).backward()
        reference = _reference_gate_grad(edge, x)
        for k in range(n):
            if k in edge.gated_indices:
                inner = (edge.candidates[k](x) * y.grad).sum()  # <o_k(x), dL/dy>
                assert edge.gate_grad[k].item() == pytest.approx(inner.item(), rel=1e-10, abs=1e-12)
                assert edge.gate_grad[k].item() == pytest.approx(reference[k].item(), rel=1e-10, abs=1e-12)
            else:
                assert edge.gate_grad[k].item() == 0.0  # "two": unsampled gates carry no gradient
        assert len(edge.gated_indices) == (2 if mode == "two" else n)


@pytest.mark.parametrize("mode", MODES)
def test_input_and_active_weight_grads_match_plain_autograd(mode):
    """The gate machinery must not change the gradient that flows to x and the active path's weights."""
    edge = _edge(mode)
    edge.set_arch_paths(2, 0)
    x = _x().requires_grad_(True)
    _loss(edge(x)).backward()
    got_x, got_w = x.grad.clone(), [p.grad.clone() for p in edge.candidates[2].parameters()]
    x.grad = None
    for p in edge.candidates[2].parameters():
        p.grad = None
    _loss(edge.candidates[2](x)).backward()
    assert torch.allclose(got_x, x.grad, rtol=1e-12, atol=1e-14)
    for g, p in zip(got_w, edge.candidates[2].parameters(), strict=True):
        assert torch.allclose(g, p.grad, rtol=1e-12, atol=1e-14)


# --- (c) architecture gradient -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_alpha_grad_is_binaryconnect_estimator(mode):
    edge, x = _edge(mode, [0.4, -0.3, 0.2, -0.1]), _x()
    edge.set_arch_paths(1, 3)
    _loss(edge(x)).backward()
    assert edge.alpha.grad is None  # the loss reaches alpha only through the estimator
    edge.set_arch_grad()
    want = _estimator_by_loops(edge.gate_grad, edge.alpha.detach(), edge.gated_indices)
    assert torch.allclose(edge.alpha.grad, want, rtol=1e-12, atol=1e-15)
    if mode == "two":  # only the pair moves, and the pair-softmax estimator sums to 0 over the pair
        assert edge.alpha.grad[[0, 2]].abs().max().item() == 0.0
        assert edge.alpha.grad[[1, 3]].sum().item() == pytest.approx(0.0, abs=1e-14)


def _estimator_for(edge: MixedEdge, x: torch.Tensor, active: int, partner: int | None) -> torch.Tensor:
    edge.alpha.grad = None
    edge.set_arch_paths(active, partner)
    _loss(edge(x)).backward()
    edge.set_arch_grad()
    return edge.alpha.grad.clone()


def _brute_force_expectation(edge: MixedEdge, x: torch.Tensor) -> torch.Tensor:
    """E over the sampling distribution of each mode, by enumerating every outcome with its probability."""
    p = torch.softmax(edge.alpha.detach(), 0)
    n = len(edge.names)
    total = torch.zeros(n)
    if edge.mode != "two":
        for a in range(n):
            total += p[a] * _estimator_for(edge, x, a, None)
        return total
    for i, j in itertools.combinations(range(n), 2):
        # multinomial without replacement: P({i, j}) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j)
        pair = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
        for a, b in ((i, j), (j, i)):
            total += pair * p[a] / (p[a] + p[b]) * _estimator_for(edge, x, a, b)
    return total


@pytest.mark.parametrize("mode", MODES)
def test_alpha_grad_expectation_over_samples_matches_brute_force(mode):
    edge, x = _edge(mode, [0.8, -0.5, 0.3, -0.9]), _x()
    exact = _brute_force_expectation(edge, x)
    gen = torch.Generator().manual_seed(123)
    samples = []
    for _ in range(1500):
        edge.alpha.grad = None
        edge.sample_arch_paths(gen)
        _loss(edge(x)).backward()
        edge.set_arch_grad()
        samples.append(edge.alpha.grad.clone())
    stack = torch.stack(samples)
    mean, stderr = stack.mean(0), stack.std(0) / math.sqrt(len(samples))
    assert exact.abs().max() > 10 * stderr.max()  # the expectation is not trivially ~0
    assert ((mean - exact).abs() <= 4.5 * stderr + 1e-12).all(), (mean, exact, stderr)


# --- (d) "two"-mode rescaling --------------------------------------------------------------------------
def test_two_mode_rescaling_keeps_unsampled_probs_and_pair_mass():
    edge, x = _edge("two", [0.5, -0.4, 0.3, 0.1]), _x()
    opt = torch.optim.Adam([edge.alpha], lr=0.3, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(5)
    for _ in range(6):
        p_before = edge.probs.detach().clone()
        alpha_before = edge.alpha.detach().clone()
        opt.zero_grad()
        edge.sample_arch_paths(gen)
        _loss(edge(x)).backward()
        edge.set_arch_grad()
        opt.step()
        edge.rescale_pair()
        pair = list(edge.gated_indices)
        rest = [k for k in range(4) if k not in pair]
        p_after = edge.probs.detach()
        assert torch.allclose(p_after[rest], p_before[rest], rtol=1e-12, atol=0)
        assert p_after[pair].sum().item() == pytest.approx(p_before[pair].sum().item(), rel=1e-12)
        assert torch.equal(edge.alpha.detach()[rest], alpha_before[rest])
        assert not torch.allclose(p_after[pair], p_before[pair])  # the pair itself did move


def test_without_rescaling_unsampled_probs_drift():
    """The control for the test above: the rescaling is what keeps the unsampled paths still."""
    edge, x = _edge("two", [0.5, -0.4, 0.3, 0.1]), _x()
    opt = torch.optim.SGD([edge.alpha], lr=5.0)
    p_before = edge.probs.detach().clone()
    edge.set_arch_paths(0, 1)
    _loss(edge(x)).backward()
    edge.set_arch_grad()
    opt.step()
    assert not torch.allclose(edge.probs.detach()[[2, 3]], p_before[[2, 3]], rtol=1e-6, atol=0)


# --- (e) zero candidate --------------------------------------------------------------------------------
def _block(edge: MixedEdge, x: torch.Tensor) -> torch.Tensor:
    """The block protocol: None from the edge means the zero path is active, so return the input."""
    out = edge(x)
    return x if out is None else x + out


@pytest.mark.parametrize("mode", MODES)
def test_sampled_zero_gives_identity_and_no_alpha_update(mode):
    edge, x = _edge(mode, [0.2, 0.1, -0.1, 0.0], zero=True), _x()
    costs = [[0.0, 3.0, 5.0, 7.0]]
    edge.set_arch_paths(0, 2)
    assert edge.active_is_zero
    y = _block(edge, x)
    assert y is x
    lat = expected_cost([edge], costs)
    (0.1 * lat).backward()  # the latency term alone would give alpha a gradient ...
    assert edge.alpha.grad is not None and edge.alpha.grad.abs().max() > 0
    edge.set_arch_grad()
    assert edge.alpha.grad is None  # ... but a zero-active step updates nothing on this edge
    before = edge.alpha.detach().clone()
    opt = torch.optim.Adam([edge.alpha], lr=0.1)
    opt.step()
    edge.rescale_pair()
    assert torch.equal(edge.alpha.detach(), before)


@pytest.mark.parametrize("mode", MODES)
def test_inactive_zero_has_zero_gate_grad(mode):
    edge, x = _edge(mode, zero=True), _x()
    edge.set_arch_paths(2, 0)
    y = edge(x)
    assert torch.equal(y, edge.candidates[2](x))
    _loss(y).backward()
    assert edge.gate_grad[0].item() == 0.0
    edge.set_arch_grad()
    want = _estimator_by_loops(edge.gate_grad, edge.alpha.detach(), edge.gated_indices)
    assert torch.allclose(edge.alpha.grad, want, rtol=1e-12, atol=1e-15)


# --- (f) weight step: unsampled paths untouched by momentum and weight decay ------------------------------
def test_unsampled_paths_get_no_grad_so_sgd_leaves_them_bit_equal():
    edge, x = _edge("full_v2"), _x()
    opt = torch.optim.SGD(weight_parameters(edge), lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    assert all(p is not edge.alpha for p in weight_parameters(edge))
    # Give every path a momentum buffer, so a zero grad (instead of None) would still move it.
    _loss(sum(op(x) for op in edge.candidates)).backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        before = [[p.detach().clone() for p in op.parameters()] for op in edge.candidates]
        active = edge.sample_weight_path(gen)
        _loss(edge(x)).backward()
        opt.step()
        for k, op in enumerate(edge.candidates):
            for p, old in zip(op.parameters(), before[k], strict=True):
                if k == active:
                    assert p.grad is not None and not torch.equal(p.detach(), old)
                else:
                    assert p.grad is None and torch.equal(p.detach(), old)


def test_control_zeroed_grads_would_apply_momentum_and_decay():
    """Why grad must be None, not 0: SGD with momentum and weight decay moves a zero-grad parameter."""
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-2)
    p.grad = torch.ones(3)
    opt.step()
    before = p.detach().clone()
    p.grad = torch.zeros(3)
    opt.step()
    assert not torch.equal(p.detach(), before)


def test_arch_and_weight_parameters_split():
    edge = _edge("two")
    net = nn.Sequential(nn.Linear(DIM, DIM), edge)
    arch = architecture_parameters(net)
    weights = weight_parameters(net)
    assert len(arch) == 1 and arch[0] is edge.alpha
    assert len(weights) + 1 == len(list(net.parameters()))


def test_alpha_init_is_small_normal_and_argmax_is_chosen():
    ops, names = _candidates()
    torch.manual_seed(0)
    alphas = torch.stack([MixedEdge(ops, names).alpha.detach() for _ in range(200)])
    assert 0.7e-3 < alphas.std().item() < 1.3e-3 and abs(alphas.mean().item()) < 2e-4
    edge = _edge("two", [0.1, 0.9, -0.3, 0.2])
    assert edge.chosen() == 1 and edge.chosen_name() == "lin_tanh"


def test_sampled_log_prob_for_reinforce():
    edge = _edge("full_v2", [0.1, 0.9, -0.3, 0.2])
    active = edge.sample_weight_path(torch.Generator().manual_seed(0))
    lp = edge.sampled_log_prob()
    assert lp.item() == pytest.approx(torch.log_softmax(edge.alpha.detach(), 0)[active].item())
    lp.backward()
    onehot = torch.zeros(4)
    onehot[active] = 1
    assert torch.allclose(edge.alpha.grad, onehot - edge.probs.detach())  # d log p_a / d alpha


def test_all_paths_edge_is_softmax_weighted_sum():
    ops, names = _candidates()
    ops, names = [nn.Identity(), *ops], ["zero", *names]
    edge = AllPathsEdge(ops, names)
    with torch.no_grad():
        edge.alpha.copy_(torch.tensor([0.3, -0.2, 0.5, 0.0, 0.1]))
    x = _x()
    p = edge.probs.detach()
    want = sum(p[k] * ops[k](x) for k in range(1, 5))  # the zero path contributes 0, not x
    assert torch.allclose(edge(x), want, rtol=1e-12, atol=1e-14)
    assert edge.chosen() == 2 and edge.alpha in architecture_parameters(edge)


# --- expected cost ---------------------------------------------------------------------------------------
def test_expected_cost_by_hand_and_gradient_is_op_cost():
    e1, e2 = _edge("full_v2", [0.1, 0.2, 0.3, 0.4]), _edge("full", [0.0, -1.0, 1.0, 0.5])
    costs = [[1.0, 2.0, 4.0, 8.0], torch.tensor([3.0, 0.0, 6.0, 9.0])]
    p1, p2 = e1.probs.detach(), e2.probs.detach()
    want = sum(p1[j] * costs[0][j] for j in range(4)) + sum(p2[j] * costs[1][j] for j in range(4)) + 7.5
    q1, q2 = e1.cost_probs(), e2.cost_probs()
    q1.retain_grad()
    q2.retain_grad()
    total = sum((q * torch.as_tensor(c)).sum() for q, c in zip((q1, q2), costs, strict=True)) + 7.5
    got = expected_cost([e1, e2], costs, constant=7.5)
    assert got.item() == pytest.approx(float(want), rel=1e-12)
    total.backward()
    assert torch.allclose(q1.grad, torch.tensor(costs[0]))  # dE/dp_j = F(o_j)
    assert torch.allclose(q2.grad, costs[1])
    e1.alpha.grad = None
    expected_cost([e1], costs[:1]).backward()
    f = torch.tensor(costs[0])
    assert torch.allclose(e1.alpha.grad, p1 * (f - (p1 * f).sum()))  # chain rule through softmax


def test_expected_cost_in_two_mode_counts_only_the_sampled_pair():
    edge = _edge("two", [0.1, 0.2, 0.3, 0.4])
    edge.set_arch_paths(3, 1)
    pair_p = torch.softmax(edge.alpha.detach()[[3, 1]], 0)
    want = pair_p[0] * 8.0 + pair_p[1] * 2.0
    assert expected_cost([edge], [[1.0, 2.0, 4.0, 8.0]]).item() == pytest.approx(want.item(), rel=1e-12)
    edge.sample_weight_path()  # outside an architecture step E is over all of p
    full = (edge.probs.detach() * torch.tensor([1.0, 2.0, 4.0, 8.0])).sum()
    assert expected_cost([edge], [[1.0, 2.0, 4.0, 8.0]]).item() == pytest.approx(full.item(), rel=1e-12)


def test_latency_grad_is_added_to_estimator():
    edge, x = _edge("full_v2", [0.1, 0.2, 0.3, 0.4]), _x()
    edge.set_arch_paths(2)
    ce = _loss(edge(x))
    lat = expected_cost([edge], [[1.0, 2.0, 4.0, 8.0]])
    reg = make_regularizer("add#linear", ref=3.0)
    reg(ce, lat).backward()
    latency_part = edge.alpha.grad.clone()
    edge.set_arch_grad()
    est = _estimator_by_loops(edge.gate_grad, edge.alpha.detach(), edge.gated_indices)
    assert torch.allclose(edge.alpha.grad, latency_part + est, rtol=1e-12, atol=1e-15)


def test_expected_cost_shape_errors():
    with pytest.raises(UsageError, match="candidates"):
        expected_cost([_edge("two")], [[1.0, 2.0]])
    with pytest.raises(UsageError, match="cost vectors"):
        expected_cost([_edge("two")], [])


def test_regulariser_forms_by_hand():
    ce, lat = torch.tensor(1.7), torch.tensor(95.0)
    assert make_regularizer("add", lam=0.01)(ce, lat).item() == pytest.approx(1.7 + 0.95)
    assert make_regularizer("mul#log", ref=80.0)(ce, lat).item() == pytest.approx(
        0.2 * 1.7 * (math.log(95.0) / math.log(80.0)) ** 0.3
    )
    assert make_regularizer("add#linear", ref=80.0)(ce, lat).item() == pytest.approx(1.7 + 0.1 * 15.0 / 80.0)
    assert make_regularizer("mul#log", ref=80.0, alpha=1.0, beta=1.0)(ce, lat).item() == pytest.approx(
        1.7 * math.log(95.0) / math.log(80.0)
    )
    assert set(REGULARIZERS) == {"add", "mul#log", "add#linear"}


def test_regulariser_errors():
    with pytest.raises(UsageError, match="choose one of"):
        make_regularizer("mul#linear", ref=80.0)
    with pytest.raises(UsageError, match="lam"):
        make_regularizer("add")  # the paper gives no lambda2, so it must be chosen
    with pytest.raises(UsageError, match="ref > 1"):
        make_regularizer("mul#log", ref=0.08)
    with pytest.raises(UsageError, match="E\\[cost\\] > 1"):
        make_regularizer("mul#log", ref=80.0)(torch.tensor(1.0), torch.tensor(0.5))


# --- latency table -------------------------------------------------------------------------------------
def test_latency_key_matches_released_lut_format():
    key = latency_key("expanded_conv", (112, 112, 16), (56, 56, 24), expand=3, kernel=5, stride=2, idskip=0)
    assert key == "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0"
    assert latency_key("Conv", (224, 224, 3), (112, 112, 32)) == "Conv-input:224x224x3-output:112x112x32"
    with pytest.raises(UsageError, match="missing"):
        latency_key("expanded_conv", (7, 7, 320), (7, 7, 320), expand=6)


def test_latency_table_round_trip_and_missing_key(tmp_path):
    table = LatencyTable(meta={"device": "cpu:test", "batch_size": 1})
    key = latency_key("expanded_conv", (56, 56, 24), (56, 56, 24), expand=3, kernel=3, stride=1, idskip=1)
    table[key] = 1.25
    table["Conv-input:224x224x3-output:112x112x32"] = 4.08
    path = tmp_path / "lut" / "cpu.json"
    table.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cpu.json"]  # no temporary file left behind
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.meta["batch_size"] == 1
    assert json.loads(path.read_text())["entries"][key] == 1.25
    assert (
        loaded.lookup("expanded_conv", (56, 56, 24), (56, 56, 24), expand=3, kernel=3, stride=1, idskip=1)
        == 1.25
    )
    assert loaded.total([key, key]) == 2.5
    with pytest.raises(UsageError, match="kernel:7"):
        loaded.lookup("expanded_conv", (56, 56, 24), (56, 56, 24), expand=3, kernel=7, stride=1, idskip=1)
    with pytest.raises(UsageError, match="finite"):
        table["x"] = float("nan")


def test_latency_table_load_errors_and_released_lut(tmp_path):
    with pytest.raises(DataError, match="not found"):
        LatencyTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        LatencyTable.load(bad)
    released = {"Logits-input:7x7x1280-output:1000": {"mean": 0.31, "var": 0.01, "count": 50}}
    table = LatencyTable.from_released_lut(released)
    assert table["Logits-input:7x7x1280-output:1000"] == 0.31
    with pytest.raises(DataError, match="mean"):
        LatencyTable.from_released_lut({"Conv": {"var": 1.0}})


def test_measure_latency_records_batch_and_median():
    out = measure_latency(nn.Linear(8, 8), (1, 8), warmup=1, repeats=5)
    assert out["latency_ms"] > 0 and out["batch_size"] == 1 and out["repeats"] == 5
    assert out["device"].startswith("cpu")
    with pytest.raises(UsageError):
        measure_latency(nn.Linear(8, 8), (1, 8), repeats=0)


# --- REINFORCE (Proxyless-R) ----------------------------------------------------------------------------
def test_reinforce_reward_and_baselines():
    assert reinforce_reward(0.75, 100.0, 80.0) == pytest.approx(0.75 * (80.0 / 100.0) ** 0.1)
    assert reinforce_reward(0.75, 80.0, 80.0) == pytest.approx(0.75)
    quirk, ema = RewardBaseline(), RewardBaseline(released_quirk=False)
    assert quirk.update([0.5, 0.7]) == pytest.approx(0.6) and ema.update([0.6]) == pytest.approx(0.6)
    assert quirk.update([1.0]) == pytest.approx(0.6 + 0.99 * 0.4)  # 0.99 acts as the step size
    assert ema.update([1.0]) == pytest.approx(0.99 * 0.6 + 0.01 * 1.0)  # a standard EMA
    with pytest.raises(UsageError):
        quirk.update([])
