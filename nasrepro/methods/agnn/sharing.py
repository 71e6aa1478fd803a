"""AGNN's constrained parameter sharing (Zhou et al. 2019, Sec. 5), a `WarmStart` for the harness.

Why constrained: weight sharing as in ENAS/GraphNAS lets any child reuse whatever weights share a
key, and AGNN argues this is unstable for GNNs, whose accuracy swings with small architecture
changes. AGNN therefore shares only between *homogeneous* architectures and only from the parent
(the incumbent the child was derived from), then fine-tunes instead of training from scratch.

The rules implemented here (the paper body is unverified, see README.md; they follow the fact sheet
``agnn.md`` Sec. 4 and are marked provisional):

1. A child inherits from its parent only: nothing flows between siblings or from older archs.
2. Layer by layer, a child layer is homogeneous with the parent's layer of the same index when both
   have exactly the same trainable tensors (names and shapes) and -- under the default
   ``homogeneity="paper"`` -- the same attention type and activation function (AGNN's homogeneity
   condition; that these two actions are what it names is our reading, see README.md). Then all of
   the layer's tensors are copied, else none (no partial layers, nothing copied across a shape
   mismatch). ``homogeneity="shapes"`` keeps names and shapes only, the rule of the first release.
3. The output layer and batch normalisation are never shared: they are re-initialised, because the
   output layer is tied to the classifier and BN statistics belong to one architecture.
4. A child that inherited anything is fine-tuned for `fine_tune_epochs` instead of the full recipe.

Resuming: a resumed search replays its finished evaluations from the checkpoint without training
them, so the weights the next child inherits would be missing. With a `store` directory (the search
checkpoint's artifacts folder) every kept set of weights is also written there, atomically, and read
back when a parent is not in memory; the resumed search then equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nasrepro.atomic import atomic_write
from nasrepro.errors import UsageError

_LAYER = re.compile(r"^(layers\.\d+)\.")


def _layer_of(name: str) -> str | None:
    match = _LAYER.match(name)
    return match.group(1) if match else None


def _shareable(model: nn.Module) -> dict[str, dict[str, Tensor]]:
    """Trainable tensors per message-passing layer, output layer and batch norms left out (rule 3)."""
    batch_norm = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for name, _ in module.named_parameters(recurse=False)
    }
    layers: dict[str, dict[str, Tensor]] = defaultdict(dict)
    for name, param in model.named_parameters():
        layer = _layer_of(name)
        if layer is not None and name not in batch_norm:
            layers[layer][name] = param
    if layers:
        output = max(layers, key=lambda layer: int(layer.split(".")[1]))
        del layers[output]
    return dict(layers)


Homogeneity = Literal["paper", "shapes"]
#: per-layer identity an architecture's layer must share with its parent's to inherit (rule 2)
LayerSignature = Callable[[Any], list[str]]


def attention_and_activation(arch: Any) -> list[str]:
    """`attention/activation` of every layer of a GraphNAS-space architecture (rule 2, "paper")."""
    try:
        return [f"{layer.attention}/{layer.activation}" for layer in arch.layers]
    except AttributeError:
        raise UsageError(
            "homogeneity 'paper' compares each layer's attention and activation, which this space's "
            "architectures do not name; use the graphnas space or share_homogeneity='shapes'"
        ) from None


def _signature_key(layer: str) -> str:
    return f"{layer}#signature"


class ConstrainedSharing:
    """Keeps trained weights of recent evaluations and hands the parent's homogeneous layers to
    each child. Set `parent` (an evaluator key) before querying a child."""

    def __init__(
        self,
        fine_tune_epochs: int,
        store: str | Path | None = None,
        signature: LayerSignature | None = attention_and_activation,
    ) -> None:
        if fine_tune_epochs < 1:
            raise UsageError(f"share_epochs must be at least 1, got {fine_tune_epochs}")
        self.fine_tune_epochs = fine_tune_epochs
        self.parent: str | None = None
        self.store = None if store is None else Path(store)
        #: None: shapes only (``homogeneity="shapes"``)
        self.signature = signature
        self._bank: dict[str, dict[str, dict[str, Tensor]]] = {}
        self._signatures: dict[str, list[str]] = {}

    def _file(self, key: str) -> Path:
        assert self.store is not None
        return self.store / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"

    def _save(self, key: str) -> None:
        if self.store is not None:
            saved = {"key": key, "layers": self._bank[key], "signature": self._signatures.get(key, [])}
            atomic_write(self._file(key), lambda tmp: torch.save(saved, tmp))

    def _weights(self, key: str | None) -> dict[str, dict[str, Tensor]] | None:
        """The kept weights of `key`: in memory, else from the store (after a resume)."""
        if key is None:
            return None
        path = None if self.store is None else self._file(key)
        if key not in self._bank and path is not None and path.is_file():
            saved = torch.load(path, weights_only=True)
            if saved.get("key") == key:
                self._bank[key] = saved["layers"]
                self._signatures[key] = list(saved.get("signature", []))
        return self._bank.get(key)

    def before_fit(self, key: str, arch: Any, model: nn.Module) -> dict[str, Any]:
        """Copy the parent's homogeneous layers into `model` (rules 1-3); shorten the fit (rule 4)."""
        parent = self._weights(self.parent)
        child = _shareable(model)
        inherited, refused = [], 0
        if parent is not None:
            mine = self.signature(arch) if self.signature is not None else None
            theirs = self._signatures.get(self.parent or "", [])
            with torch.no_grad():
                for layer, tensors in child.items():
                    source = parent.get(layer)
                    if source is None or set(source) != set(tensors):
                        continue
                    index = int(layer.split(".")[1])
                    if mine is not None and (index >= len(theirs) or theirs[index] != mine[index]):
                        refused += 1  # same shapes, but not homogeneous (rule 2)
                        continue
                    if any(source[name].shape != tensor.shape for name, tensor in tensors.items()):
                        continue
                    for name, tensor in tensors.items():
                        tensor.copy_(source[name])
                    inherited.append(layer)
        metrics = {
            "inherited_layers": float(len(inherited)),
            "shareable_layers": float(len(child)),
            "heterogeneous_layers": float(refused),
        }
        if not inherited:
            return {"metrics": metrics}
        return {"epochs": self.fine_tune_epochs, "metrics": metrics}

    def after_fit(self, key: str, arch: Any, model: nn.Module) -> None:
        if self.signature is not None:
            self._signatures[key] = self.signature(arch)
        self._bank[key] = {
            layer: {name: tensor.detach().clone() for name, tensor in tensors.items()}
            for layer, tensors in _shareable(model).items()
        }
        self._save(key)

    def retain(self, keys: Iterable[str]) -> None:
        """Forget every architecture's weights but `keys` (the incumbent): bounds memory."""
        keep = set(keys)
        for key in list(self._bank):
            if key not in keep:
                del self._bank[key]
                self._signatures.pop(key, None)
                if self.store is not None:
                    self._file(key).unlink(missing_ok=True)

    def has(self, key: str) -> bool:
        return self._weights(key) is not None
