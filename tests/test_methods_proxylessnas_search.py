"""ProxylessNAS search: supernets, the alternating loop (Sec. 3.2), REINFORCE, and the method end to end."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.errors import UsageError
from nasrepro.methods.proxylessnas.presets import SEARCH_PRESETS
from nasrepro.methods.proxylessnas.search import (
    ProxylessConfig,
    ProxylessNAS,
    build_objective,
    resolve_settings,
)
from nasrepro.methods.proxylessnas.search_module import ArchObjective, ProxylessSearchModule, SearchSettings
from nasrepro.methods.proxylessnas.spaces import CIFAR_SPACE, MBConvSpaceConfig, ProxylessSpace
from nasrepro.methods.proxylessnas.supernet import MBConvSupernet, NB201Supernet
from nasrepro.spaces.nasbench201 import OP_NAMES, NB201Arch, NB201Space

#: a tiny MBConv space with the CIFAR geometry rules (zero on stride-1 equal-width blocks)
TINY = MBConvSpaceConfig(
    name="tiny", input_size=16, stem_width=8, first_width=8, widths=(8, 16), depths=(2, 2), strides=(1, 2),
    head_width=16, stem_stride=1,
)  # fmt: skip


def loader(n: int = 32, batch: int = 8, size: int = 16, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    data = TensorDataset(
        torch.randn(n, 3, size, size, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    )
    return DataLoader(data, batch_size=batch, shuffle=False)


def module_for(
    net, algorithm: str = "grad", warmup: int = 0, epochs: int = 2, memory: bool = False
) -> ProxylessSearchModule:
    settings = SearchSettings(
        algorithm=algorithm, warmup_epochs=warmup, epochs=epochs, arch_update_every=2, rl_batch_size=3,
        rl_updates_per_epoch=2, measure_memory=memory,
    )  # fmt: skip
    costs = net.edge_costs("flops")
    objective = ArchObjective(
        costs, "mul#log", {"ref": costs.arch_cost(net.chosen())}, costs.arch_cost(net.chosen())
    )
    return ProxylessSearchModule(net, settings, objective, loader(seed=1))


def fit(module: ProxylessSearchModule, batches: int = 4) -> None:
    trainer = L.Trainer(
        max_epochs=module.settings.total_epochs, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_train_batches=batches, limit_val_batches=0, deterministic=True,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader(batch=8))


def alphas(net) -> list[torch.Tensor]:
    return [a.detach().clone() for a in net.arch_parameters()]


def weights(net) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.weight_parameters()]


@pytest.mark.parametrize("mode", ["two", "full_v2"])
def test_weight_step_leaves_alpha_and_unsampled_paths_unchanged(mode: str) -> None:
    torch.manual_seed(0)
    net = MBConvSupernet(TINY, 10, mode=mode)
    module = module_for(net)
    w_opt, _ = module.configure_optimizers()
    images, labels = next(iter(loader()))
    module.weight_step((images, labels), w_opt)  # momentum buffers now exist for the first sample
    before_a, before_w = alphas(net), {id(p): p.detach().clone() for p in net.weight_parameters()}
    module.weight_step((images, labels), w_opt)
    assert all(torch.equal(a, b) for a, b in zip(before_a, alphas(net), strict=True))
    for edge in net.leaders():
        for k, op in enumerate(edge.candidates):
            changed = any(not torch.equal(before_w[id(p)], p) for p in op.parameters())
            if k != edge.active_index:  # no grad -> no momentum / weight-decay step
                assert not changed, f"unsampled path {edge.names[k]} was updated"
            elif edge.names[k] != "zero":
                assert changed


@pytest.mark.parametrize("mode", ["two", "full_v2"])
def test_arch_step_changes_only_alphas_and_skips_zero_active_edges(mode: str) -> None:
    torch.manual_seed(1)
    net = MBConvSupernet(TINY, 10, mode=mode)
    module = module_for(net)
    _, a_opt = module.configure_optimizers()
    changed_any = False
    for _ in range(4):
        before_a, before_w = alphas(net), weights(net)
        module.arch_step(a_opt)
        assert all(torch.equal(a, b) for a, b in zip(before_w, weights(net), strict=True))
        for edge, old in zip(net.leaders(), before_a, strict=True):
            moved = not torch.equal(old, edge.alpha.detach())
            if edge.active_is_zero:
                assert not moved  # released set_arch_param_grad: no update on that edge
            changed_any |= moved
            if mode == "two" and moved:  # rescaling keeps the unsampled probabilities
                p_old, p_new = torch.softmax(old, 0), edge.probs.detach()
                rest = [k for k in range(len(old)) if k not in edge.gated_indices]
                assert torch.allclose(p_old[rest], p_new[rest], atol=1e-6)
    assert changed_any


@pytest.mark.parametrize("mode", ["two", "full_v2"])
def test_frozen_weights_give_the_same_alpha_gradient_and_no_weight_gradient(mode: str) -> None:
    """The arch step skips dL/dW (`Supernet.weights_frozen`); dL/dalpha must not change."""
    torch.manual_seed(2)
    net = MBConvSupernet(TINY, 10, mode=mode)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))

    def alpha_grads(frozen: bool) -> list[torch.Tensor]:
        for edge in net.leaders():
            n = len(edge.names)
            edge.set_arch_paths(1, 2 % n if mode == "two" else None)
            edge.alpha.grad = None
        net.zero_grad(set_to_none=True)
        if frozen:
            with net.weights_frozen():
                torch.nn.functional.cross_entropy(net(x), y).backward()
        else:
            torch.nn.functional.cross_entropy(net(x), y).backward()
        net.set_arch_grads()
        return [edge.alpha.grad.clone() for edge in net.leaders()]

    reference = alpha_grads(frozen=False)
    assert any(p.grad is not None for p in net.weight_parameters())
    got = alpha_grads(frozen=True)
    assert all(p.grad is None and p.requires_grad for p in net.weight_parameters())
    for a, b in zip(reference, got, strict=True):
        torch.testing.assert_close(a, b)
    assert any(g.abs().sum() > 0 for g in got)


def test_warmup_and_joint_epoch_zero_freeze_alpha_then_search_moves_it() -> None:
    torch.manual_seed(2)
    net = NB201Supernet(C=4, N=1, input_size=16)
    start = alphas(net)
    module = module_for(net, warmup=1, epochs=1)  # warm-up epoch + joint epoch 0: no arch step
    fit(module)
    assert all(torch.equal(a, b) for a, b in zip(start, alphas(net), strict=True))
    assert [row["arch_steps"] for row in module.epoch_log] == [0, 0]
    module = module_for(net, warmup=0, epochs=2, memory=True)  # joint epoch 1: arch steps after batches 2, 4
    fit(module)
    assert [row["arch_steps"] for row in module.epoch_log] == [0, 2]
    assert any(not torch.equal(a, b) for a, b in zip(start, alphas(net), strict=True))
    row = module.epoch_log[-1]
    for key in ("entropy", "derived_arch", "expected_cost", "derived_cost", "train_acc", "derived_val_acc"):
        assert row[key] is not None
    assert row["weight_step_ms"] > 0 and row["arch_step_ms"] > 0
    assert row["weight_memory_mb"] > 0 and row["arch_memory_mb"] > 0
    assert row["derived_arch"] == str(net.derive())
    assert set(row["probs"]) == set(net.group_names)


def test_nb201_alphas_are_shared_and_samples_tied_across_cells() -> None:
    net = NB201Supernet(C=4, N=2, input_size=16)
    assert len(net.arch_parameters()) == 6
    assert all(len(group) == 3 * 2 for group in net.groups)  # 3 stages x N cells
    for sample in (net.sample_weight_paths, net.sample_arch_paths):
        sample()
        for group in net.groups:
            assert len({edge.active_index for edge in group}) == 1
            assert all(edge.alpha is group[0].alpha for edge in group)
    # the tied estimator is the sum of the per-cell estimators (Eq. (4) is linear in dL/dg)
    net.sample_arch_paths()
    net(torch.randn(4, 3, 16, 16)).sum().backward()
    group = net.groups[3]
    p = group[0].probs.detach()
    expected = sum(edge.gate_grad * p - p * (edge.gate_grad * p).sum() for edge in group)
    net.set_arch_grads()
    assert torch.allclose(group[0].alpha.grad, expected, atol=1e-5)


def test_derive_gives_the_canonical_argmax_architecture() -> None:
    net = MBConvSupernet(CIFAR_SPACE, 10)
    space = ProxylessSpace(CIFAR_SPACE)
    want = "3E3,Z|5E6,7E3|7E6,Z|3E6,5E3|5E3,Z|7E3"
    with torch.no_grad():
        for edge, code in zip(net.leaders(), space.parse(want).ops, strict=True):
            edge.alpha.zero_()
            edge.alpha[_index(edge, code)] = 1.0
    derived = net.derive()
    assert str(derived) == want and space.canonical(derived) == derived
    nb = NB201Supernet(C=4, N=1)
    with torch.no_grad():
        for edge, op in zip(
            nb.leaders(),
            ("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "none"),
            strict=True,
        ):
            edge.alpha.zero_()
            edge.alpha[OP_NAMES.index(op)] = 1.0
    assert nb.derive() == NB201Arch(
        ("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "none")
    )


def _index(edge, code: str) -> int:
    from nasrepro.methods.proxylessnas.blocks import candidate_op

    return edge.names.index(candidate_op(code).name)


def test_costs_match_the_standalone_network() -> None:
    """E[cost] of a one-hot alpha = the FLOPs of the derived standalone network (fixed + chosen ops)."""
    from nasrepro.harness.metrics import count_flops

    net = MBConvSupernet(TINY, 10)
    costs = net.edge_costs("flops")
    space = ProxylessSpace(TINY)
    arch = net.derive()
    model = space.to_model(arch, type("T", (), {"num_classes": 10})())
    macs = count_flops(model, (torch.zeros(1, 3, 16, 16),))["macs"]
    assert costs.arch_cost(space.encode(arch)) == pytest.approx(macs, rel=1e-6)


def test_reinforce_updates_alpha_and_records_rewards(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    net = NB201Supernet(C=4, N=1, input_size=16)
    module = module_for(net, algorithm="rl", epochs=2)
    fit(module)  # the loop runs REINFORCE updates in joint epoch 1
    assert module.epoch_log[-1]["mean_reward"] is not None and module.epoch_log[-1]["arch_steps"] == 2
    # On random data every sample may score the same accuracy (zero advantage); a reward that depends on
    # the sampled cell's cost checks the update itself: mean_j (R_j - b) grad(-log p_j), then Adam.
    import nasrepro.methods.proxylessnas.search_module as sm

    monkeypatch.setattr(sm, "reinforce_reward", lambda acc, cost, ref, tradeoff: ref / cost)
    module.baseline.value = None
    _, a_opt = module.configure_optimizers()
    start = alphas(net)
    rewards = module.rl_step(a_opt)
    assert len(rewards) == module.settings.rl_batch_size and len(set(rewards)) > 1
    assert module.baseline.value == pytest.approx(sum(rewards) / len(rewards))
    assert any(not torch.equal(a, b) for a, b in zip(start, alphas(net), strict=True))


def test_same_seed_same_search() -> None:
    def run() -> tuple[str, list[list[float]]]:
        L.seed_everything(7, verbose=False)
        net = MBConvSupernet(TINY, 10, mode="two")
        fit(module_for(net, epochs=2))
        return str(net.derive()), net.probabilities()

    assert run() == run()


def test_columns_resolve_and_bad_options_are_usage_errors() -> None:
    budget = SEARCH_PRESETS[("mbconv", "smoke")]
    settings, mode, reg = resolve_settings(ProxylessConfig(column="paper"), budget)
    assert (settings.column, mode, reg) == ("paper", "two", "add")
    settings, mode, reg = resolve_settings(ProxylessConfig(), budget)
    assert (settings.column, mode, reg, settings.arch_betas) == ("code", "full_v2", "mul#log", (0.0, 0.999))
    with pytest.raises(UsageError):
        resolve_settings(ProxylessConfig(column="nope"), budget)
    with pytest.raises(UsageError):
        build_objective(ProxylessConfig(cost="latency"), NB201Supernet(C=4, N=1), None)
    objective = build_objective(ProxylessConfig(), NB201Supernet(C=4, N=1), "add")
    assert objective.params is not None and objective.params["lam"] == pytest.approx(0.1 / objective.ref)


def test_default_spaces_and_refused_combinations(toy_task, toy_space) -> None:
    from nasrepro.app.resolve import resolve_search
    from nasrepro.tasks import get_task

    assert [ProxylessNAS.default_space_for(t) for t in ("cifar10", "imagenet", "nasbench201/cifar100")] == [
        "proxyless-cifar", "proxyless-imagenet", "nasbench201",
    ]  # fmt: skip
    cifar10, nb201 = get_task("cifar10"), get_task("nasbench201/cifar10")
    assert ProxylessNAS.incompatibility(cifar10, ProxylessSpace(CIFAR_SPACE)) is None
    assert ProxylessNAS.incompatibility(nb201, NB201Space()) is None
    assert "supernets for" in ProxylessNAS.incompatibility(toy_task, toy_space)
    assert "own images" in ProxylessNAS.incompatibility(nb201, ProxylessSpace(CIFAR_SPACE))
    assert "nasbench201/cifar10 only" in ProxylessNAS.incompatibility(
        get_task("nasbench201/cifar100"), NB201Space()
    )
    with pytest.raises(UsageError, match=r"it runs on: cifar10 \(proxyless-cifar\), imagenet"):
        resolve_search("proxylessnas", "nasbench201/cifar100", None, "smoke", None, {}, None)


def test_method_end_to_end_on_nasbench201(data_root: Path, tmp_path: Path) -> None:
    record, _ = run_search(
        SearchRequest(
            method="proxylessnas", task="nasbench201/cifar10", preset="smoke", budget=1, wandb="disabled",
            measure=False, data_dir=data_root, out=tmp_path,
        )
    )  # fmt: skip
    assert record["search_cost"]["queries"] == 1 and len(record["history"]) == 1
    assert 0 < record["metrics"]["val"] <= 100
    NB201Arch.parse(record["best_arch"])


def test_method_end_to_end_on_cifar10(data_root: Path, tmp_path: Path) -> None:
    record, _ = run_search(
        SearchRequest(
            method="proxylessnas", task="cifar10", preset="smoke", budget=1,  # space: the method's default
            wandb="disabled", measure=False, data_dir=data_root, out=tmp_path,
            method_config={
                "column": "paper", "cost": "latency", "latency_warmup": 0, "latency_repeats": 1,
                "latency_rounds": 1, "latency_check_n": 2,
            },
        )
    )  # fmt: skip
    assert record["search_cost"]["queries"] == 1 and record["space"]["name"] == "proxyless-cifar"
    assert record["search_cost"]["method_overhead_seconds"] == pytest.approx(
        record["method_extra"]["supernet_seconds"], abs=1e-5
    )
    ProxylessSpace(CIFAR_SPACE).parse(record["best_arch"])
    assert record["config"]["method_config"]["column"] == "paper"
    # one latency path: the table was built by build-lut's code on the trainer's device and checked
    lut = record["method_extra"]["latency_table"]
    assert lut["settings"]["device_type"] == "cpu" and lut["settings"]["repeats"] == 1
    assert lut["settings"]["threads"] == torch.get_num_threads() and lut["check"]["summary"]["n"] == 2
    assert record["method_extra"]["cost_unit"] == "ms"


def test_darts_style_supernet_runs_the_same_loop() -> None:
    torch.manual_seed(4)
    net = MBConvSupernet(TINY, 10, edge="all")
    start = alphas(net)
    fit(module_for(net, epochs=2))
    assert any(not torch.equal(a, b) for a, b in zip(start, alphas(net), strict=True))


@pytest.mark.parametrize("mode", ["two", "full_v2"])
def test_arch_step_tensors_live_on_the_supernets_device(mode: str) -> None:
    """Alphas, gates, cost look-ups, the expected cost and the alpha gradients all follow the supernet to
    its device (here `meta`: no GPU needed; sampling itself reads indices to the host, as on CUDA)."""
    net = MBConvSupernet(TINY, 10, mode=mode)
    costs = net.edge_costs("flops")
    net.to("meta")
    for edge in net.leaders():
        edge.set_arch_paths(1, 0 if mode == "two" else None)
    device = torch.device("meta")
    assert all(e.binary_gates.device == device for e in net.leaders())
    assert all(t.device == device for t in net.cost_tensors(costs))
    with net.weights_frozen():
        ce = torch.nn.functional.cross_entropy(
            net(torch.zeros(2, 3, 16, 16, device=device)), torch.zeros(2, dtype=torch.long, device=device)
        )
        expected = net.expected_cost(costs)
        assert expected.device == device
        (ce + 1e-9 * expected).backward()
        net.set_arch_grads()
    assert all(a.grad is not None and a.grad.device == device for a in net.arch_parameters())
