"""NAO's PTB recurrent-cell space and its DARTS-style language model (`nasrepro.spaces.nao_rnn_cells`,
`nasrepro.spaces.nao_rnn_net`): token round trips, the paper's cells, the cell's equations, the LM's
shapes, parameter count and perplexity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasrepro.errors import UsageError
from nasrepro.methods import get_method
from nasrepro.methods.nao.encoding import get_codec
from nasrepro.spaces import get_space
from nasrepro.spaces.nao_rnn_cells import (
    NAO_PTB_CELL,
    NAO_WS_PTB_CELL,
    PAPER_CELLS,
    RNN_STEPS,
    LMSize,
    parse_nao_ws,
)
from nasrepro.spaces.nao_rnn_net import CellLanguageModel
from nasrepro.tasks import get_task

SPACE = get_space("nao-rnn-cells-h32")
CODEC = get_codec("ptb")


def test_sampled_cells_round_trip_through_strings_tokens_and_fields():
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = SPACE.sample(rng)
        assert SPACE.parse(str(arch)) == arch and SPACE.key(arch) == str(arch)
        tokens = CODEC.to_tokens(arch)
        assert len(tokens) == 22 and CODEC.from_tokens(tokens) == arch
        assert SPACE.decode(SPACE.encode(arch)) == arch
        assert all(0 <= p <= i for i, (p, _) in enumerate(arch.nodes))
    # every predecessor and activation value is drawn
    preds = np.array([[p for p, _ in SPACE.sample(rng).nodes] for _ in range(2000)])
    assert set(preds[:, 10]) == set(range(11)) and set(preds[:, 0]) == {0}
    assert SPACE.size() == math.factorial(11) * 4**11


def test_mutation_changes_exactly_one_integer():
    rng = np.random.default_rng(1)
    for _ in range(200):
        parent = SPACE.sample(rng)
        child = SPACE.mutate(parent, rng)
        diff = [a != b for a, b in zip(str(parent).split(), str(child).split(), strict=True)]
        assert sum(diff) == 1 and not diff[0]  # node 0's predecessor has no alternative


def test_the_paper_cells_parse_with_the_numbering_of_the_code_that_trained_them():
    nao = SPACE.parse(NAO_PTB_CELL)
    assert nao == PAPER_CELLS["nao"] and str(nao) == NAO_PTB_CELL
    assert nao.nodes[3] == (3, "tanh") and nao.nodes[10] == (1, "identity")  # NAO: 2 = identity
    ws = PAPER_CELLS["nao-ws"]
    assert ws == parse_nao_ws(NAO_WS_PTB_CELL)
    # NAO-WS/rnn/model.py: 2 = sigmoid, 3 = identity, so node 2 "2 2" is a sigmoid node
    assert ws.nodes[2] == (2, "sigmoid") and ws.nodes[8] == (8, "sigmoid") and ws.nodes[9] == (1, "tanh")
    assert str(ws) != NAO_WS_PTB_CELL and SPACE.parse(str(ws)) == ws
    assert SPACE.parse(NAO_WS_PTB_CELL) != ws  # read with NAO's numbering it is another cell


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 1 2 1" + " 0 1" * 9, r"item 2: expected a predecessor 0-1 of node 1, got 2"),
        ("0 4" + " 0 1" * 10, r"item 1: expected an activation id 0-3"),
        ("0 1", "expected 22 integers, got 2"),
    ],
)
def test_bad_strings_name_the_item(text, message):
    with pytest.raises(UsageError, match=message):
        SPACE.parse(text)


def test_random_search_and_evolution_accept_the_space():
    task = get_task("ptb")
    for name in ("random", "evolution", "nao-ws"):
        assert get_method(name).incompatibility(task, SPACE) is None, name
    assert "recurrent cell only" in get_method("nao-ws").incompatibility(task, get_space("nao-cells-n1f8"))
    assert "5-op NAO-WS cell" in get_method("nao-ws").incompatibility(get_task("cifar10"), SPACE)


def hand_step(model: CellLanguageModel, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """DARTS Appendix A.1.2 written out: s0 from [x, h] W0, then each node's highway update."""
    n = model.nhid
    ch = torch.cat([x, h], -1) @ model.w0
    s0 = h + torch.sigmoid(ch[:, :n]) * (torch.tanh(ch[:, n:]) - h)
    acts = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v, "sigmoid": torch.sigmoid}
    states = [s0]
    for (pred, act), w in zip(model.arch.nodes, model.ws, strict=True):
        out = states[pred] @ w
        states.append(states[pred] + torch.sigmoid(out[:, :n]) * (acts[act](out[:, n:]) - states[pred]))
    return sum(states[1:]) / RNN_STEPS  # the mean of nodes 1..11 (NAO/rnn/utils.py concat)


def test_the_cell_computes_the_highway_equations():
    torch.manual_seed(0)
    model = CellLanguageModel(PAPER_CELLS["nao-ws"], 50, LMSize(hidden=8)).eval()
    x, h = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(model.step(x, h, None, None), hand_step(model, x, h), atol=1e-6)
    tokens = torch.randint(0, 50, (4, 3))
    logits, hidden = model(tokens)
    state = torch.zeros(3, 8)
    for t in range(4):
        state = hand_step(model, model.embedding(tokens[t]), state)
    assert torch.allclose(hidden[0], state, atol=1e-5)
    assert torch.allclose(logits[-1], state @ model.embedding.weight.T + model.decoder.bias, atol=1e-5)


def test_language_model_shapes_gradients_and_finite_perplexity():
    torch.manual_seed(0)
    model = SPACE.to_model(SPACE.sample(np.random.default_rng(3)), get_task("ptb")).train()
    tokens = torch.randint(0, 10_000, (5, 2))
    logits, hidden = model(tokens)
    assert logits.shape == (5, 2, 10_000) and hidden.shape == (1, 2, 32)
    loss = F.cross_entropy(logits.reshape(-1, 10_000), torch.randint(0, 10_000, (10,)))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.decoder.weight is model.embedding.weight  # tied
    assert math.isfinite(math.exp(loss.item())) and math.exp(loss.item()) > 1_000  # ~ vocabulary at init
    logits2, _ = model(tokens[:2], hidden.detach())  # the state carries on
    assert logits2.shape == (2, 2, 10_000)


def test_the_paper_model_has_about_27m_parameters():
    """emb = nhid = 850 (``train_ptb_final.sh``): V H + (2H)^2 + 11 H 2H + V, the paper's ~27M."""
    h, v = 850, 10_000
    model = get_space("nao-rnn-cells").to_model(NAO_PTB_CELL, get_task("ptb"))
    assert sum(p.numel() for p in model.parameters()) == v * h + 4 * h * h + 11 * 2 * h * h + v == 27_295_000
