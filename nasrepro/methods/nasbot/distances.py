"""OTMANN distances between architectures, each pair computed once (Sec. 4; code
`nn_gp._add_data_to_gp` keeps the history's distance matrix and augments it block by block).

Every acquisition round compares hundreds of mutants with the history, and most mutants and all
history points recur from round to round, so the cache is keyed by the layer graphs' canonical
strings (isomorphic graphs share an entry) and stores each unordered pair once. Distances are a
pure function of the two graphs and OTMANN's settings, so the store is shared by every search in
the process with the same settings (``--seeds 0-19`` runs them one after another): later seeds
find many pairs solved. Results are identical either way; only the overhead differs: every pair is
solved between the canonical representatives of its two keys (graphs parsed back from the canonical
strings), in the order of the keys, so its floating-point value never depends on which graph of an
isomorphism class came first or on which of the two was asked for first (it did, and a 20-seed run
gave a different seed 12 from a rerun of that seed alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasrepro.methods.nasbot.graph import LayerGraph
from nasrepro.methods.nasbot.otmann import OTMANN


class _Store:
    """Graph ids and the distance rows of solved pairs (ids keep the dictionary small)."""

    def __init__(self, width: int) -> None:
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.graphs: dict[int, LayerGraph] = {}  # canonical representatives, parsed when first solved
        self.pairs: dict[tuple[int, int], np.ndarray] = {}
        self.width = width

    def id(self, key: str) -> int:
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = len(self.ids)
            self.keys.append(key)
        return found

    def representative(self, graph_id: int) -> LayerGraph:
        found = self.graphs.get(graph_id)
        if found is None:
            found = self.graphs[graph_id] = LayerGraph.parse(self.keys[graph_id])
        return found


_SHARED: dict[tuple, _Store] = {}
#: the shared store is dropped beyond this many pairs (a bound on memory, about 200 bytes a pair)
MAX_SHARED_PAIRS = 2_000_000


class DistanceCache:
    """The (2k, rows, cols) OTMANN distances between lists of graphs, solving only new pairs."""

    def __init__(self, otmann: OTMANN, shared: bool = True) -> None:
        self.otmann = otmann
        self.k2 = 2 * len(otmann.struct_coeffs)
        settings = (otmann.kind, otmann.nas, otmann.mislabel_coeffs, otmann.struct_coeffs)
        if not shared:
            self._store = _Store(self.k2)
        else:
            store = _SHARED.get(settings)
            if store is None or len(store.pairs) > MAX_SHARED_PAIRS:
                store = _SHARED[settings] = _Store(self.k2)
            self._store = store
        self.solved = 0  # pairs this cache solved (the rest were known)

    def __len__(self) -> int:
        return len(self._store.pairs)

    def matrix(self, rows: Sequence[LayerGraph], cols: Sequence[LayerGraph]) -> np.ndarray:
        store = self._store
        row_ids = [store.id(str(g)) for g in rows]
        col_ids = [store.id(str(g)) for g in cols]
        pairs = store.pairs
        out = np.zeros((self.k2, len(rows), len(cols)))
        # the missing pairs, each oriented by its keys' order and grouped by its first key
        missing: dict[int, set[int]] = {}
        for a in set(row_ids):
            for b in set(col_ids):
                if a != b and (min(a, b), max(a, b)) not in pairs:
                    first, second = sorted((a, b), key=store.keys.__getitem__)
                    missing.setdefault(first, set()).add(second)
        for first in sorted(missing, key=store.keys.__getitem__):
            seconds = sorted(missing[first], key=store.keys.__getitem__)
            found = self.otmann.matrix(
                [store.representative(first)], [store.representative(b) for b in seconds]
            )[:, 0, :]
            for j, b in enumerate(seconds):
                pairs[(min(first, b), max(first, b))] = found[:, j].copy()
            self.solved += len(seconds)
        for i, a in enumerate(row_ids):
            for j, b in enumerate(col_ids):
                if a != b:
                    out[:, i, j] = pairs[(min(a, b), max(a, b))]
        return out
