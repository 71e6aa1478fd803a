"""NAO-WS: the weight-sharing supernet, uniform per-batch sampling, scoring, controller rounds and a
smoke search end to end (`nasrepro.methods.nao.{supernet,ws_module,ws_controller,ws_search}`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.errors import UsageError
from nasrepro.methods import get_method
from nasrepro.methods.nao.encoding import get_codec
from nasrepro.methods.nao.epd import EPD
from nasrepro.methods.nao.supernet import NAOSupernet
from nasrepro.methods.nao.ws_controller import ControllerSettings, controller_round, generate
from nasrepro.methods.nao.ws_module import WSSearchModule, WSSettings
from nasrepro.spaces import get_space
from nasrepro.spaces.nao_cells import ConvArch
from nasrepro.tasks import get_task

SPACE = get_space("nao-cells-n1f8")
SEP = {0: "sep_conv_3x3", 1: "sep_conv_5x5"}


def expected_params(net: NAOSupernet, arch: ConvArch) -> set[str]:
    """The parameters `arch`'s path reads, written out from NAO_V1's sharing rule: always the stem,
    each cell's calibration and combination BN, the classifier; per cell, node, branch: the chosen
    separable convolution's weights *for the chosen input*, or the identity's factorized reduction
    of a previous cell's output in a reduction cell; per cell, the 1x1 combination slices of the
    unconsumed states and, in a reduction cell, the reductions of unconsumed inputs 0/1."""
    names = set()
    for name, _ in net.named_parameters():
        parts = name.split(".")
        if parts[0] in ("stem", "classifier") or parts[2] in ("calibrate", "combine_bn"):
            names.add(name)
            continue
        layer = int(parts[1])
        reduction = net.plan[layer]
        genome = arch.reduction if reduction else arch.normal
        used = {genome[j] for j in range(0, 20, 2)}
        if parts[2] == "nodes":
            node, branch, op_name, source = int(parts[3]), int(parts[4]), parts[5], int(parts[6])
            chosen_in, chosen_op = genome[4 * node + 2 * branch], genome[4 * node + 2 * branch + 1]
            wanted = SEP.get(chosen_op, "identity" if chosen_op == 4 else "pool")
            if op_name == wanted and source == chosen_in:
                names.add(name)
        elif parts[2] in ("combine", "reduce") and int(parts[3]) not in used:
            names.add(name)
    return names


def overlapping_pair(rng: np.random.Generator) -> tuple[ConvArch, ConvArch]:
    """Two architectures that agree on about half of their branches."""
    a = SPACE.sample_raw(rng)
    ints = [int(v) for v in str(a).split()]
    other = [int(v) for v in str(SPACE.sample_raw(rng)).split()]
    mixed = [o if (j // 2) % 2 else v for j, (v, o) in enumerate(zip(ints, other, strict=True))]
    return a, SPACE.parse(" ".join(map(str, mixed)))


def touched(net: NAOSupernet, arch: ConvArch, images: torch.Tensor, labels: torch.Tensor) -> set[str]:
    net.zero_grad(set_to_none=True)
    logits, _ = net(images, arch)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    return {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_two_sampled_archs_share_exactly_their_common_choices():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = NAOSupernet(layers=1, channels=8, drop_path=None)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for _ in range(3):
        a, b = overlapping_pair(rng)
        used_a, used_b = expected_params(net, a), expected_params(net, b)
        assert touched(net, a, images, labels) == used_a
        assert touched(net, b, images, labels) == used_b
        shared = used_a & used_b
        assert any(".nodes." in n for n in shared) and used_a - used_b and used_b - used_a

        # one SGD step on a's loss changes exactly a's parameters, hence of b's exactly the shared ones
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        touched(net, a, images, labels)
        torch.optim.SGD(net.parameters(), lr=0.1).step()
        changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
        assert changed == used_a
        assert changed & used_b == shared


def module(sample_from: str = "pool", scoring: str = "faithful", pool_size: int = 5, held_out: int = 64):
    torch.manual_seed(0)
    pool = [SPACE.sample(np.random.default_rng(i)) for i in range(pool_size)]
    data = TensorDataset(torch.randn(held_out, 3, 32, 32), torch.randint(0, 10, (held_out,)))
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    settings = WSSettings(epochs=2, eval_epochs=(1, 2), sample_from=sample_from, scoring=scoring)
    controller = ControllerSettings(new_archs=2, top_k=4, epd_epochs=1)
    epd = EPD(get_codec("nao-ws"), hidden_size=16, mlp_hidden_size=16)
    net = NAOSupernet(layers=1, channels=8)
    return WSSearchModule(net, epd, SPACE, get_codec("nao-ws"), pool, loader, settings, controller, seed=0)


def test_per_batch_sampling_is_uniform_over_the_pool_and_over_the_op_set():
    m = module("pool", pool_size=4)
    draws = [m.pool.index(m.sample_arch()) for _ in range(4000)]
    assert np.allclose(np.bincount(draws, minlength=4) / 4000, 0.25, atol=0.03)

    m = module("space")
    ints = np.array([[int(v) for v in str(m.sample_arch()).split()] for _ in range(3000)])
    for j, slot in enumerate(SPACE.slots()):
        counts = np.bincount(ints[:, j], minlength=max(slot) + 1)[list(slot)]
        assert counts.min() > 0, f"slot {j} never drew some of {list(slot)}"
        assert np.allclose(counts / len(ints), 1 / len(slot), atol=0.04), (j, counts)
    ops = ints[:, 1::2]
    assert set(np.unique(ops)) == {0, 1, 2, 3, 4}  # every op of the NAO-WS set, at every node

    # the seed pool's uniform draws cover the op set as well
    raw = np.array(
        [[int(v) for v in str(SPACE.sample_raw(np.random.default_rng(s))).split()] for s in range(500)]
    )
    assert np.allclose(np.bincount(raw[:, 1::2].ravel(), minlength=5) / raw[:, 1::2].size, 0.2, atol=0.02)


def test_scoring_uses_batch_statistics_on_shared_or_fresh_batches():
    m = module("pool", "faithful")
    bn = m.supernet.stem[1]
    running = bn.running_mean.clone()
    arch = m.pool[0]
    scores = m.score([arch, arch, m.pool[1]])
    assert scores[0] == scores[1]  # the same held-out batch for every architecture of a round
    assert torch.equal(bn.running_mean, running)  # batch statistics, running averages untouched
    assert m.supernet.training  # back in training mode
    m = module("pool", "as-released")
    scores = m.score([arch] * 6)
    assert len(set(scores)) > 1  # a fresh random batch per architecture (NAO_V1 child_valid)


def test_a_controller_round_generates_unseen_valid_architectures():
    m = module()
    ranked = m.pool
    scores = [0.5, 0.4, 0.3, 0.2, 0.1]
    new, info = controller_round(m.epd, m.codec, SPACE, ranked, scores, m.controller, seed=0)
    keys = {SPACE.key(a) for a in ranked}
    assert len(new) == 2 and not keys & {SPACE.key(a) for a in new}
    assert all(SPACE.parse(str(a)) == a for a in new)
    assert info["generated"] == 2 and info["last_eta"] >= 1 and not info["failure"]
    # de-duplication: what the first step size decodes is refused when it is already seen
    seeds = [m.codec.to_tokens(a) for a in ranked]
    wide = ControllerSettings(new_archs=5, top_k=5, epd_epochs=1, max_eta=1.0)
    first, _ = generate(m.epd, m.codec, SPACE, seeds, set(), wide)
    again, _ = generate(
        m.epd, m.codec, SPACE, seeds, {SPACE.key(m.codec.from_tokens(t)) for t in first}, wide
    )
    assert first and not again
    _, info = controller_round(m.epd, m.codec, SPACE, ranked, [float("nan")] * 5, m.controller, seed=0)
    assert "score 0 is nan" in info["failure"] and info["generated"] == 0  # reported, the search goes on


def test_controller_rounds_run_at_the_evaluation_points_and_renew_the_pool():
    import lightning as L

    m = module()
    data = TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(m, DataLoader(data, batch_size=16))
    first, last = m.rounds
    assert (first["epoch"], last["epoch"]) == (1, 2) and "new" not in last
    assert 1 <= len(first["new"]) <= 2
    final = [a for a, _ in m.final_ranking]
    assert len(final) == 5 and set(first["new"]) <= set(final)  # the worst were replaced by the new ones
    assert first["ws_top"] in final


def test_rerank_sorts_by_short_training_accuracy_with_a_seed_per_rank(monkeypatch):
    from types import SimpleNamespace

    from nasrepro.methods.nao import ws_rerank

    archs = [SPACE.sample(np.random.default_rng(i)) for i in range(4)]
    accuracy = {str(archs[0]): 20.0, str(archs[1]): 35.0, str(archs[2]): 20.0, str(archs[3]): 50.0}
    seeds = []

    def fake(run, search, datamodule, arch, spec, epochs, train_batches, eval_batches, seed):
        seeds.append(seed)
        return accuracy[str(arch)]

    monkeypatch.setattr(ws_rerank, "short_training", fake)
    spec = ws_rerank.RerankSpec(build=lambda a: None, recipe_changes={})
    ranked = ws_rerank.rerank(SimpleNamespace(seed=3), None, None, archs, spec, 1, None, None)
    assert [a for a, _ in ranked] == [archs[3], archs[1], archs[0], archs[2]]  # ties keep the WS order
    assert len(set(seeds)) == 4
    # a metric to minimise (PTB's perplexity) sorts ascending, ties still in the WS order
    spec = ws_rerank.RerankSpec(
        build=lambda a: None, recipe_changes={}, metric="val/perplexity", maximise=False
    )
    ranked = ws_rerank.rerank(SimpleNamespace(seed=3), None, None, archs, spec, 1, None, None)
    assert [a for a, _ in ranked] == [archs[0], archs[2], archs[1], archs[3]]


def test_refuses_other_spaces_and_tasks():
    method = get_method("nao-ws")
    assert "5-op NAO-WS cell only" in method.incompatibility(get_task("cifar10"), get_space("naonet-cells"))
    assert method.incompatibility(get_task("cifar10"), get_space("nao-cells")) is None
    with pytest.raises(UsageError, match="scoring must be one of"):
        WSSettings(epochs=1, eval_epochs=(1,), scoring="best").check()
    assert method().final_recipe(get_task("cifar10"), "paper")["epochs"] == 600
    assert method().final_recipe(get_task("cifar10"), "cpu") == {"aux_weight": 0.4, "drop_path": 0.2}


CONFIG = {"epochs": 3, "eval_every": 1, "train_batches": 2, "seed_archs": 5, "new_archs": 2, "top_k": 4,
          "epd_epochs": 2, "rerank_top": 2}  # fmt: skip


def test_smoke_search_end_to_end(tmp_path, data_root):
    request = SearchRequest(method="nao-ws", task="cifar10", seed=0, preset="smoke", data_dir=data_root,
                            out=tmp_path, wandb="disabled", measure=False, method_config=CONFIG)  # fmt: skip
    record, _ = run_search(request)
    extra = record["method_extra"]
    assert record["space"]["name"] == "nao-cells-n1f8"
    assert [r["epoch"] for r in extra["rounds"]] == [1, 2, 3]
    # each controller round generated (at most new_archs) unseen architectures into the pool
    assert all(1 <= r["generated"] <= 2 and not r["failure"] for r in extra["rounds"][:2])
    # the two best by shared weights re-ranked by a short training, the winner trained by the evaluator
    head = [SPACE.key(SPACE.parse(a)) for a, _ in extra["final_ranking_head"][:2]]
    assert sorted(SPACE.key(SPACE.parse(a)) for a, _ in extra["reranked"]) == sorted(head)
    accuracies = [acc for _, acc in extra["reranked"]]
    assert all(0 <= acc <= 100 for acc in accuracies) and accuracies == sorted(accuracies, reverse=True)
    assert record["search_cost"]["queries"] == 1
    assert (
        extra["final_queries"] == [record["best_arch"]] == [SPACE.key(SPACE.parse(extra["reranked"][0][0]))]
    )
    assert record["search_cost"]["method_overhead_seconds"] > 0
    assert record["config"]["method_config"]["scoring"] == "faithful"
