"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020, Sec. 2.1; = NATS-Bench `tss`).

A cell is a DAG on 4 nodes: node 0 is the cell input, node 3 the cell output, and every node
``j`` is the sum of ``op_ij(node_i)`` over ``i < j``. Each of the 6 edges carries one of 5 ops, so
there are 5**6 = 15,625 cells. An architecture is written in NB201's own string form
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (group ``j`` lists the inputs of node ``j``).

Isomorphism (``canonical``). Two cells are equivalent when they compute the same family of
functions, i.e. their computation graphs coincide once these *exact* identities are applied:

* R1  the sum at a node is commutative and associative (node values are multisets of terms);
* R2  ``skip_connect`` is the identity: it passes its source's terms on, the same tensors;
* R3  ``none`` contributes nothing, and any op applied to an all-zero node contributes nothing
      (which also removes every edge whose result cannot reach the output);
* R4  ``avg_pool_3x3`` (stride 1, ``count_include_pad=False``) is linear and parameter-free, so
      ``avg(a + b) = avg(a) + avg(b)`` and two pools of the same tensor are the same tensor.

Each ``nor_conv_*`` on an edge is its own parametrised unit (its own weights): two convolutions
of the same input are *not* merged, and a unit shared through skip connections is not the same
as two copies of it. Multiplicities count (``x + x = 2x`` is not ``x``). Not recognised:
BN's scale invariance (``conv(2x)`` equals ``conv(x)`` only up to BN's epsilon) and one caveat of
R3 -- a ReLU-Conv-BN fed exactly zero still emits BN's learnable shift beta (a per-channel
constant); like NB201's own ``consider_zero`` unique string, we treat it as zero.

The canonical form of a cell is its reduced computation DAG (input, conv units labelled by op,
pooled references ``avg^k(unit)``, output multiset) serialised under the smallest numbering of
its conv units; only units with identical unfolded terms can be exchanged, so the minimum runs
over permutations within those groups and is exact (the tests check it against networkx's
isomorphism test). The representative of a class is its member with the smallest op-code tuple
(NB201's op order ``none < skip < 1x1 < 3x3 < avg``), so dead edges are always ``none``.
Among the 15,625 cells there are 5,044 classes.

The network (``to_model``) is NB201's evaluation network (``infer.tiny``, C=16, N=5): a 3x3
stem with BN, three stages of five cells at 16/32/64 channels, residual reduction blocks in
between, BN-ReLU, global pooling and a linear classifier. ``Cell`` takes one module factory per
edge, so weight-sharing methods can build a supernet on the same wiring.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.space import Field, Space
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

#: NB201's operation names, in the order of its ``op_names`` (the op codes 0..4 used here).
OP_NAMES: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The 6 edges ``(source, target)`` in the order of the architecture string.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_NODES = 4
SPACE_SIZE = len(OP_NAMES) ** len(EDGES)
_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
#: NB201's string with one slot per edge, in `EDGES` order
_TEMPLATE = "+".join(
    "|" + "|".join(f"{{}}~{source}" for source in range(target)) + "|" for target in range(1, NUM_NODES)
)
assert _TEMPLATE.format(*"abcdef") == "|a~0|+|b~0|c~1|+|d~0|e~1|f~2|"


# --- encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NB201Arch:
    """One cell: the op names of the 6 edges in NB201's edge order (``EDGES``)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        if len(ops) != len(EDGES):
            raise UsageError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)} ops: {ops}")
        for op in ops:
            if op not in OP_NAMES:
                raise UsageError(f"unknown NAS-Bench-201 op {op!r}; choose from {', '.join(OP_NAMES)}")
        object.__setattr__(self, "ops", ops)

    @classmethod
    def from_codes(cls, codes: tuple[int, ...] | list[int] | np.ndarray) -> NB201Arch:
        return cls(tuple(OP_NAMES[int(c)] for c in codes))

    @functools.cached_property
    def codes(self) -> tuple[int, ...]:
        """Op indices into ``OP_NAMES``, edge by edge."""
        return tuple(OP_NAMES.index(op) for op in self.ops)

    def op(self, source: int, target: int) -> str:
        return self.ops[EDGES.index((source, target))]

    @functools.cached_property
    def _text(self) -> str:
        return _TEMPLATE.format(*self.ops)

    def __str__(self) -> str:
        return self._text

    @classmethod
    def parse(cls, text: str) -> NB201Arch:
        """The cell written as NB201's string; `UsageError` naming the first bad token."""
        if not isinstance(text, str):
            raise UsageError(f"a NAS-Bench-201 architecture is a string like {_FORMAT}, got {text!r}")
        groups = text.strip().split("+")
        where = f"in NAS-Bench-201 architecture {text!r}"
        if len(groups) != NUM_NODES - 1:
            raise UsageError(
                f"{where}: expected {NUM_NODES - 1} '+'-separated node groups as in {_FORMAT}, "
                f"got {len(groups)}"
            )
        ops: dict[tuple[int, int], str] = {}
        for target, group in enumerate(groups, start=1):
            if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
                raise UsageError(f"{where}: node group {group!r} must look like |op~0|...|, as in {_FORMAT}")
            tokens = group[1:-1].split("|")
            if len(tokens) != target:
                raise UsageError(
                    f"{where}: node {target} takes {target} inputs, group {group!r} lists {len(tokens)}"
                )
            for source, token in enumerate(tokens):
                op, sep, node = token.partition("~")
                if not sep or node != str(source):
                    raise UsageError(
                        f"{where}: bad token {token!r}, expected 'op~{source}' "
                        f"(input {source} of node {target})"
                    )
                if op not in OP_NAMES:
                    raise UsageError(
                        f"{where}: bad token {token!r}: unknown op {op!r}; choose from {', '.join(OP_NAMES)}"
                    )
                ops[(source, target)] = op
        return cls(tuple(ops[edge] for edge in EDGES))


@functools.cache
def all_arch_strings() -> frozenset[str]:
    """The strings of all 15,625 cells (for validating tables quickly)."""
    return frozenset(_TEMPLATE.format(*ops) for ops in itertools.product(OP_NAMES, repeat=len(EDGES)))


def as_arch(arch: NB201Arch | str) -> NB201Arch:
    """Accept an `NB201Arch` or its string."""
    if isinstance(arch, NB201Arch):
        return arch
    if isinstance(arch, str):
        return NB201Arch.parse(arch)
    raise UsageError(f"expected a NAS-Bench-201 architecture or its string, got {type(arch).__name__}")


# --- isomorphism (see the module docstring for the rules R1-R4) -------------------------------

# A term of a node value is (k, unit): `avg_pool` applied k times (R4) to `unit`, where unit -1 is
# the cell input and u >= 0 is the u-th conv unit. A conv unit is (op, its input as sorted terms).
_Term = tuple[int, int]
_Unit = tuple[str, tuple[_Term, ...]]
_Graph = tuple[tuple[_Unit, ...], tuple[tuple[_Term, ...], ...]]  # (conv units, node values)
_INPUT_ONLY: _Graph = ((), (((0, -1),),))


def _add_node(graph: _Graph, incoming: tuple[str, ...]) -> _Graph:
    """`graph` with its next node, whose inputs from nodes 0, 1, ... carry the ops `incoming`."""
    units, values = list(graph[0]), graph[1]
    terms: list[_Term] = []
    for op, src in zip(incoming, values, strict=True):
        if op == "none" or not src:  # R3
            continue
        if op == "skip_connect":  # R2
            terms.extend(src)
        elif op == "avg_pool_3x3":  # R4
            terms.extend([(k + 1, unit) for k, unit in src])
        else:
            units.append((op, tuple(sorted(src))))
            terms.append((0, len(units) - 1))
    return tuple(units), (*values, tuple(terms))


def _node_ops(ops: tuple[str, ...], target: int) -> tuple[str, ...]:
    return tuple(ops[EDGES.index((source, target))] for source in range(target))


def _reduced_graph(ops: tuple[str, ...]) -> tuple[tuple[_Unit, ...], tuple[_Term, ...]]:
    """The conv units and the output terms of a cell under R1-R4."""
    graph = _INPUT_ONLY
    for target in range(1, NUM_NODES):
        graph = _add_node(graph, _node_ops(ops, target))
    return graph[0], graph[1][-1]


def _canonical_form(units: tuple[_Unit, ...], out: tuple[_Term, ...]) -> tuple[Any, ...]:
    """The exact isomorphism invariant of a reduced cell: its DAG under the smallest numbering."""
    live: set[int] = set()
    stack = [u for _, u in out if u >= 0]
    while stack:  # R3: units that cannot reach the output do not exist
        u = stack.pop()
        if u not in live:
            live.add(u)
            stack.extend(v for _, v in units[u][1] if v >= 0)

    memo: dict[int, str] = {-1: "x"}

    def unfolded(u: int) -> str:  # the unit's term with all sharing unfolded: an invariant
        if u not in memo:
            op, arg = units[u]
            memo[u] = f"{op}({'+'.join(sorted('avg(' * k + unfolded(v) + ')' * k for k, v in arg))})"
        return memo[u]

    groups: dict[str, list[int]] = defaultdict(list)
    for u in sorted(live):
        groups[unfolded(u)].append(u)
    order = sorted(groups)  # an isomorphism preserves unfolded terms, so it only permutes within groups
    orderings = (itertools.permutations(groups[g]) if len(groups[g]) > 1 else (groups[g],) for g in order)
    best: tuple[Any, ...] | None = None
    for perms in itertools.product(*orderings):
        sequence = [u for perm in perms for u in perm]
        number = {u: i for i, u in enumerate(sequence)}
        number[-1] = -1
        form = (
            tuple((units[u][0], tuple(sorted((k, number[v]) for k, v in units[u][1]))) for u in sequence),
            tuple(sorted((k, number[v]) for k, v in out)),
        )
        if best is None or form < best:
            best = form
    assert best is not None
    return best


def _describe_form(form: tuple[Any, ...]) -> str:
    """A readable rendering of a canonical form, e.g. ``#0=nor_conv_3x3(x); out=#0+avg(x)``."""

    def term(k: int, v: int) -> str:
        return "avg(" * k + ("x" if v < 0 else f"#{v}") + ")" * k

    units, out = form
    parts = [f"#{i}={op}({'+'.join(term(k, v) for k, v in arg)})" for i, (op, arg) in enumerate(units)]
    parts.append("out=" + ("+".join(term(k, v) for k, v in out) or "0"))
    return "; ".join(parts)


@functools.cache
def _classes() -> tuple[dict[tuple[int, ...], tuple[int, ...]], dict[tuple[int, ...], tuple[Any, ...]]]:
    """(codes -> representative codes, codes -> canonical form) for all 15,625 cells, computed once.

    Nodes are added one at a time so the 5 + 125 partial graphs of nodes 1-2 are shared.
    """
    names = range(len(OP_NAMES))
    forms: dict[tuple[int, ...], tuple[Any, ...]] = {}
    seen: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for c1 in itertools.product(names, repeat=1):
        g1 = _add_node(_INPUT_ONLY, tuple(OP_NAMES[c] for c in c1))
        for c2 in itertools.product(names, repeat=2):
            g2 = _add_node(g1, tuple(OP_NAMES[c] for c in c2))
            for c3 in itertools.product(names, repeat=3):
                units, values = _add_node(g2, tuple(OP_NAMES[c] for c in c3))
                codes = (c1[0], c2[0], c2[1], c3[0], c3[1], c3[2])  # EDGES order
                reduced = (units, values[-1])
                if reduced not in seen:  # 7,920 distinct reduced graphs
                    seen[reduced] = _canonical_form(*reduced)
                forms[codes] = seen[reduced]
    smallest: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for codes in sorted(forms):
        smallest.setdefault(forms[codes], codes)
    return {codes: smallest[form] for codes, form in forms.items()}, forms


def canonical_arch(arch: NB201Arch | str) -> NB201Arch:
    """The representative of `arch`'s isomorphism class (rules R1-R4 of the module docstring)."""
    arch = as_arch(arch)
    return NB201Arch.from_codes(_classes()[0][arch.codes])


def cell_form(arch: NB201Arch | str) -> str:
    """The canonical computation of a cell, readable: equal strings <=> equivalent cells."""
    return _describe_form(_classes()[1][as_arch(arch).codes])


def equivalence_classes() -> dict[NB201Arch, list[NB201Arch]]:
    """Representative -> all its members, for the whole space."""
    out: dict[NB201Arch, list[NB201Arch]] = defaultdict(list)
    for codes, rep in _classes()[0].items():
        out[NB201Arch.from_codes(rep)].append(NB201Arch.from_codes(codes))
    return dict(out)


class NB201Space(Space):
    """The 15,625 NB201 cells; `canonical` merges equivalent cells unless `isomorphism=False`."""

    name = "nasbench201"

    def __init__(self, isomorphism: bool = True) -> None:
        self.isomorphism = isomorphism

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.parse(text)

    def canonical(self, arch: NB201Arch | str) -> NB201Arch:
        return canonical_arch(arch) if self.isomorphism else as_arch(arch)

    def sample(self, rng: np.random.Generator) -> NB201Arch:
        """A uniformly random cell of the 15,625 (NB201's random-search distribution), canonicalised."""
        return self.canonical(NB201Arch.from_codes(rng.integers(0, len(OP_NAMES), size=len(EDGES))))

    def mutate(self, arch: NB201Arch | str, rng: np.random.Generator) -> NB201Arch:
        """One edge set to a different op (Real et al. 2019's mutation as used in NB201's REA).

        The result differs from `arch` in exactly one edge; it is not canonicalised, so the edit
        distance stays one (it may still be equivalent to `arch`, e.g. when the edge is dead).
        """
        codes = list(as_arch(arch).codes)
        edge = int(rng.integers(len(EDGES)))
        choices = [c for c in range(len(OP_NAMES)) if c != codes[edge]]
        codes[edge] = choices[int(rng.integers(len(choices)))]
        return NB201Arch.from_codes(codes)

    def enumerate(self) -> Iterator[NB201Arch]:
        """All 15,625 cells (raw encodings), in op-code product order."""
        for codes in itertools.product(range(len(OP_NAMES)), repeat=len(EDGES)):
            yield NB201Arch.from_codes(codes)

    def size(self) -> int:
        return SPACE_SIZE

    # --- the categorical view (controllers, predictors) -------------------------------------------

    def fields(self) -> tuple[Field, ...]:
        """One field per edge (``edge<source><target>``, in `EDGES` order), choosing among the 5 ops.

        Fields are grouped by the node they feed (``node1``..``node3``, NB201 Sec. 2.1: node ``j``
        sums its inputs), which is how NB201's string groups them. For AGNN's conservative explorer
        (Zhou et al. 2019, Sec. 4) one action class is then one node's inputs: finer than re-drawing
        the whole cell, coarser than a single-edge mutation.
        """
        return tuple(Field(f"edge{source}{target}", OP_NAMES, f"node{target}") for source, target in EDGES)

    def encode(self, arch: NB201Arch | str) -> tuple[int, ...]:
        """The op codes of `arch`'s edges as given (not canonicalised), so `decode` returns `arch`."""
        return as_arch(arch).codes

    def decode(self, indices: Sequence[int]) -> NB201Arch:
        """The cell with these op codes, one per edge in `EDGES` order; `UsageError` if there are
        not 6 of them or one is not an integer in 0..4. Not canonicalised (the evaluator's key is)."""
        if len(indices) != len(EDGES):
            raise UsageError(f"a NAS-Bench-201 encoding has {len(EDGES)} op indices, got {len(indices)}")
        codes = []
        for (source, target), index in zip(EDGES, indices, strict=True):
            try:
                code = operator.index(index)
            except TypeError:
                code = -1
            if not 0 <= code < len(OP_NAMES):
                raise UsageError(
                    f"op index {index!r} of edge {source}->{target} is not an integer in "
                    f"0..{len(OP_NAMES) - 1} ({', '.join(OP_NAMES)})"
                )
            codes.append(code)
        return NB201Arch.from_codes(codes)

    def to_model(self, arch: NB201Arch | str, task: Task) -> nn.Module:
        """NB201's evaluation network for `arch` with `task.num_classes` outputs (10 if unset)."""
        from nasrepro.spaces.nasbench201_net import NB201Network, arch_cell

        num_classes = int(getattr(task, "num_classes", 10))
        return NB201Network(arch_cell(arch), num_classes=num_classes)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(ops=list(OP_NAMES), edges=[list(e) for e in EDGES], isomorphism=self.isomorphism)
        if self.isomorphism:
            out["classes"] = len(set(_classes()[0].values()))
        return out


SPACES.add("nasbench201", NB201Space)
