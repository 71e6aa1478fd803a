"""Grow ("augment") and trim candidate generators, per space (memnet.md Sec. 3.2).

MemNet's CIFAR space (`nasrepro.spaces.memnet_cells`), after the prototype's `Network.gen_big`,
`remove` and `remove_fin` (MemNAS/MemNAS @ 9c7482c, `utils/nets.py`; MemNAS Fig. 2c):

- **round 0**: every single-cell network (both inputs = the block input, every op pair; the add
  commutes, so 7*8/2 = 28 distinct networks; the prototype generated the 49 ordered pairs);
- **grow**: one new linked cell -- every unordered pair of (input location, op) slots over the
  locations every block has -- appended to **all five blocks at once**: C(7m + 1, 2) networks for m
  common locations;
- **trim**: in **one block only**, remove one op of a two-op cell, or one edge: clear a cell's link
  to the block output (when another linked cell remains; a cell left unused is then dead and
  dropped by `canonical`).

NAS-Bench-201 ([interpretation], see README): the NB201 cell is repeated in all 15 cell positions,
so an edit of the cell is an edit of every block at once, like MemNet's grow. An op *is* an edge
there, so: round 0 = the four cells with one op on the input->output edge and nothing else; grow
= put an op on one `none` edge where it is live at once, or ops on two `none` edges neither of
which is live alone (a new input op + output op around an unused node: MemNet's new cell);
trim = set one op edge to `none`. Candidates are canonicalised and
those equal to the incumbent dropped, so every candidate is a different network.

`sequences` turns networks into the ranker's input: (batch, length, features) float arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.space import Space
from nasrepro.spaces import memnet_cells as mc
from nasrepro.spaces import nasbench201 as nb


class GrowTrim(Protocol):
    def round0(self) -> list[Any]: ...
    def grow(self, arch: Any) -> list[Any]: ...
    def trim(self, arch: Any) -> list[Any]: ...
    def sequences(self, archs: Sequence[Any]) -> np.ndarray: ...


def _unique(space: Space, archs: list[Any], exclude: Any = None) -> list[Any]:
    """Canonical, first occurrence kept, `exclude` (the incumbent) dropped."""
    seen = {space.key(exclude)} if exclude is not None else set()
    out = []
    for arch in archs:
        key = space.key(arch)
        if key not in seen:
            seen.add(key)
            out.append(space.canonical(arch))
    return out


class MemNetCellsGrowTrim:
    """Grow/trim on MemNet's own CIFAR space."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def round0(self) -> list[mc.MemNetArch]:
        pairs = itertools.combinations_with_replacement(range(mc.N_OPS), 2)
        return [mc.MemNetArch.uniform([mc.MemNetCell(0, a, 0, b, True)]) for a, b in pairs]

    def grow(self, arch: Any) -> list[mc.MemNetArch]:
        """The same new cell appended to every block (prototype `gen_big`)."""
        base = mc.canonical_arch(arch)
        if max(len(b) for b in base.blocks) >= mc.MAX_CELLS:
            return []
        m = min(len(b) for b in base.blocks) + 1  # input locations every block has
        slots = [(loc, op) for loc in range(m) for op in range(mc.N_OPS)]
        out = []
        for (i1, o1), (i2, o2) in itertools.combinations_with_replacement(slots, 2):
            cell = mc.MemNetCell(i1, o1, i2, o2, True)
            out.append(mc.MemNetArch(tuple((*block, cell) for block in base.blocks)))
        return _unique(self.space, out, base)

    def trim(self, arch: Any) -> list[mc.MemNetArch]:
        """One op or one link removed in one block (prototype `remove` / `remove_fin`)."""
        base = mc.canonical_arch(arch)
        out = []
        for b, block in enumerate(base.blocks):
            linked = sum(c.linked for c in block)
            for k, cell in enumerate(block):
                edits = []
                if cell.op1 is not None and cell.op2 is not None:
                    edits += [cell._replace(op1=None), cell._replace(op2=None)]
                if cell.linked and linked > 1:
                    edits.append(cell._replace(linked=False))
                for edit in edits:
                    blocks = list(base.blocks)
                    blocks[b] = (*block[:k], edit, *block[k + 1 :])
                    out.append(mc.MemNetArch(tuple(blocks)))
        return _unique(self.space, out, base)

    def sequences(self, archs: Sequence[Any]) -> np.ndarray:
        """Each network as 5 x n cell vectors of 61 bits, padding spread evenly over the blocks."""
        archs = [mc.as_arch(a) for a in archs]
        n = max(len(b) for a in archs for b in a.blocks)
        return np.stack([mc.encode(a, n).reshape(mc.N_BLOCKS * n, mc.CELL_BITS) for a in archs])


class NB201GrowTrim:
    """Grow/trim on the NAS-Bench-201 cell ([interpretation], module docstring)."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.none = nb.OP_NAMES.index("none")
        self.output_edge = nb.EDGES.index((0, 3))

    def _cell(self, codes: Sequence[int]) -> nb.NB201Arch:
        return nb.NB201Arch.from_codes(tuple(codes))

    def round0(self) -> list[nb.NB201Arch]:
        cells = []
        for op in range(len(nb.OP_NAMES)):
            if op != self.none:
                codes = [self.none] * len(nb.EDGES)
                codes[self.output_edge] = op
                cells.append(self._cell(codes))
        return _unique(self.space, cells)

    def grow(self, arch: Any) -> list[nb.NB201Arch]:
        """One op on a `none` edge that is live at once, or -- the analogue of MemNet's new cell, an
        input op and an output op around a node -- ops on two `none` edges neither of which is live
        alone (a new path through an unused node)."""
        base = self.space.canonical(arch)
        key = self.space.key(base)
        ops = [op for op in range(len(nb.OP_NAMES)) if op != self.none]
        empty = [e for e, code in enumerate(base.codes) if code == self.none]

        def add(edits: dict[int, int]) -> nb.NB201Arch:
            return self._cell(tuple(edits.get(e, c) for e, c in enumerate(base.codes)))

        live = {(e, op) for e in empty for op in ops if self.space.key(add({e: op})) != key}
        out = [add({e: op}) for e in empty for op in ops if (e, op) in live]
        for e1, e2 in itertools.combinations(empty, 2):
            for o1, o2 in itertools.product(ops, ops):
                if (e1, o1) not in live and (e2, o2) not in live:
                    out.append(add({e1: o1, e2: o2}))
        return _unique(self.space, out, base)

    def trim(self, arch: Any) -> list[nb.NB201Arch]:
        base = self.space.canonical(arch)
        out = [
            self._cell(base.codes[:e] + (self.none,) + base.codes[e + 1 :])
            for e, code in enumerate(base.codes)
            if code != self.none
        ]
        return _unique(self.space, out, base)

    def sequences(self, archs: Sequence[Any]) -> np.ndarray:
        """Each cell as 6 edge vectors: one-hot edge position (6) + one-hot op (5)."""
        n_edges, n_ops = len(nb.EDGES), len(nb.OP_NAMES)
        out = np.zeros((len(archs), n_edges, n_edges + n_ops), dtype=np.float32)
        for i, arch in enumerate(archs):
            for e, code in enumerate(nb.as_arch(arch).codes):
                out[i, e, e] = out[i, e, n_edges + code] = 1.0
        return out


def adapter_for(space: Space) -> GrowTrim | None:
    """The grow/trim generator of `space`, or None where MemNet has no such edit defined."""
    if isinstance(space, mc.MemNetSpace):
        return MemNetCellsGrowTrim(space)
    if isinstance(space, nb.NB201Space):
        return NB201GrowTrim(space)
    return None


def require_adapter(space: Space) -> GrowTrim:
    adapter = adapter_for(space)
    if adapter is None:
        raise UsageError(
            f"memnet defines grow/trim on memnet-cells* and nasbench201 only, not {space.name!r}"
        )
    return adapter
