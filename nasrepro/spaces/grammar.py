"""Context-free grammars over architectures: derivation trees, parsing, sampling and mutation.

Schrodi, Stoll, Ru, Sukthanker, Brox & Hutter, "Construction of Hierarchical Neural Architecture
Search Spaces based on Context-free Grammars" (NeurIPS 2023, arXiv 2211.01842), its search-space
design framework (section numbers not checked against the PDF): a space is a context-free grammar
whose productions pick, at every level, a *topology* (how the level's blocks are wired) or an
*operation*, and whose nonterminals are the blocks one level down; an architecture is a derivation
tree. Their code (NePS ``graph_grammar``, grammars in ``automl/hierarchical_nas_construction``) keeps
productions as text; here they are data:

* ``productions``: nonterminal -> alternatives, each ``Alternative(symbol, children)``: a terminal
  symbol (topology or operation) and the nonterminals that fill its slots, in slot order;
* a derivation tree is a `Node` (symbol + child nodes). Nonterminals are not stored: they follow
  from the grammar (the root derives the start symbol, a child the nonterminal of its slot), so
  two derivations with the same symbols are the same network and the same architecture;
* the canonical string is bracket notation without spaces, ``Linear2(Cell(id,zero,...),...)``, a
  leaf is its bare symbol; ``parse(str(tree)) == tree`` exactly.

Parsing matches a bracket tree against the grammar with backtracking (one nonterminal may offer a
topology twice with different slots: NB-201's ``D2 -> Linear3 D1 D1 D0 | Linear3 D0 D1 D1``). A
failure is one `UsageError` line naming the symbol, its character position and what was expected
(the deepest failure, as parsers report).

Sampling draws each nonterminal's alternative uniformly (NePS ``Grammar.sampler``) [code]. Caps
[interpretation]: under `max_depth` (needed by recursive grammars) only alternatives that can still
finish within the remaining depth are drawn; `max_nodes` and symbol `constraints` are enforced by
drawing again, i.e. uniform over alternatives conditioned on the caps and constraints.

Mutation (NePS ``simple_mutate``/``Grammar.mutate``, behind the paper's evolutionary searches) [code]:
a random position whose nonterminal has several alternatives is resampled as a whole subtree,
retried (`patience` = 50, as NePS) until the child differs. Never the root [interpretation: NePS
draws the position index from 1, skipping the first such position, which is the root whenever the
root has a choice]. A new position is drawn on every retry [interpretation], so a position with a
single possible subtree cannot trap the loop; ancestors' constraints are checked again.

`canonicalisers` (per symbol, bottom-up) map equivalent subtrees to one representative, which makes
`digest` a canonical hash; `constraints` (per symbol) exclude subtrees, e.g. NePS's rule that a cell
must not be cut by ``zero`` edges.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasrepro.errors import UsageError

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Path = tuple[int, ...]


@dataclass(frozen=True)
class Alternative:
    """One right-hand side: a terminal `symbol` and the nonterminals of its slots, in order."""

    symbol: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True, eq=True)
class Node:
    """A derivation (sub)tree: a terminal symbol and its children (one per slot)."""

    symbol: str
    children: tuple[Node, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not _SYMBOL.fullmatch(self.symbol):
            raise UsageError(f"grammar symbol {self.symbol!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        object.__setattr__(self, "children", tuple(self.children))

    @functools.cached_property
    def text(self) -> str:
        if not self.children:
            return self.symbol
        return f"{self.symbol}({','.join(child.text for child in self.children)})"

    def __str__(self) -> str:
        return self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @functools.cached_property
    def depth(self) -> int:
        """Levels of nodes on the longest root-to-leaf path (a leaf has depth 1)."""
        return 1 + max((c.depth for c in self.children), default=0)

    @functools.cached_property
    def size(self) -> int:
        return 1 + sum(c.size for c in self.children)

    def at(self, path: Path) -> Node:
        """The subtree at `path` (child indices from the root)."""
        node = self
        for i in path:
            node = node.children[i]
        return node

    def replace(self, path: Path, subtree: Node) -> Node:
        """This tree with the subtree at `path` replaced (everything else shared)."""
        if not path:
            return subtree
        head, rest = path[0], path[1:]
        children = list(self.children)
        children[head] = children[head].replace(rest, subtree)
        return Node(self.symbol, tuple(children))


# --- bracket syntax -------------------------------------------------------------------------------


@dataclass
class _Raw:
    symbol: str
    pos: int
    children: list[_Raw]


def _read_brackets(text: str, where: str) -> _Raw:
    """`text` as a bracket tree (syntax only); `UsageError` naming the first bad character."""
    tokens = [(m.group(), m.start()) for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*|[(),]|\s+|.", text)]
    tokens = [(t, p) for t, p in tokens if not t.isspace()]
    i = 0

    def bad(pos: int, what: str) -> UsageError:
        return UsageError(f"{where}: {what} at character {pos} ({_excerpt(text, pos)})")

    def node() -> _Raw:
        nonlocal i
        if i >= len(tokens):
            raise bad(len(text), "the string ends where a symbol was expected")
        token, pos = tokens[i]
        if not _SYMBOL.fullmatch(token):
            raise bad(pos, f"{token!r} where a symbol was expected")
        i += 1
        raw = _Raw(token, pos, [])
        if i < len(tokens) and tokens[i][0] == "(":
            i += 1
            while True:
                raw.children.append(node())
                if i >= len(tokens):
                    raise bad(len(text), f"missing ')' closing {token!r} at character {pos}")
                sep, spos = tokens[i]
                i += 1
                if sep == ")":
                    break
                if sep != ",":
                    raise bad(spos, f"{sep!r} where ',' or ')' was expected")
        return raw

    root = node()
    if i < len(tokens):
        raise bad(tokens[i][1], f"unexpected {tokens[i][0]!r} after the end of the architecture")
    return root


def _excerpt(text: str, pos: int, width: int = 24) -> str:
    start, end = max(0, pos - width), min(len(text), pos + width)
    return ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")


# --- the grammar ----------------------------------------------------------------------------------

Constraint = Callable[[Node], "str | None"]
Canonicaliser = Callable[[Node], Node]


class Grammar:
    """Productions as data plus the operations a search space needs (see the module docstring)."""

    def __init__(
        self,
        productions: Mapping[str, Sequence[Alternative]],
        start: str,
        *,
        name: str = "grammar",
        max_depth: int | None = None,
        max_nodes: int | None = None,
        constraints: Mapping[str, Constraint] | None = None,
        canonicalisers: Mapping[str, Canonicaliser] | None = None,
        patience: int = 50,
    ) -> None:
        self.name, self.start, self.patience = name, start, patience
        self.max_depth, self.max_nodes = max_depth, max_nodes
        self.constraints = dict(constraints or {})
        self.canonicalisers = dict(canonicalisers or {})
        self.productions: dict[str, tuple[Alternative, ...]] = {}
        for nt, alts in productions.items():
            parsed = tuple(alts)
            if not parsed:
                raise UsageError(f"grammar {name}: nonterminal {nt!r} has no alternative")
            if len(set(parsed)) < len(parsed):
                raise UsageError(f"grammar {name}: nonterminal {nt!r} lists an alternative twice")
            self.productions[nt] = parsed
        for nt, alts in self.productions.items():
            for alt in alts:
                Node(alt.symbol)  # the symbol must be an identifier
                for child in alt.children:
                    if child not in self.productions:
                        raise UsageError(
                            f"grammar {name}: {alt.symbol!r} of {nt} has slot {child!r}, which has no production"
                        )
        if start not in self.productions:
            raise UsageError(f"grammar {name}: start symbol {start!r} has no production")
        self._height = self._min_heights()
        if math.isinf(self._height[start]):
            raise UsageError(f"grammar {name}: {start} never derives a finite tree")
        if self.recursive() and max_depth is None:
            raise UsageError(f"grammar {name} is recursive; give max_depth so that sampling terminates")
        if max_depth is not None and max_depth < self._height[start]:
            raise UsageError(
                f"grammar {name}: max_depth={max_depth} is below the shallowest tree ({self._height[start]} levels)"
            )

    # --- structure ---------------------------------------------------------------------------
    def _min_heights(self) -> dict[str, float]:
        """Fewest levels of any tree each nonterminal derives (inf: none), by fixed point."""
        height = {nt: math.inf for nt in self.productions}
        changed = True
        while changed:
            changed = False
            for nt, alts in self.productions.items():
                best = min(self._alt_height(a, height) for a in alts)
                if best < height[nt]:
                    height[nt], changed = best, True
        return height

    @staticmethod
    def _alt_height(alt: Alternative, height: Mapping[str, float]) -> float:
        return 1 + max((height[c] for c in alt.children), default=0)

    def recursive(self) -> bool:
        """Whether some nonterminal can derive itself (then trees are unbounded without a cap)."""
        reach = {nt: {c for a in alts for c in a.children} for nt, alts in self.productions.items()}
        for _ in self.productions:
            for nt in reach:
                reach[nt] |= {d for c in reach[nt] for d in reach[c]}
        return any(nt in reach[nt] for nt in reach)

    def _depth_left(self, depth_used: int) -> float:
        return math.inf if self.max_depth is None else self.max_depth - depth_used

    # --- parsing and validation --------------------------------------------------------------
    def parse(self, text: str, nonterminal: str | None = None) -> Node:
        """The derivation written as `text` (from `nonterminal`, default the start symbol); one
        `UsageError` line if it is not one."""
        return self._parse(text, nonterminal or self.start)[0]

    def validate(self, tree: Node) -> Node:
        """`tree` if the grammar derives it (positions in the message refer to ``str(tree)``)."""
        if not isinstance(tree, Node):
            raise UsageError(
                f"{self.name} architecture: expected a derivation tree, got {type(tree).__name__}"
            )
        return self.parse(tree.text)

    def label(self, tree: Node) -> list[tuple[Path, str]]:
        """Every position of `tree` (pre-order) with the nonterminal it derives; where a subtree
        fits several alternatives (all the same network) the first one's."""
        _, raw, chosen = self._parse(tree.text, self.start)
        out: list[tuple[Path, str]] = []

        def visit(r: _Raw, nt: str, path: Path) -> None:
            out.append((path, nt))
            for i, (child, child_nt) in enumerate(zip(r.children, chosen[(id(r), nt)].children, strict=True)):
                visit(child, child_nt, (*path, i))

        visit(raw, self.start, ())
        return out

    def _parse(self, text: str, nt: str) -> tuple[Node, _Raw, dict[tuple[int, str], Alternative]]:
        where = f"{self.name} architecture"
        if isinstance(text, Node):
            text = text.text
        if not isinstance(text, str):
            raise UsageError(
                f"{where}: expected a bracket string like Sym(child,...), got {type(text).__name__}"
            )
        raw = _read_brackets(text, where)
        failures: list[tuple[int, str]] = []
        chosen: dict[tuple[int, str], Alternative] = {}
        tree = self._match(raw, nt, failures, {}, chosen)
        if tree is None:
            pos, message = max(failures, key=lambda f: f[0])
            raise UsageError(f"{where}: {message} ({_excerpt(text, pos)})")
        for what, value, cap in (("depth", tree.depth, self.max_depth), ("size", tree.size, self.max_nodes)):
            if cap is not None and value > cap:
                raise UsageError(f"{where}: the tree's {what} is {value}, this space allows at most {cap}")
        return tree, raw, chosen

    def _match(
        self,
        raw: _Raw,
        nt: str,
        failures: list[tuple[int, str]],
        memo: dict[tuple[int, str], Node | None],
        chosen: dict[tuple[int, str], Alternative],
    ) -> Node | None:
        """`raw` as a derivation of `nt` (backtracking over alternatives; memoised), else None
        with the reasons appended to `failures`."""
        key = (id(raw), nt)
        if key in memo:
            return memo[key]
        memo[key] = None
        alts = [a for a in self.productions[nt] if a.symbol == raw.symbol]
        at = f"{raw.symbol!r} at character {raw.pos}"
        if not alts:
            choices = ", ".join(dict.fromkeys(a.symbol for a in self.productions[nt]))
            failures.append((raw.pos, f"{at} is not an alternative of {nt} (choose from {choices})"))
            return None
        fitting = [a for a in alts if len(a.children) == len(raw.children)]
        if not fitting:
            takes = " or ".join(sorted({str(len(a.children)) for a in alts}))
            failures.append((raw.pos, f"{at} takes {takes} children as {nt}, got {len(raw.children)}"))
            return None
        for alt in fitting:
            children = []
            for child_raw, child_nt in zip(raw.children, alt.children, strict=True):
                child = self._match(child_raw, child_nt, failures, memo, chosen)
                if child is None:
                    break
                children.append(child)
            else:
                node = Node(raw.symbol, tuple(children))
                reason = self._violation(node)
                if reason is None:
                    memo[key], chosen[key] = node, alt
                    return node
                failures.append((raw.pos, f"{at} is excluded: {reason}"))
        return None

    def _violation(self, node: Node) -> str | None:
        check = self.constraints.get(node.symbol)
        return None if check is None else check(node)

    # --- sampling and mutation ---------------------------------------------------------------
    def sample(self, rng: np.random.Generator, nonterminal: str | None = None) -> Node:
        """A random tree from `nonterminal` (default the start): uniform over alternatives."""
        nt = self.start if nonterminal is None else nonterminal
        for _ in range(self.patience):
            tree = self._draw(nt, self._depth_left(0), rng)
            if self.max_nodes is None or tree.size <= self.max_nodes:
                return tree
        raise UsageError(f"{self.name}: no tree of at most {self.max_nodes} nodes in {self.patience} draws")

    def _draw(self, nt: str, depth_left: float, rng: np.random.Generator) -> Node:
        alts = [a for a in self.productions[nt] if self._alt_height(a, self._height) <= depth_left]
        for _ in range(self.patience):
            alt = alts[int(rng.integers(len(alts)))]
            node = Node(alt.symbol, tuple(self._draw(c, depth_left - 1, rng) for c in alt.children))
            if self._violation(node) is None:
                return node
        raise UsageError(f"{self.name}: no {nt} satisfying its constraints in {self.patience} draws")

    def mutate(self, tree: Node, rng: np.random.Generator, key: Callable[[Node], Any] | None = None) -> Node:
        """`tree` with one random subtree resampled (positions with a choice, never the root);
        the child differs from `tree` under `key` (default: the tree itself)."""
        key = key or (lambda t: t)
        swappable = [(p, nt) for p, nt in self.label(tree) if len(self.productions[nt]) > 1]
        if len(swappable) > 1:
            swappable = [(p, nt) for p, nt in swappable if p]
        if not swappable:
            raise UsageError(f"{self.name}: {tree} has no position with a choice to mutate")
        parent_key = key(tree)
        for _ in range(self.patience):
            path, nt = swappable[int(rng.integers(len(swappable)))]
            child = tree.replace(path, self._draw(nt, self._depth_left(len(path)), rng))
            if self.max_nodes is not None and child.size > self.max_nodes:
                continue
            if any(self._violation(child.at(path[:k])) for k in range(len(path))):
                continue  # an ancestor's constraint fails (e.g. a cell cut by a new zero op)
            if key(child) != parent_key:
                return child
        raise UsageError(f"{self.name}: no different neighbour of {tree} in {self.patience} mutations")

    # --- canonical form, hash, size ------------------------------------------------------------
    def canonical(self, tree: Node) -> Node:
        """Each subtree replaced bottom-up by its symbol's canonicaliser (identity where none)."""
        children = tuple(self.canonical(c) for c in tree.children)
        node = tree if children == tree.children else Node(tree.symbol, children)
        fix = self.canonicalisers.get(node.symbol)
        return node if fix is None else fix(node)

    def digest(self, tree: Node) -> str:
        """A short, stable hash of the canonical tree (equal for equivalent trees)."""
        return hashlib.sha256(self.canonical(tree).text.encode()).hexdigest()[:16]

    def count(self, nonterminal: str | None = None, known: Mapping[str, int] | None = None) -> int:
        """Derivations from `nonterminal` within the depth cap (not the size cap or constraints;
        `known` overrides a nonterminal's count, e.g. with its constrained count)."""
        known = dict(known or {})
        depth = self.max_depth if self.max_depth is not None else len(self.productions) + 1

        @functools.cache
        def n(nt: str, left: int) -> int:
            if nt in known:
                return known[nt]
            if left < self._height[nt]:
                return 0
            return sum(math.prod(n(c, left - 1) for c in a.children) for a in self.productions[nt])

        return n(self.start if nonterminal is None else nonterminal, depth)

    def describe(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "productions": {
                nt: [f"{a.symbol}({' '.join(a.children)})" if a.children else a.symbol for a in alts]
                for nt, alts in self.productions.items()
            },
            "max_depth": self.max_depth,
            "max_nodes": self.max_nodes,
        }
