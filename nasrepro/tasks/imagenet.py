"""ImageNet (ILSVRC-2012) classification, read as torchvision `ImageFolder`s: `train/<wnid>/*`, `val/<wnid>/*`.

The folder is `<data_dir>/imagenet/`, else `<data_dir>/imagenet-sample/`. Real ImageNet has 1,000
class folders in both splits; the shared offline sample has only `val/` with 100 classes and one
image each. Without a `train/` split the task runs in "sample mode": it trains, validates and tests
on `val/` -- good for exercising loaders and transforms, meaningless as an accuracy -- and every
preset says so.

Protocol with the real dataset: the recipe's `valid_size` images (default `DEFAULT_VALID_SIZE`,
10,000) are held out of `train/` with a fixed split seed as the validation set; the official
50,000-image `val/` split is the test set. Metric: top-1 accuracy in percent. ProxylessNAS sets
50,000, its released hold-out, for its search and its paper rows' retraining. A hold-out that leaves
no training image is a usage error at every preset. In sample mode there is no `train/` to hold
images out of, so no hold-out is taken whatever `valid_size` says (``split_info()`` reports
``valid_size: None``; the smoke and cpu preset descriptions say so): the sample checks loaders and
transforms only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from nasrepro.errors import DataError, UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.task import DataStatus, Metric, ReferenceArch, Task
from nasrepro.paths import data_dir as resolve_data_dir
from nasrepro.tasks import TASKS
from nasrepro.tasks.image_classification import IMAGE_OPTIONS, Cutout, ImageClassificationModule

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FOLDERS = ("imagenet", "imagenet-sample")
IMAGENET_CLASSES = 1000
#: images of `train/` held out for validation when the recipe's `valid_size` is None
DEFAULT_VALID_SIZE = 10_000


def _how_to_get(data_dir: Path) -> str:
    return (
        f"Expected {data_dir}/imagenet/{{train,val}}/<wnid>/*.JPEG (torchvision ImageFolder layout, 1,000 "
        f"class folders each; val/ sorted into class folders, e.g. with the ILSVRC2012 devkit's ground truth) "
        f"or the {data_dir}/imagenet-sample/val/ sample; ImageNet must be downloaded by hand from "
        f"https://image-net.org (registration required)."
    )


def find_imagenet(data_dir: Path) -> Path | None:
    """The first of `<data_dir>/imagenet`, `<data_dir>/imagenet-sample` that holds a `val/` folder."""
    for name in FOLDERS:
        if (data_dir / name / "val").is_dir():
            return data_dir / name
    return None


def class_folders(split: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split) if entry.is_dir())


def train_transform(
    size: int = 224, color_jitter: tuple[float, float, float, float] | None = None, cutout: int = 0
) -> Any:
    """RandomResizedCrop + horizontal flip (Szegedy et al. 2015 scale augmentation, torchvision reference).

    `color_jitter` (brightness, contrast, saturation, hue) adds torchvision's ColorJitter after the
    flip, where the released ProxylessNAS data provider puts it (``distort_color='strong'`` is
    (0.4, 0.4, 0.4, 0.1): ``search/data_providers/imagenet.py``); `cutout` > 0 zeroes one square
    per normalised image (DeVries & Taylor 2017). Neither is there by default.
    """
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    if color_jitter is not None:
        brightness, contrast, saturation, hue = color_jitter
        steps.append(T.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue))
    steps += [T.ToTensor(), T.Normalize(MEAN, STD)]
    if cutout > 0:
        steps.append(Cutout(cutout))
    return T.Compose(steps)


def eval_transform(size: int = 224) -> Any:
    """Resize the short side to 256 and take the central 224x224 crop (the standard single-crop test);
    other sizes keep the 224/256 = 0.875 crop ratio."""
    from torchvision import transforms as T

    resize = round(size * 256 / 224)
    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)])


def image_folder(split: Path, transform: Any) -> Dataset:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(split), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(
            f"ImageNet split {split} is not an ImageFolder ({exc}); expected <wnid>/*.JPEG class folders."
        ) from None


class ImagenetDataModule(L.LightningDataModule):
    """ImageFolder loaders; see the module docstring for which folder serves which stage."""

    def __init__(self, root: Path, recipe: TrainRecipe, seed: int) -> None:
        super().__init__()
        self.root, self.recipe, self.seed = root, recipe, seed
        self.sample_mode = not (root / "train").is_dir()
        self.train_split = root / ("val" if self.sample_mode else "train")
        self.num_classes = len(class_folders(self.train_split))
        if self.num_classes == 0:
            raise DataError(
                f"ImageNet split {self.train_split} has no class folders. {_how_to_get(root.parent)}"
            )
        if not self.sample_mode and class_folders(root / "val") != class_folders(self.train_split):
            raise DataError(
                f"ImageNet {root}/val and {root}/train have different class folders; val/ must be "
                f"sorted into the same <wnid> folders as train/."
            )
        self.image_size = int(recipe.extra.get("image_size", 224))
        self.eval_batch_size = int(recipe.extra.get("eval_batch_size", recipe.batch_size))
        self.num_workers = int(recipe.extra.get("num_workers", 0))
        self.valid_size = DEFAULT_VALID_SIZE if recipe.valid_size is None else recipe.valid_size
        self.split_seed = int(recipe.extra.get("split_seed", 0))
        self._indices: tuple[list[int], list[int]] | None = None

    def _split(self, total: int) -> tuple[list[int], list[int]]:
        """(train, valid) indices into `train/`: a fixed seeded hold-out, then `train_subset`."""
        if self._indices is None:
            order = torch.randperm(total, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
            if self.sample_mode:
                train, valid = order, list(range(total))
            else:
                if self.valid_size >= total:
                    raise UsageError(
                        f"recipe field 'valid_size' ({self.valid_size:,}) must be smaller than the {total:,} "
                        f"images of {self.train_split}, which the hold-out is taken from"
                    )
                train, valid = order[self.valid_size :], sorted(order[: self.valid_size])
            if self.recipe.train_subset is not None:
                train = train[: self.recipe.train_subset]
            self._indices = (train, valid)
        return self._indices

    def split_info(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "sample_mode": self.sample_mode,
            "num_classes": self.num_classes,
            "split_seed": self.split_seed,
            "valid_size": None if self.sample_mode else self.valid_size,
        }

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        drop_last = shuffle and len(dataset) % batch_size == 1  # BatchNorm cannot train on one sample
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        transform = train_transform(self.image_size, self.recipe.color_jitter, self.recipe.cutout)
        data = image_folder(self.train_split, transform)
        train, _ = self._split(len(data))
        return self._loader(Subset(data, train), self.recipe.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        data = image_folder(self.train_split, eval_transform(self.image_size))
        _, valid = self._split(len(data))
        return self._loader(Subset(data, valid), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        data = image_folder(self.root / "val", eval_transform(self.image_size))
        return self._loader(data, self.eval_batch_size, shuffle=False)


def _presets() -> dict[str, Preset]:
    """`paper`: the standard 90-epoch ResNet recipe (He et al. 2016 Section 3.4 as run by torchvision's
    reference scripts): SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 256, lr / 10 every 30 epochs.
    ProxylessNAS's own final recipe lives with that method."""
    paper = TrainRecipe(
        epochs=90,
        lr=0.1,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=256,
        schedule="multistep",
        milestones=(30, 60),
        valid_size=DEFAULT_VALID_SIZE,
        extra={"num_workers": 8},
    )
    cpu = paper.replace(
        epochs=2,
        lr=0.05,
        batch_size=32,
        schedule="cosine",
        milestones=(),
        train_subset=1_000,
        limit_eval_batches=10,
        extra={"num_workers": 2},
    )
    # Smoke runs the same transforms at 64 pixels so that a CPU fit takes seconds.
    smoke = cpu.replace(
        epochs=1,
        batch_size=8,
        train_subset=16,
        limit_eval_batches=1,
        extra={"num_workers": 0, "image_size": 64},
    )
    return {
        "smoke": Preset(
            "smoke",
            smoke,
            2,
            "1 epoch on 16 images at 64x64 (crop ratio kept), val/test on 8 images each; with only the "
            "imagenet-sample (val/ only) it trains, validates and tests on val/: seconds, no accuracy",
        ),
        "cpu": Preset(
            "cpu",
            cpu,
            4,
            "2 epochs on 1,000 training images, val/test on 320 images each (on the "
            "sample: train, val and test are its 100 val/ images): a pipeline check, not an accuracy",
        ),
        "paper": Preset(
            "paper",
            paper,
            100,
            "90 epochs, SGD 0.1 / 10 at epochs 30 and 60, batch 256, "
            "wd 1e-4 (torchvision reference recipe); test = official val",
        ),
    }


class ImagenetTask(Task):
    """ImageNet top-1 accuracy (%) at 224x224, single centre crop."""

    name = "imagenet"
    metric = Metric("accuracy", "max")
    input_shape = (3, 224, 224)
    recipe_options = IMAGE_OPTIONS | {"color_jitter"}

    def __init__(self) -> None:
        self._presets = _presets()
        self._num_classes: dict[Path, int] = {}

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    def num_classes_in(self, data_dir: Path | None = None) -> int:
        """Class folders of the training split found under `data_dir` (1,000 if no copy is found)."""
        root_dir = resolve_data_dir(data_dir)
        if root_dir not in self._num_classes:
            root = find_imagenet(root_dir)
            if root is None:
                return IMAGENET_CLASSES
            split = root / ("train" if (root / "train").is_dir() else "val")
            self._num_classes[root_dir] = len(class_folders(split)) or IMAGENET_CLASSES
        return self._num_classes[root_dir]

    @property
    def num_classes(self) -> int:
        """For models built before the data folder is known: counted under `NASREPRO_DATA` (the default)."""
        return self.num_classes_in(None)

    def root(self, data_dir: Path) -> Path:
        root = find_imagenet(Path(data_dir))
        if root is None:
            raise DataError(f"ImageNet not found under {data_dir}. {_how_to_get(Path(data_dir))}")
        return root

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> ImagenetDataModule:
        return ImagenetDataModule(self.root(data_dir), preset.recipe, seed)

    def lightning_module(self, model: torch.nn.Module, preset: Preset) -> L.LightningModule:
        return ImageClassificationModule(model, preset)

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        return (torch.randn(batch_size, *self.input_shape),)

    def reference_archs(self) -> Mapping[str, ReferenceArch]:
        def build(task: Task) -> torch.nn.Module:
            from torchvision.models import resnet18

            return resnet18(weights=None, num_classes=task.num_classes)

        return {
            "resnet18": ReferenceArch(build=build, citation="He et al., CVPR 2016 (torchvision resnet18)")
        }

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        root = find_imagenet(data_dir)
        if root is None:
            return [
                DataStatus("ImageNet", "missing", str(data_dir / "imagenet"), "no val/ ImageFolder found")
            ]
        splits = {split: class_folders(root / split) for split in ("train", "val") if (root / split).is_dir()}
        if "train" not in splits:
            detail = f"sample only: val/ with {len(splits['val'])} classes, no train/ (loader checks only)"
            return [DataStatus("ImageNet", "found", str(root), detail)]
        if splits["train"] != splits["val"]:
            differ = sorted(set(splits["train"]) ^ set(splits["val"]))
            return [
                DataStatus(
                    "ImageNet", "corrupt", str(root), f"train/ and val/ class folders differ: {differ[:5]}"
                )
            ]
        return [
            DataStatus("ImageNet", "found", str(root), f"{len(splits['train'])} classes in train/ and val/")
        ]


TASKS.add("imagenet", ImagenetTask)
