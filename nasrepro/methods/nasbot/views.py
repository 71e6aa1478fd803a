"""How NASBOT sees a search space: a layer graph per architecture (for OTMANN), its mutation
operator and its initial pool.

* `LayerGraphSpace` (our MLP/CNN layer-graph spaces, `space.py`): the architecture *is* the
  graph; mutations are the nine modifiers (`mutations.mutate`) within the space's limits; the
  initial pool is the space's fixed pool (the code's `get_initial_pool()`).
* NAS-Bench-201 (`nasrepro.spaces.nasbench201`): `nb201_graph` below; a mutation is 1-5 of the
  space's own single-edge changes (same step distribution as the modifiers); the initial pool is
  random cells (interpretation: the paper has no NB201 pool).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasrepro.harness.space import Space
from nasrepro.methods.nasbot.graph import LayerGraph
from nasrepro.methods.nasbot.mutations import STEP_PROBS

#: NB201's cells run at 16 channels in the first stage (all cells of a network share the cell)
NB201_CHANNELS = 16
_NB201_LABEL = {"nor_conv_1x1": "conv1", "nor_conv_3x3": "conv3", "avg_pool_3x3": "avg-pool"}


def nb201_graph(arch: Any) -> LayerGraph:
    """The layer graph of a NAS-Bench-201 cell (cached per cell string; see `_nb201_graph`)."""
    return _nb201_graph(str(arch))


@functools.lru_cache(maxsize=20_000)
def _nb201_graph(arch: str) -> LayerGraph:
    """The layer graph of a NAS-Bench-201 cell (kind ``nb201``).

    ip -> a 3x3 stem conv (node 0) -> one layer per live conv/pool edge, fed by the layers whose
    outputs make up the edge's source node (skip edges pass those layers on, ``none`` edges and
    edges out of all-zero nodes vanish) -> softmax (fed by the output node's layers) -> op.
    The cell is canonicalised first (isomorphic cells give one graph). Lossy where NASBOT's graphs
    cannot say more: a node's sum becomes multi-parent inputs (NASBOT concatenates), ``x + x`` is
    one edge, and a cell whose output is the input or zero is the bare stem -> softmax graph.
    """
    from nasrepro.spaces.nasbench201 import EDGES, NUM_NODES, canonical_arch

    cell = canonical_arch(arch)
    labels: list[str] = ["ip", "conv3"]
    units: list[int | None] = [None, NB201_CHANNELS]
    edges: set[tuple[int, int]] = {(0, 1)}
    nodes: list[list[int]] = [[1]]
    for target in range(1, NUM_NODES):
        terms: list[int] = []
        for source in range(target):
            op = cell.ops[EDGES.index((source, target))]
            inputs = nodes[source]
            if op == "none" or not inputs:
                continue
            if op == "skip_connect":
                terms.extend(inputs)
                continue
            labels.append(_NB201_LABEL[op])
            units.append(None if op == "avg_pool_3x3" else NB201_CHANNELS)
            layer = len(labels) - 1
            edges.update((i, layer) for i in inputs)
            terms.append(layer)
        nodes.append(sorted(set(terms)))
    out = [i for i in nodes[-1] if i != 0] or [1]
    labels += ["softmax", "op"]
    units += [None, None]
    softmax = len(labels) - 2
    edges.update((i, softmax) for i in out)
    edges.add((softmax, softmax + 1))
    return LayerGraph("nb201", tuple(labels), tuple(units), (None,) * len(labels), tuple(edges))


@dataclass(frozen=True)
class GraphView:
    """NASBOT's handle on one space."""

    kind: str
    to_graph: Callable[[Any], LayerGraph]
    mutate: Callable[[Any, np.random.Generator], Any]
    initial_pool: Callable[[np.random.Generator, int], list[Any]]


def _steps(rng: np.random.Generator) -> int:
    return 1 + int(rng.choice(len(STEP_PROBS), p=np.asarray(STEP_PROBS) / sum(STEP_PROBS)))


def view_for(space: Space) -> GraphView | None:
    """NASBOT's view of `space`, or None when it has no layer-graph view."""
    from nasrepro.methods.nasbot.space import LayerGraphSpace

    if isinstance(space, LayerGraphSpace):
        return GraphView(space.kind, lambda g: g, space.mutate_steps, lambda rng, n: space.initial_pool()[:n])
    if space.name == "nasbench201" and hasattr(space, "enumerate"):

        def mutate(arch: Any, rng: np.random.Generator) -> Any:
            for _ in range(_steps(rng)):
                arch = space.mutate(arch, rng)
            return space.canonical(arch)

        def pool(rng: np.random.Generator, n: int) -> list[Any]:
            return [space.sample(rng) for _ in range(n)]

        return GraphView("nb201", nb201_graph, mutate, pool)
    return None


def unique(archs: Sequence[Any], key: Callable[[Any], str]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for arch in archs:
        if key(arch) not in seen:
            seen.add(key(arch))
            out.append(arch)
    return out
