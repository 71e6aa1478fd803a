"""A hierarchical multi-cell space: L stages, each with its own cell DAG (FaDE, Neumeyer et al. 2024).

Neumeyer, Stier & Granitzer, "Efficient NAS with FaDE on Hierarchical Spaces" (IDA 2024, arXiv
2404.16218), Sec. 3 and the authors' code (``SimonNeumeyer/FaDE``, ``fade/graph.py``, ``fade/diffNN.py``,
``fade/model.py``). An architecture is a sequence of ``stages`` cells, one per stage, each a small DAG:

* a cell has vertices ``1..n`` and directed edges between them; it must be acyclic;
* a vertex without predecessor is fed by INPUT, a vertex without successor feeds OUTPUT
  (``Graph._append_input_output_node``);
* an edge from INPUT is the identity, every other edge (including those into OUTPUT) is an
  operation followed by ReLU: ``Linear(w, w)`` for MLP cells, ``Conv2d(c, c, k)`` for conv cells
  (``GraphNN.generate_edgeNNs``/``_get_operation``);
* a vertex (and OUTPUT) sums its inputs (``GraphNN._reduce``; the optional L2 normalisation of the
  code is off here, its default).

Encoding. A cell is written as JSON adjacency rows, ``{"1": [0, 1, 1], "2": [0, 0, 1], "3": [0, 0, 0]}``
(row ``i`` marks the successors of vertex ``i``), the format of the code's ``technical`` column; the
code's own variant without the last (sink) row is accepted too. An architecture is the JSON list of
its cells, stage by stage; the canonical string is compact JSON and ``parse(str(arch)) == arch``.

Isomorphism. Two cells are equivalent when their graphs are isomorphic (the code's
``Graph.is_isomorphic``, networkx). The canonical cell renumbers the vertices by the topological
order whose edge list is smallest, so equal cells hash equal and the canonical adjacency is upper
triangular (every flip of an upper-triangular entry is again a DAG). Stage order matters: the
canonical architecture is the tuple of canonical cells.

Networks (``to_model``; the code's ``MLP`` and ``ConvolutionalModel``):

* MLP: flatten -> Linear(features, width) + ReLU -> the L cells -> Linear(width, classes);
* conv: per stage a stem conv (c_{i-1} -> c_i, kernel k) -> the cell -> pooling, with the code's
  pooling bases ([4], [4, 4], [4, 2, 2]; for L > 3 the code places two inner 2x poolings at random,
  here evenly spaced: a labelled deviation, so a model is a function of its architecture) and its
  channel counts (``conv_final_number_channels`` divided by the later bases); then a linear classifier.

The network takes a stage factory, so the FaDE estimator builds its region (k candidate cells per
stage) on exactly the same skeleton.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.space import Space
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

#: Largest cell the space accepts: canonicalisation tries the cell's topological orders (<= n!).
MAX_VERTICES = 7
Edge = tuple[int, int]


# --- cells ------------------------------------------------------------------------------------


def _topological_orders(n: int, edges: frozenset[Edge]) -> Iterator[tuple[int, ...]]:
    preds = {v: {a for a, b in edges if b == v} for v in range(1, n + 1)}

    def extend(prefix: tuple[int, ...], placed: frozenset[int]) -> Iterator[tuple[int, ...]]:
        if len(prefix) == n:
            yield prefix
            return
        for v in range(1, n + 1):
            if v not in placed and preds[v] <= placed:
                yield from extend((*prefix, v), placed | {v})

    return extend((), frozenset())


def _find_cycle(n: int, edges: frozenset[Edge]) -> bool:
    indegree = {v: 0 for v in range(1, n + 1)}
    for _, b in edges:
        indegree[b] += 1
    ready, seen = [v for v, d in indegree.items() if d == 0], 0
    while ready:
        v = ready.pop()
        seen += 1
        for a, b in edges:
            if a == v:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    return seen < n


@functools.cache
def _canonical_edges(n: int, edges: frozenset[Edge]) -> frozenset[Edge]:
    """The smallest sorted edge list over all topological renumberings (an exact invariant)."""
    best: tuple[Edge, ...] | None = None
    for order in _topological_orders(n, edges):
        number = {v: i + 1 for i, v in enumerate(order)}
        form = tuple(sorted((number[a], number[b]) for a, b in edges))
        if best is None or form < best:
            best = form
    assert best is not None
    return frozenset(best)


@dataclass(frozen=True)
class CellGraph:
    """One cell: vertices ``1..n`` and directed edges ``(i, j)`` between them (a DAG)."""

    n: int
    edges: frozenset[Edge]

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or not 1 <= self.n <= MAX_VERTICES:
            raise UsageError(f"a cell has 1..{MAX_VERTICES} vertices, got {self.n!r}")
        edges = frozenset((int(a), int(b)) for a, b in self.edges)
        for a, b in edges:
            if not (1 <= a <= self.n and 1 <= b <= self.n) or a == b:
                raise UsageError(f"cell edge {a}->{b} is not between two distinct vertices of 1..{self.n}")
        if _find_cycle(self.n, edges):
            raise UsageError(f"cell {self.to_json_for(self.n, edges)} is not a DAG: its edges form a cycle")
        object.__setattr__(self, "edges", edges)

    # --- JSON adjacency ------------------------------------------------------------------------
    @staticmethod
    def to_json_for(n: int, edges: frozenset[Edge]) -> str:
        rows = {str(i): [int((i, j) in edges) for j in range(1, n + 1)] for i in range(1, n + 1)}
        return json.dumps(rows, separators=(",", ":"))

    def to_json(self) -> str:
        return self.to_json_for(self.n, self.edges)

    def rows(self) -> dict[str, list[int]]:
        return json.loads(self.to_json())

    @classmethod
    def from_rows(cls, rows: Any) -> CellGraph:
        """A cell from adjacency rows ``{"1": [..], ...}``; the code's form without the sink row too."""
        if not isinstance(rows, dict) or not rows:
            raise UsageError(
                f'a cell is a JSON object of adjacency rows like {{"1":[0,1],"2":[0,0]}}, got {rows!r}'
            )
        try:
            keys = sorted(int(k) for k in rows)
        except (TypeError, ValueError):
            raise UsageError(f"cell row names must be vertex numbers 1..n, got {sorted(rows)}") from None
        widths = {len(r) if isinstance(r, list) else -1 for r in rows.values()}
        if len(widths) != 1 or -1 in widths:
            raise UsageError(f"every cell row must be a list of the same length, got {rows!r}")
        n = widths.pop()
        if keys != list(range(1, len(keys) + 1)) or n not in (len(keys), len(keys) + 1):
            raise UsageError(
                f"cell rows must be named 1..n with n (or n+1, the code's form) entries each: {rows!r}"
            )
        edges = set()
        for key, row in rows.items():
            for j, bit in enumerate(row, start=1):
                if bit not in (0, 1, True, False):
                    raise UsageError(f"cell adjacency entries are 0 or 1, got {bit!r} in row {key}")
                if bit:
                    edges.add((int(key), j))
        return cls(n, frozenset(edges))

    # --- structure -----------------------------------------------------------------------------
    def canonical(self) -> CellGraph:
        return CellGraph(self.n, _canonical_edges(self.n, self.edges))

    def order(self) -> tuple[int, ...]:
        """A topological order of the vertices (the first in lexicographic order)."""
        return next(_topological_orders(self.n, self.edges))

    def predecessors(self, v: int) -> list[int]:
        return sorted(a for a, b in self.edges if b == v)

    def sources(self) -> list[int]:
        """Vertices fed by INPUT (no predecessor)."""
        return [v for v in range(1, self.n + 1) if not self.predecessors(v)]

    def sinks(self) -> list[int]:
        """Vertices feeding OUTPUT (no successor)."""
        return [v for v in range(1, self.n + 1) if not any(a == v for a, _ in self.edges)]

    def num_operations(self) -> int:
        """Edges that carry an op: all but INPUT's (the code's ``get_number_operations``)."""
        return len(self.edges) + len(self.sinks())


def parse_cell(text: str) -> CellGraph:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"cell {text!r} is not JSON adjacency rows ({exc.msg})") from None
    return CellGraph.from_rows(rows)


@dataclass(frozen=True)
class HierArch:
    """An architecture: one cell per stage."""

    cells: tuple[CellGraph, ...]

    def __str__(self) -> str:
        return "[" + ",".join(c.to_json() for c in self.cells) + "]"

    @classmethod
    def parse(cls, text: str) -> HierArch:
        if isinstance(text, HierArch):
            return text
        if not isinstance(text, str):
            raise UsageError(
                f"a hierarchical architecture is a JSON list of cells, got {type(text).__name__}"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"architecture {text!r} is not JSON ({exc.msg}); expected a list of cells"
            ) from None
        if not isinstance(value, list) or not value:
            raise UsageError(
                f'a hierarchical architecture is a non-empty JSON list of cells like [{{"1":[0]}}], got {text!r}'
            )
        return cls(tuple(CellGraph.from_rows(rows) for rows in value))

    def canonical(self) -> HierArch:
        return HierArch(tuple(c.canonical() for c in self.cells))


@functools.cache
def cells_with(n: int) -> tuple[CellGraph, ...]:
    """Every canonical cell with `n` vertices (n <= 5: at most 2**10 graphs to reduce)."""
    pairs = [(i, j) for i in range(1, n + 1) for j in range(i + 1, n + 1)]
    found = {
        CellGraph(n, frozenset(p for p, bit in zip(pairs, bits, strict=True) if bit)).canonical()
        for bits in itertools.product((0, 1), repeat=len(pairs))
    }
    return tuple(sorted(found, key=lambda c: sorted(c.edges)))


# --- networks -----------------------------------------------------------------------------------


def cell_module(cell: CellGraph, make_op: Callable[[], nn.Module]) -> nn.Module:
    """The cell as a module (the code's ``GraphNN``): identity INPUT edges, op+ReLU elsewhere, sums."""
    from torch import nn

    class CellModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = cell
            self.order = cell.order()
            self.inputs = {v: cell.predecessors(v) for v in range(1, cell.n + 1)}
            self.sinks = cell.sinks()
            ops = {f"e{a}_{b}": nn.Sequential(make_op(), nn.ReLU()) for a, b in sorted(cell.edges)}
            ops.update({f"e{v}_out": nn.Sequential(make_op(), nn.ReLU()) for v in self.sinks})
            self.ops = nn.ModuleDict(ops)

        def forward(self, x: Any) -> Any:
            values: dict[int, Any] = {}
            for v in self.order:
                preds = self.inputs[v]
                if not preds:  # fed by INPUT through an identity edge
                    values[v] = x
                else:
                    total = self.ops[f"e{preds[0]}_{v}"](values[preds[0]])
                    for p in preds[1:]:
                        total = total + self.ops[f"e{p}_{v}"](values[p])
                    values[v] = total
            out = self.ops[f"e{self.sinks[0]}_out"](values[self.sinks[0]])
            for v in self.sinks[1:]:
                out = out + self.ops[f"e{v}_out"](values[v])
            return out

    return CellModule()


def pooling_bases(stages: int) -> list[int]:
    """The code's pooling factors per stage (``_calculate_pooling``), inner ones evenly spaced for L > 3."""
    if stages < 3:
        return [4] * stages
    if stages == 3:
        return [4, 2, 2]
    inner = {1, stages - 2}
    return [2] + [2 if i in inner else 1 for i in range(1, stages - 1)] + [2]


#: stage factory: (stage index, channels or width) -> the stage's module
StageFactory = Callable[[int, int], "nn.Module"]


def build_network(
    stage: StageFactory,
    stages: int,
    input_shape: Sequence[int],
    num_classes: int,
    op: str,
    channels: int,
    width: int,
    kernel: int,
    pooling: str = "max",
) -> nn.Module:
    """The code's ``MLP`` (``op="linear"``) or ``ConvolutionalModel`` (``op="conv"``) around `stage`."""
    from torch import nn

    if op == "linear":
        features = math.prod(input_shape)
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, width),
            nn.ReLU(),
            *(stage(i, width) for i in range(stages)),
            nn.Linear(width, num_classes),
        )
    if len(input_shape) != 3:
        raise UsageError(f"conv cells need image inputs (C, H, W), got input shape {tuple(input_shape)}")
    bases = pooling_bases(stages)
    counts = [channels / math.prod(bases[i + 1 :]) for i in range(stages)]
    if any(c < 1 or c != int(c) for c in counts):
        raise UsageError(
            f"channels={channels} cannot be divided by the pooling bases {bases}; use a multiple of 16"
        )
    layers: list[nn.Module] = []
    c_prev, side = int(input_shape[0]), int(input_shape[1])
    for i, c in enumerate(int(c) for c in counts):
        layers += [nn.Conv2d(c_prev, c, kernel, padding=kernel // 2), stage(i, c)]
        if bases[i] > 1:
            pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
            layers.append(pool(bases[i], stride=bases[i], ceil_mode=True))
            side = math.ceil(side / bases[i])
        c_prev = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_prev * side * side, num_classes))


def make_op_factory(op: str, size: int, kernel: int) -> Callable[[], nn.Module]:
    from torch import nn

    if op == "linear":
        return lambda: nn.Linear(size, size)
    return lambda: nn.Conv2d(size, size, kernel, padding=kernel // 2)


def task_input_shape(task: Task) -> tuple[int, ...]:
    shape = getattr(task, "input_shape", None)
    if shape is None:
        shape = tuple(task.example_input(1)[0].shape[1:])
    return tuple(int(s) for s in shape)


# --- the space ---------------------------------------------------------------------------------


class HierarchicalSpace(Space):
    """L stages x one cell DAG each; `op` "conv" (images), "linear" (MLP) or "auto" (by task input)."""

    name = "hierarchical"

    def __init__(
        self,
        stages: int = 3,
        min_vertices: int = 1,
        max_vertices: int = 4,
        op: str = "auto",
        channels: int = 16,
        width: int = 32,
        kernel: int = 3,
        edge_prob: float = 0.5,
    ) -> None:
        if stages < 1:
            raise UsageError(f"the hierarchical space needs at least one stage (L >= 1), got {stages}")
        if not 1 <= min_vertices <= max_vertices <= MAX_VERTICES:
            raise UsageError(
                f"need 1 <= min_vertices <= max_vertices <= {MAX_VERTICES}, got {min_vertices}, {max_vertices}"
            )
        if op not in ("auto", "conv", "linear"):
            raise UsageError(f"cell op must be 'auto', 'conv' or 'linear', got {op!r}")
        if kernel not in (3, 5, 7):
            raise UsageError(f"conv kernel must be 3, 5 or 7 (the code's choices), got {kernel}")
        self.stages, self.min_vertices, self.max_vertices = stages, min_vertices, max_vertices
        self.op, self.channels, self.width, self.kernel, self.edge_prob = (
            op,
            channels,
            width,
            kernel,
            edge_prob,
        )

    def parse(self, text: str) -> HierArch:
        arch = HierArch.parse(text)
        self._check(arch)
        return arch

    def _check(self, arch: HierArch) -> None:
        if len(arch.cells) != self.stages:
            raise UsageError(
                f"this hierarchical space has {self.stages} stages; the architecture has {len(arch.cells)} cells"
            )
        for cell in arch.cells:
            if not self.min_vertices <= cell.n <= self.max_vertices:
                raise UsageError(
                    f"cell {cell.to_json()} has {cell.n} vertices; this space allows {self.min_vertices}..{self.max_vertices}"
                )

    def canonical(self, arch: HierArch | str) -> HierArch:
        return HierArch.parse(arch).canonical() if isinstance(arch, str) else arch.canonical()

    def sample_cell(self, rng: np.random.Generator) -> CellGraph:
        """A random cell: n uniform in the vertex range, each forward edge with `edge_prob`."""
        n = int(rng.integers(self.min_vertices, self.max_vertices + 1))
        edges = frozenset(
            (i, j) for i in range(1, n + 1) for j in range(i + 1, n + 1) if rng.random() < self.edge_prob
        )
        return CellGraph(n, edges).canonical()

    def sample(self, rng: np.random.Generator) -> HierArch:
        return HierArch(tuple(self.sample_cell(rng) for _ in range(self.stages)))

    def mutate_cell(self, cell: CellGraph, rng: np.random.Generator) -> CellGraph:
        """A non-isomorphic neighbour: flip one forward edge, or add / remove a vertex."""
        cell = cell.canonical()
        for _ in range(100):
            moves = ["flip"] if cell.n > 1 else []
            if cell.n < self.max_vertices:
                moves.append("add")
            if cell.n > self.min_vertices:
                moves.append("remove")
            move = moves[int(rng.integers(len(moves)))]
            if move == "flip":
                pairs = [(i, j) for i in range(1, cell.n + 1) for j in range(i + 1, cell.n + 1)]
                pair = pairs[int(rng.integers(len(pairs)))]
                child = CellGraph(cell.n, cell.edges ^ {pair})
            elif move == "add":  # a new last vertex fed by one random existing vertex
                source = int(rng.integers(1, cell.n + 1))
                child = CellGraph(cell.n + 1, cell.edges | {(source, cell.n + 1)})
            else:
                gone = int(rng.integers(1, cell.n + 1))
                rename = {v: v - (v > gone) for v in range(1, cell.n + 1) if v != gone}
                child = CellGraph(
                    cell.n - 1, frozenset((rename[a], rename[b]) for a, b in cell.edges if gone not in (a, b))
                )
            child = child.canonical()
            if child != cell:
                return child
        raise UsageError(
            f"cell {cell.to_json()} has no neighbour in this space (vertex range {self.min_vertices}..{self.max_vertices})"
        )

    def mutate(self, arch: HierArch | str, rng: np.random.Generator) -> HierArch:
        """One stage's cell replaced by a neighbour (edit distance one at the cell level)."""
        arch = self.canonical(arch)
        stage = int(rng.integers(self.stages))
        cells = list(arch.cells)
        cells[stage] = self.mutate_cell(cells[stage], rng)
        return HierArch(tuple(cells))

    def cell_count(self) -> int | None:
        """Distinct cells (up to isomorphism) in the vertex range; None beyond 5 vertices."""
        if self.max_vertices > 5:
            return None
        return sum(len(cells_with(n)) for n in range(self.min_vertices, self.max_vertices + 1))

    def size(self) -> int | None:
        count = self.cell_count()
        return None if count is None else count**self.stages

    def resolved_op(self, task: Task) -> str:
        if self.op != "auto":
            return self.op
        return "conv" if len(task_input_shape(task)) == 3 else "linear"

    def network(self, stage: StageFactory, task: Task) -> nn.Module:
        """This space's skeleton for `task` around any stage factory (fixed cells or a FaDE region)."""
        return build_network(
            stage,
            self.stages,
            task_input_shape(task),
            int(getattr(task, "num_classes", 10)),
            self.resolved_op(task),
            self.channels,
            self.width,
            self.kernel,
        )

    def to_model(self, arch: HierArch | str, task: Task) -> nn.Module:
        arch = self.canonical(arch)
        self._check(arch)
        op = self.resolved_op(task)
        return self.network(
            lambda i, size: cell_module(arch.cells[i], make_op_factory(op, size, self.kernel)), task
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            stages=self.stages,
            vertices=[self.min_vertices, self.max_vertices],
            op=self.op,
            channels=self.channels,
            width=self.width,
            kernel=self.kernel,
            cells=self.cell_count(),
        )
        return out


SPACES.add("hierarchical", HierarchicalSpace)


class HierarchicalMLPSpace(HierarchicalSpace):
    """The same space with MLP cells (``Linear(w, w)`` edges, the code's MNIST setting)."""

    name = "hierarchical-mlp"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"op": "linear", **kwargs})


SPACES.add("hierarchical-mlp", HierarchicalMLPSpace)
