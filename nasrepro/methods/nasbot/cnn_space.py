"""NASBOT's CNN layer-graph space for CIFAR-10 (Kandasamy et al. 2018, Sec. 5 "CNNs for image
classification"), registered as ``nasbot-cnn`` so that random search and evolution search it too.

An architecture is a `LayerGraph` of kind ``cnn`` within the demo's limits (``demos/demo_cnn.py``:
5-60 layers, in-degree <= 5, out-degree <= 55, <= 200 edges, 8-1024 units; no cap on the number
of stride-2 steps, the code's ``max_num_2strides=None``). The space shares the MLP space's search
machinery (`space.LayerGraphSpace`): `mutate` is one of the nine modifiers, `sample` a pool network
after 1-5 modifier steps (the RAND baseline), `str` the canonical form. What differs:

* the **initial pool** is the code's ``get_initial_cnn_pool()`` (``opt/nn_opt_utils.py``, the same
  in dragonfly ``nn/nn_opt_utils.py``), rebuilt from ``nn/nn_examples.py``: ``get_vgg_net(n)`` for
  n = 1..4 and ``get_blocked_cnn(b, l, 1)`` for (b, l) = (3, 1), (3, 2), (3, 3), (3, 4), (3, 5),
  (4, 4) -- 10 networks (the code's ResNet and multi-depth lists are empty);
* `to_model` is the port of the authors' TF builder (`cnn.GraphCNN`);
* `recipe_overrides` is the code's per-network training (``run_tensorflow_cifar.py``,
  ``cnn_function_caller.get_default_cnn_tf_params``, ``cifar10_myMain.py``): momentum SGD 0.9,
  lr 0.005, L2 2e-4 on every variable, batch 32, lr x 0.1 at epochs 15, 40, 80 and 120 (the code's
  piecewise boundaries 15/40/80/120 with rates x 1/0.1/0.01/0.001/0.0005: after 120 ours is x 1e-4,
  and only a run longer than the code's 80K iterations, about 57 epochs, gets there),
  scored on the best validation accuracy seen during training (``max(neg_vali_errors)``). The
  number of epochs stays the task preset's (README "Deviations").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.graph import LayerGraph
from nasrepro.methods.nasbot.space import LayerGraphSpace
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

#: ``get_initial_cnn_pool``: VGG nets with 1-4 convolutions per block of 128/256/512 filters
VGG_BLOCKS: tuple[int, ...] = (1, 2, 3, 4)
#: ... and blocked CNNs ``get_blocked_cnn(num_blocks, num_conv_layers_per_block, 1)``
BLOCKED: tuple[tuple[int, int], ...] = ((3, 1), (3, 2), (3, 3), (3, 4), (3, 5), (4, 4))
#: the code's CIFAR-10 training (module docstring); epochs are the task preset's
CODE_RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.005,
    "momentum": 0.9,
    "weight_decay": 2e-4,
    "batch_size": 32,
    "schedule": "multistep",
    "milestones": (15, 40, 80, 120),
    "gamma": 0.1,
    "select": "best-val",
}


def vgg_net(convs_per_block: int) -> LayerGraph:
    """``nn_examples.get_vgg_net``: conv3 64 x2, max-pool, conv3 128 x2, max-pool, then blocks of
    `convs_per_block` conv3 at 128, 256 and 512 filters each closed by a max-pool, then fc 128,
    256, 512, softmax; a chain, every convolution stride 1."""
    labels = ["ip", "conv3", "conv3", "max-pool", "conv3", "conv3", "max-pool"]
    units: list[int | None] = [None, 64, 64, None, 128, 128, None]
    for filters in (128, 256, 512):
        labels += ["conv3"] * convs_per_block + ["max-pool"]
        units += [filters] * convs_per_block + [None]
    labels += ["fc", "fc", "fc", "softmax", "op"]
    units += [128, 256, 512, None, None]
    strides = [1 if label == "conv3" else None for label in labels]
    return _chain(labels, units, strides)


def blocked_cnn(num_blocks: int, convs_per_block: int, num_fc: int = 1) -> LayerGraph:
    """``nn_examples.get_blocked_cnn`` (``_get_blocked_cnn_params``): conv7 64, max-pool, then
    `num_blocks` blocks of `convs_per_block` conv3 (filters 64, 128, 256, 512, 512, ...; the first
    of each block stride 2), avg-pool, `num_fc` fc of twice the last block's filters, softmax."""
    filters = [min(64 * 2**b, 512) for b in range(num_blocks)]
    labels = ["ip", "conv7", "max-pool"]
    units: list[int | None] = [None, 64, None]
    strides: list[int | None] = [None, 1, None]
    for f in filters:
        labels += ["conv3"] * convs_per_block
        units += [f] * convs_per_block
        strides += [2] + [1] * (convs_per_block - 1)
    labels += ["avg-pool", *["fc"] * num_fc, "softmax", "op"]
    units += [None, *[2 * filters[-1]] * num_fc, None, None]
    strides += [None] * (num_fc + 3)
    return _chain(labels, units, strides)


def _chain(labels: list[str], units: list[int | None], strides: list[int | None]) -> LayerGraph:
    edges = [(i, i + 1) for i in range(len(labels) - 1)]
    return LayerGraph.build("cnn", labels, units, edges, strides)


def initial_cnn_pool() -> list[LayerGraph]:
    """``get_initial_cnn_pool()``: 4 VGG nets then 6 blocked CNNs, in the code's order."""
    return [vgg_net(n) for n in VGG_BLOCKS] + [blocked_cnn(b, n) for b, n in BLOCKED]


class CNNLayerGraphSpace(LayerGraphSpace):
    """CNN layer graphs searched by NASBOT's modifiers (CIFAR-10)."""

    name = "nasbot-cnn"
    kind = "cnn"

    def initial_pool(self) -> list[LayerGraph]:
        return initial_cnn_pool()

    def to_model(self, arch: Any, task: Task) -> nn.Module:
        from nasrepro.methods.nasbot.cnn import GraphCNN

        graph = self.parse(arch)  # an invalid graph is refused first, naming its layer
        shape = tuple(getattr(task, "input_shape", ()))
        classes = int(getattr(task, "num_classes", 0))
        if len(shape) != 3 or classes <= 0:
            raise UsageError(
                f"space {self.name!r} builds image classifiers; task {getattr(task, 'name', task)!r} declares no "
                "input_shape (C, H, W) and num_classes"
            )
        return GraphCNN(graph, in_channels=int(shape[0]), num_classes=classes)

    def recipe_overrides(self, task: Task) -> dict[str, Any]:
        """The code's per-network training (module docstring), at every preset."""
        return dict(CODE_RECIPE)


SPACES.add(CNNLayerGraphSpace.name, CNNLayerGraphSpace)
