"""NAO's recurrent-cell space for PTB (Luo et al., NeurIPS 2018, Sec. 3.1 and 4.2; renqianluo/NAO
``NAO/rnn`` and ``NAO-WS/rnn``), shared by NAO-WS, random search and regularized evolution.

The cell is DARTS's (Liu et al. 2019, Sec. 2.1 and Appendix A.1.2) highway cell: a first state
s0 = h + c0 * (tanh(h0) - h) with [c0, h0] = [x, h] W0 (c0 through a sigmoid), then 11 nodes; node
i (0-based) reads one predecessor s_p, p in 0..i (0 = s0, k = node k-1), and applies an
activation: [c, h'] = s_p W_i, s = s_p + sigmoid(c) * (act(h') - s_p). The cell's output (the
next hidden state) is the mean of nodes 1..11 (``NAO/rnn/utils.py parse_arch``: concat 1..11).

An architecture is written as the 22 integers of the PTB scripts, ``pred act`` per node. Two
activation numberings exist in the released code, and this space reads both:

* NAO (``NAO/rnn/utils.py``, ``parse_arch``): 0 tanh, 1 relu, 2 identity, 3 sigmoid. This is the
  space's canonical string (``str(arch)``) and the token encoding of `nasrepro.methods.nao.encoding`;
* NAO-WS (``NAO-WS/rnn/model.py`` ``_get_activation`` and the vocabulary table in
  ``NAO-WS/rnn/utils.py``): 0 tanh, 1 relu, **2 sigmoid, 3 identity**. The NAO-WS PTB cell of
  ``NAO-WS/rnn/train_final.sh`` was trained by that code, so it is read with `parse_nao_ws`
  (2 and 3 exchanged); read with NAO's numbering it would be another cell.

No isomorphism is recognised (every node feeds the output mean, and node positions own their
weights), so ``canonical`` is the identity. ``to_model`` builds the DARTS-style language model of
`nasrepro.spaces.nao_rnn_net` at this space's width; kept apart from torch, so listing spaces
never loads it.
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

#: NAO's activation ids (``NAO/rnn/utils.py``); the canonical numbering of this space
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "identity", "sigmoid")
#: the NAO-WS code's ids (``NAO-WS/rnn/model.py``): 2 and 3 exchanged
NAO_WS_ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "sigmoid", "identity")
#: nodes after s0 (``STEPS`` of the code)
RNN_STEPS = 11

#: The paper's PTB cells as released: NAO (``NAO/rnn/train_ptb_final.sh``, NAO numbering) and
#: NAO-WS (``NAO-WS/rnn/train_final.sh``, NAO-WS numbering: parse it with `parse_nao_ws`).
NAO_PTB_CELL = "0 1 0 1 1 1 3 0 4 1 4 1 5 1 1 1 7 1 1 1 1 2"
NAO_WS_PTB_CELL = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"


@dataclass(frozen=True)
class RecurrentArch:
    """A recurrent cell: for each of the 11 nodes, (predecessor 0..i, activation name); predecessor
    0 is the first state s0 (DARTS ``genotypes.py`` convention). ``str`` uses NAO's numbering."""

    nodes: tuple[tuple[int, str], ...]

    def __str__(self) -> str:
        return " ".join(f"{p} {ACTIVATIONS.index(a)}" for p, a in self.nodes)


def parse_recurrent_arch(
    text: str, activations: Sequence[str] = ACTIVATIONS, what: str = "ptb recurrent-cell architecture"
) -> RecurrentArch:
    """The 22 integers of `text`, activations numbered as in `activations`; a `UsageError` names
    the first bad item, its node and what was expected there."""
    if not isinstance(text, str):
        raise UsageError(f"{what}: expected a string of {2 * RNN_STEPS} integers, got {type(text).__name__}")
    parts = text.split()
    if len(parts) != 2 * RNN_STEPS:
        raise UsageError(f"{what}: expected {2 * RNN_STEPS} integers, got {len(parts)} in {text!r}")
    ints = []
    for j, part in enumerate(parts):
        if not part.lstrip("-").isdigit():
            raise UsageError(f"{what}: item {j} is {part!r}, expected an integer")
        ints.append(int(part))
    for j, v in enumerate(ints):
        node = j // 2
        if j % 2 == 0 and not 0 <= v <= node:
            raise UsageError(f"{what}, item {j}: expected a predecessor 0-{node} of node {node}, got {v}")
        if j % 2 == 1 and not 0 <= v < len(activations):
            raise UsageError(
                f"{what}, item {j}: expected an activation id 0-{len(activations) - 1} "
                f"({', '.join(activations)}), got {v}"
            )
    return RecurrentArch(tuple((ints[2 * i], activations[ints[2 * i + 1]]) for i in range(RNN_STEPS)))


def parse_nao_ws(text: str) -> RecurrentArch:
    """A cell written with the NAO-WS code's activation ids (2 sigmoid, 3 identity)."""
    return parse_recurrent_arch(text, NAO_WS_ACTIVATIONS, "NAO-WS ptb recurrent-cell architecture")


#: the two published cells, each read with the numbering of the code that trained it
PAPER_CELLS: dict[str, RecurrentArch] = {
    "nao": parse_recurrent_arch(NAO_PTB_CELL),
    "nao-ws": parse_nao_ws(NAO_WS_PTB_CELL),
}


@dataclass(frozen=True)
class LMSize:
    """The language model `to_model` builds: embedding = hidden size and the five dropouts of the
    DARTS/NAO LM code (``train.py``: output, hidden-to-hidden, input-to-hidden, embedding output,
    whole-word embedding)."""

    hidden: int = 850
    dropout: float = 0.75
    dropouth: float = 0.25
    dropoutx: float = 0.75
    dropouti: float = 0.2
    dropoute: float = 0.0


class NaoRnnCellSpace(Space):
    """NAO's 11-node recurrent cells, with the language model's width and dropouts (`LMSize`).

    ``fields`` are the 22 integers in order (predecessors, then activation names)."""

    extra_views = frozenset({"nao-rnn-cells"})

    def __init__(self, size: LMSize = LMSize(), name: str = "nao-rnn-cells") -> None:
        if size.hidden < 1:
            raise UsageError(f"the recurrent cell needs a hidden size >= 1, got {size.hidden}")
        self.lm, self.name = size, name

    # --- basic view -------------------------------------------------------------------------------
    def parse(self, text: str) -> RecurrentArch:
        return parse_recurrent_arch(text, ACTIVATIONS, f"{self.name} architecture")

    def as_arch(self, arch: RecurrentArch | str) -> RecurrentArch:
        return self.parse(arch) if isinstance(arch, str) else self.parse(str(arch))

    def canonical(self, arch: RecurrentArch | str) -> RecurrentArch:
        return self.as_arch(arch)

    def slots(self) -> list[range]:
        """The allowed values of each of the 22 integers."""
        return [range(j // 2 + 1) if j % 2 == 0 else range(len(ACTIVATIONS)) for j in range(2 * RNN_STEPS)]

    def from_ints(self, ints: Sequence[int]) -> RecurrentArch:
        return self.parse(" ".join(str(int(v)) for v in ints))

    def sample(self, rng: np.random.Generator) -> RecurrentArch:
        """Each predecessor uniform over 0..i, each activation uniform (``NAO-WS/rnn/utils.py``
        ``generate_arch``)."""
        return self.from_ints([int(s[int(rng.integers(len(s)))]) for s in self.slots()])

    def mutate(self, arch: RecurrentArch | str, rng: np.random.Generator) -> RecurrentArch:
        """One of the 22 integers redrawn to another allowed value (node 0's predecessor has one
        value only, so it is never picked): the child always differs."""
        ints = [int(v) for v in str(self.as_arch(arch)).split()]
        slots = self.slots()
        free = [j for j, s in enumerate(slots) if len(s) > 1]
        j = free[int(rng.integers(len(free)))]
        choices = [v for v in slots[j] if v != ints[j]]
        ints[j] = choices[int(rng.integers(len(choices)))]
        return self.from_ints(ints)

    def size(self) -> int:
        """11! predecessor choices times 4^11 activations."""
        return math.prod(len(s) for s in self.slots())

    # --- categorical view ------------------------------------------------------------------------
    def fields(self) -> tuple[Field, ...]:
        out = []
        for j, slot in enumerate(self.slots()):
            node = j // 2
            if j % 2 == 0:
                out.append(Field(f"node{node}.pred", tuple(str(v) for v in slot), f"node{node}"))
            else:
                out.append(Field(f"node{node}.act", ACTIVATIONS, f"node{node}"))
        return tuple(out)

    def encode(self, arch: RecurrentArch | str) -> tuple[int, ...]:
        return tuple(int(v) for v in str(self.as_arch(arch)).split())

    def decode(self, indices: Sequence[int]) -> RecurrentArch:
        if len(indices) != 2 * RNN_STEPS:
            raise UsageError(f"a {self.name} encoding has {2 * RNN_STEPS} indices, got {len(indices)}")
        return self.from_ints(indices)

    # --- networks --------------------------------------------------------------------------------
    def to_model(self, arch: RecurrentArch | str, task: Task) -> nn.Module:
        """The DARTS-style recurrent-cell language model of `arch` (`nao_rnn_net.CellLanguageModel`)."""
        from nasrepro.spaces.nao_rnn_net import CellLanguageModel

        vocab = getattr(task, "vocab_size", None)
        if vocab is None:
            raise UsageError(f"{self.name} builds language models; task {task.name!r} has no vocabulary")
        return CellLanguageModel(self.as_arch(arch), int(vocab), self.lm)

    def recipe_overrides(self, task: Task) -> dict[str, Any]:
        """The NAO/DARTS LM final training's optimiser at every preset (``NAO/rnn/train.py`` with
        ``train_ptb_final.sh``): SGD lr 20 without momentum, weight decay 8e-7, gradient-norm clip
        0.25. Its epochs, batch 64 and bptt 35, and the switch to averaged SGD, AR/TAR and variable
        windows (``lm_schedule: darts``, `nasrepro.tasks.lm_schedule`), are NAO-WS's `final_recipe`
        at ``paper``; smoke and cpu keep the plain schedule."""
        return {"optimizer": "sgd", "lr": 20.0, "momentum": 0.0, "weight_decay": 8e-7, "grad_clip": 0.25}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            activations=list(ACTIVATIONS),
            nodes=RNN_STEPS,
            hidden=self.lm.hidden,
            dropouts={
                k: getattr(self.lm, k) for k in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute")
            },
            isomorphism="none",
        )
        return out


def _register(name: str, size: LMSize) -> None:
    SPACES.add(name, functools.partial(NaoRnnCellSpace, size, name))


#: the paper's final PTB model (emb = nhid = 850), the NAO-WS search width (300) and a smoke width
_register("nao-rnn-cells", LMSize(hidden=850))
_register("nao-rnn-cells-h300", LMSize(hidden=300))
_register("nao-rnn-cells-h32", LMSize(hidden=32))
