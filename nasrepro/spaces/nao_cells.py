"""NAO's convolutional cell spaces (Luo et al., NeurIPS 2018, Sec. 3.1 and Appendix; NAO_pytorch
``NAO_V1``), shared by NAO-WS, random search and regularized evolution.

An architecture is a normal and a reduction cell of B = 5 nodes. Node i (0-based) adds two branches
``(input, op)``; an input is 0 or 1 (the outputs of the two previous cells) or k >= 2 (node k-2 of
this cell), so node i picks among 0..i+1. Written as NAO_V1's 40 integers, per node
``in1 op1 in2 op2``, normal cell first (``str(arch)``; NAONet-A and -B below are the published
strings). Op ids are NAO_V1's global ones (`CONV_OPS`):

``nao-cells``     the NAO-WS space, 5 ops (ids 0-4: sep conv 3x3 / 5x5, avg / max pool 3x3, identity);
``naonet-cells``  the NAONet space, 11 ops (ids 5-15: identity, conv 1x1 / 3x3 / 1x3+3x1 / 1x7+7x1,
                  max and avg pool 2x2 / 3x3 / 5x5; ``dag.NAONet.json``).

Isomorphism (``canonical``): a node's output is the *sum* of its two branches, so exchanging them
computes the same function; the representative orders each node's two (input, op) pairs
ascending. No other symmetry is recognised (node renumbering, for one, is not).

The network (``to_model``, `nasrepro.spaces.nao_cells_net`) is NAO_V1's ``NASNetworkCIFAR``: N cells
per stage, F filters in the first stage. ``nao-cells`` and ``naonet-cells`` are the released final
size (``train_cifar.py``: N = 6, F = 36, NAONet-A-36 / NAONet-B-36); ``-n2f16`` and ``-n1f8`` are
cpu and smoke sizes of the same wiring. Kept apart from torch, so a table search never loads it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.space import Field, Space
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

#: NAO_V1's global op ids (``model.py`` ``Node``): 0-4 the NAO-WS space, 5-15 the NAONet space.
CONV_OPS: tuple[str, ...] = (
    "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity",
    "identity", "conv_1x1", "conv_3x3", "conv_1x3_3x1", "conv_1x7_7x1",
    "max_pool_2x2", "max_pool_3x3", "max_pool_5x5", "avg_pool_2x2", "avg_pool_3x3", "avg_pool_5x5",
)  # fmt: skip
#: (first op id, number of ops) of each op space
WS_OPS = (0, 5)
NAONET_OPS = (5, 11)
NODES = 5
CELL_NAMES = ("normal", "reduction")

#: NAONet-A (``NAO_V1/train_NAONet_A_36_cifar10.sh``) and NAONet-B (found by NAO-WS,
#: ``train_NAONet_B_36_cifar10.sh``), as published.
NAONET_A = "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 0 7 1 13 0 6 0 14 0 9 1 10 0 14 2 6 1 11 0 7"
NAONET_B = "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2"


@dataclass(frozen=True)
class ConvArch:
    """A normal and a reduction cell as NAO_V1's integers: per node ``[in1, op1, in2, op2]``.

    Inputs: 0, 1 = outputs of the two previous cells, k >= 2 = node k-2 of this cell. Ops are
    NAO_V1's global ids (`CONV_OPS`); ``str`` is the published 40-integer string.
    """

    normal: tuple[int, ...]
    reduction: tuple[int, ...]

    def cells(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.normal, self.reduction

    def branches(self, cell: int, node: int) -> tuple[tuple[int, str], tuple[int, str]]:
        """The node's two branches as (input, op name)."""
        x, xo, y, yo = self.cells()[cell][4 * node : 4 * node + 4]
        return (x, CONV_OPS[xo]), (y, CONV_OPS[yo])

    def __str__(self) -> str:
        return " ".join(map(str, self.normal + self.reduction))


def parse_conv_arch(text: str, ops: tuple[int, int] = WS_OPS, what: str = "nao-ws architecture") -> ConvArch:
    """The 40 integers of `text` as a `ConvArch` over the op ids ``ops``; a `UsageError` names the
    first bad item, its node and cell, and what was expected there."""
    if not isinstance(text, str):
        raise UsageError(f"{what}: expected a string of {8 * NODES} integers, got {type(text).__name__}")
    parts = text.split()
    if len(parts) != 8 * NODES:
        raise UsageError(f"{what}: expected {8 * NODES} integers, got {len(parts)} in {text!r}")
    ints = []
    for j, part in enumerate(parts):
        if not part.lstrip("-").isdigit():
            raise UsageError(f"{what}: item {j} is {part!r}, expected an integer")
        ints.append(int(part))
    first, count = ops
    for j, v in enumerate(ints):
        cell, node, item = CELL_NAMES[j // 20], j % 20 // 4, j % 4
        if item % 2 == 0 and not 0 <= v <= node + 1:
            raise UsageError(
                f"{what}, item {j}: expected an input 0-{node + 1} for node {node} of the {cell} cell, got {v}"
            )
        if item % 2 == 1 and not first <= v < first + count:
            raise UsageError(
                f"{what}, item {j}: expected an op id {first}-{first + count - 1} (node {node}, {cell} cell), got {v}"
            )
    return ConvArch(tuple(ints[:20]), tuple(ints[20:]))


def canonical_cell(cell: Sequence[int]) -> tuple[int, ...]:
    """Each node's two (input, op) branches in ascending order (their sum does not depend on it)."""
    out: list[int] = []
    for i in range(NODES):
        a, b = tuple(cell[4 * i : 4 * i + 2]), tuple(cell[4 * i + 2 : 4 * i + 4])
        out += [*min(a, b), *max(a, b)]
    return tuple(out)


class NaoCellSpace(Space):
    """NAO's two-cell space over one op set, with the network size (`layers` N, `channels` F) that
    `to_model` builds. ``fields`` are NAO_V1's 40 integers in order (inputs, then op names)."""

    extra_views = frozenset({"nao-cells"})

    def __init__(self, ops: tuple[int, int] = WS_OPS, layers: int = 6, channels: int = 36,
                 name: str = "nao-cells") -> None:  # fmt: skip
        if ops not in (WS_OPS, NAONET_OPS):
            raise UsageError(f"NAO cell ops are {WS_OPS} (NAO-WS) or {NAONET_OPS} (NAONet), got {ops}")
        if layers < 1 or channels < 2 or channels % 2:
            raise UsageError(f"need layers >= 1 and an even channels >= 2, got {layers}, {channels}")
        self.ops, self.layers, self.channels, self.name = ops, layers, channels, name

    @property
    def op_ids(self) -> range:
        return range(self.ops[0], self.ops[0] + self.ops[1])

    # --- basic view -------------------------------------------------------------------------------
    def parse(self, text: str) -> ConvArch:
        return parse_conv_arch(text, self.ops, f"{self.name} architecture")

    def as_arch(self, arch: ConvArch | str) -> ConvArch:
        return self.parse(arch) if isinstance(arch, str) else self.parse(str(arch))

    def canonical(self, arch: ConvArch | str) -> ConvArch:
        arch = self.as_arch(arch)
        return ConvArch(canonical_cell(arch.normal), canonical_cell(arch.reduction))

    def slots(self) -> list[range]:
        """The allowed values of each of the 40 integers."""
        return [range(0, j % 20 // 4 + 2) if j % 2 == 0 else self.op_ids for j in range(8 * NODES)]

    def sample_raw(self, rng: np.random.Generator) -> ConvArch:
        """Every integer uniform over its range, independently (NAO_V1 ``utils.generate_arch``)."""
        ints = [int(s[int(rng.integers(len(s)))]) for s in self.slots()]
        return ConvArch(tuple(ints[:20]), tuple(ints[20:]))

    def sample(self, rng: np.random.Generator) -> ConvArch:
        return self.canonical(self.sample_raw(rng))

    def mutate(self, arch: ConvArch | str, rng: np.random.Generator) -> ConvArch:
        """One of the 40 integers redrawn to another allowed value; changing one branch of a node
        changes the node's branch multiset, so the canonical child always differs."""
        ints = list(str(self.canonical(arch)).split())
        slots = self.slots()
        j = int(rng.integers(len(slots)))
        choices = [v for v in slots[j] if v != int(ints[j])]
        ints[j] = str(choices[int(rng.integers(len(choices)))])
        return self.canonical(" ".join(ints))

    def size(self) -> int:
        """Distinct cells up to branch order: per node, unordered pairs (with repetition) of its
        (input, op) choices, over both cells."""
        per_cell = math.prod(m * (m + 1) // 2 for m in ((i + 2) * self.ops[1] for i in range(NODES)))
        return per_cell**2

    # --- categorical view ------------------------------------------------------------------------
    def fields(self) -> tuple[Field, ...]:
        out = []
        for j, slot in enumerate(self.slots()):
            cell, node, item = CELL_NAMES[j // 20], j % 20 // 4, j % 4
            kind = ("in1", "op1", "in2", "op2")[item]
            choices = tuple(str(v) for v in slot) if item % 2 == 0 else tuple(CONV_OPS[v] for v in slot)
            out.append(Field(f"{cell}.node{node}.{kind}", choices, f"{cell}.node{node}"))
        return tuple(out)

    def encode(self, arch: ConvArch | str) -> tuple[int, ...]:
        """Choice indices of `arch` as given (not canonicalised), so `decode` returns it."""
        ints = [int(v) for v in str(self.as_arch(arch)).split()]
        return tuple(v if j % 2 == 0 else v - self.ops[0] for j, v in enumerate(ints))

    def decode(self, indices: Sequence[int]) -> ConvArch:
        if len(indices) != 8 * NODES:
            raise UsageError(f"a {self.name} encoding has {8 * NODES} indices, got {len(indices)}")
        ints = [int(v) if j % 2 == 0 else int(v) + self.ops[0] for j, v in enumerate(indices)]
        return self.parse(" ".join(map(str, ints)))

    # --- networks --------------------------------------------------------------------------------
    def to_model(self, arch: ConvArch | str, task: Task) -> nn.Module:
        """NAO_V1's ``NASNetworkCIFAR`` of `arch` (N = `layers`, F = `channels`) without its
        auxiliary head, which a recipe's `aux_weight` builds through the network's training hook
        (as `drop_path` drives its drop-path), so params and FLOPs are the network's alone."""
        from nasrepro.spaces.nao_cells_net import NAONetwork

        return NAONetwork(
            self.as_arch(arch), int(getattr(task, "num_classes", 10)), self.layers, self.channels
        )

    def recipe_overrides(self, task: Task) -> dict[str, Any]:
        """NAO_V1 ``train_cifar.py``'s optimiser at every preset: SGD lr 0.025, momentum 0.9, L2 3e-4,
        cosine to 0, gradient-norm clip 5. Its 600 epochs, batch 128, dropout 0.4 and Cutout 16 are
        the paper setting's, applied by NAO-WS's `final_recipe` at ``paper``; its auxiliary loss
        and drop-path by that `final_recipe` at every preset."""
        return {
            "optimizer": "sgd",
            "lr": 0.025,
            "momentum": 0.9,
            "weight_decay": 3e-4,
            "schedule": "cosine",
            "milestones": (),  # the task's multistep epochs (CIFAR-10 paper preset) do not apply
            "grad_clip": 5.0,
        }

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            ops=[CONV_OPS[i] for i in self.op_ids],
            op_ids=list(self.op_ids),
            nodes=NODES,
            layers=self.layers,
            channels=self.channels,
            isomorphism="branch order within a node",
        )
        return out


def _register(name: str, ops: tuple[int, int], layers: int, channels: int) -> None:
    SPACES.add(name, functools.partial(NaoCellSpace, ops, layers, channels, name))


_register("nao-cells", WS_OPS, 6, 36)
_register("nao-cells-n2f16", WS_OPS, 2, 16)
_register("nao-cells-n1f8", WS_OPS, 1, 8)
_register("naonet-cells", NAONET_OPS, 6, 36)
