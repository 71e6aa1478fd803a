"""NASBOT layer graphs: validity errors, masses, path lengths, canonical form (nasrepro.methods.nasbot.graph)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.graph import LayerGraph, Limits

CNN = "cnn|ip|conv3:16/1<0|conv5:32/1<1|max-pool<2|fc:64<3|softmax<4|op<5"
MLP = "mlp-reg|ip|relu:16<0|relu:16<0|tanh:8<1,2|linear<3|op<4"


def test_masses_follow_the_reference_rules() -> None:
    g = LayerGraph.parse(CNN)
    # conv3: 1 channel in x 16; conv5: 16 x 32; pool: its 32 incoming channels; fc: 0.1 x 32 x 64
    expected_proc = [16.0, 512.0, 32.0, 0.1 * 32 * 64]
    zeta = max(0.1 * sum(expected_proc), 100.0)
    assert zeta == 100.0
    np.testing.assert_allclose(g.masses, [zeta, *expected_proc, zeta, zeta])
    big = LayerGraph.parse("mlp-class|ip|relu:512<0|elu:1024<1|softmax<2|softmax<2|op<3,4")
    proc = [512.0, 512.0 * 1024]
    zeta = 0.1 * sum(proc)  # above the floor of 100
    np.testing.assert_allclose(
        big.masses, [zeta, *proc, zeta / 2, zeta / 2, zeta]
    )  # decision layers split zeta
    # a merge sums its parents' units
    assert LayerGraph.parse(MLP).masses[3] == (16 + 16) * 8


def test_path_lengths_per_group() -> None:
    g = LayerGraph.parse(MLP)  # ip -> relu, relu -> tanh -> linear -> op
    from_ip, to_op = g.path_lengths
    # columns: all-(shortest, longest, rw), rectifier-(...), sigmoid-(...)
    assert list(to_op[0]) == [4, 4, 4, 1, 1, 1, 1, 1, 1]  # from ip: 4 edges; one leaves a relu, one the tanh
    assert list(from_ip[5]) == [4, 4, 4, 1, 1, 1, 1, 1, 1]
    assert list(to_op[3]) == [2, 2, 2, 0, 0, 0, 1, 1, 1]  # tanh -> linear -> op
    skip = LayerGraph.parse("mlp-reg|ip|relu:8<0|relu:8<1|linear<0,2|op<3")
    _, to_op = skip.path_lengths
    assert list(to_op[0][:3]) == [
        2,
        4,
        3,
    ]  # shortest via the skip, longest through both relus, mean of 2 and 4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mlp-reg|ip|relu:4<0,2|relu:4<1|linear<2|op<3", "layer 1 (relu): lies on a cycle"),
        ("mlp-reg|ip|relu:4<0|relu:4|linear<1|op<3", "layer 2 (relu): is not on a path from ip to op"),
        ("mlp-reg|ip|relu:4<0|relu:4<1|linear<1|op<3", "layer 2 (relu): is not on a path from ip to op"),
        ("cnn|ip|conv4:8/1<0|softmax<1|op<2", "layer 1 (conv4): unknown label"),
        (
            "cnn|ip|conv3:0/1<0|softmax<1|op<2",
            "layer 1 (conv3): needs a positive integer number of units, got 0",
        ),
        ("mlp-reg|ip|relu<0|linear<1|op<2", "layer 1 (relu): needs a positive integer"),
        ("cnn|ip|conv3:8<0|softmax<1|op<2", "layer 1 (conv3): a convolution needs stride 1 or 2"),
        ("cnn|ip|max-pool<0|softmax<1|op<2", "layer 1 (max-pool): follows ip"),
        (
            "cnn|ip|conv3:8/1<0|conv3:8/2<1|softmax<1,2|op<3",
            "layer 3 (softmax): merges inputs of different image sizes",
        ),
        ("cnn|ip|conv3:8/1<0|fc:8<1|conv3:8/1<2|softmax<3|op<4", "layer 3 (conv3): comes after a flattening"),
        ("mlp-reg|ip|relu:4<0|op<1", "layer 1 (relu): feeds op"),
        ("mlp-reg|ip|relu:4<0|linear<1|relu:4<2|linear<3|op<2,4", "layer 2 (linear): is a decision layer"),
        ("mlp-reg|ip|relu:4<0|linear<1", "exactly one 'op' layer"),
        ("mlp-reg|ip|softmax<0|op<1", "layer 1 (softmax): unknown label"),
        ("rnn|ip|op<0", "unknown NASBOT network kind 'rnn'"),
        ("mlp-reg|ip|relu:4<0|linear<1;op<2", "bad layer 2 'linear<1;op<2'"),
    ],
)
def test_invalid_graphs_raise_one_line_naming_the_layer(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        LayerGraph.parse(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_string_round_trip_and_isomorphic_graphs_hash_equal() -> None:
    for text in (CNN, MLP):
        g = LayerGraph.parse(text)
        assert LayerGraph.parse(str(g)) == g
        assert str(LayerGraph.parse(str(g))) == str(g)
        rng = np.random.default_rng(0)
        for _ in range(10):
            h = g.renumbered(list(rng.permutation(g.num_layers)))
            assert h == g and hash(h) == hash(g) and str(h) == str(g)
            np.testing.assert_allclose(np.sort(h.masses), np.sort(g.masses))
    other = LayerGraph.parse(MLP.replace("tanh:8", "tanh:9"))
    assert other != LayerGraph.parse(MLP)
    assert len({LayerGraph.parse(MLP), LayerGraph.parse(str(LayerGraph.parse(MLP)))}) == 1


def _random_dag(rng: np.random.Generator, n_hidden: int) -> LayerGraph:
    """A random valid MLP: hidden layers in order, each fed by 1-2 earlier layers (few labels and
    unit counts, so many symmetric candidates), all sinks joined to one linear layer."""
    labels = ["ip"] + [str(rng.choice(["relu", "tanh"])) for _ in range(n_hidden)]
    units = [None] + [int(rng.choice([4, 8])) for _ in range(n_hidden)]
    edges = set()
    for v in range(1, n_hidden + 1):
        for p in rng.choice(v, size=min(v, int(rng.integers(1, 3))), replace=False):
            edges.add((int(p), v))
    sinks = [v for v in range(1, n_hidden + 1) if not any(a == v for a, _ in edges)]
    decision = n_hidden + 1
    edges |= {(v, decision) for v in sinks} | {(decision, decision + 1)}
    return LayerGraph("mlp-reg", (*labels, "linear", "op"), (*units, None, None), None, tuple(edges))


def _nx(g: LayerGraph) -> nx.DiGraph:
    graph = nx.DiGraph()
    for i, key in enumerate(zip(g.labels, g.units, strict=True)):
        graph.add_node(i, key=key)
    graph.add_edges_from(g.edges)
    return graph


def test_canonical_form_is_exact_against_networkx() -> None:
    rng = np.random.default_rng(1)
    graphs = [_random_dag(rng, int(rng.integers(2, 7))) for _ in range(60)]
    for g in graphs[:20]:
        h = g.renumbered(list(rng.permutation(g.num_layers)))
        assert str(h) == str(g)
    same = lambda a, b: a["key"] == b["key"]  # noqa: E731
    checked = 0
    for g, h in itertools.combinations(graphs, 2):
        if g.num_layers != h.num_layers or len(g.edges) != len(h.edges):
            continue
        checked += 1
        assert (str(g) == str(h)) == nx.is_isomorphic(_nx(g), _nx(h), node_match=same), (g, h)
    assert checked > 50


def test_canonical_form_with_repeated_identical_branches() -> None:
    """Six identical parallel branches (720 automorphisms) stay cheap and order-free."""
    branches = "|".join(f"relu:8<0|tanh:8<{1 + 2 * b}" for b in range(6))
    text = f"mlp-reg|ip|{branches}|linear<{','.join(str(2 + 2 * b) for b in range(6))}|op<13"
    g = LayerGraph.parse(text)
    rng = np.random.default_rng(2)
    assert all(g.renumbered(list(rng.permutation(g.num_layers))) == g for _ in range(5))


def test_search_limits() -> None:
    g = LayerGraph.parse(CNN)
    Limits().check(g)
    with pytest.raises(UsageError, match=r"layer 1 \(conv3\) has 16 units, allowed 32-1024"):
        Limits(min_units=32).check(g)
    with pytest.raises(UsageError, match="7 layers, allowed 8-60"):
        Limits(min_layers=8).check(g)
