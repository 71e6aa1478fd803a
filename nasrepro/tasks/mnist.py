"""MNIST digit classification (LeCun et al., 1998): the data FaDE's released code trains on.

Read from torchvision's folder layout, ``<data>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
(what ``torchvision.datasets.MNIST(root, download=True)`` leaves behind), with torchvision's own IDX
readers. Nothing is downloaded here: the suite runs offline, so a missing folder is one error line
that says how to get the files.

Split: FaDE's code (``fade/data.py``) concatenates MNIST's train and test sets and takes the first
90% for training and the rest for evaluation. A benchmark must keep its test set out of every
decision, so this task holds the *same fraction*, 10% of the 60,000 training images, out for
validation (a fixed permutation, ``split_seed``) and scores on the official 10,000 test images.
Normalisation is the code's ``Normalize((0.1307,), (0.3081,))``; no augmentation, as in the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from nasrepro.errors import DataError, UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.task import DataStatus, Metric, Task
from nasrepro.tasks import TASKS
from nasrepro.tasks.datafiles import ExpectedFile, require, status
from nasrepro.tasks.image_classification import ImageClassificationModule

FOLDER = "MNIST/raw"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60_000, "test": 10_000}
MEAN, STD = 0.1307, 0.3081
#: FaDE's code holds 10% out; the task holds the same fraction of the training set
DEFAULT_VALID_SIZE = 6_000


def _expected() -> list[ExpectedFile]:
    return [ExpectedFile(name, min_size=16) for pair in FILES.values() for name in pair]


def _how_to_get(folder: Path) -> str:
    return (
        f"run torchvision.datasets.MNIST('{folder.parent.parent}', download=True) on a machine with "
        f"internet access (or gunzip the four files of yann.lecun.com/exdb/mnist) into {folder}"
    )


@dataclass(frozen=True)
class MnistArrays:
    """Images as uint8 (N, 1, 28, 28) and int64 labels, per split."""

    images: Mapping[str, torch.Tensor]
    labels: Mapping[str, torch.Tensor]


def load_mnist(data_dir: Path) -> MnistArrays:
    """The four IDX files, checked for presence, agreeing image/label counts and MNIST's sizes."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder = Path(data_dir) / FOLDER
    require("MNIST", folder, _expected(), _how_to_get(folder), verify_hash=False)
    images, labels = {}, {}
    for split, (image_file, label_file) in FILES.items():
        try:
            images[split] = read_image_file(str(folder / image_file)).unsqueeze(1)
            labels[split] = read_label_file(str(folder / label_file)).long()
        except (AssertionError, RuntimeError, ValueError) as exc:
            raise DataError(f"MNIST: {folder / image_file} or its labels are not IDX files ({exc})") from None
        if len(images[split]) != len(labels[split]) or len(labels[split]) != COUNTS[split]:
            raise DataError(
                f"MNIST: {split} has {len(images[split])} images and {len(labels[split])} labels in "
                f"{folder}, expected {COUNTS[split]:,} of each; {_how_to_get(folder)}"
            )
    return MnistArrays(images, labels)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - MEAN) / STD


class MnistDataModule(L.LightningDataModule):
    """Train / hold-out / test loaders; the hold-out is `valid_size` training images chosen by a
    permutation with `split_seed` (recipe.extra, default 0), `train_subset` keeps the first images
    of the rest, as in the CIFAR-10 task."""

    def __init__(self, arrays: MnistArrays, recipe: TrainRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        total = len(arrays.labels["train"])
        valid_size = DEFAULT_VALID_SIZE if recipe.valid_size is None else recipe.valid_size
        if not 0 < valid_size < total:
            raise UsageError(
                f"recipe field 'valid_size' ({valid_size:,}) must be between 1 and the {total:,} "
                "training images less one"
            )
        order = torch.randperm(
            total, generator=torch.Generator().manual_seed(int(recipe.extra.get("split_seed", 0)))
        )
        train_index = order[valid_size:]
        if recipe.train_subset is not None:
            train_index = train_index[: recipe.train_subset]
        x, y = _normalise(arrays.images["train"]), arrays.labels["train"]
        self.train = TensorDataset(x[train_index], y[train_index])
        self.valid = TensorDataset(x[order[:valid_size]], y[order[:valid_size]])
        self.test = TensorDataset(_normalise(arrays.images["test"]), arrays.labels["test"])
        self.eval_batch_size = int(recipe.extra.get("eval_batch_size", 1000))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.recipe.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=self.eval_batch_size)


def _presets() -> dict[str, Preset]:
    """[suite default] FaDE's paper gives no stand-alone MNIST recipe and its code trains regions
    only (Adam under a LinearLR factor schedule), so `paper` is a common MNIST MLP recipe: Adam
    1e-3, batch 64, 20 epochs. `cpu` trains 3 epochs on 10,000 images; `smoke` one epoch on 256."""
    paper = TrainRecipe(epochs=20, lr=1e-3, optimizer="adam", momentum=0.0, weight_decay=0.0, batch_size=64)
    cpu = paper.replace(epochs=3, train_subset=10_000)
    smoke = cpu.replace(epochs=1, train_subset=256, limit_eval_batches=1, extra={"eval_batch_size": 256})
    return {
        "smoke": Preset("smoke", smoke, 4, "1 epoch on 256 training images; one 256-image eval batch"),
        "cpu": Preset("cpu", cpu, 10, "3 epochs (Adam 1e-3) on 10,000 of the 54,000 training images"),
        "paper": Preset("paper", paper, 100, "[suite default] 20 epochs of Adam 1e-3, batch 64"),
    }


class MnistTask(Task):
    """MNIST, top-1 accuracy (%) on the 10,000 test images."""

    name = "mnist"
    metric = Metric("accuracy", "max")
    num_classes = 10
    input_shape = (1, 28, 28)
    default_space = "hierarchical-mlp"
    recipe_options = frozenset({"valid_size"})

    def __init__(self) -> None:
        self._presets = _presets()
        self._arrays: dict[Path, MnistArrays] = {}

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    def data(self, data_dir: Path) -> MnistArrays:
        """The checked dataset, read once per process and data folder."""
        key = Path(data_dir).expanduser().resolve()
        if key not in self._arrays:
            self._arrays[key] = load_mnist(key)
        return self._arrays[key]

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> MnistDataModule:
        return MnistDataModule(self.data(data_dir), preset.recipe)

    def lightning_module(self, model: torch.nn.Module, preset: Preset) -> L.LightningModule:
        return ImageClassificationModule(model, preset)

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        return (torch.randn(batch_size, *self.input_shape),)

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        return [status("MNIST", Path(data_dir) / FOLDER, _expected(), verify_hash=False)]


TASKS.add("mnist", MnistTask)
