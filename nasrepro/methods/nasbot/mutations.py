"""NASBOT's nine network modifiers (Kandasamy et al. 2018, Sec. 4.2 and App. B, Table 6;
reference code: dragonfly `nn/nn_modifiers.py`, unnormalised masses `_PRIMITIVE_PROB_MASSES`).

Each primitive maps a valid `LayerGraph` to a new one or returns None when it does not apply
(e.g. nothing to remove); `mutate` draws 1-5 steps with probabilities .5/.25/.125/.075/.05 and,
per step, a primitive with the masses below, retrying other primitives until the result is valid
(constructor checks) and inside the search `Limits` -- so every mutant is valid.

| name | mass | effect |
|---|---|---|
| inc_single / dec_single | .1 / .1 | one processing layer's units x (1 +/- 1/8) |
| inc_en_masse / dec_en_masse | .1 / .1 | group g of G contiguous modifiable layers (G = 2 with >= 4 internal layers, 4 with >= 8, 8 with >= 16) x (1 +/- 1/8) |
| swap_layer | .2 | relabel one layer (CNN: the code's candidate table; MLP: rectifier <-> sigmoid) |
| wedge_layer | .1 | a new layer on an edge (units: mean of the edge's ends) |
| remove_layer | .1 | delete a processing layer, rewiring its parents to its children |
| branch | .2 | duplicate a path of >= 4 layers, each inner layer kept with probability .5 |
| skip | .2 | an edge from a layer to a later one (CNNs insert avg-pools to match sizes) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.graph import (
    CONV_LABELS,
    DECISION_LABELS,
    MLP_RECTIFIERS,
    MLP_SIGMOIDS,
    POOL_LABELS,
    LayerGraph,
    Limits,
    has_units,
)

CHANGE_FRAC = 0.125  # _DFLT_CHANGE_FRAC
PRIMITIVE_MASSES: dict[str, float] = {
    "inc_single": 0.1,
    "dec_single": 0.1,
    "inc_en_masse": 0.1,
    "dec_en_masse": 0.1,
    "swap_layer": 0.2,
    "wedge_layer": 0.1,
    "remove_layer": 0.1,
    "branch": 0.2,
    "skip": 0.2,
}
#: P(1..5 primitive steps per child) (`nasbot.py`, the GA's num_steps_probs)
STEP_PROBS: tuple[float, ...] = (0.5, 0.25, 0.125, 0.075, 0.05)
#: CNN swap candidates with the code's (unnormalised) probabilities
CNN_SWAPS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "conv3": (
        ("res3", "res5", "conv5", "conv7", "max-pool", "avg-pool"),
        (0.25, 0.25, 0.15, 0.25, 0.05, 0.05),
    ),
    "conv5": (("res3", "res5", "conv3", "conv7", "max-pool", "avg-pool"), (0.25, 0.25, 0.2, 0.2, 0.05, 0.05)),
    "conv7": (
        ("res3", "res5", "conv3", "conv5", "max-pool", "avg-pool"),
        (0.25, 0.25, 0.25, 0.15, 0.05, 0.05),
    ),
    "res3": (
        ("conv3", "conv5", "res5", "res7", "max-pool", "avg-pool"),
        (0.25, 0.25, 0.15, 0.25, 0.05, 0.05),
    ),
    "res5": (("conv3", "conv5", "res3", "res7", "max-pool", "avg-pool"), (0.25, 0.25, 0.2, 0.2, 0.05, 0.05)),
    "res7": (
        ("conv3", "conv5", "res3", "res5", "max-pool", "avg-pool"),
        (0.25, 0.25, 0.25, 0.15, 0.05, 0.05),
    ),
    "avg-pool": (("max-pool",), (1.0,)),
    "max-pool": (("avg-pool",), (1.0,)),
}
WEDGE_CNN = ("conv3", "conv5", "conv7", "res3", "res5", "res7")
WEDGE_MLP = MLP_RECTIFIERS + MLP_SIGMOIDS
POOL_PROB, STRIDE2_PROB, CHANGE_STRIDE_PROB = 0.05, 0.05, 0.05
BRANCH_MIN_PATH, BRANCH_END_PROB, BRANCH_KEEP_PROB = 4, 0.2, 0.5


@dataclass
class _Edit:
    """A mutable copy of a graph's lists (appending layers keeps old indices)."""

    kind: str
    labels: list[str]
    units: list[int | None]
    strides: list[int | None]
    edges: set[tuple[int, int]]

    @classmethod
    def of(cls, g: LayerGraph) -> _Edit:
        return cls(g.kind, list(g.labels), list(g.units), list(g.strides), set(g.edges))

    def add(self, label: str, units: int | None, stride: int | None) -> int:
        self.labels.append(label)
        self.units.append(units)
        self.strides.append(stride)
        return len(self.labels) - 1

    def remove(self, layer: int) -> None:
        keep = [i for i in range(len(self.labels)) if i != layer]
        new = {old: i for i, old in enumerate(keep)}
        self.labels = [self.labels[i] for i in keep]
        self.units = [self.units[i] for i in keep]
        self.strides = [self.strides[i] for i in keep]
        self.edges = {(new[a], new[b]) for a, b in self.edges if layer not in (a, b)}

    def build(self) -> LayerGraph | None:
        try:
            return LayerGraph(
                self.kind, tuple(self.labels), tuple(self.units), tuple(self.strides), tuple(self.edges)
            )
        except UsageError:
            return None


def modifiable_layers(g: LayerGraph) -> list[int]:
    """Layers whose units may change, in topological order (`_get_directly_modifable_layer_idxs`)."""
    return [i for i in g.topological_order if has_units(g.labels[i])]


def _scaled(units: int, increase: bool) -> int:
    """round(units x (1 +/- 1/8)), moved by at least one unit so the network always changes."""
    new = round(units * (1 + CHANGE_FRAC if increase else 1 - CHANGE_FRAC))
    if new == units:
        new = units + (1 if increase else -1)
    return max(new, 1)


def _change_units(g: LayerGraph, layers: list[int], increase: bool) -> LayerGraph | None:
    if not layers:
        return None
    edit = _Edit.of(g)
    for i in layers:
        edit.units[i] = _scaled(int(g.units[i]), increase)  # type: ignore[arg-type]
    return edit.build()


def inc_single(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    layers = modifiable_layers(g)
    return _change_units(g, [layers[rng.integers(len(layers))]] if layers else [], True)


def dec_single(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    layers = modifiable_layers(g)
    return _change_units(g, [layers[rng.integers(len(layers))]] if layers else [], False)


def en_masse_groups(g: LayerGraph) -> list[tuple[int, int]]:
    """The (group, of G) choices `get_list_of_en_masse_change_primitives` offers."""
    internal = g.num_layers - 2
    return [
        (k, parts)
        for parts, need in ((2, 4), (4, 8), (8, 16))
        if internal >= need
        for k in range(1, parts + 1)
    ]


def _en_masse(g: LayerGraph, rng: np.random.Generator, increase: bool) -> LayerGraph | None:
    groups = en_masse_groups(g)
    if not groups:
        return None
    k, parts = groups[rng.integers(len(groups))]
    layers = modifiable_layers(g)
    m = len(layers)
    return _change_units(g, layers[(k - 1) * m // parts : k * m // parts], increase)


def inc_en_masse(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    return _en_masse(g, rng, True)


def dec_en_masse(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    return _en_masse(g, rng, False)


def swap_layer(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    """Relabel one layer (not ip, op, fc or a decision layer) with the code's candidates."""
    layers = [i for i, label in enumerate(g.labels) if label not in ("ip", "op", "fc", *DECISION_LABELS)]
    if not layers:
        return None
    i = layers[rng.integers(len(layers))]
    old = g.labels[i]
    edit = _Edit.of(g)
    if g.kind == "cnn":
        candidates, probs = CNN_SWAPS[old]
        p = np.asarray(probs) / sum(probs)
        new = candidates[rng.choice(len(candidates), p=p)]
        if new in POOL_LABELS:
            edit.units[i], edit.strides[i] = None, None
        elif old in POOL_LABELS:  # a pool halved the image: the conv replacing it strides 2
            edit.units[i], edit.strides[i] = _incoming_units(g, i), 2
        elif rng.random() < CHANGE_STRIDE_PROB:
            edit.strides[i] = 1 if g.strides[i] == 2 else 2
    else:
        candidates = MLP_SIGMOIDS if old in MLP_RECTIFIERS else MLP_RECTIFIERS
        new = candidates[rng.integers(len(candidates))]
    edit.labels[i] = new
    return edit.build()


def _incoming_units(g: LayerGraph, layer: int) -> int:
    """Channels arriving at `layer` (pools pass their input's on), at least 8."""
    total = 0
    for p in g.parents[layer]:
        total += g.units[p] if g.units[p] is not None else _incoming_units(g, p) if g.labels[p] != "ip" else 0
    return max(total, 8)


def _wedge_units(g: LayerGraph, a: int, b: int) -> int:
    """`_determine_num_units_for_wedge_layer`: the mean of the edge's ends' units, else of nearby layers."""
    known = [g.units[i] for i in (a, b) if g.units[i] is not None]
    if known:
        return round(sum(known) / len(known))
    if g.labels[a] == "ip":
        near = [g.units[c] for c in g.children[a] if g.units[c] is not None] or [16]
    else:
        near = [g.units[p] for p in g.parents[a] if g.units[p] is not None] or [_incoming_units(g, a)]
    return max(1, round(sum(near) / len(near)))


def wedge_layer(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    op = g.labels.index("op")
    edges = [e for e in g.edges if e[1] != op]
    if not edges:
        return None
    a, b = edges[rng.integers(len(edges))]
    stride = None
    if g.kind == "cnn" and g.labels[a] == "fc":
        label, units = "fc", g.units[a]
    elif g.kind == "cnn":
        pool = g.labels[a] != "ip" and rng.random() < POOL_PROB
        label = POOL_LABELS[rng.integers(2)] if pool else WEDGE_CNN[rng.integers(len(WEDGE_CNN))]
        units = None if pool else _wedge_units(g, a, b)
        stride = None if pool else (2 if rng.random() < STRIDE2_PROB else 1)
    else:
        label, units = WEDGE_MLP[rng.integers(len(WEDGE_MLP))], _wedge_units(g, a, b)
    edit = _Edit.of(g)
    new = edit.add(label, units, stride)
    edit.edges -= {(a, b)}
    edit.edges |= {(a, new), (new, b)}
    return edit.build()


def remove_layer(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    """Delete a layer; each parent left without children and each child left without parents is
    paired with one on the other side (`get_list_of_remove_layer_modifiers`)."""
    candidates = []
    for i, label in enumerate(g.labels):
        if label in ("ip", "op", *DECISION_LABELS):
            continue
        if label == "fc" and any(g.labels[p] != "fc" for p in g.parents[i]):
            continue
        candidates.append(i)
    if not candidates:
        return None
    i = candidates[rng.integers(len(candidates))]
    parents, children = list(g.parents[i]), list(g.children[i])
    lone_children = [c for c in children if len(g.parents[c]) == 1]
    lone_parents = [p for p in parents if len(g.children[p]) == 1]
    rng.shuffle(lone_children)
    rng.shuffle(lone_parents)
    added = []
    while lone_children and lone_parents:
        added.append((lone_parents.pop(), lone_children.pop()))
    added += [(parents[rng.integers(len(parents))], c) for c in lone_children]
    added += [(p, children[rng.integers(len(children))]) for p in lone_parents]
    edit = _Edit.of(g)
    if g.kind == "cnn" and (g.labels[i] in POOL_LABELS or g.strides[i] == 2):
        # keep the image sizes: the children (else the parents) take over the downsampling
        for side in (children, parents):
            if all(g.labels[j] in CONV_LABELS and g.strides[j] == 1 for j in side):
                for j in side:
                    edit.strides[j] = 2
                break
    edit.edges |= set(added)
    edit.remove(i)
    return edit.build()


def _distances_from_ip(g: LayerGraph) -> np.ndarray:
    dist = np.zeros(g.num_layers)
    for layer in g.topological_order:
        if g.parents[layer]:
            dist[layer] = 1 + min(dist[p] for p in g.parents[layer])
    return dist


def _distances_to_op(g: LayerGraph) -> np.ndarray:
    dist = np.zeros(g.num_layers)
    for layer in reversed(g.topological_order):
        if g.children[layer]:
            dist[layer] = 1 + min(dist[c] for c in g.children[layer])
    return dist


def _start_probs(g: LayerGraph) -> np.ndarray:
    """Start layers for branch/skip: prob ~ 1/sqrt(1 + distance from ip), never op/decision/fc."""
    dist = _distances_from_ip(g)
    return np.array(
        [
            0.0 if label in ("op", "fc", *DECISION_LABELS) else 1 / np.sqrt(1 + d)
            for label, d in zip(g.labels, dist, strict=False)
        ]
    )


def branch(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    """Duplicate a random path (`create_duplicate_branch`): inner layers kept with prob .5, except
    the first after ip, pools, stride-2 convs, decision layers and the first fc, always kept."""
    probs = _start_probs(g)
    if not any(has_units(label) for label in g.labels) or probs.sum() <= 0:
        return None
    start = int(rng.choice(g.num_layers, p=probs / probs.sum()))
    path = [start]
    while True:
        nxt = g.children[path[-1]]
        path.append(int(nxt[rng.integers(len(nxt))]))
        if g.labels[path[-1]] == "op" or (len(path) >= BRANCH_MIN_PATH and rng.random() < BRANCH_END_PROB):
            break
    kept, fc_seen = [], False
    for idx in path[1:-1]:
        label = g.labels[idx]
        if (
            idx == path[1]
            and g.labels[path[0]] == "ip"
            or idx == path[-2]
            and not kept
            or label in POOL_LABELS
            or label in DECISION_LABELS
            or g.strides[idx] == 2
        ):
            kept.append(idx)
        elif label == "fc" and not fc_seen:
            kept.append(idx)
            fc_seen = True
        elif rng.random() < BRANCH_KEEP_PROB:
            kept.append(idx)
    edit = _Edit.of(g)
    new = [edit.add(g.labels[i], g.units[i], g.strides[i]) for i in kept]
    chain = [path[0], *new, path[-1]]
    edit.edges |= set(zip(chain[:-1], chain[1:], strict=False))
    return edit.build()


def _image_sizes(g: LayerGraph) -> tuple[dict[int, int], dict[int, int]]:
    """(pre, post) inverse image sizes per layer of a CNN (flattened layers: 0)."""
    pre: dict[int, int] = {}
    post: dict[int, int] = {}
    for layer in g.topological_order:
        label = g.labels[layer]
        pre[layer] = max((post[p] for p in g.parents[layer]), default=1)
        if label in POOL_LABELS or (label in CONV_LABELS and g.strides[layer] == 2):
            post[layer] = 2 * pre[layer]
        elif label in CONV_LABELS or label == "ip":
            post[layer] = pre[layer]
        else:
            post[layer] = 0
    return pre, post


def skip(g: LayerGraph, rng: np.random.Generator) -> LayerGraph | None:
    """A skip connection (`create_skipped_network`) to a layer strictly further from ip and
    closer to op; CNNs bridge image-size gaps with avg-pools."""
    probs = _start_probs(g)
    probs[g.labels.index("ip")] = 0.0
    if probs.sum() <= 0:
        return None
    from_ip, to_op = _distances_from_ip(g), _distances_to_op(g)
    pre, post = _image_sizes(g) if g.kind == "cnn" else ({}, {})
    for _ in range(2 * g.num_layers):
        start = int(rng.choice(g.num_layers, p=probs / probs.sum()))
        ends = []
        for j, label in enumerate(g.labels):
            if (
                from_ip[j] - 1 <= from_ip[start]
                or to_op[j] + 1 >= to_op[start]
                or label in ("ip", "op", "softmax")
            ):
                continue
            if g.kind == "cnn" and (post[start] == 0 or post[start] > pre[j] > 0):
                continue
            if label == "fc" and not all(
                g.labels[p] in CONV_LABELS or g.labels[p] in POOL_LABELS for p in g.parents[j]
            ):
                continue
            if (start, j) in g.edges:
                continue
            ends.append(j)
        if not ends:
            continue
        end = ends[rng.integers(len(ends))]
        edit = _Edit.of(g)
        pools = 0 if g.kind != "cnn" or pre[end] == 0 else int(np.log2(pre[end] / post[start]))
        chain = [start, *[edit.add("avg-pool", None, None) for _ in range(pools)], end]
        edit.edges |= set(zip(chain[:-1], chain[1:], strict=False))
        return edit.build()
    return None


PRIMITIVES: dict[str, Callable[[LayerGraph, np.random.Generator], LayerGraph | None]] = {
    "inc_single": inc_single,
    "dec_single": dec_single,
    "inc_en_masse": inc_en_masse,
    "dec_en_masse": dec_en_masse,
    "swap_layer": swap_layer,
    "wedge_layer": wedge_layer,
    "remove_layer": remove_layer,
    "branch": branch,
    "skip": skip,
}


def _within(g: LayerGraph | None, limits: Limits | None) -> bool:
    if g is None:
        return False
    if limits is None:
        return True
    try:
        limits.check(g)
    except UsageError:
        return False
    return True


def mutate_step(g: LayerGraph, rng: np.random.Generator, limits: Limits | None = None) -> LayerGraph | None:
    """One primitive drawn by the masses; inapplicable or invalid ones are redrawn without it."""
    names = list(PRIMITIVES)
    masses = np.array([PRIMITIVE_MASSES[n] for n in names])
    while masses.sum() > 0:
        k = int(rng.choice(len(names), p=masses / masses.sum()))
        for _ in range(3):  # a primitive's random choices may fail; give it a few draws
            child = PRIMITIVES[names[k]](g, rng)
            if _within(child, limits) and child != g:
                return child
        masses[k] = 0.0
    return None


def mutate(g: LayerGraph, rng: np.random.Generator, limits: Limits | None = None) -> LayerGraph:
    """A child of `g` after 1-5 primitive steps (`STEP_PROBS`); `g` itself never comes back."""
    for _ in range(10):  # steps may cancel out (inc then dec): draw again
        steps = 1 + int(rng.choice(len(STEP_PROBS), p=np.asarray(STEP_PROBS) / sum(STEP_PROBS)))
        current = g
        for _ in range(steps):
            child = mutate_step(current, rng, limits)
            if child is None:
                break
            current = child
        if current != g:
            return current
    raise UsageError(f"no NASBOT modifier applies to {g} within the search limits")
