"""OTMANN distances between architectures, each pair computed once per search (Sec. 4; code
`nn_gp._add_data_to_gp` keeps the history's distance matrix and augments it block by block).

Every acquisition round compares hundreds of mutants with the history, and most mutants and all
history points recur from round to round, so the cache is keyed by the layer graphs' canonical
strings (isomorphic graphs share an entry) and stores each unordered pair once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasrepro.methods.nasbot.graph import LayerGraph
from nasrepro.methods.nasbot.otmann import OTMANN


class DistanceCache:
    """The (2k, rows, cols) OTMANN distances between lists of graphs, solving only new pairs."""

    def __init__(self, otmann: OTMANN) -> None:
        self.otmann = otmann
        self.k2 = 2 * len(otmann.struct_coeffs)
        self._pairs: dict[tuple[str, str], np.ndarray] = {}
        self.solved = 0  # pairs actually solved (the rest came from the cache)

    def __len__(self) -> int:
        return len(self._pairs)

    def matrix(self, rows: Sequence[LayerGraph], cols: Sequence[LayerGraph]) -> np.ndarray:
        row_keys = [str(g) for g in rows]
        col_keys = [str(g) for g in cols]
        out = np.zeros((self.k2, len(rows), len(cols)))
        for i, (g, key) in enumerate(zip(rows, row_keys, strict=True)):
            missing: dict[str, LayerGraph] = {}
            for h, other in zip(cols, col_keys, strict=True):
                if key != other and _pair(key, other) not in self._pairs:
                    missing.setdefault(other, h)
            if missing:
                found = self.otmann.matrix([g], list(missing.values()))[:, 0, :]
                for j, other in enumerate(missing):
                    self._pairs[_pair(key, other)] = found[:, j].copy()
                self.solved += len(missing)
            for j, other in enumerate(col_keys):
                if key != other:
                    out[:, i, j] = self._pairs[_pair(key, other)]
        return out


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)
