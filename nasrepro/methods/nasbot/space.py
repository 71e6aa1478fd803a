"""NASBOT's MLP layer-graph space (Kandasamy et al. 2018, Sec. 5 "MLPs for regression"), registered
as ``nasbot-mlp`` so that random search and evolution can search it too (via `sample`/`mutate`).

An architecture is a `LayerGraph` of kind ``mlp-reg`` within the demos' limits (5-60 layers,
in-degree <= 5, <= 200 edges, 8-1024 units). `mutate` is one of NASBOT's nine modifiers (edit
distance one); `sample` is a pool network after 1-5 modifier steps (the RAND baseline's
distribution: random walks of the same machinery from the same pool). `to_model` builds the
network: each hidden layer is Linear(concatenated parents' outputs) -> its activation, the
``linear`` decision layer maps to the task's outputs (several decision layers, which NASBOT's
``branch`` can create, are averaged; interpretation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.harness.space import Space
from nasrepro.methods.nasbot.graph import LayerGraph, Limits
from nasrepro.methods.nasbot.mutations import mutate, mutate_step
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

#: The initial pool: 10 blocked MLPs (reconstruction of the code's `get_initial_pool()` for MLPs:
#: chains of 2-6 hidden layers, blocks of one activation, widths 16-256).
MLP_POOL_SPECS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("relu", 64), ("relu", 64)),
    (("relu", 128), ("relu", 128), ("relu", 64)),
    (("tanh", 64), ("tanh", 64)),
    (("relu", 256), ("relu", 128), ("relu", 64), ("relu", 32)),
    (("elu", 32), ("elu", 32), ("elu", 32)),
    (("softplus", 128), ("softplus", 64)),
    (("leaky-relu", 64), ("leaky-relu", 64), ("logistic", 32), ("logistic", 32)),
    (("crelu", 32), ("crelu", 32), ("crelu", 32), ("crelu", 32)),
    (("relu", 16), ("relu", 32), ("relu", 64), ("relu", 128), ("relu", 64), ("relu", 32)),
    (("logistic", 128), ("tanh", 64), ("relu", 32)),
)


def chain_mlp(spec: tuple[tuple[str, int], ...], kind: str = "mlp-reg") -> LayerGraph:
    """ip -> hidden layers in order -> linear (or softmax) -> op."""
    decision = "linear" if kind == "mlp-reg" else "softmax"
    labels = ["ip", *(label for label, _ in spec), decision, "op"]
    units = [None, *(u for _, u in spec), None, None]
    return LayerGraph.build(kind, labels, units, [(i, i + 1) for i in range(len(labels) - 1)])


class LayerGraphSpace(Space):
    """MLP layer graphs searched by NASBOT's modifiers."""

    name = "nasbot-mlp"
    kind = "mlp-reg"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def initial_pool(self) -> list[LayerGraph]:
        return [chain_mlp(spec, self.kind) for spec in MLP_POOL_SPECS]

    def parse(self, text: str) -> LayerGraph:
        graph = LayerGraph.parse(text) if isinstance(text, str) else text
        if not isinstance(graph, LayerGraph) or graph.kind != self.kind:
            raise UsageError(f"space {self.name!r} holds {self.kind} layer graphs, got {text!r}")
        return graph

    def canonical(self, arch: Any) -> LayerGraph:
        return self.parse(arch)  # a LayerGraph's string is already its canonical form

    def sample(self, rng: np.random.Generator) -> LayerGraph:
        pool = self.initial_pool()
        return mutate(pool[int(rng.integers(len(pool)))], rng, self.limits)

    def mutate(self, arch: Any, rng: np.random.Generator) -> LayerGraph:
        child = mutate_step(self.parse(arch), rng, self.limits)
        if child is None:
            raise UsageError(f"no NASBOT modifier applies to {arch} within the search limits")
        return child

    def mutate_steps(self, arch: Any, rng: np.random.Generator) -> LayerGraph:
        """NASBOT's GA mutation: 1-5 modifier steps."""
        return mutate(self.parse(arch), rng, self.limits)

    def to_model(self, arch: Any, task: Task) -> nn.Module:
        in_features = int(getattr(task, "num_features", 0))
        out_features = int(getattr(task, "num_outputs", 1))
        if in_features <= 0:
            raise UsageError(f"task {task.name!r} does not say how many input features its MLPs take")
        return GraphMLP(self.parse(arch), in_features, out_features)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            kind=self.kind, limits=vars(self.limits), initial_pool=[str(g) for g in self.initial_pool()]
        )
        return out


def GraphMLP(graph: LayerGraph, in_features: int, out_features: int) -> nn.Module:  # noqa: N802
    """The torch network of an MLP layer graph (built lazily so the space imports without torch)."""
    import torch
    from torch import nn

    activations = {
        "relu": nn.ReLU,
        "leaky-relu": nn.LeakyReLU,
        "softplus": nn.Softplus,
        "elu": nn.ELU,
        "logistic": nn.Sigmoid,
        "tanh": nn.Tanh,
    }

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.order = [i for i in graph.topological_order if graph.labels[i] not in ("ip", "op")]
            self.parents = {i: list(graph.parents[i]) for i in range(graph.num_layers)}
            self.ip = graph.labels.index("ip")
            width = {self.ip: in_features}
            self.layers = nn.ModuleDict()
            self.crelu = set()
            #: decision layers (a `branch` may duplicate the last one): the output is their mean
            self.outs = [i for i in self.order if graph.labels[i] in ("linear", "softmax")]
            for i in self.order:
                label = graph.labels[i]
                fan_in = sum(width[p] for p in self.parents[i])
                if label in ("linear", "softmax"):
                    self.layers[str(i)] = nn.Linear(fan_in, out_features)
                    width[i] = out_features
                    continue
                units = int(graph.units[i])
                if label == "crelu":  # concatenated ReLU: [relu(z), relu(-z)] doubles the width
                    self.layers[str(i)] = nn.Linear(fan_in, units)
                    self.crelu.add(i)
                    width[i] = 2 * units
                else:
                    self.layers[str(i)] = nn.Sequential(nn.Linear(fan_in, units), activations[label]())
                    width[i] = units

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values = {self.ip: x}
            for i in self.order:
                parents = self.parents[i]
                h = (
                    values[parents[0]]
                    if len(parents) == 1
                    else torch.cat([values[p] for p in parents], dim=-1)
                )
                z = self.layers[str(i)](h)
                values[i] = torch.cat([torch.relu(z), torch.relu(-z)], dim=-1) if i in self.crelu else z
            out = (
                values[self.outs[0]]
                if len(self.outs) == 1
                else torch.stack([values[i] for i in self.outs]).mean(0)
            )
            return out.squeeze(-1) if out_features == 1 else out

    return _Net()


SPACES.add(LayerGraphSpace.name, LayerGraphSpace)
