"""GraphNAS's macro search space, as adopted by AGNN (Auto-GNN, Zhou et al. 2019, Sec. 3).

An architecture is a stack of ``num_layers`` (default 2, GraphNAS ``layers_of_child_model``) message-
passing layers; each layer chooses five actions, one per *action class* (AGNN Sec. 4 modifies one
class at a time): attention (7) x aggregation (4) x activation (8) x heads (6) x hidden units (7) =
9,408 choices per layer (GraphNAS ``graphnas/search_space.py``; `GraphNasLayer` for what each does).

The last layer's width is not free: GraphNAS overwrites its sampled hidden units with the number of
classes (``process_action``: ``actions[-1] = num_class``) and averages its heads. The field is kept,
so controllers see GraphNAS's action sequence and `size` is the paper's count 9,408^L (~8.85e7 for two
layers), but it does not change the network: `canonical` sets it to None, written ``classes`` in the
string form, and architectures differing only there share one key. Distinct networks number
9,408^(L-1) x 1,344 (`num_networks`).

Canonical string: one ``attention,aggregation,activation,heads,hidden`` group per layer joined by
``|``, e.g. ``gat,sum,relu,8,16|gcn,mean,elu,1,classes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasrepro.errors import UsageError
from nasrepro.harness.space import Field, Space
from nasrepro.spaces import SPACES
from nasrepro.spaces.graphnas_layer import (
    AGGREGATIONS,
    ATTENTIONS,
    GraphNasLayer,
    attention_name,
    input_dropout,
)

if TYPE_CHECKING:
    from nasrepro.harness.task import Task

#: GraphNAS ``act_map``; "linear" is the identity. leaky_relu keeps PyTorch's slope 0.01.
ACTIVATIONS: Mapping[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "linear": lambda x: x,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,
    "relu6": F.relu6,
    "elu": F.elu,
}
HEADS: tuple[int, ...] = (1, 2, 4, 6, 8, 16)
HIDDEN: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
#: The five action classes in GraphNAS's per-layer order (also the `Field.group` names).
CLASSES: tuple[str, ...] = ("attention", "aggregation", "activation", "heads", "hidden")
#: How the last layer's tied width is written.
CLASSES_TOKEN = "classes"
CHOICES: Mapping[str, tuple[str, ...]] = {
    "attention": tuple(ATTENTIONS),
    "aggregation": tuple(AGGREGATIONS),
    "activation": tuple(ACTIVATIONS),
    "heads": tuple(map(str, HEADS)),
    "hidden": tuple(map(str, HIDDEN)),
}
PER_LAYER = math.prod(len(c) for c in CHOICES.values())  # 9,408

#: GraphNAS child training (``graphnas/main.py``): Adam, lr 0.005, L2 5e-4, 300 epochs, in-drop 0.6.
DROPOUT = 0.6
RECIPE: Mapping[str, Any] = {
    "optimizer": "adam",
    "lr": 0.005,
    "weight_decay": 5e-4,
    "epochs": 300,
    "schedule": "constant",
    "dropout": DROPOUT,
}

_FORMAT = "expected 'attention,aggregation,activation,heads,hidden' per layer joined by '|', e.g. "


@dataclass(frozen=True)
class LayerArch:
    """The five actions of one layer; `hidden` is None only for the (tied) last layer."""

    attention: str
    aggregation: str
    activation: str
    heads: int
    hidden: int | None

    def __str__(self) -> str:
        hidden = CLASSES_TOKEN if self.hidden is None else str(self.hidden)
        return f"{self.attention},{self.aggregation},{self.activation},{self.heads},{hidden}"


@dataclass(frozen=True)
class GraphNasArch:
    layers: tuple[LayerArch, ...]

    def __str__(self) -> str:
        return "|".join(map(str, self.layers))


class GraphNasNet(nn.Module):
    """GraphNAS's ``GraphNet`` for one architecture: per layer dropout -> [BatchNorm] -> layer -> act.

    Dropout 0.6 acts on every layer's input (GraphNAS ``in_drop``) and on the layer's coefficients
    (GeoLayer ``dropout``). ``GraphNet`` defaults to ``batch_normal=True``, but the manager that trains
    GraphNAS children (``GeoCitationManager.build_gnn``) passes ``batch_normal=False``, so `batch_norm`
    is off by default; on, it is BatchNorm1d(in, momentum=0.5) after the dropout, as in ``GraphNet``.
    The last layer has width #classes, averages its heads and still applies its activation; the
    output goes to a softmax cross-entropy (GraphNAS: log_softmax + NLL, the same loss).
    """

    def __init__(
        self,
        arch: GraphNasArch,
        in_dim: int,
        num_classes: int,
        *,
        dropout: float = DROPOUT,
        batch_norm: bool = False,
        faithful: bool = True,
        softmax_by_source: bool = False,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList() if batch_norm else None
        self.activations = tuple(layer.activation for layer in arch.layers)
        width = in_dim
        for i, layer in enumerate(arch.layers):
            last = i == len(arch.layers) - 1
            out = num_classes if last else layer.hidden
            assert out is not None, "only the last layer's width may be tied"
            if self.norms is not None:
                self.norms.append(nn.BatchNorm1d(width, momentum=0.5))
            self.layers.append(
                GraphNasLayer(
                    width,
                    out,
                    layer.heads,
                    concat=not last,
                    attention=layer.attention,
                    aggregation=layer.aggregation,
                    dropout=dropout,
                    faithful=faithful,
                    softmax_by_source=softmax_by_source,
                )
            )
            width = out if last else out * layer.heads

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, (layer, act) in enumerate(zip(self.layers, self.activations, strict=True)):
            # Sparse-aware dropout on the raw bag-of-words features: same distribution, cheaper.
            drop = input_dropout if i == 0 else F.dropout
            x = drop(x, p=self.dropout, training=self.training)
            if self.norms is not None:
                x = self.norms[i](x)
            x = ACTIVATIONS[act](layer(x, edge_index))
        return x


class GraphNasSpace(Space):
    """GraphNAS's macro space with ``num_layers`` layers (module docstring).

    `faithful` keeps GeoLayer's ``linear`` quirk; `softmax_by_source` its source-grouped softmax;
    `batch_norm` GraphNet's optional BatchNorm (see `GraphNasLayer`, `GraphNasNet`).
    """

    name = "graphnas"

    def __init__(
        self,
        num_layers: int = 2,
        *,
        faithful: bool = True,
        softmax_by_source: bool = False,
        batch_norm: bool = False,
    ) -> None:
        if not isinstance(num_layers, int) or num_layers < 1:
            raise UsageError(f"graphnas space needs num_layers >= 1, got {num_layers!r}")
        self.num_layers = num_layers
        self.faithful = faithful
        self.softmax_by_source = softmax_by_source
        self.batch_norm = batch_norm
        self._example = str(
            GraphNasArch(
                tuple(LayerArch("gat", "sum", "relu", 8, 16) for _ in range(num_layers - 1))
                + (LayerArch("gcn", "mean", "elu", 1, None),)
            )
        )

    # --- strings -------------------------------------------------------------------------------

    def parse(self, text: str) -> GraphNasArch:
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"malformed graphnas architecture {text!r}: {_FORMAT}{self._example!r}")
        groups = text.split("|")
        if len(groups) != self.num_layers:
            raise UsageError(
                f"graphnas architecture {text!r} has {len(groups)} layer(s), this space has "
                f"{self.num_layers}: {_FORMAT}{self._example!r}"
            )
        return GraphNasArch(tuple(self._parse_layer(g, i, text) for i, g in enumerate(groups)))

    def _parse_layer(self, group: str, index: int, text: str) -> LayerArch:
        tokens = [t.strip() for t in group.split(",")]
        if len(tokens) != len(CLASSES):
            raise UsageError(
                f"layer {index} of {text!r} has {len(tokens)} value(s), need {len(CLASSES)}: "
                f"{_FORMAT}{self._example!r}"
            )
        attention, aggregation, activation, heads, hidden = tokens
        last = index == self.num_layers - 1
        try:
            attention = attention_name(attention)
        except UsageError as err:
            raise UsageError(f"layer {index} of {text!r}: {err}") from None
        for cls, value in (("aggregation", aggregation), ("activation", activation), ("heads", heads)):
            self._check_choice(cls, value, index, text)
        if not (last and hidden == CLASSES_TOKEN):
            extra = f" (or {CLASSES_TOKEN!r} for the last layer)" if last else ""
            self._check_choice("hidden", hidden, index, text, extra)
        return LayerArch(
            attention, aggregation, activation, int(heads), None if hidden == CLASSES_TOKEN else int(hidden)
        )

    @staticmethod
    def _check_choice(cls: str, value: str, index: int, text: str, extra: str = "") -> None:
        if value not in CHOICES[cls]:
            raise UsageError(
                f"layer {index} of {text!r}: {cls} {value!r} is not one of {', '.join(CHOICES[cls])}{extra}"
            )

    def _check(self, arch: GraphNasArch) -> GraphNasArch:
        if not isinstance(arch, GraphNasArch):
            raise UsageError(f"not a graphnas architecture: {arch!r}")
        # Round-trip through the parser so hand-built objects get the same checks as strings.
        return self.parse(str(arch))

    def canonical(self, arch: GraphNasArch) -> GraphNasArch:
        """The last layer's hidden units are tied to #classes, so they are dropped from the key."""
        arch = self._check(arch)
        return GraphNasArch(arch.layers[:-1] + (replace(arch.layers[-1], hidden=None),))

    # --- sizes ---------------------------------------------------------------------------------

    def size(self) -> int:
        """9,408^L: GraphNAS's (and the fact sheet's) count of action sequences, including the
        last layer's tied hidden field; `num_networks` counts distinct networks."""
        return PER_LAYER**self.num_layers

    def num_networks(self) -> int:
        """Distinct networks: 9,408^(L-1) x 1,344 (the last layer's width is not a choice)."""
        return PER_LAYER ** (self.num_layers - 1) * (PER_LAYER // len(HIDDEN))

    # --- the categorical view ------------------------------------------------------------------

    def fields(self) -> tuple[Field, ...]:
        """``<class><layer>`` (attention0, ..., hidden1), grouped by action class. The last layer's
        hidden field exists (GraphNAS samples it) but is ignored: it is tied to #classes."""
        return tuple(
            Field(f"{cls}{layer}", CHOICES[cls], cls) for layer in range(self.num_layers) for cls in CLASSES
        )

    def encode(self, arch: GraphNasArch) -> tuple[int, ...]:
        """One index per field; a tied (None) last hidden encodes as 0."""
        arch = self._check(arch)
        out: list[int] = []
        for layer in arch.layers:
            values = (layer.attention, layer.aggregation, layer.activation, str(layer.heads), layer.hidden)
            for cls, value in zip(CLASSES, values, strict=True):
                out.append(0 if value is None else CHOICES[cls].index(str(value)))
        return tuple(out)

    def decode(self, indices: Sequence[int]) -> GraphNasArch:
        """The architecture with these choices (the last hidden kept as sampled; `canonical` drops it)."""
        fields = self.fields()
        if len(indices) != len(fields):
            raise UsageError(f"a graphnas encoding has {len(fields)} indices, got {len(indices)}")
        values = []
        for field, index in zip(fields, indices, strict=True):
            if not 0 <= int(index) < len(field.choices):
                raise UsageError(
                    f"index {index} of field {field.name} is out of range 0..{len(field.choices) - 1}"
                )
            values.append(field.choices[int(index)])
        k = len(CLASSES)
        return self.parse("|".join(",".join(values[i : i + k]) for i in range(0, len(values), k)))

    def _free_fields(self) -> list[int]:
        """Positions that change the network (all but the last layer's hidden)."""
        return list(range(len(self.fields()) - 1))

    # --- sampling ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> GraphNasArch:
        """Uniform over distinct networks: each field uniform, the tied width dropped."""
        return self.canonical(self.decode([int(rng.integers(len(f.choices))) for f in self.fields()]))

    def mutate(self, arch: GraphNasArch, rng: np.random.Generator) -> GraphNasArch:
        """Change exactly one field that matters (never the tied last width) to another value."""
        indices = list(self.encode(self.canonical(arch)))
        fields = self.fields()
        position = int(rng.choice(self._free_fields()))
        options = [v for v in range(len(fields[position].choices)) if v != indices[position]]
        indices[position] = int(rng.choice(options))
        return self.canonical(self.decode(indices))

    # --- training ------------------------------------------------------------------------------

    def to_model(self, arch: GraphNasArch, task: Task) -> GraphNasNet:
        """GraphNAS's network for `arch` on a node-classification task (needs num_features/num_classes)."""
        in_dim = getattr(task, "num_features", None)
        num_classes = getattr(task, "num_classes", None)
        if in_dim is None or num_classes is None:
            raise UsageError(
                f"the graphnas space builds node-classification GNNs; task {getattr(task, 'name', task)!r} "
                f"has no num_features/num_classes (use cora, citeseer or pubmed)"
            )
        return GraphNasNet(
            self.canonical(arch),
            int(in_dim),
            int(num_classes),
            batch_norm=self.batch_norm,
            faithful=self.faithful,
            softmax_by_source=self.softmax_by_source,
        )

    def recipe_overrides(self, task: Task) -> dict[str, Any]:
        """GraphNAS's child-training settings (``graphnas/main.py``), TrainRecipe field names.

        GraphNAS trains with a constant learning rate; its per-run early stopping and its recording of
        the best test accuracy seen are not settings but protocol, which the harness owns.
        """
        return dict(RECIPE)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size(),
            "num_networks": self.num_networks(),
            "num_layers": self.num_layers,
            "faithful": self.faithful,
            "softmax_by_source": self.softmax_by_source,
            "batch_norm": self.batch_norm,
        }


SPACES.add("graphnas", GraphNasSpace)
