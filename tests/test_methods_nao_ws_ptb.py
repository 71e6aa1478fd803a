"""NAO-WS on PTB: the recurrent-cell supernet's exact weight sharing, per-batch sampling, perplexity
scoring, and the smoke search end to end, deterministic per seed (`nasrepro.methods.nao.rnn_supernet`,
`ws_lm`, `ws_tasks`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.methods.nao.encoding import get_codec
from nasrepro.methods.nao.epd import EPD
from nasrepro.methods.nao.rnn_supernet import NAORnnSupernet
from nasrepro.methods.nao.ws_controller import ControllerSettings
from nasrepro.methods.nao.ws_lm import WSLanguageModelSearch
from nasrepro.methods.nao.ws_module import WSSettings
from nasrepro.spaces import get_space
from nasrepro.spaces.nao_rnn_cells import LMSize, RecurrentArch
from nasrepro.spaces.nao_rnn_net import CellLanguageModel
from nasrepro.tasks.ptb import BPTTWindows, batchify

SPACE = get_space("nao-rnn-cells-h32")
SIZE = LMSize(hidden=8)
VOCAB = 40


def overlapping_pair(rng: np.random.Generator) -> tuple[RecurrentArch, RecurrentArch]:
    """Two cells that agree on the even nodes and (almost surely) differ on some odd ones."""
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    mixed = tuple(x if i % 2 == 0 else y for i, (x, y) in enumerate(zip(a.nodes, b.nodes, strict=True)))
    return a, RecurrentArch(mixed)


def test_the_supernet_path_is_the_cell_with_its_slices_as_weights():
    torch.manual_seed(0)
    net = NAORnnSupernet(VOCAB, SIZE, include_s0=False).eval()
    arch = SPACE.sample(np.random.default_rng(0))
    cell = CellLanguageModel(arch, VOCAB, SIZE).eval()
    with torch.no_grad():
        cell.embedding.weight.copy_(net.embedding.weight)
        cell.decoder.bias.copy_(net.decoder.bias)
        cell.w0.copy_(net.w0)
        for i, (pred, act) in enumerate(arch.nodes):
            cell.ws[i].copy_(net.node_weight(i, pred, act))
    tokens = torch.randint(0, VOCAB, (6, 3))
    logits, hidden, _ = net(tokens, None, arch)
    expected, expected_hidden = cell(tokens)
    assert torch.allclose(logits, expected, atol=1e-6) and torch.allclose(hidden, expected_hidden, atol=1e-6)


def slice_rows(net: NAORnnSupernet, node: int, pred: int, act: str) -> slice:
    start = net.node_weight(node, pred, act).data_ptr() - net.ws[node].data_ptr()
    start //= net.ws[node].element_size() * net.ws[node].shape[1]
    return slice(start, start + net.nhid)


def test_two_sampled_cells_share_exactly_their_common_node_choices():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = NAORnnSupernet(VOCAB, SIZE)
    tokens, targets = torch.randint(0, VOCAB, (5, 4)), torch.randint(0, VOCAB, (5, 4))
    for _ in range(3):
        a, b = overlapping_pair(rng)
        common = {i for i in range(11) if a.nodes[i] == b.nodes[i]}
        assert common and len(common) < 11
        # a's loss reaches, in every node matrix, exactly the rows of a's (predecessor, activation)
        net.zero_grad(set_to_none=True)
        logits, _, _ = net(tokens, None, a)
        F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)).backward()
        for i, (pred, act) in enumerate(a.nodes):
            rows = net.ws[i].grad.abs().sum(1) > 0
            expected = torch.zeros_like(rows)
            expected[slice_rows(net, i, pred, act)] = True
            assert torch.equal(rows, expected), i
        # one SGD step on a changes, of b's node weights, exactly those of the common choices
        before = [net.node_weight(i, p, act).detach().clone() for i, (p, act) in enumerate(b.nodes)]
        torch.optim.SGD(net.parameters(), lr=0.5).step()
        changed = {
            i for i, (p, act) in enumerate(b.nodes) if not torch.equal(net.node_weight(i, p, act), before[i])
        }
        assert changed == common


def tiny_module(scoring: str = "faithful", sample_from: str = "pool") -> WSLanguageModelSearch:
    torch.manual_seed(0)
    pool = [SPACE.sample(np.random.default_rng(i)) for i in range(4)]
    stream = torch.randint(0, VOCAB, (400,))
    held_out = DataLoader(BPTTWindows(batchify(stream, 4), 5), batch_size=None, shuffle=True,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    settings = WSSettings(epochs=2, eval_epochs=(1, 2), sample_from=sample_from, scoring=scoring)
    codec = get_codec("ptb")
    epd = EPD(codec, hidden_size=16, tokens_per_step=2, mlp_hidden_size=16, mlp_layers=4, mlp_dropout=0.0)
    controller = ControllerSettings(new_archs=2, top_k=4, epd_epochs=1, max_eta=30.0)
    net = NAORnnSupernet(VOCAB, SIZE)
    return WSLanguageModelSearch(net, epd, SPACE, codec, pool, held_out, settings, controller, 0)


def test_each_batch_trains_a_cell_drawn_uniformly_from_the_pool_or_the_space():
    m = tiny_module()
    draws = [m.pool.index(m.sample_arch()) for _ in range(4000)]
    assert np.allclose(np.bincount(draws, minlength=4) / 4000, 0.25, atol=0.03)
    m = tiny_module(sample_from="space")
    cells = [m.sample_arch() for _ in range(2000)]
    assert all(SPACE.parse(str(c)) == c for c in cells)
    last = np.array([c.nodes[10][0] for c in cells])
    assert np.allclose(np.bincount(last, minlength=11) / 2000, 1 / 11, atol=0.03)


def manual_score(m: WSLanguageModelSearch, arch: RecurrentArch, windows) -> float:
    nll = count = 0.0
    m.supernet.eval()
    with torch.no_grad():
        for inputs, targets in windows:
            logits, _, _ = m.supernet(inputs, None, arch)
            nll += float(F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="sum"))
            count += targets.numel()
    m.supernet.train()
    return -nll / count


def test_scores_are_negative_held_out_cross_entropy_on_shared_or_fresh_windows():
    m = tiny_module("faithful")
    state = m.held_out.generator.get_state()
    scores = m.score(m.pool)
    m.held_out.generator.set_state(state)
    windows = m._batches(1)  # the round's one shared window
    assert np.allclose(scores, [manual_score(m, a, windows) for a in m.pool], atol=1e-6)
    assert all(-np.log(VOCAB) - 1 < s < 0 for s in scores)  # about uniform over the vocabulary at init

    m = tiny_module("as-released")
    state = m.held_out.generator.get_state()
    scores = m.score(m.pool[:1] * 3)  # one cell, three fresh random windows: three different scores
    assert len(set(np.round(scores, 6))) == 3
    m.held_out.generator.set_state(state)
    assert np.isclose(scores[0], manual_score(m, m.pool[0], m._batches(1)), atol=1e-6)


def test_a_training_step_carries_the_state_and_adds_tar():
    m = tiny_module()
    inputs, targets = torch.randint(0, VOCAB, (5, 4)), torch.randint(0, VOCAB, (5, 4))
    m.log = lambda *a, **k: None  # outside a Trainer
    m.on_train_epoch_start()
    assert m._hidden is None
    loss = m.training_step((inputs, targets), 0)
    assert m._hidden.shape == (1, 4, 8) and not m._hidden.requires_grad and torch.isfinite(loss)
    carried, sampler = m._hidden, m.sampler.get_state()
    m.tar_beta = 0.0
    torch.manual_seed(1)
    plain = m.training_step((inputs, targets), 1)
    m.tar_beta, m._hidden = 1e3, carried
    m.sampler.set_state(sampler)  # the same cell and the same dropout masks
    torch.manual_seed(1)
    assert m.training_step((inputs, targets), 1) > plain  # the TAR term is in the loss


CONFIG = {"epochs": 2, "eval_every": 1, "seed_archs": 5, "new_archs": 2, "top_k": 5, "epd_epochs": 2}


def search(tmp_path, data_root, name: str) -> dict:
    request = SearchRequest(method="nao-ws", task="ptb", seed=0, preset="smoke", data_dir=data_root,
                            out=tmp_path / name, wandb="disabled", measure=False, method_config=CONFIG)  # fmt: skip
    record, _ = run_search(request)
    return record


def test_smoke_search_writes_a_record_and_repeats_exactly_per_seed(tmp_path, data_root):
    record = search(tmp_path, data_root, "a")
    assert list((tmp_path / "a" / "runs" / "ptb" / "nao-ws").glob("*.json"))
    extra = record["method_extra"]
    assert record["space"]["name"] == "nao-rnn-cells-h32" and record["metric"] == "perplexity"
    assert [r["epoch"] for r in extra["rounds"]] == [1, 2]
    first = extra["rounds"][0]
    assert not first["failure"] and 1 <= first["generated"] <= 2 and first["random"] == 1
    assert np.isclose(first["ws_best_perplexity"], np.exp(-first["ws_best"]), rtol=1e-3)
    # the pool's best two re-ranked by perplexity (ascending), the winner trained by the evaluator
    perplexities = [p for _, p in extra["reranked"]]
    assert len(perplexities) == 2 and perplexities == sorted(perplexities)
    assert extra["final_queries"] == [record["best_arch"]] == [extra["reranked"][0][0]]
    assert np.isfinite(record["metrics"]["val"]) and record["metrics"]["val"] > 1
    assert extra["options"]["tar_beta"] == 1e-3 and extra["options"]["mlp_layers"] == 4

    again = search(tmp_path, data_root, "b")
    keep = ("rounds", "final_ranking_head", "reranked", "final_queries")
    assert {k: again["method_extra"][k] for k in keep} == {k: extra[k] for k in keep}
    assert again["metrics"]["val"] == record["metrics"]["val"]


def test_paper_settings_are_kept_as_config():
    from nasrepro.methods import get_method
    from nasrepro.methods.nao.ws_search import WS_PRESETS
    from nasrepro.tasks import get_task

    paper = WS_PRESETS.size("nao-rnn-cells", "paper")
    assert (paper.channels, paper.batch_size, paper.epochs, paper.eval_every) == (300, 256, 1000, 200)
    assert (paper.seed_archs, paper.new_archs, paper.top_k, paper.random_new) == (1000, 300, 100, 50)
    recipe = get_method("nao-ws")().final_recipe(get_task("ptb"), "paper")
    assert recipe["epochs"] == 4000 and recipe["batch_size"] == 64 and recipe["extra"]["bptt"] == 35
    assert get_method("nao-ws")().final_recipe(get_task("ptb"), "cpu") == {}
    assert dataclasses.asdict(get_space("nao-rnn-cells").lm)["dropout"] == 0.75
