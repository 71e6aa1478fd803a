"""The torch network of a NASBOT CNN layer graph (kind ``cnn``), trainable on CIFAR-10.

A port of the authors' TensorFlow builder (kirthevasank/nasbot ``cg/cifar/cifar10_model.py``,
``ConvNetCifar10.forward_pass`` / ``_get_layers``, on ``cg/cifar/cifar10_model_base.py``'s
``ConvNet``), layer for layer:

* **merging**: a layer with several parents reads their outputs **concatenated along the
  channels** (``tf.concat(parent_layers, 1)`` in channels-first layout); never summed. The graph's
  validity check (`graph._validate_cnn`) guarantees that all parents of a layer have the same
  image size, so the concatenation is always defined: NASBOT never resizes at a merge, its
  modifiers insert pools instead (``skip`` bridges a size gap with avg-pools, ``remove_layer``
  hands a removed stride on), and a graph whose merge sizes differ is refused naming the layer.
* ``conv3/5/7`` (``_conv_layer`` = ``_myConv``): k x k convolution without bias, ``SAME``
  padding (for stride 2 the code pads k - 1 explicitly, begin (k-1)//2: symmetric for odd k, so
  ``padding = k // 2`` in torch, output ceil(n / 2)), batch norm (epsilon 1e-5), ReLU.
* ``res3/5/7`` (``_residual_layer``, "Plan A" shortcuts of He et al. 2016): conv-BN-ReLU (k,
  stride) -> conv (k, stride 1) -> BN, added to the shortcut, then ReLU. Where the channel counts
  differ the narrower side is zero-padded to the wider (the code pads the shortcut when the layer
  widens and the residual branch when it narrows, so a narrowing res layer emits its *input*
  width); the shortcut is average-pooled by the stride (see the README, "Deviations": the code
  does this only when the layer widens, and fails on the other stride-2 cases).
* ``max-pool`` / ``avg-pool``: 2 x 2 window, stride 2, ``SAME`` padding (``ceil_mode`` here;
  the average counts only in-image pixels, as TF's ``SAME`` does), so a 1 x 1 image stays 1 x 1.
* ``fc`` (``_fully_connected_layer``): global average pooling if its input is an image, then a
  dense layer with ReLU.
* ``softmax`` (``_softmax``): global average pooling if needed, then a dense layer to the classes.
  With several softmax layers the prediction is the mean of their softmaxes (``_loss_fn``'s
  ``tower_pred``); the network returns the log of that mean so a cross-entropy training step and
  an argmax both see the code's prediction (the code's loss is the sum of the heads' losses:
  README "Deviations").

Weights start as the code's TF defaults (Glorot-uniform kernels, zero biases).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.graph import CONV_LABELS, DECISION_LABELS, POOL_LABELS, LayerGraph

#: ``batch_norm_epsilon`` of ``run_tensorflow_cifar.compute_validation_error``
BN_EPS = 1e-5


def _kernel(label: str) -> int:
    return int(label[-1])


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    """``_myConv``: conv (no bias, SAME) -> batch norm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
        nn.ReLU(inplace=False),
    )


def _pad_channels(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero channels on both sides up to `width` (the code's ``tf.pad`` by (diff // 2, diff // 2);
    an odd difference puts the extra channel at the end, where the code's shapes would not add)."""
    diff = width - x.shape[1]
    if diff <= 0:
        return x
    return F.pad(x, (0, 0, 0, 0, diff // 2, diff - diff // 2))


def _same_avg_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``_myAvgPool(x, stride, stride)`` with ``SAME`` padding (a no-op at stride 1)."""
    if stride == 1:
        return x
    return F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)


class ResidualLayer(nn.Module):
    """``ConvNet._residual_layer``: a residual unit of two k x k convolutions (see module docstring)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        self.stride, self.width = stride, max(cin, cout)
        self.first = _conv_bn_relu(cin, cout, k, stride)
        self.second = nn.Conv2d(cout, cout, k, stride=1, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn(self.second(self.first(x)))
        shortcut = _same_avg_pool(x, self.stride)
        return torch.relu(_pad_channels(branch, self.width) + _pad_channels(shortcut, self.width))


class Pool(nn.Module):
    """2 x 2 max or average pooling, stride 2, ``SAME`` padding (``_max_pool_layer`` / ``_avg_pool_layer``)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max-pool":
            return F.max_pool2d(x, 2, 2, ceil_mode=True)
        return F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)


class Dense(nn.Module):
    """``_fully_connected_layer`` (ReLU) or ``_softmax`` (logits): global average pooling of an
    image input first (``_myGlobalAvgPool``), then a dense layer."""

    def __init__(self, cin: int, cout: int, relu: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        x = self.linear(x)
        return torch.relu(x) if self.relu else x


class GraphCNN(nn.Module):
    """A CNN layer graph as a torch module: layers run in topological order, each reading its
    parents' outputs concatenated along the channels (`ConvNetCifar10.forward_pass`)."""

    def __init__(self, graph: LayerGraph, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(graph, LayerGraph) or graph.kind != "cnn":
            raise UsageError(f"GraphCNN builds cnn layer graphs, got {graph!r}")
        self.graph_string = str(graph)
        self.ip = graph.labels.index("ip")
        self.order = [i for i in graph.topological_order if graph.labels[i] not in ("ip", "op")]
        self.parents = {i: tuple(graph.parents[i]) for i in self.order}
        self.heads = [i for i in self.order if graph.labels[i] in DECISION_LABELS]
        width: dict[int, int] = {self.ip: in_channels}
        self.layers = nn.ModuleDict()
        for i in self.order:
            label, units, stride = graph.labels[i], graph.units[i], graph.strides[i]
            cin = sum(width[p] for p in self.parents[i])
            if label in CONV_LABELS and label.startswith("conv"):
                module: nn.Module = _conv_bn_relu(cin, int(units), _kernel(label), int(stride))
                width[i] = int(units)
            elif label in CONV_LABELS:
                module = ResidualLayer(cin, int(units), _kernel(label), int(stride))
                width[i] = module.width
            elif label in POOL_LABELS:
                module, width[i] = Pool(label), cin
            elif label == "fc":
                module, width[i] = Dense(cin, int(units), relu=True), int(units)
            elif label == "softmax":
                module, width[i] = Dense(cin, num_classes, relu=False), num_classes
            else:  # unreachable for a valid cnn graph: its labels are checked on construction
                raise UsageError(f"GraphCNN: layer {i} ({label}) has no torch counterpart")
            self.layers[str(i)] = module
        self.widths = width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """TF's defaults in the authors' builder: Glorot-uniform kernels, zero biases, BN 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.ip: x}
        for i in self.order:
            parents = self.parents[i]
            h = values[parents[0]] if len(parents) == 1 else torch.cat([values[p] for p in parents], dim=1)
            values[i] = self.layers[str(i)](h)
        if len(self.heads) == 1:
            return values[self.heads[0]]
        probs = torch.stack([torch.softmax(values[i], dim=-1) for i in self.heads]).mean(0)
        return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))

    def extra_repr(self) -> str:
        return f"graph={self.graph_string!r}"


def image_sizes(graph: LayerGraph, size: int) -> dict[int, int | None]:
    """Each layer's output side for a `size` x `size` input (None once flattened): halved, rounded
    up, by pools and stride-2 convolutions -- what `GraphCNN` produces, for checks and tests."""
    out: dict[int, int | None] = {}
    for layer in graph.topological_order:
        label = graph.labels[layer]
        pre = size if label == "ip" else out[graph.parents[layer][0]]
        if label in POOL_LABELS or (label in CONV_LABELS and graph.strides[layer] == 2):
            out[layer] = None if pre is None else math.ceil(pre / 2)
        elif label in CONV_LABELS or label == "ip":
            out[layer] = pre
        else:
            out[layer] = None
    return out
