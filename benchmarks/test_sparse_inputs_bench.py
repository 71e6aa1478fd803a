"""One NAS-Bench-Graph training epoch on Cora (a full-batch SGD step with the benchmark's input
dropout 0.7, then the eval pass that selects the epoch), dense raw features vs their sparse twin
(`nasrepro.spaces.sparse_inputs`), side by side in one run, for two architectures: a chain whose
only raw reader is `fc`, and four operations that all read the raw features.

Run: `NASREPRO_DATA=/path/to/datasets OMP_NUM_THREADS=1 pytest benchmarks/test_sparse_inputs_bench.py`
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from nasrepro.spaces.nasbench_graph import GraphArch
from nasrepro.spaces.nasbench_graph_net import GraphDAGNet
from nasrepro.tasks import get_task

ARCHS = {
    "chain-fc": GraphArch((0, 1, 2, 3), ("skip", "skip", "fc", "gcn")),
    "four-readers": GraphArch((0, 0, 0, 0), ("gcn", "gat", "sage", "cheb")),
}


@pytest.fixture(scope="module")
def cora():
    if not os.environ.get("NASREPRO_DATA"):
        pytest.skip("set NASREPRO_DATA to the datasets folder")
    return get_task("cora").data(normalize=False)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_cora_epoch(benchmark, cora, arch, sparse):
    torch.manual_seed(0)
    net = GraphDAGNet(ARCHS[arch], cora.x.shape[1], 7, dim=256, dropout=0.7, sparse_inputs=sparse)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=5e-4)

    def epoch() -> torch.Tensor:
        net.train()
        opt.zero_grad()
        out = net(cora.x, cora.edge_index)
        F.cross_entropy(out[cora.train_mask], cora.y[cora.train_mask]).backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            return net(cora.x, cora.edge_index)

    epoch()  # warm-up: the sparse copy of the features is made once
    benchmark.group = f"NAS-Bench-Graph epoch on Cora: {arch}"
    out = benchmark.pedantic(epoch, rounds=5, iterations=1)
    assert out.shape == (cora.x.shape[0], 7) and torch.isfinite(out).all()
