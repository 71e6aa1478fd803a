"""NASBOT's layer graphs (Kandasamy et al. 2018, Sec. 2 and App. A; code `nn/neural_network.py`).

A network is a DAG of layers with exactly one ``ip`` and one ``op`` layer. Every layer has a label
(its operation), a number of units (channels / neurons; ``None`` for ip, op, pooling and decision
layers) and, in CNNs, a stride (1 or 2 for conv/res layers, ``None`` otherwise). Three kinds:

* ``cnn``: labels ip, op, fc, max-pool, avg-pool, softmax, conv3/5/7, res3/5/7
  (``get_cnn_layer_labels(max_conv_size=7)``);
* ``mlp-reg`` / ``mlp-class``: ip, op, the rectifiers relu, crelu, leaky-relu, softplus, elu, the
  sigmoids logistic, tanh, and the decision layer ``linear`` (regression) or ``softmax``;
* ``nb201`` (our addition, not the paper's): the graph view of a NAS-Bench-201 cell (`nb201_view`),
  labels ip, op, conv1, conv3, avg-pool (stride 1, so no image-size checks) and softmax.

Validity (`LayerGraph.__post_init__`, one `UsageError` line naming the first bad layer) follows the
reference's checks: known labels, one ip and one op, positive integer units on processing
layers, strides on conv layers only, no cycle, every layer on a path from ip to op, only decision
layers feed op (and they feed nothing else), and for CNNs: conv layers right after ip, equal image
sizes at every merge, no conv or pool after the flattening fc/softmax layers.
The demo search limits (5-60 layers, in/out-degree, edges, 8-1024 units) are a separate,
optional check (`Limits.check`), since the reference's own example networks fall outside them.

`str(graph)` is a canonical string (layers in a canonical topological order, see `canonical`), so
``parse(str(g)) == g``, and isomorphic graphs compare and hash equal. The layer masses (Sec. 3,
`compute_layer_masses`) and the path-length features of OTMANN's structural term are computed
once per graph and cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.canonical import canonical_ranks

MLP_RECTIFIERS: tuple[str, ...] = ("relu", "crelu", "leaky-relu", "softplus", "elu")
MLP_SIGMOIDS: tuple[str, ...] = ("logistic", "tanh")
CONV_LABELS: tuple[str, ...] = ("conv3", "res3", "conv5", "res5", "conv7", "res7")
#: the NAS-Bench-201 cell view's 1x1 convolution (kind ``nb201``; see `nb201_view`)
NB201_CONV_LABELS: tuple[str, ...] = ("conv1", "conv3")
POOL_LABELS: tuple[str, ...] = ("max-pool", "avg-pool")
DECISION_LABELS: frozenset[str] = frozenset({"softmax", "linear"})

#: Every kind's labels in the reference's order (the rows of its label-mismatch matrices).
LABELS: dict[str, tuple[str, ...]] = {
    "cnn": ("ip", "op", "fc", *POOL_LABELS, "softmax", *CONV_LABELS),
    "mlp-reg": ("ip", "op", *MLP_RECTIFIERS, *MLP_SIGMOIDS, "linear"),
    "mlp-class": ("ip", "op", *MLP_RECTIFIERS, *MLP_SIGMOIDS, "softmax"),
    "nb201": ("ip", "op", "avg-pool", "softmax", *NB201_CONV_LABELS),
}
#: Layer groups of the structural penalty (`otmann.py`: CNN/MLP_STRUCTURAL_PENALTY_GROUPS).
GROUPS: dict[str, tuple[str, ...]] = {
    "cnn": ("all", "conv", "pool", "fc"),
    "mlp-reg": ("all", "rectifier", "sigmoid"),
    "mlp-class": ("all", "rectifier", "sigmoid"),
    "nb201": ("all", "conv", "pool"),
}
PATH_LENGTH_TYPES: tuple[str, ...] = ("shortest", "longest", "rw")
_GROUP_OF: dict[str, str] = {
    **{label: "conv" for label in CONV_LABELS + NB201_CONV_LABELS},
    **{label: "pool" for label in POOL_LABELS},
    "fc": "fc",
    **{label: "rectifier" for label in MLP_RECTIFIERS},
    **{label: "sigmoid" for label in MLP_SIGMOIDS},
}
#: ip and op each weigh max(0.1 x processing mass, 100); fc layers of CNNs count 0.1 x in x out.
_NON_PROCESSING_MASS_FRACTION = 0.1
_MIN_NON_PROCESSING_MASS = 100.0
_FC_MASS_COEFF = 0.1


def has_units(label: str) -> bool:
    """Processing layers carry units; ip, op, pooling and decision layers do not."""
    return label in _GROUP_OF and label not in POOL_LABELS


# --- the graph --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LayerGraph:
    """One network: per-layer `labels`, `units`, `strides` and directed `edges` (parent, child)."""

    kind: str
    labels: tuple[str, ...]
    units: tuple[int | None, ...]
    strides: tuple[int | None, ...]
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "units", tuple(None if u is None else _as_int(u) for u in self.units))
        strides = (None,) * len(self.labels) if self.strides is None else self.strides
        object.__setattr__(self, "strides", tuple(None if s is None else _as_int(s) for s in strides))
        object.__setattr__(self, "edges", tuple(sorted({(int(a), int(b)) for a, b in self.edges})))
        _validate(self)

    @classmethod
    def build(
        cls,
        kind: str,
        labels: Sequence[str],
        units: Sequence[int | None],
        edges: Iterable[tuple[int, int]],
        strides: Sequence[int | None] | None = None,
    ) -> LayerGraph:
        """A graph from plain lists (strides default to ``None``; CNN conv layers then need them)."""
        return cls(
            kind, tuple(labels), tuple(units), None if strides is None else tuple(strides), tuple(edges)
        )

    def renumbered(self, positions: Sequence[int]) -> LayerGraph:
        """The same network with layer i stored at index positions[i] (an isomorphic copy)."""
        if sorted(positions) != list(range(self.num_layers)):
            raise UsageError(
                f"a renumbering of {self.num_layers} layers must be a permutation of 0..{self.num_layers - 1}"
            )
        inverse = np.argsort(positions)
        return LayerGraph(
            self.kind,
            tuple(self.labels[i] for i in inverse),
            tuple(self.units[i] for i in inverse),
            tuple(self.strides[i] for i in inverse),
            tuple((int(positions[a]), int(positions[b])) for a, b in self.edges),
        )

    @property
    def num_layers(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def parents(self) -> tuple[tuple[int, ...], ...]:
        found: list[list[int]] = [[] for _ in self.labels]
        for a, b in self.edges:
            found[b].append(a)
        return tuple(tuple(p) for p in found)

    @functools.cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        found: list[list[int]] = [[] for _ in self.labels]
        for a, b in self.edges:
            found[a].append(b)
        return tuple(tuple(c) for c in found)

    @functools.cached_property
    def topological_order(self) -> tuple[int, ...]:
        """Kahn's order from ip (validity guarantees it covers every layer)."""
        order, _ = _kahn(self.num_layers, self.parents, self.children)
        return tuple(order)

    # canonical form --------------------------------------------------------------------------

    @functools.cached_property
    def _canonical_order(self) -> tuple[int, ...]:
        """A topological order that depends only on the isomorphism class: Kahn's algorithm
        taking, among the ready layers, the one with the smallest canonical rank."""
        keys = [(label, -1 if u is None else u, -1 if s is None else s) for label, u, s in self._layers()]
        ranks = canonical_ranks(keys, self.edges)
        order, _ = _kahn(self.num_layers, self.parents, self.children, priority=ranks)
        return tuple(order)

    @functools.cached_property
    def canonical(self) -> str:
        """The canonical string (see `parse` for the format)."""
        position = {layer: i for i, layer in enumerate(self._canonical_order)}
        parts = []
        for layer in self._canonical_order:
            label, units, stride = self.labels[layer], self.units[layer], self.strides[layer]
            text = label + ("" if units is None else f":{units}") + ("" if stride is None else f"/{stride}")
            parents = sorted(position[p] for p in self.parents[layer])
            if parents:
                text += "<" + ",".join(map(str, parents))
            parts.append(text)
        return "|".join([self.kind, *parts])

    def __str__(self) -> str:
        return self.canonical

    def __repr__(self) -> str:
        return f"LayerGraph.parse({self.canonical!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerGraph) and self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    @classmethod
    def parse(cls, text: str) -> LayerGraph:
        """Parse ``kind|layer|layer|...`` where a layer is ``label[:units][/stride][<p,q,...]`` and
        ``p, q`` are the indices of its parents in the string (e.g.
        ``cnn|ip|conv3:64/1<0|max-pool<1|fc:128<2|softmax<3|op<4``)."""
        if not isinstance(text, str) or "|" not in text:
            raise UsageError(
                f"a NASBOT layer graph is a string like 'mlp-reg|ip|relu:64<0|linear<1|op<2', got {text!r}"
            )
        kind, *tokens = text.strip().split("|")
        labels, units, strides, edges = [], [], [], []
        for index, token in enumerate(tokens):
            match = _LAYER_TOKEN.fullmatch(token.strip())
            if match is None:
                raise UsageError(
                    f"in layer graph {text!r}: bad layer {index} {token!r}, expected label[:units][/stride][<parents]"
                )
            labels.append(match["label"])
            units.append(None if match["units"] is None else int(match["units"]))
            strides.append(None if match["stride"] is None else int(match["stride"]))
            if match["parents"]:
                edges.extend((int(p), index) for p in match["parents"].split(","))
        return cls(kind, tuple(labels), tuple(units), tuple(strides), tuple(edges))

    def _layers(self) -> Iterable[tuple[str, int | None, int | None]]:
        return zip(self.labels, self.units, self.strides, strict=True)

    # OTMANN inputs (cached: computed once per network) --------------------------------------------

    @functools.cached_property
    def masses(self) -> np.ndarray:
        """Layer masses (reference `compute_layer_masses`): a processing layer weighs (incoming
        channels) x (its units), x0.1 for CNN fc layers; a pool its incoming channels; ip and op
        zeta = max(0.1 x total processing mass, 100) each; decision layers share zeta equally. ip
        emits one channel, pools pass their input channels on."""
        out_channels: dict[int, float] = {}
        masses = np.zeros(self.num_layers)
        for layer in self.topological_order:
            label = self.labels[layer]
            if label == "ip":
                out_channels[layer] = 1
                continue
            if label == "op" or label in DECISION_LABELS:
                continue
            incoming = sum(out_channels[p] for p in self.parents[layer])
            if label in POOL_LABELS:
                masses[layer] = incoming
                out_channels[layer] = incoming
            else:
                masses[layer] = incoming * self.units[layer]
                if label == "fc":
                    masses[layer] *= _FC_MASS_COEFF
                out_channels[layer] = self.units[layer]
        zeta = max(_NON_PROCESSING_MASS_FRACTION * masses.sum(), _MIN_NON_PROCESSING_MASS)
        decision = [i for i, label in enumerate(self.labels) if label in DECISION_LABELS]
        for i in decision:
            masses[i] = zeta / float(len(decision))
        masses[self.labels.index("ip")] = zeta
        masses[self.labels.index("op")] = zeta
        masses.setflags(write=False)
        return masses

    @functools.cached_property
    def path_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(from_ip, to_op): arrays (layers x groups*3) of the shortest, longest and random-walk
        path lengths from ip and to op, for each layer group of `GROUPS` (reference
        `_compute_ip_op_path_lengths`). For a group, only steps leaving a layer of the group count
        as length 1 (to op: edges out of the layer; from ip: edges into it, walking backwards).
        The random-walk length is the mean over the next layers of (their length + the step)."""
        groups = GROUPS[self.kind]
        member = np.array(
            [[g == "all" or _GROUP_OF.get(label) == g for g in groups] for label in self.labels], dtype=float
        )
        order = self.topological_order
        to_op = _path_lengths(reversed(order), self.children, member)
        from_ip = _path_lengths(order, self.parents, member)
        for array in (from_ip, to_op):
            array.setflags(write=False)
        return from_ip, to_op

    @functools.cached_property
    def label_codes(self) -> np.ndarray:
        """Each layer's index in `LABELS[kind]` (the rows of the label-mismatch matrix)."""
        codes = np.array([LABELS[self.kind].index(label) for label in self.labels], dtype=np.intp)
        codes.setflags(write=False)
        return codes


_LAYER_TOKEN = re.compile(
    r"(?P<label>[a-z][a-z0-9-]*)(?::(?P<units>\d+))?(?:/(?P<stride>\d+))?(?:<(?P<parents>\d+(?:,\d+)*))?"
)


def _as_int(value: object) -> int | object:
    """Integers stay integers (numpy ints included); anything else is left for `_validate`."""
    if isinstance(value, bool):
        return value
    try:
        as_int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return value
    return as_int if as_int == value else value


def _path_lengths(
    order: Iterable[int], successors: Sequence[Sequence[int]], member: np.ndarray
) -> np.ndarray:
    """Path lengths along `successors` towards the end of `order` (the layer with no successors),
    for all groups at once: columns [g0-shortest, g0-longest, g0-rw, g1-shortest, ...]."""
    num_groups = member.shape[1]
    shortest = np.zeros_like(member)
    longest = np.zeros_like(member)
    walk = np.zeros_like(member)
    for layer in order:
        nxt = list(successors[layer])
        if not nxt:
            continue  # the end layer: all lengths 0
        step = member[layer]
        shortest[layer] = (shortest[nxt] + step).min(axis=0)
        longest[layer] = (longest[nxt] + step).max(axis=0)
        walk[layer] = (walk[nxt] + step).sum(axis=0) / float(len(nxt))
    return np.stack([shortest, longest, walk], axis=2).reshape(member.shape[0], num_groups * 3)


def _kahn(
    n: int,
    parents: Sequence[Sequence[int]],
    children: Sequence[Sequence[int]],
    priority: Sequence[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Kahn's topological sort; returns (order, layers left over because they sit on or after a
    cycle). With `priority`, the ready layer with the smallest priority goes first."""
    import heapq

    indegree = [len(p) for p in parents]
    key = priority if priority is not None else range(n)
    ready = [(key[v], v) for v in range(n) if indegree[v] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, v = heapq.heappop(ready)
        order.append(v)
        for c in children[v]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, (key[c], c))
    placed = set(order)
    return order, [v for v in range(n) if v not in placed]


# --- validity ---------------------------------------------------------------------------------


def _validate(g: LayerGraph) -> None:
    """Raise one `UsageError` line naming the first invalid layer (see the module docstring)."""
    if g.kind not in LABELS:
        raise UsageError(f"unknown NASBOT network kind {g.kind!r}; choose from {', '.join(LABELS)}")
    n = len(g.labels)
    if not (len(g.units) == len(g.strides) == n):
        raise UsageError(
            f"{g.kind} layer graph: {n} labels but {len(g.units)} unit counts and {len(g.strides)} strides"
        )

    def fail(layer: int, problem: str) -> UsageError:
        return UsageError(f"invalid {g.kind} layer graph: layer {layer} ({g.labels[layer]}): {problem}")

    allowed = LABELS[g.kind]
    for i, (label, units, stride) in enumerate(g._layers()):
        if label not in allowed:
            raise fail(i, f"unknown label; a {g.kind} layer is one of {', '.join(allowed)}")
        if has_units(label):
            if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
                raise fail(i, f"needs a positive integer number of units, got {units!r}")
        elif units is not None:
            raise fail(i, f"takes no unit count (got {units!r}); only processing layers have units")
        if g.kind == "cnn" and label in CONV_LABELS:
            if stride not in (1, 2):
                raise fail(i, f"a convolution needs stride 1 or 2, got {stride!r}")
        elif stride is not None:
            raise fail(i, f"takes no stride (got {stride!r}); only cnn conv/res layers have strides")
    for name in ("ip", "op"):
        count = g.labels.count(name)
        if count != 1:
            raise UsageError(f"invalid {g.kind} layer graph: needs exactly one {name!r} layer, found {count}")
    for a, b in g.edges:
        if not (0 <= a < n and 0 <= b < n):
            raise UsageError(
                f"invalid {g.kind} layer graph: edge ({a}, {b}) names a layer outside 0..{n - 1}"
            )
        if a == b:
            raise fail(a, "has an edge to itself (a cycle)")
    _, left_over = _kahn(n, g.parents, g.children)
    if left_over:
        on_cycle = _layer_on_cycle(left_over, g.children)
        raise fail(on_cycle, "lies on a cycle; a layer graph must be acyclic")
    ip, op = g.labels.index("ip"), g.labels.index("op")
    from_ip, to_op = _reach(ip, g.children), _reach(op, g.parents)
    for i in range(n):
        if i not in from_ip or i not in to_op:
            raise fail(
                i, "is not on a path from ip to op" + ("" if i in from_ip else " (unreachable from ip)")
            )
    for i in g.parents[op]:
        if g.labels[i] not in DECISION_LABELS:
            raise fail(i, "feeds op, but only decision layers (softmax/linear) may")
    for i, label in enumerate(g.labels):
        if label in DECISION_LABELS and set(g.children[i]) != {op}:
            raise fail(i, "is a decision layer and must feed op only")
    if g.kind == "cnn":
        _validate_cnn(g, fail)


def _validate_cnn(g: LayerGraph, fail) -> None:
    """Reference `_check_layers_after_ip` and `_check_image_size_consistency`: sizes are tracked as
    the inverse downsampling factor (x2 per pool or stride-2 conv); fc/softmax/op flatten."""
    ip = g.labels.index("ip")
    for c in g.children[ip]:
        if g.labels[c] not in CONV_LABELS:
            raise fail(c, "follows ip, but the layers right after a CNN's input must be convolutions")
    size: dict[int, int | None] = {}
    for layer in g.topological_order:
        label = g.labels[layer]
        if label == "ip":
            size[layer] = 1
            continue
        incoming = {size[p] for p in g.parents[layer]}
        if len(incoming) > 1:
            shown = ", ".join(
                "flat" if s is None else f"1/{s}" for s in sorted(incoming, key=lambda s: s or 0)
            )
            raise fail(
                layer, f"merges inputs of different image sizes ({shown}); add pooling or strides to match"
            )
        (pre,) = incoming
        if label in CONV_LABELS or label in POOL_LABELS:
            if pre is None:
                raise fail(
                    layer, "comes after a flattening fc/softmax layer; convolutions and pools need an image"
                )
            size[layer] = 2 * pre if (label in POOL_LABELS or g.strides[layer] == 2) else pre
        else:
            size[layer] = None


def _reach(start: int, successors: Sequence[Sequence[int]]) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        for nxt in successors[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _layer_on_cycle(left_over: list[int], children: Sequence[Sequence[int]]) -> int:
    """The smallest layer that can reach itself among those Kahn's sort could not place."""
    for v in sorted(left_over):
        if v in set().union(*(_reach(c, children) for c in children[v])):
            return v
    return min(left_over)  # unreachable: a left-over set always contains a cycle


# --- optional search limits ---------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The demos' search constraints (`demos/*`, dragonfly `config_cnn.json`): NASBOT's mutations
    only propose graphs within them."""

    min_layers: int = 5
    max_layers: int = 60
    max_in_degree: int = 5
    max_out_degree: int = 55
    max_edges: int = 200
    min_units: int = 8
    max_units: int = 1024

    def check(self, g: LayerGraph) -> None:
        """Raise one `UsageError` line naming the first limit the graph breaks."""
        where = f"{g.kind} layer graph outside the search limits"
        if not self.min_layers <= g.num_layers <= self.max_layers:
            raise UsageError(f"{where}: {g.num_layers} layers, allowed {self.min_layers}-{self.max_layers}")
        if len(g.edges) > self.max_edges:
            raise UsageError(f"{where}: {len(g.edges)} edges, allowed at most {self.max_edges}")
        for i, label in enumerate(g.labels):
            if len(g.parents[i]) > self.max_in_degree:
                raise UsageError(
                    f"{where}: layer {i} ({label}) has {len(g.parents[i])} inputs, max {self.max_in_degree}"
                )
            if len(g.children[i]) > self.max_out_degree:
                raise UsageError(
                    f"{where}: layer {i} ({label}) has {len(g.children[i])} outputs, max {self.max_out_degree}"
                )
            units = g.units[i]
            if units is not None and not self.min_units <= units <= self.max_units:
                raise UsageError(
                    f"{where}: layer {i} ({label}) has {units} units, allowed {self.min_units}-{self.max_units}"
                )
