"""The GraphNAS message-passing layer (``GeoLayer``) that AGNN's search space is built from.

Auto-GNN (Zhou et al. 2019, arXiv 1909.03184, Sec. 3) adopts GraphNAS's macro space (Gao et al.,
IJCAI 2020): each layer picks an *attention function* (how neighbour j is weighted for node i), an
*aggregation*, an activation, a number of heads and a width. The semantics below follow the GraphNAS
PyG layer (``graphnas_variants/macro_graphnas/pyg/pyg_gnn_layer.py``, ``GeoLayer``), re-written on
the current PyG API, not copied:

1. self-loops: existing ones are removed and one per node is added;
2. projection: h = x W, split into ``heads`` blocks of ``out_channels`` (x_i = target, x_j = source);
3. coefficient per edge and head (`ATTENTIONS`): a learned score normalised by a softmax over the
   neighbours of i, or a fixed one (``const`` = 1, ``gcn`` = 1/sqrt(d_i d_j)), unnormalised;
4. dropout (training only): on the coefficients for the scored attentions; on the messages x_j for
   ``const``; none for ``gcn`` -- exactly where GeoLayer applies it;
5. message = coefficient * x_j; for mean, max and mlp it then passes the 2-layer MLP
   Linear(out, 128) -> Linear(128, out), *without* an activation between the two linears (GeoLayer's
   ``pool_layer``), applied per edge and per head *after* the coefficient multiplication;
6. aggregation over the neighbours of i (`AGGREGATIONS`): sum and mlp add, mean and max as named;
7. heads concatenated (hidden layers) or averaged (last layer), then a bias.

GeoLayer peculiarities and how they are handled here:

* ``linear`` scores tanh(wl.x_j + wr.x_j): x_j on both sides. ``faithful=True`` (default) keeps it;
  ``faithful=False`` uses the evident intent tanh(wl.x_i + wr.x_j). The quirk equals GraphNAS's DGL
  layer (``LinearReduce``: tanh(a_r.x_j), "neighbour's self-attention") up to reparametrisation
  (a_r = wl + wr), so it may be intended.
* GeoLayer normalises its softmax with ``edge_index[0]`` while its own ``MessagePassing`` (flow
  source_to_target) aggregates at ``edge_index[1]``: the code groups the softmax by *source* node,
  a leftover from PyG 1.0's convention. The fact sheet (and GraphNAS's DGL layer, which softmaxes
  over the receiving node's mailbox) define it over the neighbours of i; that is the default here,
  and ``softmax_by_source=True`` reproduces the code.
* ``gcn`` degrees: GeoLayer counts them on ``edge_index[0]`` and caches the norm per graph size; here
  d is the in-degree with self-loops, recomputed every call. Identical on undirected graphs.
* GeoLayer allocates ``att`` for every attention type; here only the scored attentions own it, so
  ``const``/``gcn`` layers have ``heads * 2 * out`` fewer (unused) parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.utils import add_self_loops, degree, remove_self_loops, softmax

from nasrepro.errors import UsageError

#: Width of the aggregation MLP of mean/max/mlp (GeoLayer's ``pool_dim`` default).
POOL_DIM = 128

ScoreFn = Callable[["GraphNasLayer", Tensor, Tensor], Tensor]


def _halves(layer: GraphNasLayer) -> tuple[Tensor, Tensor]:
    """wl, wr: the two halves of ``att`` (shape (1, heads, out) each)."""
    return layer.att[..., : layer.out_channels], layer.att[..., layer.out_channels :]


def _dot(a: Tensor, w: Tensor) -> Tensor:
    return (a * w).sum(dim=-1)


def _gat(layer: GraphNasLayer, x_i: Tensor, x_j: Tensor) -> Tensor:
    """GAT (Velickovic et al. 2018, eq. 3): LeakyReLU(a^T [x_i || x_j])."""
    wl, wr = _halves(layer)
    return F.leaky_relu(_dot(x_i, wl) + _dot(x_j, wr), layer.negative_slope)


def _sym_gat(layer: GraphNasLayer, x_i: Tensor, x_j: Tensor) -> Tensor:
    """Symmetric GAT: e_ij + e_ji, so the score no longer depends on the edge's direction."""
    wl, wr = _halves(layer)
    forward = F.leaky_relu(_dot(x_i, wl) + _dot(x_j, wr), layer.negative_slope)
    backward = F.leaky_relu(_dot(x_j, wl) + _dot(x_i, wr), layer.negative_slope)
    return forward + backward


def _cos(layer: GraphNasLayer, x_i: Tensor, x_j: Tensor) -> Tensor:
    """``cos``: sum(wl * x_i * wr * x_j), a weighted inner product of the two ends."""
    wl, wr = _halves(layer)
    return (x_i * wl * x_j * wr).sum(dim=-1)


def _linear(layer: GraphNasLayer, x_i: Tensor, x_j: Tensor) -> Tensor:
    """``linear``: tanh(wl.x + wr.x_j), x = x_j as in GeoLayer (faithful) or x_i (fixed)."""
    wl, wr = _halves(layer)
    left = x_j if layer.faithful else x_i
    return torch.tanh(_dot(left, wl) + _dot(x_j, wr))


def _gene_linear(layer: GraphNasLayer, x_i: Tensor, x_j: Tensor) -> Tensor:
    """``gene-linear`` (generalized_linear): w_G^T tanh(wl * x_i + wr * x_j), w_G = Linear(out, 1)."""
    wl, wr = _halves(layer)
    return layer.gene_linear(torch.tanh(x_i * wl + x_j * wr)).squeeze(-1)


@dataclass(frozen=True)
class Attention:
    """One attention function of GraphNAS's table (AGNN Table 1).

    `score` maps projected (x_i, x_j) of shape (E, heads, out) to raw scores (E, heads) that are
    softmax-normalised over the neighbours of i; None marks the fixed coefficients (const, gcn).
    `dropout_on` says where the layer's dropout acts for this function (GeoLayer ``message``).
    """

    score: ScoreFn | None
    dropout_on: Literal["coefficients", "messages", "none"]
    graphnas_name: str


#: AGNN's names (the space's vocabulary) -> semantics; GraphNAS's names are accepted as aliases.
ATTENTIONS: Mapping[str, Attention] = {
    "const": Attention(None, "messages", "const"),
    "gcn": Attention(None, "none", "gcn"),
    "gat": Attention(_gat, "coefficients", "gat"),
    "sym-gat": Attention(_sym_gat, "coefficients", "gat_sym"),
    "cos": Attention(_cos, "coefficients", "cos"),
    "linear": Attention(_linear, "coefficients", "linear"),
    "gene-linear": Attention(_gene_linear, "coefficients", "generalized_linear"),
}
ATTENTION_ALIASES: Mapping[str, str] = {
    spec.graphnas_name: name for name, spec in ATTENTIONS.items() if spec.graphnas_name != name
}


@dataclass(frozen=True)
class Aggregation:
    """`pyg_aggr`: the PyG reduction over neighbours; `mlp`: messages first pass the 128-wide MLP."""

    pyg_aggr: str
    mlp: bool


AGGREGATIONS: Mapping[str, Aggregation] = {
    "sum": Aggregation("add", False),
    "mean": Aggregation("mean", True),
    "max": Aggregation("max", True),
    "mlp": Aggregation("add", True),
}


def attention_name(name: str) -> str:
    """AGNN's name for an attention function given by either paper's name."""
    name = ATTENTION_ALIASES.get(name, name)
    if name not in ATTENTIONS:
        raise UsageError(
            f"unknown attention function {name!r}; choose from {', '.join(ATTENTIONS)} "
            f"(GraphNAS aliases: {', '.join(ATTENTION_ALIASES)})"
        )
    return name


def gcn_coefficients(edge_index: Tensor, num_nodes: int) -> Tensor:
    """1/sqrt(d_i d_j) per edge (j -> i), d = in-degree in `edge_index` (self-loops included)."""
    source, target = edge_index
    inv_sqrt = degree(target, num_nodes).pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    return inv_sqrt[source] * inv_sqrt[target]


class GraphNasLayer(MessagePassing):
    """One GraphNAS layer: ``heads`` attention heads of width ``out_channels`` (module docstring).

    Output width: ``heads * out_channels`` with ``concat=True`` (hidden layers), else
    ``out_channels`` (the head average of the last layer).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        *,
        concat: bool = True,
        attention: str = "gat",
        aggregation: str = "sum",
        dropout: float = 0.0,
        negative_slope: float = 0.2,
        bias: bool = True,
        faithful: bool = True,
        softmax_by_source: bool = False,
        pool_dim: int = POOL_DIM,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            raise UsageError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
        if min(in_channels, out_channels, heads) < 1:
            raise UsageError(
                f"GraphNasLayer needs positive sizes, got in={in_channels}, out={out_channels}, heads={heads}"
            )
        agg = AGGREGATIONS[aggregation]
        super().__init__(aggr=agg.pyg_aggr, node_dim=0)
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat = concat
        self.attention = attention_name(attention)
        self.aggregation = aggregation
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.faithful = faithful
        self.softmax_by_source = softmax_by_source
        self.spec = ATTENTIONS[self.attention]

        self.weight = nn.Parameter(torch.empty(in_channels, heads * out_channels))
        self.att = nn.Parameter(torch.empty(1, heads, 2 * out_channels)) if self.spec.score else None
        self.gene_linear = nn.Linear(out_channels, 1, bias=False) if self.attention == "gene-linear" else None
        self.pool = (
            nn.Sequential(nn.Linear(out_channels, pool_dim), nn.Linear(pool_dim, out_channels))
            if agg.mlp
            else None
        )
        self.bias = (
            nn.Parameter(torch.empty(heads * out_channels if concat else out_channels)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and zero biases everywhere, as GeoLayer's ``reset_parameters``."""
        super().reset_parameters()
        glorot(self.weight)
        glorot(self.att)
        zeros(self.bias)
        if self.gene_linear is not None:
            glorot(self.gene_linear.weight)
        if self.pool is not None:
            for linear in self.pool:
                glorot(linear.weight)
                zeros(linear.bias)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        num_nodes = x.size(0)
        edge_index, _ = remove_self_loops(edge_index)
        edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
        h = (x @ self.weight).view(-1, self.heads, self.out_channels)
        norm = gcn_coefficients(edge_index, num_nodes) if self.attention == "gcn" else None
        return self.propagate(edge_index, x=h, gcn_norm=norm, size=None)

    def coefficients(
        self, x_i: Tensor, x_j: Tensor, index: Tensor, source: Tensor, num_nodes: int, gcn_norm: Tensor | None
    ) -> Tensor:
        """Per-edge, per-head coefficients (E, heads) before dropout."""
        if self.attention == "const":
            return x_j.new_ones(x_j.shape[:2])
        if self.attention == "gcn":
            assert gcn_norm is not None
            return gcn_norm.view(-1, 1).expand(-1, self.heads)
        scores = self.spec.score(self, x_i, x_j)  # type: ignore[misc]
        group = source if self.softmax_by_source else index
        return softmax(scores, group, num_nodes=num_nodes)

    def message(
        self,
        x_i: Tensor,
        x_j: Tensor,
        index: Tensor,
        edge_index_j: Tensor,
        size_i: int | None,
        gcn_norm: Tensor | None,
    ) -> Tensor:
        num_nodes = size_i if size_i is not None else int(index.max()) + 1
        alpha = self.coefficients(x_i, x_j, index, edge_index_j, num_nodes, gcn_norm)
        if self.spec.dropout_on == "coefficients":
            alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        if self.spec.dropout_on == "messages":
            x_j = F.dropout(x_j, p=self.dropout, training=self.training)
        out = x_j * alpha.unsqueeze(-1)
        return self.pool(out) if self.pool is not None else out

    def update(self, aggr_out: Tensor) -> Tensor:
        out = aggr_out.reshape(-1, self.heads * self.out_channels) if self.concat else aggr_out.mean(dim=1)
        return out + self.bias if self.bias is not None else out

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, heads={self.heads}, "
            f"attention={self.attention}, aggregation={self.aggregation}, concat={self.concat})"
        )


def input_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on the non-zero entries of a sparse bag-of-words feature matrix.

    Same distribution as `F.dropout` (zeros stay zero either way) and what Kipf & Welling's code
    does (`sparse_dropout`), but it draws one random number per non-zero instead of per entry:
    Cora's 2708 x 1433 inputs are 98.7% zeros, and dense dropout dominated the CPU epoch time.
    """
    if not training or p == 0.0:
        return x
    rows, cols = x.nonzero(as_tuple=True)
    values = x[rows, cols]
    keep = torch.rand(values.numel(), device=x.device) >= p
    out = torch.zeros_like(x)
    out[rows[keep], cols[keep]] = values[keep] / (1.0 - p)
    return out
