"""Linear maps of bag-of-words node features computed as sparse products.

Planetoid features are binary word indicators: on Cora 1.3% of the 2708 x 1433 entries are non-zero,
on CiteSeer 0.85% of 3327 x 3703, and the input dropout of NAS-Bench-Graph's network (0.7 on Cora)
zeroes most of those. A dense product with them is more than half of a training epoch's multiply-adds,
almost all with zeros. `sparsify_input_linears` turns the linear layers that read the raw features
into layers that multiply a sparse copy of their input instead: the same function and the same
parameters (names, shapes, count, state dict), so every result is the dense one up to float rounding
(the summation order differs). The input dropout (`SparseFeatures.dropout`) draws its mask on the
non-zero entries only: the same law as the dense `F.dropout`, a different random stream, so a
seed's numbers differ from the dense path's (records name the commit that made them).

The sparse path is taken only where it is exact and pays: an input that needs no gradient (the raw
features and their neighbourhood aggregates do not), two-dimensional, with at most `MAX_DENSITY` of
its entries non-zero, decided on each layer's first call. In eval mode the same feature tensor comes
back every epoch, so its sparse copy is kept (the tensor itself is held, so its memory cannot be
reused by another tensor while the copy is alive).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn.dense.linear import Linear as PygLinear

# The CSR layout is "beta" in torch; the two operations used here (conversion, sparse x dense
# product with autograd for the dense side) are tested in tests/test_spaces_sparse_inputs.py.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

#: above this fraction of non-zeros a sparse product stops paying for its conversion
MAX_DENSITY = 0.1


class SparseFeatures:
    """The raw features of one network's forward pass, dense and as a sparse twin.

    `dropout` replaces the network's input dropout: the sparse copy of the feature matrix is made
    once (the same tensor comes back every step of a full-batch fit), each step draws the dropout
    mask for its non-zero entries only and scales them by 1/(1-p), and the dense matrix is rebuilt
    from that for the operations that aggregate raw features. Zero entries stay zero under any
    mask, so the law of the result is the dense `F.dropout`'s: the same protocol, a different
    random stream (the dense draw of 3.9M Bernoulli variables on Cora was the largest cost of an
    epoch). The input linear layers then multiply the twin instead of the dense matrix.
    """

    def __init__(self) -> None:
        self._source: torch.Tensor | None = None
        self._version = -1
        self._csr: torch.Tensor | None = None
        self._dense_only = False
        self.dense: torch.Tensor | None = None
        self.sparse: torch.Tensor | None = None

    def dropout(self, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        if self._dense_only or x.requires_grad or x.dim() != 2 or x.layout != torch.strided:
            self.dense = self.sparse = None
            return F.dropout(x, p=p, training=training)
        if self._source is not x or self._version != x._version:
            csr = x.to_sparse_csr()
            if csr.values().numel() > MAX_DENSITY * x.numel():  # dense features: nothing to gain
                self._dense_only = True
                return self.dropout(x, p, training)
            self._source, self._version, self._csr = x, x._version, csr
        csr = self._csr
        assert csr is not None
        if training and p > 0:
            keep = torch.empty_like(csr.values()).bernoulli_(1.0 - p) if p < 1 else csr.values() * 0
            values = csr.values() * keep / (1.0 - p) if p < 1 else keep
            sparse = torch.sparse_csr_tensor(
                csr.crow_indices(), csr.col_indices(), values, csr.shape, check_invariants=False
            )
            dense = sparse.to_dense()
        else:
            sparse, dense = csr, x
        self.dense, self.sparse = dense, sparse
        return dense

    def twin(self, x: torch.Tensor) -> torch.Tensor | None:
        """The sparse twin of `x` when `x` is this pass's dense features, else None."""
        return self.sparse if x is self.dense else None


class _SparseInput:
    """Mixed into a linear layer class: `forward` multiplies a sparse copy of a sparse input."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sparse = self._sparse_copy(x)
        if sparse is None:
            return super().forward(x)  # type: ignore[misc]
        out = torch.sparse.mm(sparse, self.weight.t())
        return out if self.bias is None else out + self.bias

    def _sparse_copy(self, x: torch.Tensor) -> torch.Tensor | None:
        features: SparseFeatures | None = getattr(self, "_features", None)
        twin = features.twin(x) if features is not None else None
        if twin is not None:
            return twin
        # an aggregate of the raw features (SAGE, GraphConv, GIN, Chebyshev): convert it here
        if x.requires_grad or x.dim() != 2 or x.layout != torch.strided or getattr(self, "_dense", False):
            return None
        sparse = x.to_sparse_csr()
        if not hasattr(self, "_dense"):  # first call: is this input sparse enough to pay?
            self._dense = sparse.values().numel() > MAX_DENSITY * x.numel()
            if self._dense:
                return None
        return sparse


class SparseInputLinear(_SparseInput, nn.Linear):
    """`nn.Linear` over a sparse input (GIN's inner layer, the `fc` operation)."""


class SparseInputPygLinear(_SparseInput, PygLinear):
    """PyG's `Linear` over a sparse input (GCN, GAT, Chebyshev, SAGE, GraphConv)."""


#: layer class -> its sparse-input counterpart (exact types: a subclass may compute differently)
SWAPS: dict[type, type] = {nn.Linear: SparseInputLinear, PygLinear: SparseInputPygLinear}


def sparsify_input_linears(module: nn.Module, in_dim: int, features: SparseFeatures) -> int:
    """Give every linear layer inside `module` that reads `in_dim` features the sparse-input
    forward, reading the twin of `features` (in place; parameters untouched); returns how many
    layers were changed."""
    changed = 0
    for layer in module.modules():
        swap = SWAPS.get(type(layer))
        width = getattr(layer, "in_features", getattr(layer, "in_channels", None))
        if swap is not None and width == in_dim:
            layer.__class__ = swap
            layer._features = features  # a plain attribute: not a parameter, buffer or submodule
            changed += 1
    return changed
