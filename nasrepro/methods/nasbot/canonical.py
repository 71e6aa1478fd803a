"""Canonical labelling of small vertex-labelled DAGs (so isomorphic layer graphs hash equal).

Individualisation-refinement, the scheme behind nauty (McKay & Piperno 2014), kept small:

1. *Colour refinement*: start from the vertex keys (label, units, stride) and repeatedly recolour
   every vertex by (its colour, the multiset of its parents' colours, the multiset of its
   children's colours) until the partition stops splitting. Colours are the ranks of the sorted
   signatures, so they depend on structure only, never on the input numbering.
2. If some colour class still holds several vertices, *individualise* each of them in turn (the
   first such class, by colour), refine again and recurse. Every leaf is a discrete colouring,
   i.e. a numbering; its certificate is (keys in that numbering, relabelled edge list). The
   smallest certificate over all leaves is a complete isomorphism invariant.
3. *Automorphism pruning*: two leaves with the same certificate give an automorphism; a vertex
   in the orbit of an already explored one (under the automorphisms found so far that fix the
   current individualised prefix) leads to the same leaves and is skipped. This keeps graphs with
   repeated identical branches (NASBOT's ``branch`` mutation) cheap.

The exactness of the result (isomorphic <=> equal certificates) is checked in the tests against
networkx's isomorphism test on random relabelled graphs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

Key = Hashable
Edge = tuple[int, int]


def _refine(colours: list[int], parents: list[list[int]], children: list[list[int]]) -> list[int]:
    """The coarsest equitable refinement of `colours` (step 1); colours are canonical ranks."""
    num_classes = len(set(colours))
    while True:
        signatures = [
            (
                colours[v],
                tuple(sorted(colours[p] for p in parents[v])),
                tuple(sorted(colours[c] for c in children[v])),
            )
            for v in range(len(colours))
        ]
        rank = {sig: r for r, sig in enumerate(sorted(set(signatures)))}
        colours = [rank[sig] for sig in signatures]
        if len(rank) == num_classes:
            return colours
        num_classes = len(rank)


def _orbit_root(parent: list[int], v: int) -> int:
    while parent[v] != v:
        parent[v] = parent[parent[v]]
        v = parent[v]
    return v


def _orbits(automorphisms: list[tuple[int, ...]], prefix: list[int], n: int) -> list[int]:
    """Union-find roots of the orbits of the automorphisms that fix every vertex of `prefix`."""
    parent = list(range(n))
    for sigma in automorphisms:
        if any(sigma[v] != v for v in prefix):
            continue
        for v, w in enumerate(sigma):
            rv, rw = _orbit_root(parent, v), _orbit_root(parent, w)
            if rv != rw:
                parent[max(rv, rw)] = min(rv, rw)
    return [_orbit_root(parent, v) for v in range(n)]


def canonical_ranks(keys: Sequence[Key], edges: Sequence[Edge]) -> list[int]:
    """A canonical position for every vertex: isomorphic graphs (same keys on mapped vertices,
    same mapped edges) get numberings under which their certificates coincide."""
    n = len(keys)
    parents: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        children[a].append(b)
        parents[b].append(a)
    key_rank = {key: r for r, key in enumerate(sorted(set(keys), key=repr))}
    start = [key_rank[key] for key in keys]
    best: list[tuple[tuple, list[int]]] = []  # [(certificate, positions)] of the best leaf
    automorphisms: list[tuple[int, ...]] = []

    def leaf(positions: list[int]) -> None:
        order = sorted(range(n), key=positions.__getitem__)
        certificate = (
            tuple(repr(keys[v]) for v in order),
            tuple(sorted((positions[a], positions[b]) for a, b in edges)),
        )
        if not best or certificate < best[0][0]:
            best[:] = [(certificate, positions)]
        elif certificate == best[0][0]:
            best_order = sorted(range(n), key=best[0][1].__getitem__)
            automorphisms.append(tuple(best_order[positions[v]] for v in range(n)))

    def search(colours: list[int], prefix: list[int]) -> None:
        colours = _refine(colours, parents, children)
        if len(set(colours)) == n:
            leaf(colours)
            return
        sizes: dict[int, int] = {}
        for c in colours:
            sizes[c] = sizes.get(c, 0) + 1
        target = min(c for c, size in sizes.items() if size > 1)
        explored: list[int] = []
        for v in (v for v in range(n) if colours[v] == target):
            roots = _orbits(automorphisms, prefix, n)  # recomputed: the search below may find more
            if any(roots[u] == roots[v] for u in explored):
                continue
            explored.append(v)
            # individualise v: it takes a colour just below the rest of its class
            split = [2 * c + 1 for c in colours]
            split[v] -= 1
            search(split, [*prefix, v])

    search(start, [])
    return best[0][1]
