"""NAS-Bench-Graph's network with sparse raw features is the same network: same parameters, same
outputs and gradients without dropout, the same dropout law with it (nasrepro/spaces/sparse_inputs.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasrepro.spaces.nasbench_graph import GraphArch
from nasrepro.spaces.nasbench_graph_net import GraphDAGNet
from nasrepro.spaces.sparse_inputs import MAX_DENSITY, SparseFeatures

OPS = ("gcn", "gat", "gin", "cheb", "sage", "arma", "graph", "fc")
#: linear layers reading the raw features, per operation (ARMA multiplies its own parameters)
INPUT_LINEARS = {"gcn": 1, "gat": 1, "gin": 1, "cheb": 2, "sage": 2, "arma": 0, "graph": 2, "fc": 1}
IN_DIM = 120


def bag_of_words(n: int = 40, density: float = 0.03, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, IN_DIM, generator=g) < density).float()
    src = torch.randint(0, n, (4 * n,), generator=g)
    dst = torch.randint(0, n, (4 * n,), generator=g)
    return x, torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])


def pair(arch: GraphArch, dropout: float = 0.0, num_pre: int = 0) -> tuple[GraphDAGNet, GraphDAGNet]:
    nets = []
    for sparse in (False, True):
        torch.manual_seed(0)
        nets.append(
            GraphDAGNet(arch, IN_DIM, 5, dim=16, dropout=dropout, num_pre=num_pre, sparse_inputs=sparse)
        )
    return nets[0], nets[1]


@pytest.mark.parametrize("op", OPS)
def test_sparse_inputs_change_nothing_but_the_arithmetic(op):
    """Every operation reading the raw features (node 1 and node 3 read input 0), in both modes:
    outputs and every gradient equal the dense network's up to float rounding."""
    arch = GraphArch((0, 1, 0, 3), (op, "gcn", op, "fc"))
    dense, sparse = pair(arch)
    assert dense.state_dict().keys() == sparse.state_dict().keys()
    x, edges = bag_of_words()
    swapped = sum(type(m).__name__.startswith("SparseInput") for m in sparse.modules())
    assert swapped == 2 * INPUT_LINEARS[op]  # the sparse path is really taken where it can be
    for train in (True, False):
        dense.train(train)
        sparse.train(train)
        out_d, out_s = dense(x, edges), sparse(x, edges)
        torch.testing.assert_close(out_s, out_d, rtol=1e-5, atol=1e-5)
        if train:
            out_d.square().sum().backward()
            out_s.square().sum().backward()
            for (name, p_d), p_s in zip(dense.named_parameters(), sparse.parameters(), strict=True):
                assert (p_d.grad is None) == (p_s.grad is None), name
                if p_d.grad is not None:
                    torch.testing.assert_close(p_s.grad, p_d.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_a_preprocessing_layer_reads_the_sparse_features_too():
    dense, sparse = pair(GraphArch((0, 1, 2, 3), ("gcn", "sage", "fc", "gat")), num_pre=1)
    assert type(sparse.pre[0]).__name__ == "SparseInputLinear"
    x, edges = bag_of_words()
    torch.testing.assert_close(sparse(x, edges), dense(x, edges), rtol=1e-5, atol=1e-5)


def test_the_dropout_keeps_the_dense_law_on_the_non_zero_features():
    """Zeros stay zero; a non-zero value is kept with probability 1 - p and scaled by 1 / (1 - p)."""
    x, _ = bag_of_words(n=400, density=0.05)
    x = x * torch.rand_like(x).add(0.5)  # distinct values, so scaling is visible
    features = SparseFeatures()
    torch.manual_seed(1)
    out = features.dropout(x, p=0.7, training=True)
    nonzero = x != 0
    assert not out[~nonzero].any()
    kept = out[nonzero] != 0
    torch.testing.assert_close(out[nonzero][kept], x[nonzero][kept] / 0.3)
    n = int(nonzero.sum())
    assert abs(kept.float().mean().item() - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5  # binomial, 4 sigma
    assert features.twin(out) is not None and features.twin(x) is None
    torch.testing.assert_close(features.twin(out).to_dense(), out)
    assert not features.dropout(x, p=1.0, training=True).any()
    assert features.dropout(x, p=0.7, training=False) is x


def test_dense_features_take_the_dense_path_with_the_same_random_stream():
    """Features above `MAX_DENSITY` gain nothing: the network is the dense one, draw for draw."""
    dense, sparse = pair(GraphArch((0, 1, 2, 3), ("gcn", "sage", "fc", "gat")), dropout=0.5)
    x, edges = bag_of_words(density=min(1.0, 3 * MAX_DENSITY))
    torch.manual_seed(3)
    out_d = dense(x, edges)
    torch.manual_seed(3)
    out_s = sparse(x, edges)
    torch.testing.assert_close(out_s, out_d, rtol=1e-6, atol=1e-6)


def test_training_with_sparse_inputs_learns_as_the_dense_network_does():
    """The protocol, not the stream: both networks fit the same toy task to the same training loss
    level under dropout 0.5 (a broken mask scale or a lost gradient would not)."""
    x, edges = bag_of_words(n=60, density=0.08, seed=2)
    y = (x[:, :10].sum(1) > x[:, 10:20].sum(1)).long()
    losses = []
    for net in pair(GraphArch((0, 1, 2, 3), ("fc", "gcn", "fc", "sage")), dropout=0.5):
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        torch.manual_seed(4)
        for _ in range(150):
            opt.zero_grad()
            loss = F.cross_entropy(net(x, edges)[:, :2], y)
            loss.backward()
            opt.step()
        net.eval()
        losses.append(F.cross_entropy(net(x, edges)[:, :2], y).item())
    assert losses[1] < 0.3 and abs(losses[0] - losses[1]) < 0.15, losses
