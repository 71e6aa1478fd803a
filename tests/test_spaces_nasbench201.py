"""The NAS-Bench-201 cell space: encoding, isomorphism, mutation and the evaluation network."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.spaces import SPACES
from nasrepro.spaces.nasbench201 import (
    EDGES,
    OP_NAMES,
    NB201Arch,
    NB201Space,
    _classes,
    _reduced_graph,
    canonical_arch,
    cell_form,
    equivalence_classes,
)
from nasrepro.spaces.nasbench201_net import OPS, Cell, NB201Network

# NB201's README example (index 1 of the benchmark)
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_NONE = NB201Arch(("none",) * 6)


def arch(text: str) -> NB201Arch:
    return NB201Arch.parse(text)


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


class FakeTask:
    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes


# --- encoding ---------------------------------------------------------------------------------


def test_registered_and_sized() -> None:
    made = SPACES.get("nasbench201")()
    assert isinstance(made, NB201Space) and made.name == "nasbench201"
    assert made.size() == 15625 == len(set(made.enumerate()))


def test_string_round_trip_for_every_cell(space: NB201Space) -> None:
    strings = set()
    for a in space.enumerate():
        text = str(a)
        assert space.parse(text) == a
        strings.add(text)
    assert len(strings) == 15625


def test_parse_follows_nb201_edge_order() -> None:
    a = arch(EXAMPLE)
    assert a.op(0, 1) == "nor_conv_3x3" and a.op(0, 2) == "nor_conv_3x3" and a.op(1, 2) == "avg_pool_3x3"
    assert a.op(0, 3) == "skip_connect" and a.op(1, 3) == "nor_conv_3x3" and a.op(2, 3) == "skip_connect"
    assert str(a) == EXAMPLE and arch("  " + EXAMPLE + "\n") == a
    assert hash(a) == hash(NB201Arch(tuple(a.ops)))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "3 '+'-separated node groups"),
        ("|none~0|+|none~0|none~1|", "got 2"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'conv~0'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "'none~1'"),
        ("|none~0|+|none~0|none-1|+|none~0|none~1|none~2|", "'none-1'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 takes 2 inputs"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'none~0|'"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_5x5~2|", "'nor_conv_5x5~2'"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", "got 4"),
    ],
)
def test_malformed_strings_name_the_bad_token(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        NB201Arch.parse(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_encodings_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        NB201Arch(("none",) * 5)
    with pytest.raises(UsageError, match="sep_conv"):
        NB201Arch(("sep_conv",) * 6)
    with pytest.raises(UsageError):
        NB201Arch.parse(123)  # type: ignore[arg-type]


# --- isomorphism ------------------------------------------------------------------------------


def test_canonical_is_an_idempotent_class_representative(space: NB201Space) -> None:
    for a in space.enumerate():
        rep = space.canonical(a)
        assert space.canonical(rep) == rep
        assert cell_form(rep) == cell_form(a)
        assert rep.codes <= a.codes  # the smallest member: dead edges are `none`
        assert space.key(a) == str(rep)


def test_cells_without_a_path_to_the_output_are_all_none() -> None:
    for text in [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",  # output gets nothing
        "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|",  # node 1 is zero
    ]:
        assert canonical_arch(text) == ALL_NONE
        assert cell_form(text) == "out=0"


def test_dead_edges_become_none() -> None:
    a = arch("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert str(canonical_arch(a)) == "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        # R1: the sum is commutative -- conv3(x) + conv1(x) through different routes
        (
            "|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|",
            "|skip_connect~0|+|none~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|",
        ),
        # R2: a chain of skips is the identity
        (
            "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_3x3~2|",
            "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|",
        ),
        # R4: avg(x + conv(x)) = avg(x) + avg(conv(x))
        (
            "|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|",
            "|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|none~2|",
        ),
    ],
)
def test_equivalent_cells_share_a_representative(left: str, right: str) -> None:
    assert canonical_arch(left) == canonical_arch(right)
    assert NB201Space().key(arch(left)) == NB201Space().key(arch(right))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        # one conv unit used twice (shared weights) is not two units with their own weights
        (
            "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|nor_conv_1x1~1|skip_connect~2|",
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|",
        ),
        # multiplicities count: x + x is not x
        (
            "|skip_connect~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|",
            "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
        ),
        # a conv of a sum is not a sum of convs (ReLU is not linear)
        (
            "|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_1x1~2|",
            "|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|",
        ),
    ],
)
def test_different_functions_stay_apart(left: str, right: str) -> None:
    assert canonical_arch(left) != canonical_arch(right)


def test_isomorphism_can_be_switched_off() -> None:
    raw = NB201Space(isomorphism=False)
    a = arch("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert raw.canonical(a) == a and raw.key(a) == str(a)


def _avg_pool(x: np.ndarray) -> np.ndarray:
    """3x3, stride 1, padding 1, count_include_pad=False, over the last two axes."""
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    ones = np.pad(np.ones(x.shape[-2:]), 1)
    h, w = x.shape[-2:]
    total = sum(padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3))
    count = sum(ones[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return total / count


def test_equivalent_cells_compute_the_same_function_numerically() -> None:
    """An independent check of rules R1-R4: run every cell with real average pooling and two fixed
    nonlinear maps standing in for the convolutions (zero at zero, as R3 assumes); every class must
    produce one output. With one map per op type, units with their own weights are not told apart,
    so this checks soundness (equivalent => equal), not the sharing distinction."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 6))
    codes = np.array(list(itertools.product(range(len(OP_NAMES)), repeat=len(EDGES))))
    maps = {
        "none": lambda v: np.zeros_like(v),
        "skip_connect": lambda v: v,
        "nor_conv_1x1": lambda v: np.tanh(1.7 * v) + 0.3 * v * v,
        "nor_conv_3x3": lambda v: np.sin(0.9 * v) - 0.2 * v**3,
        "avg_pool_3x3": _avg_pool,
    }
    nodes = [np.broadcast_to(x, (len(codes), 6, 6))]
    for target in range(1, 4):
        total = np.zeros((len(codes), 6, 6))
        for source in range(target):
            position = EDGES.index((source, target))
            results = np.stack([maps[name](nodes[source]) for name in OP_NAMES])
            total = total + results[codes[:, position], np.arange(len(codes))]
        nodes.append(total)
    outputs = nodes[-1].reshape(len(codes), -1)
    reps, _ = _classes()
    by_class: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, c in enumerate(map(tuple, codes)):
        by_class[reps[c]].append(i)
    assert len(by_class) == len(set(reps.values()))
    for members in by_class.values():
        np.testing.assert_allclose(
            outputs[members], outputs[members[:1]].repeat(len(members), 0), rtol=1e-10, atol=1e-10
        )
    assert np.allclose(outputs[by_class[ALL_NONE.codes]], 0.0)


def _nx_classes(cells: list[tuple[int, ...]]) -> set[frozenset[tuple[int, ...]]]:
    """Isomorphism classes of the reduced DAGs by networkx's VF2, independent of our numbering."""
    import networkx as nx
    from networkx.algorithms.isomorphism import MultiDiGraphMatcher

    def graph(codes: tuple[int, ...]) -> nx.MultiDiGraph:
        units, out = _reduced_graph(tuple(OP_NAMES[c] for c in codes))
        g = nx.MultiDiGraph()
        g.add_node("x", label="x")
        g.add_node("out", label="out")
        for u, (op, arg) in enumerate(units):
            g.add_node(u, label=op)
            for k, v in arg:
                g.add_edge("x" if v < 0 else v, u, k=k)
        for k, v in out:
            g.add_edge("x" if v < 0 else v, "out", k=k)
        return g.subgraph(nx.ancestors(g, "out") | {"out", "x"}).copy()

    def node_match(a: dict, b: dict) -> bool:
        return a["label"] == b["label"]

    def edge_match(a: dict, b: dict) -> bool:
        return sorted(d["k"] for d in a.values()) == sorted(d["k"] for d in b.values())

    buckets: dict[tuple, list] = defaultdict(list)
    for codes in cells:
        g = graph(codes)
        labels = tuple(sorted(d["label"] for _, d in g.nodes(data=True)))
        buckets[(labels, g.number_of_edges())].append((codes, g))
    classes: list[tuple[nx.MultiDiGraph, list]] = []
    found: set[frozenset[tuple[int, ...]]] = set()
    for bucket in buckets.values():
        classes = []
        for codes, g in bucket:
            for rep, members in classes:
                if MultiDiGraphMatcher(rep, g, node_match=node_match, edge_match=edge_match).is_isomorphic():
                    members.append(codes)
                    break
            else:
                classes.append((g, [codes]))
        found |= {frozenset(members) for _, members in classes}
    return found


def _our_classes(cells: list[tuple[int, ...]]) -> set[frozenset[tuple[int, ...]]]:
    reps, _ = _classes()
    groups: dict[tuple[int, ...], set[tuple[int, ...]]] = defaultdict(set)
    for codes in cells:
        groups[reps[codes]].add(codes)
    return {frozenset(g) for g in groups.values()}


def test_canonical_form_agrees_with_graph_isomorphism_on_a_sample() -> None:
    rng = np.random.default_rng(1)
    cells = sorted({tuple(int(c) for c in rng.integers(0, 5, size=6)) for _ in range(2500)})
    cells += [c for c in itertools.product(range(5), repeat=6) if c[:3] == (1, 3, 1)]  # twins and sharing
    assert _our_classes(cells) == _nx_classes(cells)


@pytest.mark.slow
def test_canonical_form_agrees_with_graph_isomorphism_everywhere() -> None:
    cells = list(itertools.product(range(5), repeat=6))
    ours = _our_classes(cells)
    assert ours == _nx_classes(cells)
    assert len(ours) == 5044


def test_class_count_and_membership() -> None:
    classes = equivalence_classes()
    assert sum(len(m) for m in classes.values()) == 15625
    assert len(classes) == NB201Space().describe()["classes"] == 5044  # checked exhaustively by the slow test
    assert all(rep == min(members, key=lambda a: a.codes) for rep, members in classes.items())


# --- sampling and mutation --------------------------------------------------------------------


def test_sample_is_canonical_and_seeded(space: NB201Space) -> None:
    first = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(300)]
    assert all(space.canonical(d) == d for d in draws)
    assert len(set(draws)) > 100


def test_mutate_changes_exactly_one_edge(space: NB201Space) -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        a = NB201Arch.from_codes(rng.integers(0, 5, size=6))
        b = space.mutate(a, rng)
        assert b != a
        assert sum(x != y for x, y in zip(a.ops, b.ops, strict=True)) == 1
    assert space.mutate(EXAMPLE, rng) != arch(EXAMPLE)


# --- the network ------------------------------------------------------------------------------


def nb201_params(conv1: int, conv3: int, num_classes: int) -> int:
    """Closed-form parameter count of NB201's evaluation network whose cells hold `conv1` 1x1 and
    `conv3` 3x3 ReLU-Conv-BN ops, counted layer by layer from the architecture (Sec. 2.1)."""
    total = 3 * 9 * 16 + 2 * 16  # stem conv + BN
    for c in (16, 32, 64):
        total += 5 * (conv1 * (c * c + 2 * c) + conv3 * (9 * c * c + 2 * c))
    for c_in, c_out in ((16, 32), (32, 64)):  # reductions: conv_a, conv_b, 1x1 shortcut
        total += 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out
    return total + 2 * 64 + 64 * num_classes + num_classes  # last BN + classifier


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_nb201(space: NB201Space) -> None:
    """NB201's API records 0.073306 M (no conv) and 1.531546 M (all nor_conv_3x3) parameters on
    CIFAR-10, 1.537396 M on CIFAR-100 and 0.080456 M on ImageNet16-120 for the space's extremes."""
    all_conv3 = NB201Arch(("nor_conv_3x3",) * 6)
    assert count(space.to_model(all_conv3, FakeTask(10))) == nb201_params(0, 6, 10) == 1_531_546
    assert count(space.to_model(ALL_NONE, FakeTask(10))) == nb201_params(0, 0, 10) == 73_306
    assert count(space.to_model(all_conv3, FakeTask(100))) == nb201_params(0, 6, 100) == 1_537_396
    assert count(space.to_model(ALL_NONE, FakeTask(120))) == nb201_params(0, 0, 120) == 80_456
    example = arch(EXAMPLE)  # three nor_conv_3x3 edges
    assert count(space.to_model(example, FakeTask(10))) == nb201_params(0, 3, 10)
    assert count(space.to_model(example, object())) == nb201_params(0, 3, 10)  # 10 classes by default


@pytest.mark.parametrize(
    "text",
    [
        EXAMPLE,
        str(ALL_NONE),
        "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
    ],
)
def test_forward_pass(space: NB201Space, text: str) -> None:
    torch.manual_seed(0)
    model = space.to_model(text, FakeTask(10))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    small = space.to_model(text, FakeTask(120))(torch.randn(2, 3, 16, 16))  # ImageNet16-120 inputs
    assert small.shape == (2, 120)


def test_network_layout_and_op_order() -> None:
    model = NB201Network(lambda c: Cell(c, {e: OPS["nor_conv_3x3"] for e in EDGES}))
    cells = [m for m in model.cells if isinstance(m, Cell)]
    assert [c.channels for c in cells] == [16] * 5 + [32] * 5 + [64] * 5
    assert len(model.cells) == 17
    conv = cells[0].edges["edge_0_1"]
    assert [type(m) for m in conv] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d] and conv[1].bias is None
    pool = OPS["avg_pool_3x3"](16)
    assert pool.stride == 1 and pool.count_include_pad is False


def test_cell_takes_any_edge_module_factory() -> None:
    """The supernet use: every edge holds a mixed op over all five candidates."""

    class MixedOp(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.candidates = nn.ModuleList(OPS[name](channels) for name in OP_NAMES)
            self.alpha = nn.Parameter(torch.zeros(len(OP_NAMES)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weights = torch.softmax(self.alpha, 0)
            return sum(w * op(x) for w, op in zip(weights, self.candidates, strict=True))

    supernet = NB201Network(lambda c: Cell(c, {e: MixedOp for e in EDGES}))
    out = supernet(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert supernet.cells[0].edges["edge_0_1"].alpha.grad is not None
    with pytest.raises(UsageError, match="missing"):
        Cell(16, {e: OPS["none"] for e in EDGES[:5]})


# --- the categorical view -----------------------------------------------------------------------


def test_categorical_view_is_six_edges_of_five_ops_grouped_by_node(space: NB201Space) -> None:
    fields = space.fields()
    assert "categorical" in space.views()
    assert [f.name for f in fields] == [f"edge{s}{t}" for s, t in EDGES]
    assert all(f.choices == OP_NAMES for f in fields)
    assert [f.group for f in fields] == ["node1", "node2", "node2", "node3", "node3", "node3"]


def test_decode_round_trips_encode_for_every_cell(space: NB201Space) -> None:
    fields = space.fields()
    for cell in space.enumerate():
        codes = space.encode(cell)
        assert space.decode(codes) == cell
        assert tuple(f.choices[i] for f, i in zip(fields, codes, strict=True)) == cell.ops
    for codes in itertools.product(range(len(OP_NAMES)), repeat=len(EDGES)):
        assert space.encode(space.decode(codes)) == codes


def test_encoding_follows_the_string_s_edge_order(space: NB201Space) -> None:
    text = "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
    assert space.decode([0, 1, 2, 3, 4, 0]) == arch(text)
    assert space.encode(text) == (0, 1, 2, 3, 4, 0)
    # encodings are of the cell as given, not of its class representative
    dead = arch("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert space.canonical(dead) != dead and space.decode(space.encode(dead)) == dead
    assert space.decode(np.array([3, 0, 0, 1, 0, 0])) == dead


@pytest.mark.parametrize(
    ("indices", "fragment"),
    [
        ([0, 1, 2, 3, 4], "has 6 op indices, got 5"),
        ([0, 1, 2, 3, 4, 0, 1], "has 6 op indices, got 7"),
        ([0, 1, 5, 0, 0, 0], "op index 5 of edge 1->2"),
        ([0, 0, 0, -1, 0, 0], "op index -1 of edge 0->3"),
        ([0, 0, 0, 0, 1.5, 0], "op index 1.5 of edge 1->3"),
        ([0, 0, 0, 0, 0, "2"], "op index '2' of edge 2->3"),
    ],
)
def test_out_of_range_indices_are_usage_errors(space: NB201Space, indices: list, fragment: str) -> None:
    with pytest.raises(UsageError, match=re.escape(fragment)):
        space.decode(indices)
