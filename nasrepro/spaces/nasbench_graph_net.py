"""NAS-Bench-Graph's network (the generation code's ``net.py``), kept apart from the space so that
a table search, which only looks architectures up, never imports torch or PyG."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.spaces.nasbench_graph import GAT_HEADS, N_NODES, GraphArch, check_learnable


class _Linear(nn.Module):
    """The ``fc`` operation: a node-wise linear map that ignores the graph."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class _Skip(nn.Module):
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return x


def _op_builders() -> Mapping[str, Callable[[int, int, bool], nn.Module]]:
    """Operation name -> constructor(in_dim, out_dim, normalise), as the generation code's ``gnn_map``:
    PyG defaults except GAT (see `GAT_HEADS`), Chebyshev order K=2 and GIN over one linear layer."""
    from torch_geometric.nn import ARMAConv, ChebConv, GATConv, GCNConv, GINConv, GraphConv, SAGEConv

    return {
        "gat": lambda i, o, norm: GATConv(
            i, o // GAT_HEADS, heads=GAT_HEADS, concat=True, add_self_loops=norm
        ),
        "gcn": lambda i, o, norm: GCNConv(i, o, add_self_loops=True, normalize=norm),
        "gin": lambda i, o, norm: GINConv(nn.Linear(i, o)),
        "cheb": lambda i, o, norm: ChebConv(i, o, K=2),
        "sage": lambda i, o, norm: SAGEConv(i, o),
        "arma": lambda i, o, norm: ARMAConv(i, o),
        "graph": lambda i, o, norm: GraphConv(i, o),
        "fc": lambda i, o, norm: _Linear(i, o),
        "skip": lambda i, o, norm: _Skip(),
    }


class GraphDAGNet(nn.Module):
    """The benchmark's network for one canonical architecture (generation code ``net.py``).

    input dropout -> `num_pre` linear layers (ELU between) -> the 4-node DAG -> concatenation of
    the leaves -> ReLU -> linear -> `num_pro` linear layers (ELU between). Inside the DAG a node
    whose input is a hidden representation first applies BatchNorm -> ReLU -> dropout to it; a node
    reading the raw features (possibly through skips, when `num_pre` is 0) does not. Every node
    owns a BatchNorm, used or not, as in the original, so parameter counts match the tables' ``para``
    exactly (checked in the tests for every dataset). Verified: structure, dims, parameter counts.
    Not verifiable from the tables: GAT head split, the order of ops inside a node.

    With `sparse_inputs` (the default) the input dropout draws its mask for the non-zero features
    only and the linear layers that read the raw features multiply their sparse twin
    (`nasrepro.spaces.sparse_inputs`): the same network, the same dropout law and, without dropout,
    the same outputs up to float rounding; only the random stream differs. `sparse_inputs=False` is
    the generation code's dense path.
    """

    def __init__(
        self,
        arch: GraphArch,
        in_dim: int,
        out_dim: int,
        *,
        dim: int = 256,
        dropout: float = 0.5,
        num_pre: int = 0,
        num_pro: int = 1,
        normalize: bool = True,
        sparse_inputs: bool = True,
    ) -> None:
        super().__init__()
        check_learnable(arch)
        self.links = arch.links
        self.dropout = dropout
        builders = _op_builders()
        self.pre = nn.ModuleList(nn.Linear(in_dim if i == 0 else dim, dim) for i in range(num_pre))
        # raw[k]: node k (0 = input) still carries the raw in_dim features
        raw = [num_pre == 0]
        for link, op in zip(arch.links, arch.ops, strict=True):
            raw.append(raw[link] and op == "skip")
        self.preactivate = tuple(not raw[link] for link in arch.links)
        self.ops = nn.ModuleList(
            builders[op](in_dim if raw[link] else dim, dim, normalize)
            for link, op in zip(arch.links, arch.ops, strict=True)
        )
        #: the raw features' sparse twin (None: the benchmark's dense code path)
        self.features = None
        if sparse_inputs:  # the same function, with sparse products where the raw features enter
            from nasrepro.spaces.sparse_inputs import SparseFeatures, sparsify_input_linears

            self.features = SparseFeatures()
            readers = [op for op, link in zip(self.ops, arch.links, strict=True) if raw[link]]
            for module in [*self.pre[:1], *readers]:
                sparsify_input_linears(module, in_dim, self.features)
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in arch.ops)
        used = set(arch.links)
        self.leaves = tuple(k for k in range(1, N_NODES + 1) if k not in used)
        self.combine = nn.Linear(len(self.leaves) * dim, dim if num_pro else out_dim)
        self.post = nn.ModuleList(
            nn.Linear(dim, out_dim if i == num_pro - 1 else dim) for i in range(num_pro)
        )

    @staticmethod
    def _stack(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = F.elu(x)
        return x

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if self.features is not None:
            x = self.features.dropout(x, p=self.dropout, training=self.training)
        else:
            x = F.dropout(x, p=self.dropout, training=self.training)
        states = [self._stack(self.pre, x)]
        for link, op, norm, pre in zip(self.links, self.ops, self.norms, self.preactivate, strict=True):
            h = states[link]
            if pre:
                h = F.dropout(F.relu(norm(h)), p=self.dropout, training=self.training)
            states.append(op(h, edge_index))
        out = self.combine(F.relu(torch.cat([states[k] for k in self.leaves], dim=1)))
        return self._stack(self.post, out)
