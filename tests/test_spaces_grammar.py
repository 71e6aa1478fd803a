"""The generic context-free-grammar machinery (nasrepro/spaces/grammar.py) on a small recursive grammar."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nasrepro.errors import UsageError
from nasrepro.spaces.grammar import Alternative, Grammar, Node

#: E -> add(E, E) | neg(E) | x | y : recursive, so it needs a depth cap
TOY = {
    "E": [Alternative("add", ("E", "E")), Alternative("neg", ("E",)), Alternative("x"), Alternative("y")],
}


def toy(**kwargs) -> Grammar:
    return Grammar(TOY, "E", name="toy", max_depth=kwargs.pop("max_depth", 4), **kwargs)


def diff_root(a: Node, b: Node, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths of the topmost nodes where `a` and `b` differ (symbol or arity)."""
    if a.symbol != b.symbol or len(a.children) != len(b.children):
        return [path]
    return [
        p
        for i, (x, y) in enumerate(zip(a.children, b.children, strict=True))
        for p in diff_root(x, y, (*path, i))
    ]


def common_prefix(paths: list[tuple[int, ...]]) -> tuple[int, ...]:
    prefix = paths[0]
    for p in paths[1:]:
        n = 0
        while n < min(len(prefix), len(p)) and prefix[n] == p[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def test_round_trip_on_sampled_and_hand_written_trees():
    grammar = toy()
    rng = np.random.default_rng(0)
    for _ in range(300):
        tree = grammar.sample(rng)
        assert grammar.parse(str(tree)) == tree
        assert str(grammar.parse(str(tree))) == str(tree)
    hand = Node("add", (Node("neg", (Node("x"),)), Node("y")))
    assert str(hand) == "add(neg(x),y)"
    assert grammar.parse("add(neg(x),y)") == hand
    assert grammar.parse(" add( neg( x ) , y ) ") == hand  # spaces are allowed, never written
    assert grammar.validate(hand) == hand


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("add(x,z)", "'z' at character 6 is not an alternative of E (choose from add, neg, x, y)"),
        ("mul(x,y)", "'mul' at character 0 is not an alternative of E"),
        ("add(x)", "'add' at character 0 takes 2 children as E, got 1"),
        ("neg(x,y)", "'neg' at character 0 takes 1 children as E, got 2"),
        ("add(x,y", "missing ')' closing 'add'"),
        ("add(x,,y)", "',' where a symbol was expected at character 6"),
        ("add(x,y))", "unexpected ')' after the end"),
        ("", "the string ends where a symbol was expected"),
        ("add(x;y)", "';' where ',' or ')' was expected"),
        ("neg(neg(neg(neg(x))))", "the tree's depth is 5, this space allows at most 4"),
    ],
)
def test_invalid_strings_are_one_line_usage_errors_naming_the_symbol(text, needle):
    with pytest.raises(UsageError) as err:
        toy().parse(text)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message
    assert message.startswith("toy architecture: ")


def test_a_bad_node_is_refused_when_built_or_validated():
    with pytest.raises(UsageError, match="must be an identifier"):
        Node("a(b")
    with pytest.raises(UsageError, match="'z' at character 4 is not an alternative of E"):
        toy().validate(Node("neg", (Node("z"),)))


def test_sampling_respects_the_depth_and_size_caps():
    rng = np.random.default_rng(1)
    deep = toy(max_depth=4)
    depths = [deep.sample(rng).depth for _ in range(400)]
    assert max(depths) == 4  # the cap is reached, never passed
    small = toy(max_depth=6, max_nodes=5)
    sizes = [small.sample(rng).size for _ in range(400)]
    assert max(sizes) <= 5 and 5 in sizes
    assert all(toy(max_depth=1).sample(rng).symbol in ("x", "y") for _ in range(50))  # only leaves fit


def test_sampling_is_uniform_over_alternatives_and_covers_each_one():
    grammar = toy()
    roots = Counter(grammar.sample(np.random.default_rng(seed)).symbol for seed in range(800))
    assert set(roots) == {"add", "neg", "x", "y"}
    assert all(0.19 < roots[s] / 800 < 0.31 for s in roots), roots
    # at the cap's last level only the leaves remain, each half of the time
    leaves = Counter(grammar._draw("E", 1, np.random.default_rng(seed)).symbol for seed in range(400))
    assert set(leaves) == {"x", "y"} and 150 < leaves["x"] < 250


def test_a_recursive_grammar_needs_a_cap_and_bad_definitions_are_refused():
    with pytest.raises(UsageError, match="recursive; give max_depth"):
        Grammar(TOY, "E", name="toy")
    with pytest.raises(UsageError, match="slot 'F', which has no production"):
        Grammar({"E": [Alternative("f", ("F",))]}, "E")
    with pytest.raises(UsageError, match="never derives a finite tree"):
        Grammar({"E": [Alternative("f", ("E",))]}, "E", max_depth=3)
    with pytest.raises(UsageError, match="max_depth=1 is below the shallowest tree"):
        Grammar({"E": [Alternative("f", ("L",))], "L": [Alternative("x")]}, "E", max_depth=1)


def test_mutation_resamples_exactly_one_non_root_subtree():
    grammar = toy(max_depth=6)
    rng = np.random.default_rng(2)
    tree = grammar.sample(rng)
    while tree.size < 7:  # room to mutate below the root
        tree = grammar.sample(rng)
    depths = []
    for _ in range(300):
        child = grammar.mutate(tree, rng)
        assert child != tree
        grammar.validate(child)
        where = common_prefix(diff_root(tree, child))
        assert where != ()  # never the root
        assert tree.replace(where, child.at(where)) == child
        # a single resampled position: everything outside the subtree at `where` is unchanged, and
        # `where` is a position of the parent (the resampled subtree replaces the parent's there)
        assert tree.at(where) != child.at(where)
        depths.append(len(where))
        tree = child if child.size >= 7 else tree
    assert max(depths) >= 3  # deep positions are drawn too, not only the root's children


def test_mutation_changes_one_slot_of_a_flat_grammar():
    """With four independent slots and no nested choice, one resampled subtree is one changed slot."""
    flat = Grammar({"S": [Alternative("f", ("A",) * 4)], "A": [Alternative(s) for s in "abc"]}, "S")
    rng = np.random.default_rng(5)
    tree = flat.sample(rng)
    slots = Counter()
    for _ in range(200):
        child = flat.mutate(tree, rng)
        changed = [i for i in range(4) if child.children[i] != tree.children[i]]
        assert len(changed) == 1
        slots[changed[0]] += 1
        tree = child
    assert set(slots) == {0, 1, 2, 3}


def test_canonicalisers_give_equal_keys_and_constraints_exclude_subtrees():
    def commutative(node: Node) -> Node:
        return Node(node.symbol, tuple(sorted(node.children, key=str)))

    def no_double_negation(node: Node) -> str | None:
        return "neg(neg(..)) is excluded" if node.children[0].symbol == "neg" else None

    grammar = toy(canonicalisers={"add": commutative}, constraints={"neg": no_double_negation})
    a, b = grammar.parse("add(y,neg(x))"), grammar.parse("add(neg(x),y)")
    assert a != b and grammar.canonical(a) == grammar.canonical(b) == b
    assert grammar.digest(a) == grammar.digest(b) != grammar.digest(grammar.parse("add(x,x)"))
    with pytest.raises(UsageError, match=r"'neg' at character 4 is excluded: neg\(neg\(\.\.\)\) is excluded"):
        grammar.parse("add(neg(neg(x)),y)")
    rng = np.random.default_rng(3)
    for _ in range(300):
        text = str(grammar.sample(rng))
        assert "neg(neg(" not in text
    # a mutation below a neg must not create neg(neg(..)): the ancestors' constraints hold too
    tree = grammar.parse("neg(add(neg(x),neg(y)))")
    for _ in range(300):
        tree = grammar.mutate(tree, rng)
        assert grammar.validate(tree) and "neg(neg(" not in str(tree)


def test_count_and_labels():
    grammar = toy(max_depth=2)
    assert grammar.count() == 2 + 2 * 2 + 2  # x, y; add(l, l); neg(l)
    labels = toy().label(Node("add", (Node("x"), Node("neg", (Node("y"),)))))
    assert labels == [((), "E"), ((0,), "E"), ((1,), "E"), ((1, 0), "E")]
