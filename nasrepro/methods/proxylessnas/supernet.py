"""ProxylessNAS over-parameterised networks (Cai, Zhu & Han, ICLR 2019, Sec. 3.1-3.2).

A supernet is a network whose searched positions are mixed edges (`mixed_edge.MixedEdge`, binary
gates; or `AllPathsEdge`, the DARTS-style N x memory baseline). The search loop talks to it only
through `Supernet`'s methods, which act on *decisions*: one decision is one alpha vector and may
drive several tied edges (see `NB201Supernet`).

* `MBConvSupernet` -- the released ``SuperProxylessNASNets`` over any `MBConvSpaceConfig`
  (``proxyless-imagenet``, ``proxyless-cifar``): the fixed stem and first block, then one
  `MobileInvertedResidualBlock` per searched slot around a mixed edge of the slot's candidates
  (six MBConvs, plus ``zero`` on stride-1 equal-width blocks), then the 1x1 feature mix, pooling and
  the classifier. One decision per block (21 on ImageNet).
* `NB201Supernet` -- the NAS-Bench-201 network with a mixed edge over the 5 NB201 ops on each of
  the 6 cell edges. NB201 is a *cell* space: an architecture is one cell repeated in every position,
  so one alpha vector per edge is SHARED by all cells, as the one-shot baselines of NB201 (DARTS,
  GDAS, SETN; Dong & Yang 2020, Sec. 5) do. Every cell keeps its own weights, but a sampled gate is
  the same in all cells (GDAS samples once per forward and hands the choice to every cell), so a
  weight step trains a member of the space; the architecture gradient of a tied decision is the sum
  over cells of the per-cell estimators (the estimator of Eq. (4) is linear in dL/dg).

Costs (Sec. 3.3): `edge_costs(kind)` gives F(o_j) for every candidate of every decision, plus the
constant cost of the fixed layers, for ``flops`` (multiply-adds, counted by the harness on the
candidate module at its position), ``params`` and, on MBConv spaces, ``latency`` from a
`cost.LatencyTable` keyed like the released ``mobile_trim.yaml``. Raw units are kept (MACs, not
MMACs; ms for latency) because ``mul#log`` is not unit-free: the released ``flops`` target is 300e6.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nasrepro.errors import UsageError
from nasrepro.harness.metrics import count_flops, count_params
from nasrepro.methods.proxylessnas.blocks import (
    MBConv,
    MobileInvertedResidualBlock,
    candidate_op,
    conv_bn_act,
)
from nasrepro.methods.proxylessnas.cost import LatencyTable
from nasrepro.methods.proxylessnas.latency_lut import edge_costs as lut_edge_costs
from nasrepro.methods.proxylessnas.mixed_edge import AllPathsEdge, MixedEdge
from nasrepro.methods.proxylessnas.spaces import (
    MBConvSpaceConfig,
    ProxylessArch,
    ProxylessSpace,
    init_he_fout,
)
from nasrepro.spaces.nasbench201 import EDGES, OP_NAMES, NB201Arch
from nasrepro.spaces.nasbench201_net import OPS, Cell, NB201Network, ResidualReduction, edge_key

Edge = MixedEdge | AllPathsEdge
#: the edge kinds a supernet can be built with
EDGE_KINDS = ("binary", "all")


@dataclass(frozen=True)
class EdgeCosts:
    """F(o_j) per decision and candidate, and the fixed layers' cost (Sec. 3.3.1, Eq. (6))."""

    kind: str
    per_edge: tuple[tuple[float, ...], ...]
    constant: float
    unit: str

    def arch_cost(self, indices: Sequence[int]) -> float:
        """Cost of the architecture that picks candidate `indices[e]` on decision e."""
        return self.constant + sum(c[i] for c, i in zip(self.per_edge, indices, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "unit": self.unit, "constant": self.constant, "per_edge": self.per_edge}


def _make_edge(
    kind: str, candidates: Sequence[nn.Module], names: Sequence[str], mode: str
) -> MixedEdge | AllPathsEdge:
    if kind == "binary":
        return MixedEdge(candidates, names, mode=mode)
    if kind == "all":
        return AllPathsEdge(candidates, names)
    raise UsageError(f"unknown supernet edge kind {kind!r}; choose one of {EDGE_KINDS}")


class SearchBlock(MobileInvertedResidualBlock):
    """A `MobileInvertedResidualBlock` around a mixed edge: returns its input when the edge's active
    path is ``zero`` (the edge then returns None, see `mixed_edge`'s zero protocol), as the released
    block does when its op is a `ZeroLayer`."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.op(x)
        if out is None:
            return x
        return out + x if self.has_shortcut else out


class Supernet(nn.Module):
    """What the search loop needs from any supernet; subclasses fill `groups` and `group_names`.

    `groups[d]` lists the edges driven by decision d; `groups[d][0]` (the leader) owns the alpha and
    is sampled, the others follow its outcome.
    """

    groups: list[list[Edge]]
    group_names: list[str]
    edge_kind: str

    # --- parameters ---
    @property
    def binary(self) -> bool:
        return self.edge_kind == "binary"

    def leaders(self) -> list[Edge]:
        return [group[0] for group in self.groups]

    def arch_parameters(self) -> list[nn.Parameter]:
        """One alpha per decision (tied edges share it): what Adam steps."""
        return [leader.alpha for leader in self.leaders()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an alpha: what SGD steps."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    @contextmanager
    def weights_frozen(self) -> Iterator[None]:
        """Turn weight gradients off for an architecture step (only alpha is stepped there).

        Backward then propagates input gradients only, skipping every dL/dW -- about a third of a
        step's arithmetic. The alpha gradient is unchanged: the gate estimator needs dL/dy at each
        edge, never dL/dW. (The released code computes and discards the weight gradients.)
        """
        params = self.weight_parameters()
        before = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, before, strict=True):
                p.requires_grad_(flag)

    @property
    def mode(self) -> str:
        return self.leaders()[0].mode if self.binary else "all"  # type: ignore[union-attr]

    def _require_binary(self, what: str) -> None:
        if not self.binary:
            raise UsageError(f"{what} needs binary-gate edges; this supernet was built with edge='all'")

    # --- sampling (Sec. 3.2) ---
    def sample_weight_paths(self) -> list[int]:
        """Weight step: one path g ~ p per decision, the same path in every tied edge."""
        self._require_binary("sample_weight_paths")
        chosen = []
        for group in self.groups:
            active = group[0].sample_weight_path()  # type: ignore[union-attr]
            for edge in group[1:]:
                edge.set_active(active)  # type: ignore[union-attr]
            chosen.append(active)
        return chosen

    def sample_arch_paths(self) -> list[int]:
        """Architecture step: resample gates under the edges' mode; tied edges share the outcome."""
        self._require_binary("sample_arch_paths")
        chosen = []
        for group in self.groups:
            leader = group[0]
            active = leader.sample_arch_paths()  # type: ignore[union-attr]
            partner = next((k for k in leader.gated_indices if k != active), None)  # type: ignore[union-attr]
            for edge in group[1:]:
                edge.set_arch_paths(active, partner if leader.mode == "two" else None)  # type: ignore[union-attr]
            chosen.append(active)
        return chosen

    def set_active(self, indices: Sequence[int]) -> None:
        """Fix one path per decision (evaluating a given architecture)."""
        self._require_binary("set_active")
        for group, index in zip(self.groups, indices, strict=True):
            for edge in group:
                edge.set_active(int(index))  # type: ignore[union-attr]

    def use_argmax(self) -> list[int]:
        """Run the derived architecture (argmax_i p_i on every decision)."""
        chosen = self.chosen()
        self.set_active(chosen)
        return chosen

    def set_arch_grads(self) -> None:
        """Binary-gate estimator (Eq. (4)) into alpha.grad, after backward. A tied decision sums its
        edges' estimators into the shared alpha; if its active path is ``zero`` the grad is None
        (released `set_arch_param_grad`)."""
        self._require_binary("set_arch_grads")
        for group in self.groups:
            if group[0].active_is_zero:  # type: ignore[union-attr]
                group[0].alpha.grad = None
                continue
            for edge in group:
                edge.set_arch_grad()  # type: ignore[union-attr]

    @torch.no_grad()
    def rescale(self) -> None:
        """``two`` mode: keep the unsampled paths' probabilities after the Adam step (idempotent on
        tied edges: the second call finds the pair's mass already restored)."""
        if self.binary:
            for group in self.groups:
                group[0].rescale_pair()  # type: ignore[union-attr]

    def log_prob(self) -> Tensor:
        """log p(g) = sum over decisions of log p_active of the last weight-path sample (Proxyless-R)."""
        self._require_binary("log_prob")
        return torch.stack([leader.sampled_log_prob() for leader in self.leaders()]).sum()  # type: ignore[union-attr]

    # --- reading alpha ---
    def chosen(self) -> list[int]:
        return [leader.chosen() for leader in self.leaders()]

    def probabilities(self) -> list[list[float]]:
        return [leader.probs.detach().cpu().tolist() for leader in self.leaders()]

    def candidate_names(self) -> list[tuple[str, ...]]:
        return [leader.names for leader in self.leaders()]

    def entropy(self) -> float:
        """Mean entropy of p over decisions (the released per-epoch `net.entropy() / #alphas`)."""
        total = 0.0
        for leader in self.leaders():
            p = leader.probs.detach()
            total += float(-(p * torch.log(p.clamp_min(1e-30))).sum())
        return total / len(self.groups)

    def expected_cost(self, costs: EdgeCosts) -> Tensor:
        """E[cost] over `cost_probs()` (the sampled pair in ``two`` mode), differentiable in alpha.

        The per-edge cost vectors (latency look-ups, FLOPs) live on alpha's device: copied there once
        per (costs, device, dtype) and reused, not sent from the host at every architecture step.
        """
        total = costs.constant
        for leader, f in zip(self.leaders(), self.cost_tensors(costs), strict=True):
            total = total + (leader.cost_probs() * f).sum()
        return total  # type: ignore[return-value]

    def cost_tensors(self, costs: EdgeCosts) -> list[Tensor]:
        """`costs.per_edge` as tensors on the alphas' device and dtype (cached)."""
        alpha = self.arch_parameters()[0]
        key = (id(costs), alpha.device, alpha.dtype)
        cache = self.__dict__.setdefault("_cost_tensors", {})
        if key not in cache:
            cache.clear()
            cache[key] = (
                costs,  # keeps id(costs) valid while cached
                [torch.as_tensor(c, dtype=alpha.dtype, device=alpha.device) for c in costs.per_edge],
            )
        return cache[key][1]

    def mean_cost(self, costs: EdgeCosts) -> float:
        """E[cost] under the full p (for logging; independent of the last sample)."""
        total = costs.constant
        for leader, per_edge in zip(self.leaders(), costs.per_edge, strict=True):
            total += float((leader.probs.detach().cpu() * torch.tensor(per_edge)).sum())
        return total

    # --- subclass hooks ---
    def derive(self) -> Any:
        raise NotImplementedError

    def edge_costs(self, kind: str, **kwargs: Any) -> EdgeCosts:
        raise NotImplementedError

    def _count(self, kind: str, module: nn.Module, shape: Sequence[int]) -> float:
        """MACs (flops) or parameters of `module` run on an input of `shape` (batch 1)."""
        if kind == "flops":
            return float(count_flops(module, (torch.zeros(1, *shape),))["macs"])
        if kind == "params":
            return float(count_params(module))
        raise UsageError(f"unknown cost kind {kind!r}; choose one of {sorted(COST_UNITS)}")


COST_UNITS = {"flops": "multiply-adds", "params": "parameters", "latency": "ms"}


# --- the MBConv chain -----------------------------------------------------------------------------


class MBConvSupernet(Supernet):
    """The released ``SuperProxylessNASNets`` over a `MBConvSpaceConfig` (fact sheet Sec. 2.1)."""

    def __init__(
        self,
        space_config: MBConvSpaceConfig,
        num_classes: int,
        mode: str = "full_v2",
        edge: str = "binary",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if edge not in EDGE_KINDS:
            raise UsageError(f"unknown supernet edge kind {edge!r}; choose one of {EDGE_KINDS}")
        cfg = space_config
        self.config, self.edge_kind, self.num_classes = cfg, edge, num_classes
        self.space = ProxylessSpace(cfg)
        self.first_conv = conv_bn_act(in_channels, cfg.stem_width, 3, cfg.stem_stride)
        first = MBConv(cfg.stem_width, cfg.first_width, 3, 1, 1)
        blocks: list[nn.Module] = [
            MobileInvertedResidualBlock(first, cfg.stem_width, cfg.first_width, 1, shortcut=False)
        ]
        self.groups, self.group_names = [], []
        for slot in self.space.slots:
            ops = [candidate_op(code) for code in slot.choices]
            mixed = _make_edge(
                edge,
                [op.build(slot.c_in, slot.c_out, slot.stride) for op in ops],
                [op.name for op in ops],
                mode,
            )
            blocks.append(SearchBlock(mixed, slot.c_in, slot.c_out, slot.stride))
            self.groups.append([mixed])
            self.group_names.append(slot.name)
        self.blocks = nn.Sequential(*blocks)
        self.feature_mix_layer = conv_bn_act(cfg.widths[-1], cfg.head_width, 1)
        self.global_avg_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            OrderedDict(
                [("dropout", nn.Dropout(cfg.dropout)), ("linear", nn.Linear(cfg.head_width, num_classes))]
            )
        )
        init_he_fout(self)  # the released `init_model('he_fout')`; alphas are not touched

    def forward(self, x: Tensor) -> Tensor:
        x = self.feature_mix_layer(self.blocks(self.first_conv(x)))
        return self.classifier(torch.flatten(self.global_avg_pool(x), 1))

    def arch_of(self, indices: Sequence[int]) -> ProxylessArch:
        """The canonical architecture that picks candidate `indices[e]` on block e."""
        return self.space.canonical(self.space.decode(list(indices)))

    def derive(self) -> ProxylessArch:
        """argmax_i p_i on every block (`convert_to_normal_net`), as the space's canonical arch."""
        return self.arch_of(self.chosen())

    # --- geometry and costs ---
    def slot_resolutions(self, input_size: int | None = None) -> list[tuple[int, int]]:
        """(input, output) spatial size of every searched block for square `input_size` images."""
        size = math.ceil((input_size or self.config.input_size) / self.config.stem_stride)
        out = []
        for slot in self.space.slots:
            after = math.ceil(size / slot.stride)
            out.append((size, after))
            size = after
        return out

    def edge_costs(
        self, kind: str, table: LatencyTable | None = None, input_size: int | None = None
    ) -> EdgeCosts:
        """F(o_j) for every candidate of every block, and the stem/first-block/head constant.

        ``flops``/``params``: counted on the supernet's own candidate modules at their position;
        ``zero`` costs 0. ``latency``: looked up in `table` through `latency_lut.edge_costs`, the same
        layout (keys, input size from the table) that ``build-lut`` measures and ``check-lut`` checks.
        """
        size = input_size or self.config.input_size
        if kind == "latency":
            if table is None:
                raise UsageError(
                    "cost kind 'latency' needs a LatencyTable (latency_search.search_latency: built by "
                    "build-lut's code on the trainer's device, or a table file)"
                )
            costs, constant = lut_edge_costs(self.space, table)
            return EdgeCosts(kind, tuple(tuple(c) for c in costs), constant, COST_UNITS[kind])
        cfg = self.config
        res = self.slot_resolutions(size)
        stem_out = math.ceil(size / cfg.stem_stride)
        cache: dict[tuple[Any, ...], float] = {}  # blocks of one shape have equal op costs

        def op_cost(name: str, op: nn.Module, c_in: int, c_out: int, stride: int, h: int) -> float:
            key = (name, c_in, c_out, stride, h)
            if key not in cache:
                cache[key] = 0.0 if name == "zero" else self._count(kind, op, (c_in, h, h))
            return cache[key]

        per_edge = []
        for group, slot, (h_in, _) in zip(self.groups, self.space.slots, res, strict=True):
            edge = group[0]
            per_edge.append(
                tuple(
                    op_cost(name, op, slot.c_in, slot.c_out, slot.stride, h_in)
                    for name, op in zip(edge.names, edge.candidates, strict=True)
                )
            )
        h_last = res[-1][1]
        constant = (
            self._count(kind, self.first_conv, (3, size, size))
            + self._count(kind, self.blocks[0], (cfg.stem_width, stem_out, stem_out))
            + self._count(kind, self.feature_mix_layer, (cfg.widths[-1], h_last, h_last))
            + self._count(kind, self.classifier, (cfg.head_width,))
        )
        return EdgeCosts(kind, tuple(per_edge), constant, COST_UNITS[kind])


# --- NAS-Bench-201 ----------------------------------------------------------------------------------


class NB201Supernet(Supernet):
    """NB201's search network (C channels, N cells per stage) with shared per-edge alphas.

    See the module docstring for why the alphas are shared across cells. The reduction blocks, stem
    and head are fixed. `derive()` gives the raw argmax cell (not canonicalised: the evaluator maps it
    to its isomorphism class, and the raw cell is what alpha chose).
    """

    def __init__(
        self,
        num_classes: int = 10,
        C: int = 16,  # noqa: N803  (NB201's own name)
        N: int = 5,  # noqa: N803
        mode: str = "full_v2",
        edge: str = "binary",
        input_size: int = 32,
    ) -> None:
        super().__init__()
        if edge not in EDGE_KINDS:
            raise UsageError(f"unknown supernet edge kind {edge!r}; choose one of {EDGE_KINDS}")
        if C < 1 or N < 1:
            raise UsageError(f"NB201Supernet needs C >= 1 and N >= 1, got C={C}, N={N}")
        self.edge_kind, self.C, self.N, self.input_size = edge, C, N, input_size

        def mixed(channels: int) -> Edge:
            return _make_edge(edge, [OPS[name](channels) for name in OP_NAMES], OP_NAMES, mode)

        cell_ops: dict[tuple[int, int], Callable[[int], nn.Module]] = dict.fromkeys(EDGES, mixed)
        self.network = NB201Network(
            lambda channels: Cell(channels, cell_ops), num_classes=num_classes, channels=C, cells_per_stage=N
        )
        self.groups = [[] for _ in EDGES]
        self.group_names = [edge_key(i, j) for i, j in EDGES]
        self._positions: list[tuple[int, int]] = []  # (channels, spatial size) of every cell
        channels, size = C, input_size
        for layer in self.network.cells:
            if isinstance(layer, ResidualReduction):
                channels, size = channels * 2, math.ceil(size / 2)
            elif isinstance(layer, Cell):
                self._positions.append((channels, size))
                for d, (i, j) in enumerate(EDGES):
                    self.groups[d].append(layer.edges[edge_key(i, j)])
        for group in self.groups:  # tie: every cell's edge d uses cell 0's alpha
            for follower in group[1:]:
                follower.alpha = group[0].alpha

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def arch_of(self, indices: Sequence[int]) -> NB201Arch:
        return NB201Arch.from_codes(list(indices))

    def derive(self) -> NB201Arch:
        return self.arch_of(self.chosen())

    def edge_costs(
        self, kind: str, table: LatencyTable | None = None, input_size: int | None = None
    ) -> EdgeCosts:
        """F(o_j) of a decision = sum over cells of the op's cost at that cell's width and size."""
        if kind == "latency":
            raise UsageError(
                "NB201Supernet has no latency table; use cost kind 'flops' or 'params' on NAS-Bench-201"
            )
        size = input_size or self.input_size
        scale = size / self.input_size
        cache: dict[tuple[int, int, int], float] = {}  # cells of one stage have equal op costs

        def op_cost(edge: Edge, k: int, channels: int, s: int) -> float:
            key = (k, channels, s)
            if key not in cache:
                cache[key] = self._count(kind, edge.candidates[k], (channels, s, s))
            return cache[key]

        per_edge = []
        for group in self.groups:
            per_edge.append(
                tuple(
                    sum(
                        op_cost(edge, k, channels, math.ceil(s * scale))
                        for edge, (channels, s) in zip(group, self._positions, strict=True)
                    )
                    for k in range(len(OP_NAMES))
                )
            )
        net = self.network
        constant = self._count(kind, net.stem, (3, size, size))
        channels, s = self.C, size
        for layer in net.cells:
            if isinstance(layer, ResidualReduction):
                constant += self._count(kind, layer, (channels, s, s))
                channels, s = channels * 2, math.ceil(s / 2)
        constant += self._count(kind, net.lastact, (channels, s, s)) + self._count(
            kind, net.classifier, (channels,)
        )
        return EdgeCosts(kind, tuple(per_edge), constant, COST_UNITS[kind])
