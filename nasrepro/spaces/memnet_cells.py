"""MemNet's CIFAR-10 cell space (Liu, Wu, Ma & Seok, arXiv 1907.09569; MemNAS, CVPR 2020, Fig. 2b).

Reconstructed from the deleted prototype (`utils/nets.py` `Network` and the generated round-0
`net*.py` of MemNAS/MemNAS @ 9c7482c; fact sheet memnet.md Sec. 3.1):

- **Macro**: 5 blocks of widths (w, w, 2w, 2w, 4w) and strides (1, 2, 1, 2, 1), then MaxPool(2) and
  a linear classifier (32 -> 32 -> 16 -> 16 -> 8 -> 8 px -> 4x4). No stem: the prototype defines a
  stem conv but never calls it, so block 1's ops read the 3-channel image.
- **Block** = a sequence of cells. Cell k (1-based) computes ``op1(in1) + op2(in2)``, each input a
  *location*: 0 = the block input, j = the output of cell j < k. A cell whose op was trimmed outputs
  the other op's result. The link flag says whether the cell feeds the block output, which is the
  channel concatenation of the linked cells (#linked x width channels).
- **Ops** (`OP_NAMES`, the prototype's one-hot positions), each followed by BatchNorm + ReLU: an op
  reading the block input takes its channels and the block's stride; an op reading a cell output
  takes the block width at stride 1. [reconstruction] Where a stride-2 pooling op strides (the pool,
  after the 1x1 conv) and the factorised op being 1x7 -> 7x1 (what `cal_weight` counts) are ours.
- **Cell encoding** (61 bits, `cell_vector`): input-1 location (one-hot 15), input-2 location
  (one-hot 15), the cell's own output location (one-hot 15), op 1 (one-hot 7, all zero = trimmed),
  op 2 (one-hot 7), link flag (2: [unlinked, linked]). Up to 14 cells per block (locations 1..14).

String form: cells ``<in1>.<op1>+<in2>.<op2>`` (op ``x`` = trimmed, suffix ``~`` = not linked),
joined by ``,`` within a block and by ``/`` between the 5 blocks, e.g. ``0.6+0.5/0.6+0.5/...``.
`canonical` drops dead cells (neither linked nor read by a live cell), renumbers, and orders a
cell's two (input, op) slots, since the add commutes; reordering independent cells is not merged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.harness.space import Space
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from nasrepro.harness.task import Task

OP_NAMES: tuple[str, ...] = (
    "conv1x1+avgpool3x3",
    "conv1x1+maxpool3x3",
    "dilconv3x3",
    "conv1x7+conv7x1",
    "sepconv5x5",
    "sepconv3x3",
    "conv3x3",
)
N_OPS = len(OP_NAMES)
N_BLOCKS = 5
WIDTH_FACTORS = (1, 1, 2, 2, 4)
STRIDES = (1, 2, 1, 2, 1)
LOCATIONS = 15  # block input + up to 14 cells
MAX_CELLS = LOCATIONS - 1
CELL_BITS = 3 * LOCATIONS + 2 * N_OPS + 2
assert CELL_BITS == 61


class MemNetCell(NamedTuple):
    """``op1(in1) + op2(in2)``; an op of None was trimmed. `linked`: feeds the block output."""

    in1: int
    op1: int | None
    in2: int
    op2: int | None
    linked: bool = True

    def __str__(self) -> str:
        ops = ["x" if op is None else str(op) for op in (self.op1, self.op2)]
        return f"{self.in1}.{ops[0]}+{self.in2}.{ops[1]}" + ("" if self.linked else "~")


@dataclass(frozen=True)
class MemNetArch:
    """Five blocks, each a tuple of cells."""

    blocks: tuple[tuple[MemNetCell, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(tuple(MemNetCell(*c) for c in b) for b in self.blocks))
        check(self)

    def __str__(self) -> str:
        return "/".join(",".join(str(c) for c in block) for block in self.blocks)

    @classmethod
    def uniform(cls, cells: Sequence[MemNetCell]) -> MemNetArch:
        """The same cells in all five blocks (every network grow reaches from round 0)."""
        return cls(tuple(tuple(cells) for _ in range(N_BLOCKS)))


def check(arch: MemNetArch) -> None:
    """`UsageError` naming the first violation of the space's validity rules."""
    if len(arch.blocks) != N_BLOCKS:
        raise UsageError(f"a MemNet network has {N_BLOCKS} blocks, got {len(arch.blocks)}")
    for b, block in enumerate(arch.blocks, start=1):
        if not 1 <= len(block) <= MAX_CELLS:
            raise UsageError(f"block {b} has {len(block)} cells; a block holds 1..{MAX_CELLS}")
        if not any(cell.linked for cell in block):
            raise UsageError(f"block {b} has no linked cell, so it has no output")
        for k, cell in enumerate(block, start=1):
            if cell.op1 is None and cell.op2 is None:
                raise UsageError(f"block {b} cell {k} has no op left; trim removes one op of two")
            for source, op in ((cell.in1, cell.op1), (cell.in2, cell.op2)):
                if not (isinstance(source, int) and 0 <= source < k):
                    raise UsageError(f"block {b} cell {k} reads location {source!r}; use 0..{k - 1}")
                if op is not None and not (isinstance(op, int) and 0 <= op < N_OPS):
                    raise UsageError(f"block {b} cell {k}: op {op!r} is not one of 0..{N_OPS - 1}")


def parse(text: str) -> MemNetArch:
    """The network written as `str(arch)`; `UsageError` naming the first bad token."""
    if not isinstance(text, str):
        raise UsageError(f"a MemNet architecture is a string like '0.6+0.5/...', got {text!r}")
    blocks = text.strip().split("/")
    if len(blocks) != N_BLOCKS:
        raise UsageError(f"MemNet architecture {text!r}: expected {N_BLOCKS} '/'-separated blocks")
    out = []
    for block in blocks:
        cells = []
        for token in block.split(","):
            linked = not token.endswith("~")
            try:
                slots = [s.split(".") for s in token.rstrip("~").split("+")]
                (i1, o1), (i2, o2) = slots
                cell = MemNetCell(
                    int(i1), None if o1 == "x" else int(o1), int(i2), None if o2 == "x" else int(o2), linked
                )
            except ValueError:
                raise UsageError(
                    f"MemNet architecture {text!r}: bad cell {token!r}, expected <in>.<op>+<in>.<op>[~]"
                ) from None
            cells.append(cell)
        out.append(tuple(cells))
    return MemNetArch(tuple(out))


def as_arch(arch: MemNetArch | str) -> MemNetArch:
    return arch if isinstance(arch, MemNetArch) else parse(arch)


def _slot_key(slot: tuple[int, int | None]) -> tuple[int, int, int]:
    return (slot[1] is None, slot[0], -1 if slot[1] is None else slot[1])


def canonical_block(block: Sequence[MemNetCell]) -> tuple[MemNetCell, ...]:
    """Drop dead cells, renumber, zero a trimmed slot's input and sort the two slots."""
    live = [cell.linked for cell in block]
    for k in range(len(block), 0, -1):  # backwards: a live cell keeps its inputs alive
        cell = block[k - 1]
        if live[k - 1]:
            for source, op in ((cell.in1, cell.op1), (cell.in2, cell.op2)):
                if op is not None and source > 0:
                    live[source - 1] = True
    number = {0: 0}
    for k, alive in enumerate(live, start=1):
        if alive:
            number[k] = len(number)
    out = []
    for k, cell in enumerate(block, start=1):
        if not live[k - 1]:
            continue
        slots = sorted(
            (
                (number[s] if op is not None else 0, op)
                for s, op in ((cell.in1, cell.op1), (cell.in2, cell.op2))
            ),
            key=_slot_key,
        )
        out.append(MemNetCell(slots[0][0], slots[0][1], slots[1][0], slots[1][1], cell.linked))
    return tuple(out)


def canonical_arch(arch: MemNetArch | str) -> MemNetArch:
    return MemNetArch(tuple(canonical_block(block) for block in as_arch(arch).blocks))


# --- the 61-bit cell encoding ---------------------------------------------------------------------
def cell_vector(cell: MemNetCell, position: int) -> np.ndarray:
    """The prototype's 61-bit one-hot vector of cell number `position` (1-based) of its block."""
    v = np.zeros(CELL_BITS, dtype=np.float32)
    v[cell.in1] = v[LOCATIONS + cell.in2] = v[2 * LOCATIONS + position] = 1.0
    if cell.op1 is not None:
        v[3 * LOCATIONS + cell.op1] = 1.0
    if cell.op2 is not None:
        v[3 * LOCATIONS + N_OPS + cell.op2] = 1.0
    v[3 * LOCATIONS + 2 * N_OPS + int(cell.linked)] = 1.0
    return v


def encode(arch: MemNetArch | str, cells_per_block: int | None = None) -> np.ndarray:
    """(5, n, 61): each block's cell vectors, zero-padded to n cells (controller.py spreads the
    padding evenly over the 5 blocks); n defaults to the largest block."""
    arch = as_arch(arch)
    n = cells_per_block or max(len(b) for b in arch.blocks)
    if n < max(len(b) for b in arch.blocks):
        raise UsageError(f"cannot encode a block of {max(len(b) for b in arch.blocks)} cells in {n} rows")
    out = np.zeros((N_BLOCKS, n, CELL_BITS), dtype=np.float32)
    for b, block in enumerate(arch.blocks):
        for k, cell in enumerate(block, start=1):
            out[b, k - 1] = cell_vector(cell, k)
    return out


def _one(bits: np.ndarray, what: str) -> int | None:
    hot = np.flatnonzero(bits)
    if len(hot) > 1 or not np.all(np.isin(bits, (0.0, 1.0))):
        raise UsageError(f"{what} is not one-hot: {bits.tolist()}")
    return int(hot[0]) if len(hot) else None


def decode(array: np.ndarray) -> MemNetArch:
    """The inverse of `encode`: all-zero rows are padding; `UsageError` on a malformed vector."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[0] != N_BLOCKS or array.shape[2] != CELL_BITS:
        raise UsageError(f"a MemNet encoding has shape ({N_BLOCKS}, n, {CELL_BITS}), got {array.shape}")
    blocks = []
    for b in range(N_BLOCKS):
        cells = []
        for row in array[b]:
            if not row.any():
                continue
            fields = np.split(row, np.cumsum([LOCATIONS] * 3 + [N_OPS] * 2))
            in1, in2, position, op1, op2, link = (_one(f, f"block {b + 1} field") for f in fields)
            if in1 is None or in2 is None or link is None or position != len(cells) + 1:
                raise UsageError(
                    f"block {b + 1}: cell vector {len(cells) + 1} lacks an input, position or link"
                )
            cells.append(MemNetCell(in1, op1, in2, op2, bool(link)))
        blocks.append(tuple(cells))
    return MemNetArch(tuple(blocks))


# --- the network ------------------------------------------------------------------------------------
def make_op(index: int, c_in: int, c: int, stride: int) -> nn.Sequential:
    """Op `index` from `c_in` to `c` channels at `stride`, then BN + ReLU (conv weights as `cal_weight`)."""

    def conv(ci: int, co: int, k: Any, s: int = 1, pad: Any = 0, **kw: Any) -> nn.Conv2d:
        return nn.Conv2d(ci, co, k, stride=s, padding=pad, bias=False, **kw)

    layers: list[nn.Module]
    if index in (0, 1):
        pool = (
            nn.AvgPool2d(3, stride, 1, count_include_pad=False) if index == 0 else nn.MaxPool2d(3, stride, 1)
        )
        layers = [conv(c_in, c, 1), pool]
    elif index == 2:
        layers = [conv(c_in, c, 3, stride, 2, dilation=2)]
    elif index == 3:
        layers = [conv(c_in, c, (1, 7), stride, (0, 3)), conv(c, c, (7, 1), 1, (3, 0))]
    elif index in (4, 5):
        k = 5 if index == 4 else 3
        layers = [conv(c_in, c_in, k, stride, k // 2, groups=c_in), conv(c_in, c, 1)]
    elif index == 6:
        layers = [conv(c_in, c, 3, stride, 1)]
    else:
        raise UsageError(f"op index {index} is not one of 0..{N_OPS - 1}")
    return nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class MemNetBlock(nn.Module):
    def __init__(self, cells: Sequence[MemNetCell], c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.cells = tuple(cells)
        self.ops = nn.ModuleList()
        self.wiring: list[list[tuple[int, int]]] = []  # per cell: (source, index into self.ops)
        for cell in self.cells:
            wires = []
            for source, op in ((cell.in1, cell.op1), (cell.in2, cell.op2)):
                if op is not None:
                    wires.append((source, len(self.ops)))
                    self.ops.append(make_op(op, c_in if source == 0 else c, c, stride if source == 0 else 1))
            self.wiring.append(wires)
        self.linked = [k for k, cell in enumerate(self.cells, start=1) if cell.linked]
        self.out_channels = len(self.linked) * c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for wires in self.wiring:
            out = None
            for source, i in wires:
                y = self.ops[i](states[source])
                out = y if out is None else out + y
            states.append(out)
        outs = [states[k] for k in self.linked]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class MemNetNetwork(nn.Module):
    """Five blocks (widths w,w,2w,2w,4w; strides 1,2,1,2,1), MaxPool(2), linear classifier."""

    def __init__(
        self, arch: MemNetArch, width: int = 32, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        blocks, c_in = [], in_channels
        for cells, factor, stride in zip(arch.blocks, WIDTH_FACTORS, STRIDES, strict=True):
            block = MemNetBlock(cells, c_in, width * factor, stride)
            blocks.append(block)
            c_in = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(c_in * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(x)), 1))


# --- the space ----------------------------------------------------------------------------------------
class MemNetSpace(Space):
    """MemNet's CIFAR space at base width `width` (the prototype's w = 32; cpu-scale 8 or 16)."""

    name = "memnet-cells"
    extra_views = frozenset({"memnet-cells"})

    def __init__(self, width: int = 32, sample_cells: int = 4) -> None:
        if width < 1 or sample_cells < 1:
            raise UsageError(f"width and sample_cells must be positive, got {width}, {sample_cells}")
        self.width, self.sample_cells = width, sample_cells
        if width != 32:
            self.name = f"memnet-cells-w{width}"

    def parse(self, text: str) -> MemNetArch:
        return parse(text)

    def canonical(self, arch: MemNetArch | str) -> MemNetArch:
        return canonical_arch(arch)

    def sample(self, rng: np.random.Generator) -> MemNetArch:
        """[reconstruction] Per block, 1..`sample_cells` cells with uniform inputs and ops; the last
        cell is linked, every other one with probability 1/2; canonicalised."""
        blocks = []
        for _ in range(N_BLOCKS):
            n = int(rng.integers(1, self.sample_cells + 1))
            cells = [
                MemNetCell(
                    int(rng.integers(k)),
                    int(rng.integers(N_OPS)),
                    int(rng.integers(k)),
                    int(rng.integers(N_OPS)),
                    k == n or bool(rng.integers(2)),
                )
                for k in range(1, n + 1)
            ]
            blocks.append(tuple(cells))
        return canonical_arch(MemNetArch(tuple(blocks)))

    def mutate(self, arch: MemNetArch | str, rng: np.random.Generator) -> MemNetArch:
        """One edit in one block: an op replaced, an input moved, a link toggled, an op trimmed or a
        random cell grown; drawn until the canonical network differs."""
        parent = canonical_arch(arch)
        for _ in range(1000):
            blocks = [list(b) for b in parent.blocks]
            b = int(rng.integers(N_BLOCKS))
            cells = blocks[b]
            k = int(rng.integers(len(cells)))
            c = cells[k]
            kind = int(rng.integers(5))
            if kind == 0:
                slot = int(rng.integers(2))
                op = int(rng.integers(N_OPS))
                cells[k] = c._replace(op1=op) if slot == 0 else c._replace(op2=op)
            elif kind == 1:
                cells[k] = (
                    c._replace(in1=int(rng.integers(k + 1)))
                    if c.op1 is not None
                    else c._replace(in2=int(rng.integers(k + 1)))
                )
            elif kind == 2:
                cells[k] = c._replace(linked=not c.linked)
            elif kind == 3 and c.op1 is not None and c.op2 is not None:
                cells[k] = c._replace(op2=None)
            elif kind == 4 and len(cells) < MAX_CELLS:
                n = len(cells) + 1
                cells.append(
                    MemNetCell(
                        int(rng.integers(n)),
                        int(rng.integers(N_OPS)),
                        int(rng.integers(n)),
                        int(rng.integers(N_OPS)),
                        True,
                    )
                )
            try:
                child = canonical_arch(MemNetArch(tuple(tuple(x) for x in blocks)))
            except UsageError:
                continue
            if child != parent:
                return child
        raise UsageError(f"no valid mutation of {parent} found")

    def to_model(self, arch: MemNetArch | str, task: Task) -> nn.Module:
        return MemNetNetwork(as_arch(arch), self.width, int(getattr(task, "num_classes", 10)))

    def recipe_overrides(self, task: Task) -> dict[str, Any]:
        """The prototype's `train.py` optimiser (memnet.md Sec. 3.6): SGD lr 0.01, momentum 0.9, batch 128,
        at every preset. Its 300 epochs, milestones 60/180/240 and Cutout 16 are the paper setting's
        and depend on the preset, so the method applies them at ``paper`` on CIFAR-10
        (`MemNet.final_recipe`, see the method README); other presets keep the task's."""
        return {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(width=self.width, ops=list(OP_NAMES), strides=list(STRIDES), cell_bits=CELL_BITS)
        return out


SPACES.add("memnet-cells", MemNetSpace)
for _w in (8, 16):
    SPACES.add(f"memnet-cells-w{_w}", functools.partial(MemNetSpace, width=_w))
