"""The hierarchical NAS-Bench-201 space as a context-free grammar (Schrodi et al., NeurIPS 2023).

Schrodi, Stoll, Ru, Sukthanker, Brox & Hutter, "Construction of Hierarchical Neural Architecture
Search Spaces based on Context-free Grammars" (arXiv 2211.01842), its hierarchical NB-201 space;
grammars ``benchmarks/search_spaces/hierarchical_nb201/grammars/{macro,cell}.cfg`` of
``automl/hierarchical_nas_construction`` (fact sheet ``fade.md`` section 4), written here as data for
`nasrepro.spaces.grammar`:

==========  ===============================================================================
D2 (start)  Linear3(D1 D1 D0) | Linear3(D0 D1 D1) | Linear4(D1 D1 D0 D0)
D1          Linear3(C C DOWN) | Linear4(C C C DOWN) | Residual3(C C DOWN DOWN)
D0          Linear3(C C CELL) | Linear4(C C C CELL) | Residual3(C C CELL CELL)
DOWN        Linear2(CELL RES) | Linear3(CELL CELL RES) | Residual2(CELL RES RES)
C           Linear2(CELL CELL) | Linear3(CELL CELL CELL) | Residual2(CELL CELL CELL)
CELL        Cell(OPS OPS OPS OPS OPS OPS)
OPS         id | zero | conv3x3 | conv1x1 | avg_pool
RES         resBlock
==========  ===============================================================================

The reference writes the terminal ``"resBlock"`` inline in DOWN's alternatives; here it is the
one-alternative nonterminal RES (same strings, same language; never a mutation site, as NePS only
mutates nonterminals with several productions). The 6 slots of ``Cell`` are NB-201's edges
(1,2), (1,3), (2,3), (1,4), (2,4), (3,4) (``NASBench201Cell.edge_list``), i.e. this project's
`nasbench201.EDGES` shifted by one.

Topologies (NePS ``topologies``; nodes 1..n, node 1 the input, node n the output, every node the
*sum* of its incoming edges, each edge one slot in order): ``LinearK`` = chain of K edges
(sequential composition); ``Residual2`` = edges (1,2), (1,3), (2,3): ``out = c(a(x)) + b(x)``;
``Residual3`` = edges (1,2), (2,3), (1,4), (3,4): ``out = d(b(a(x))) + c(x)``. The network is built in
`nasrepro.spaces.hierarchical_nb201_net` (kept apart so the grammar never imports torch).

Constraint (NePS ``constraints`` with ``none_operation="zero"``): a cell must keep a path from its
input to its output that avoids ``zero`` edges (a cut cell outputs zeros). [interpretation] NePS applies
it edge by edge while sampling; here a cut cell is drawn again (so sampling is uniform over the
connected cells) and is refused by `parse` with one error line.

Isomorphism (``isomorphism=True``): each cell is replaced by the representative of its NB-201
equivalence class (`nasbench201.canonical_arch`, rules R1-R4), so architectures whose cells compute
the same functions hash equal. The macro levels are taken as written: a topology's slots are not
interchangeable (sums of different paths), so no further identity is applied. [interpretation]
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.space import Space
from nasrepro.spaces import SPACES
from nasrepro.spaces.grammar import Alternative, Grammar, Node

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

#: the five NB-201 operations under their names in ``cell.cfg`` (its order)
OPS: tuple[str, ...] = ("id", "zero", "conv3x3", "conv1x1", "avg_pool")
#: grammar op name -> `nasbench201.OP_NAMES` (whose modules build them)
TO_NB201: dict[str, str] = {
    "id": "skip_connect",
    "zero": "none",
    "conv3x3": "nor_conv_3x3",
    "conv1x1": "nor_conv_1x1",
    "avg_pool": "avg_pool_3x3",
}
FROM_NB201 = {v: k for k, v in TO_NB201.items()}
#: the cell's slots as (source, target) nodes 1..4 (``NASBench201Cell.edge_list``)
CELL_EDGES: tuple[tuple[int, int], ...] = ((1, 2), (1, 3), (2, 3), (1, 4), (2, 4), (3, 4))


def _linear(k: int) -> tuple[tuple[int, int], ...]:
    return tuple((i, i + 1) for i in range(1, k + 1))


#: macro topologies: their edges (one slot each, in order) between nodes 1..n; nodes sum inputs
TOPOLOGIES: dict[str, tuple[tuple[int, int], ...]] = {
    "Linear2": _linear(2),
    "Linear3": _linear(3),
    "Linear4": _linear(4),
    "Residual2": ((1, 2), (1, 3), (2, 3)),
    "Residual3": ((1, 2), (2, 3), (1, 4), (3, 4)),
}


def _alts(*spec: str) -> tuple[Alternative, ...]:
    """``"Linear3 C C DOWN"`` -> Alternative("Linear3", ("C", "C", "DOWN"))."""
    return tuple(Alternative(words[0], tuple(words[1:])) for words in (s.split() for s in spec))


PRODUCTIONS: dict[str, tuple[Alternative, ...]] = {
    "D2": _alts("Linear3 D1 D1 D0", "Linear3 D0 D1 D1", "Linear4 D1 D1 D0 D0"),
    "D1": _alts("Linear3 C C DOWN", "Linear4 C C C DOWN", "Residual3 C C DOWN DOWN"),
    "D0": _alts("Linear3 C C CELL", "Linear4 C C C CELL", "Residual3 C C CELL CELL"),
    "DOWN": _alts("Linear2 CELL RES", "Linear3 CELL CELL RES", "Residual2 CELL RES RES"),
    "C": _alts("Linear2 CELL CELL", "Linear3 CELL CELL CELL", "Residual2 CELL CELL CELL"),
    "CELL": _alts("Cell " + " ".join(["OPS"] * len(CELL_EDGES))),
    "OPS": _alts(*OPS),
    "RES": _alts("resBlock"),
}
START = "D2"


# --- cells: constraint and isomorphism -------------------------------------------------------------


def cell_ops(node: Node) -> tuple[str, ...]:
    return tuple(child.symbol for child in node.children)


def cell_is_connected(ops: tuple[str, ...]) -> bool:
    """Whether node 4 is reachable from node 1 over non-``zero`` edges."""
    reached = {1}
    for (source, target), op in zip(CELL_EDGES, ops, strict=True):  # edges are in topological order
        if op != "zero" and source in reached:
            reached.add(target)
    return 4 in reached


def _cell_constraint(node: Node) -> str | None:
    if cell_is_connected(cell_ops(node)):
        return None
    return "every path from the cell's input to its output crosses a zero edge (NePS's cell constraint)"


@functools.cache
def _canonical_ops(ops: tuple[str, ...]) -> tuple[str, ...]:
    from nasrepro.spaces.nasbench201 import NB201Arch, canonical_arch

    rep = canonical_arch(NB201Arch(tuple(TO_NB201[op] for op in ops)))
    return tuple(FROM_NB201[op] for op in rep.ops)


def _canonical_cell(node: Node) -> Node:
    return Node(node.symbol, tuple(Node(op) for op in _canonical_ops(cell_ops(node))))


@functools.cache
def connected_cells() -> int:
    """Cells (of the 5**6) that satisfy the constraint."""
    return sum(cell_is_connected(ops) for ops in itertools.product(OPS, repeat=len(CELL_EDGES)))


def make_grammar(isomorphism: bool = True, name: str = "hierarchical-nb201") -> Grammar:
    return Grammar(
        PRODUCTIONS,
        START,
        name=name,
        constraints={"Cell": _cell_constraint},
        canonicalisers={"Cell": _canonical_cell} if isomorphism else {},
    )


# --- the space ---------------------------------------------------------------------------------------


class HierarchicalNB201Space(Space):
    """Derivations of the hierarchical NB-201 grammar; `channels` is the stem width C (the
    reference's ``base_channels`` = 16), doubled by every resBlock (4C at the head)."""

    def __init__(
        self, channels: int = 16, isomorphism: bool = True, name: str = "hierarchical-nb201"
    ) -> None:
        if not isinstance(channels, int) or channels < 1:
            raise UsageError(f"{name}: channels must be a positive integer, got {channels!r}")
        self.channels, self.isomorphism, self.name = channels, isomorphism, name
        self.grammar = make_grammar(isomorphism, name)

    def as_arch(self, arch: Node | str) -> Node:
        return self.grammar.validate(arch) if isinstance(arch, Node) else self.grammar.parse(arch)

    def parse(self, text: str) -> Node:
        return self.grammar.parse(text)

    def canonical(self, arch: Node | str) -> Node:
        return self.grammar.canonical(self.as_arch(arch))

    def sample(self, rng: np.random.Generator) -> Node:
        """A derivation drawn uniformly over each nonterminal's alternatives (not canonicalised;
        the evaluator's key is)."""
        return self.grammar.sample(rng)

    def mutate(self, arch: Node | str, rng: np.random.Generator) -> Node:
        """One random subtree resampled (Schrodi et al.'s mutation); the child's key differs."""
        return self.grammar.mutate(self.as_arch(arch), rng, key=self.key)

    def digest(self, arch: Node | str) -> str:
        return self.grammar.digest(self.as_arch(arch))

    def derivations(self) -> int:
        """Derivations with connected cells (equivalent cells counted apart)."""
        return self.grammar.count(known={"CELL": connected_cells()})

    def size(self) -> None:
        """Astronomically large (see `describe`'s ``log10_derivations``)."""
        return None

    def to_model(self, arch: Node | str, task: Task) -> nn.Module:
        from nasrepro.spaces.hierarchical_nb201_net import HierarchicalNB201Network

        shape = getattr(task, "input_shape", None) or (3, 32, 32)
        return HierarchicalNB201Network(
            self.as_arch(arch), int(getattr(task, "num_classes", 10)), self.channels, int(shape[0])
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            channels=self.channels,
            isomorphism=self.isomorphism,
            grammar=self.grammar.describe(),
            log10_derivations=round(math.log10(self.derivations()), 2),
        )
        return out


def _register(name: str, channels: int) -> None:
    SPACES.add(name, functools.partial(HierarchicalNB201Space, channels=channels, name=name))


_register("hierarchical-nb201", 16)  # the reference's base_channels
_register("hierarchical-nb201-c8", 8)
_register("hierarchical-nb201-c4", 4)
