"""Token encodings of NAO's search spaces, with grammar masks and symmetric augmentation.

NAO (Luo et al. 2018, Sec. 3.1) writes an architecture as a fixed-length string of discrete tokens,
embeds it with an LSTM and decodes it back. Token 0 is ``<sos>`` (= ``<eos>``, NAO_V1
``controller.py``) and never appears inside a sequence. Four encodings:

``nao-ws``     the NAO-WS convolutional cell (NAO_pytorch ``NAO_V1/utils.py``): a normal and a
               reduction cell of B = 5 nodes; node i (0-based) adds two branches (input, op), each
               input one of 0..i+1 (0, 1 = the two previous cells, k >= 2 = node k-2). Ops: the
               5-op space. Tokens: input + 1 (1-6), op + 7 (7-11); 40 tokens, vocabulary 12.
               The architecture type and op ids live in `nasrepro.spaces.nao_cells`, the
               registered cell spaces that NAO-WS, random search and evolution share.
``naonet``     the same cell with the 11-op space of NAONet (``dag.NAONet.json``; NAO_V1 op ids
               5-15). Tokens input + 1, 7 + (op - 5) (7-17); vocabulary 18. Deviation: the TF
               search wrote each branch as 3 tokens (input, op type, op size; vocabulary 21); we
               keep NAO_V1's 2-token branches for both cell spaces, so one EPD shape serves both.
``ptb``        the DARTS-style recurrent cell (``NAO/rnn/utils.py``): 11 nodes, node i (0-based)
               takes one predecessor 0..i and an activation. Tokens pred + 1 (1-11), activation
               + 12 (12-15); 22 tokens, vocabulary 16. The architecture type, NAO's activation
               numbering and the paper's cells live in `nasrepro.spaces.nao_rnn_cells` (the
               registered ``nao-rnn-cells`` spaces; the NAO-WS code numbers activations 2 and 3
               the other way round, see there).
``nasbench201`` the NAS-Bench-201 cell (`nasrepro.spaces.nasbench201`): its 6 edges' ops in NB201's
               edge order, op code + 1 (1-5); 6 tokens, vocabulary 6 (our addition, so NAO runs on
               a table).

Each slot of a sequence allows one contiguous range of token ids that depends on the position
only, so a grammar is a boolean mask ``[length, vocab]`` (`Grammar.mask`). The decoder picks the
best *allowed* token at every step (NAO_V1 ``Decoder.decode``; TF ``MyDense``), hence every decoded
sequence is a valid architecture. Architecture strings are the papers' own: the 40 integers of
NAO_V1 (NAONet-A/-B as published), the 22 integers of the PTB scripts, NB201's ``|op~0|+...``.

Symmetric augmentation (NAO_V1 ``NAODataset(swap=True)``): a node's output is the *sum* of its two
branches, so exchanging (in1, op1) with (in2, op2) yields the same function (parameters just trade
places). `Codec.swap_groups` lists the exchangeable token spans per cell; `Codec.augment` swaps one
random node per cell, as the code does; `Codec.canonical` orders every node's branches.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.registry import Registry
from nasrepro.spaces.nao_cells import CONV_OPS as CONV_OPS  # re-exported
from nasrepro.spaces.nao_cells import NAONET_A as NAONET_A
from nasrepro.spaces.nao_cells import NAONET_B as NAONET_B
from nasrepro.spaces.nao_cells import NODES, ConvArch, parse_conv_arch
from nasrepro.spaces.nao_rnn_cells import ACTIVATIONS as ACTIVATIONS
from nasrepro.spaces.nao_rnn_cells import NAO_PTB_CELL as NAO_PTB_CELL
from nasrepro.spaces.nao_rnn_cells import NAO_WS_PTB_CELL as NAO_WS_PTB_CELL
from nasrepro.spaces.nao_rnn_cells import RNN_STEPS, RecurrentArch, parse_recurrent_arch
from nasrepro.spaces.nasbench201 import EDGES as NB201_EDGES
from nasrepro.spaces.nasbench201 import OP_NAMES as NB201_OPS
from nasrepro.spaces.nasbench201 import NB201Arch

SOS = 0
A = TypeVar("A")
Tokens = tuple[int, ...]
#: a pair of equally long, exchangeable token spans (start, stop) -- one node's two branches
SwapPair = tuple[tuple[int, int], tuple[int, int]]


# --- grammar -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One position of a sequence: its token class, what it means, and its allowed ids lo..hi."""

    kind: str  # "input", "op", "activation"
    what: str  # e.g. "input of node 3, branch 2, reduction cell"
    lo: int
    hi: int

    def describe(self) -> str:
        return (
            f"{self.kind} token {self.lo}-{self.hi}" if self.hi > self.lo else f"{self.kind} token {self.lo}"
        )


class Grammar:
    """The allowed tokens at every position of a fixed-length sequence."""

    def __init__(self, name: str, slots: Sequence[Slot], vocab_size: int) -> None:
        self.name = name
        self.slots = tuple(slots)
        self.vocab_size = vocab_size
        assert all(0 < s.lo <= s.hi < vocab_size for s in self.slots), "token 0 is <sos> only"

    @property
    def length(self) -> int:
        return len(self.slots)

    @functools.cached_property
    def _mask(self) -> np.ndarray:
        mask = np.zeros((self.length, self.vocab_size), dtype=bool)
        for i, slot in enumerate(self.slots):
            mask[i, slot.lo : slot.hi + 1] = True
        mask.setflags(write=False)
        return mask

    def mask(self) -> np.ndarray:
        """``[length, vocab]`` booleans: True where a token may stand at a position (read-only)."""
        return self._mask

    def check(self, tokens: Sequence[Any]) -> Tokens:
        """`tokens` as ints if they form a valid sequence; else a `UsageError` naming the first bad
        position and the token class expected there."""
        where = f"{self.name} token sequence"
        if isinstance(tokens, str) or not isinstance(tokens, Sequence | np.ndarray):
            raise UsageError(f"{where}: expected a sequence of {self.length} integers, got {tokens!r}")
        if len(tokens) != self.length:
            raise UsageError(f"{where}: expected {self.length} tokens, got {len(tokens)}")
        out = []
        for i, (token, slot) in enumerate(zip(tokens, self.slots, strict=True)):
            if isinstance(token, bool) or not isinstance(token, int | np.integer):
                raise UsageError(
                    f"{where}, position {i} ({slot.what}): expected {slot.describe()}, got {token!r}"
                )
            if not slot.lo <= token <= slot.hi:
                raise UsageError(
                    f"{where}, position {i} ({slot.what}): expected {slot.describe()}, got {int(token)}"
                )
            out.append(int(token))
        return tuple(out)

    def sample(self, rng: np.random.Generator) -> Tokens:
        """A uniformly random valid sequence (each slot uniform over its range)."""
        return tuple(int(rng.integers(s.lo, s.hi + 1)) for s in self.slots)


def _ints(text: str, count: int, where: str) -> list[int]:
    """`text` as exactly `count` whitespace-separated integers, else a `UsageError`."""
    if not isinstance(text, str):
        raise UsageError(f"{where}: expected a string of {count} integers, got {type(text).__name__}")
    parts = text.split()
    if len(parts) != count:
        raise UsageError(f"{where}: expected {count} integers, got {len(parts)} in {text!r}")
    for i, part in enumerate(parts):
        if not part.lstrip("-").isdigit():
            raise UsageError(f"{where}: item {i} is {part!r}, expected an integer")
    return [int(p) for p in parts]


# --- codecs --------------------------------------------------------------------------------------


class Codec(ABC, Generic[A]):
    """Architecture <-> token sequence <-> architecture string, exact both ways."""

    name: str
    grammar: Grammar
    #: tokens concatenated per encoder step (``source_length / encoder_length`` of the code)
    tokens_per_step: int = 1
    #: per cell, the node branch pairs that `augment` may exchange (empty: no such symmetry)
    swap_groups: tuple[tuple[SwapPair, ...], ...] = ()

    @abstractmethod
    def to_tokens(self, arch: A) -> Tokens: ...

    @abstractmethod
    def _from_valid(self, tokens: Tokens) -> A: ...

    @abstractmethod
    def parse(self, text: str) -> A:
        """The architecture written as the paper's string; `UsageError` naming the bad item."""

    def format(self, arch: A) -> str:
        return str(arch)

    def from_tokens(self, tokens: Sequence[int]) -> A:
        """The architecture of a token sequence; `UsageError` at the first token out of grammar."""
        return self._from_valid(self.grammar.check(tokens))

    def sample(self, rng: np.random.Generator) -> A:
        return self._from_valid(self.grammar.sample(rng))

    def swap(self, tokens: Sequence[int], group: int, pair: int) -> Tokens:
        """`tokens` with the two branches of pair `pair` of cell `group` exchanged."""
        (a0, a1), (b0, b1) = self.swap_groups[group][pair]
        out = list(tokens)
        out[a0:a1], out[b0:b1] = out[b0:b1], out[a0:a1]
        return tuple(out)

    def augment(self, tokens: Sequence[int], rng: np.random.Generator) -> Tokens:
        """One random node per cell with its branches swapped (NAO_V1 ``NAODataset(swap=True)``)."""
        out = tuple(tokens)
        for g, pairs in enumerate(self.swap_groups):
            out = self.swap(out, g, int(rng.integers(len(pairs))))
        return out

    def canonical_tokens(self, tokens: Sequence[int]) -> Tokens:
        """Every node's branches in ascending order: one representative per swap class."""
        out = tuple(tokens)
        for g, pairs in enumerate(self.swap_groups):
            for p, ((a0, a1), (b0, b1)) in enumerate(pairs):
                if out[b0:b1] < out[a0:a1]:
                    out = self.swap(out, g, p)
        return out

    def canonical(self, arch: A) -> A:
        return self._from_valid(self.canonical_tokens(self.to_tokens(arch)))


CODECS: Registry[Codec[Any]] = Registry("NAO encoding")


def get_codec(name: str) -> Codec[Any]:
    """The encoding registered as `name` (``nao-ws``, ``naonet``, ``ptb``, ``nasbench201``)."""
    return CODECS.get(name)


# --- convolutional cells (NAO-WS, NAONet) ---------------------------------------------------------

_NODE_TOKEN0 = 1  # input k -> token k + 1
_OP_TOKEN0 = NODES + 2  # first op token: 7


class ConvCellCodec(Codec[ConvArch]):
    """NAO_V1's 2-token branches over one op space (global ids ``op_offset .. op_offset+n-1``)."""

    tokens_per_step = 2

    def __init__(self, name: str, op_offset: int, num_ops: int) -> None:
        self.name, self.op_offset, self.num_ops = name, op_offset, num_ops
        slots = []
        for cell in ("normal", "reduction"):
            for i in range(NODES):
                for b in (1, 2):
                    where = f"node {i}, branch {b}, {cell} cell"
                    slots.append(Slot("input", f"input of {where}", _NODE_TOKEN0, _NODE_TOKEN0 + i + 1))
                    slots.append(Slot("op", f"op of {where}", _OP_TOKEN0, _OP_TOKEN0 + num_ops - 1))
        self.grammar = Grammar(name, slots, _OP_TOKEN0 + num_ops)
        starts = [[20 * cell + 4 * node for node in range(NODES)] for cell in range(2)]  # node i at 4i
        self.swap_groups = tuple(tuple(((a, a + 2), (a + 2, a + 4)) for a in cell) for cell in starts)

    def to_tokens(self, arch: ConvArch) -> Tokens:
        out = []
        for cell in arch.cells():
            for j, v in enumerate(cell):
                out.append(v + _NODE_TOKEN0 if j % 2 == 0 else v - self.op_offset + _OP_TOKEN0)
        return self.grammar.check(out)  # an arch of another op space fails here, loudly

    def _from_valid(self, tokens: Tokens) -> ConvArch:
        ints = [
            t - _NODE_TOKEN0 if j % 2 == 0 else t - _OP_TOKEN0 + self.op_offset for j, t in enumerate(tokens)
        ]
        half = len(ints) // 2
        return ConvArch(tuple(ints[:half]), tuple(ints[half:]))

    def parse(self, text: str) -> ConvArch:
        return parse_conv_arch(text, (self.op_offset, self.num_ops), f"{self.name} architecture")


CODECS.register("nao-ws")(ConvCellCodec("nao-ws", op_offset=0, num_ops=5))
CODECS.register("naonet")(ConvCellCodec("naonet", op_offset=5, num_ops=11))


# --- the PTB recurrent cell ------------------------------------------------------------------------

_PRED_TOKEN0 = 1
_ACT_TOKEN0 = RNN_STEPS + 1  # 12


class RecurrentCellCodec(Codec[RecurrentArch]):
    name = "ptb"

    def __init__(self) -> None:
        slots = []
        for i in range(RNN_STEPS):
            slots.append(Slot("input", f"predecessor of node {i}", _PRED_TOKEN0, _PRED_TOKEN0 + i))
            slots.append(
                Slot("activation", f"activation of node {i}", _ACT_TOKEN0, _ACT_TOKEN0 + len(ACTIVATIONS) - 1)
            )
        self.grammar = Grammar(self.name, slots, _ACT_TOKEN0 + len(ACTIVATIONS))

    def to_tokens(self, arch: RecurrentArch) -> Tokens:
        return self.grammar.check(
            [t for p, a in arch.nodes for t in (p + _PRED_TOKEN0, ACTIVATIONS.index(a) + _ACT_TOKEN0)]
        )

    def _from_valid(self, tokens: Tokens) -> RecurrentArch:
        return RecurrentArch(
            tuple(
                (tokens[2 * i] - _PRED_TOKEN0, ACTIVATIONS[tokens[2 * i + 1] - _ACT_TOKEN0])
                for i in range(RNN_STEPS)
            )
        )

    def parse(self, text: str) -> RecurrentArch:
        """The 22 integers in NAO's activation numbering (``NAO/rnn/utils.py``); the NAO-WS code
        numbers 2 and 3 the other way round (`nasrepro.spaces.nao_rnn_cells.parse_nao_ws`)."""
        return parse_recurrent_arch(text)


CODECS.register("ptb")(RecurrentCellCodec())


# --- NAS-Bench-201 -------------------------------------------------------------------------------


class NB201Codec(Codec[NB201Arch]):
    """The 6 edge ops of an NB201 cell, op code + 1. No branch symmetry: every edge is distinct."""

    name = "nasbench201"

    def __init__(self) -> None:
        slots = [Slot("op", f"op of edge {s}->{t}", 1, len(NB201_OPS)) for s, t in NB201_EDGES]
        self.grammar = Grammar(self.name, slots, len(NB201_OPS) + 1)

    def to_tokens(self, arch: NB201Arch) -> Tokens:
        return tuple(c + 1 for c in arch.codes)

    def _from_valid(self, tokens: Tokens) -> NB201Arch:
        return NB201Arch.from_codes([t - 1 for t in tokens])

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.parse(text)


CODECS.register("nasbench201")(NB201Codec())


# --- any space with the categorical view -----------------------------------------------------------


class CategoricalCodec(Codec[Any]):
    """Any `Space` with the categorical view (``fields``/``encode``/``decode``): one token per field,
    choice index + 1. Not registered (it is built per space); on NAS-Bench-201 it yields exactly the
    tokens of `NB201Codec`, since that space's fields are its 6 edges over the 5 ops in `EDGES` order.

    A space may refuse an index combination (``decode`` raises `UsageError`); the grammar cannot
    express such constraints, so `decodes` says whether a sequence names an architecture.
    """

    def __init__(self, space: Any) -> None:
        self.space = space
        self.name = f"categorical:{space.name}"
        fields = space.fields()
        if not fields:
            raise UsageError(f"NAO: space {space.name!r} has no categorical fields to encode")
        slots = [Slot("choice", f"field {f.name}", 1, len(f.choices)) for f in fields]
        self.grammar = Grammar(self.name, slots, 1 + max(len(f.choices) for f in fields))

    def to_tokens(self, arch: Any) -> Tokens:
        return self.grammar.check([int(i) + 1 for i in self.space.encode(arch)])

    def _from_valid(self, tokens: Tokens) -> Any:
        return self.space.decode([t - 1 for t in tokens])

    def parse(self, text: str) -> Any:
        return self.space.parse(text)

    def format(self, arch: Any) -> str:
        return self.space.key(arch)

    def decodes(self, tokens: Sequence[int]) -> Any | None:
        """The architecture of a grammatical sequence, or None where the space refuses it."""
        try:
            return self._from_valid(tuple(tokens))
        except UsageError:
            return None
