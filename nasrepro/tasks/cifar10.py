"""CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test images of 10 classes at 32x32.

Two on-disk layouts are read, from `<data_dir>/cifar10/` or `<data_dir>/` itself:

- the official python pickles `cifar-10-batches-py/{data_batch_1..5,test_batch}`, md5-checked
  against the checksums torchvision publishes (what `download_cifar10` fetches);
- image folders `{train,test}/<class>/*.png` (the shared offline copy), whose alphabetical class
  order (airplane ... truck) is CIFAR's label order 0-9.

Decoding 60,000 PNGs takes tens of seconds, so it happens once: the pixels are cached as one uint8
array file in `cache_dir("cifar10")`, keyed by the source folder and its file counts, and every
later run serves tensors from memory.

Protocol: the search split holds out the recipe's `valid_size` of the 50,000 training images (25,000
by default, as in DARTS-style search) with a fixed split seed, so every method and run sees the same
split; the final numbers are top-1 accuracy (%) on that hold-out (`val`) and on the 10,000 test
images (`test`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from nasrepro.errors import DataError, UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.task import DataStatus, Metric, ReferenceArch, Task
from nasrepro.paths import cache_dir
from nasrepro.tasks import TASKS
from nasrepro.tasks.datafiles import ExpectedFile, status
from nasrepro.tasks.image_classification import IMAGE_OPTIONS, ImageClassificationModule, cutout
from nasrepro.tasks.models.resnet import resnet20

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: published per-channel statistics of the training set (on [0, 1] pixels)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
COUNTS = {"train": 50_000, "test": 10_000}
#: training images held out when the recipe's `valid_size` is None (DARTS-style search split)
DEFAULT_VALID_SIZE = 25_000
PICKLE_FOLDER = "cifar-10-batches-py"
PICKLE_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@dataclass(frozen=True)
class CifarArrays:
    """The whole dataset in memory: images (N, 3, 32, 32) uint8, labels (N,) int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    layout: str


def _how_to_get(data_dir: Path) -> str:
    return (
        f"Expected {data_dir}/cifar10/{PICKLE_FOLDER}/{{data_batch_1..5,test_batch}} (official python "
        f"pickles) or {data_dir}/cifar10/{{train,test}}/<class>/*.png (one folder per class, "
        f"{', '.join(CLASSES[:2])} ... {CLASSES[-1]}); get the pickles with "
        f'`python -c "from nasrepro.tasks.cifar10 import download_cifar10; '
        f"download_cifar10('{data_dir}/cifar10')\"` where a network exists."
    )


def _published_md5() -> dict[str, str]:
    """torchvision's md5 of each official pickle file (`CIFAR10.train_list` / `test_list`)."""
    from torchvision.datasets import CIFAR10

    return dict(CIFAR10.train_list + CIFAR10.test_list)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _to_tensors(images: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(images)), torch.as_tensor(
        np.asarray(labels), dtype=torch.int64
    )


# --- the official pickle layout ----------------------------------------------------------------
def read_pickles(folder: Path, verify_md5: bool = True) -> CifarArrays:
    """Read `data_batch_1..5` and `test_batch` from `folder` (a `cifar-10-batches-py/`).

    Each file is a pickled dict with `data` (N x 3072 uint8, channel-major rows) and `labels`.
    With `verify_md5`, every file must match torchvision's published md5 first.
    """
    md5 = _published_md5() if verify_md5 else {}
    split: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, files in PICKLE_FILES.items():
        images, labels = [], []
        for file in files:
            path = folder / file
            if not path.is_file():
                raise DataError(
                    f"CIFAR-10 pickle {path} is missing: {folder} is a partial copy; delete it and "
                    f"download it again with download_cifar10."
                )
            if verify_md5 and _md5(path) != md5[file]:
                raise DataError(
                    f"CIFAR-10 pickle {path} is corrupt (md5 differs from torchvision's published "
                    f"{md5[file]}); delete {folder} and download it again with download_cifar10."
                )
            try:
                with path.open("rb") as handle:
                    # The official files are trusted pickles of plain dicts (as torchvision reads them).
                    batch = pickle.load(handle, encoding="latin1")
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                target = np.asarray(batch["labels"], dtype=np.int64)
            except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DataError(
                    f"CIFAR-10 pickle {path} cannot be read ({type(exc).__name__}: {exc}); delete "
                    f"{folder} and download it again with download_cifar10."
                ) from None
            if len(data) != len(target):
                raise DataError(
                    f"CIFAR-10 pickle {path} is corrupt: {len(data)} images but {len(target)} labels"
                )
            images.append(data)
            labels.append(target)
        split[name] = (np.concatenate(images), np.concatenate(labels))
    return CifarArrays(
        *_to_tensors(*split["train"]), *_to_tensors(*split["test"]), source=str(folder), layout="pickle"
    )


def download_cifar10(dest: str | os.PathLike[str] | None = None) -> Path:
    """Fetch the official pickles with torchvision into `dest` (default `cache_dir("cifar10")`).

    Returns the `cifar-10-batches-py` folder. Only ever called on the user's request: loaders and
    tests never download.
    """
    from torchvision.datasets import CIFAR10

    root = Path(dest) if dest is not None else cache_dir("cifar10")
    root.mkdir(parents=True, exist_ok=True)
    CIFAR10(str(root), train=True, download=True)
    CIFAR10(str(root), train=False, download=True)
    return root / PICKLE_FOLDER


# --- the PNG folder layout ---------------------------------------------------------------------
def _list_pngs(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """`{split: [(file, label)]}` with classes in CIFAR order and files sorted by name."""
    out: dict[str, list[tuple[Path, int]]] = {}
    for split in COUNTS:
        folder = root / split
        found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if tuple(found) != CLASSES:
            raise DataError(
                f"CIFAR-10 folder {folder} has class folders {found or 'none'}; expected exactly "
                f"{', '.join(CLASSES)}. {_how_to_get(root.parent)}"
            )
        out[split] = [
            (folder / name / file, label)
            for label, name in enumerate(CLASSES)
            for file in sorted(f for f in os.listdir(folder / name) if f.lower().endswith(".png"))
        ]
    return out


def _decode(path: Path) -> torch.Tensor:
    """One PNG as a (3, 32, 32) uint8 tensor (torchvision's decoder: about twice as fast as PIL here)."""
    from torchvision.io import ImageReadMode, decode_png

    try:
        pixels = decode_png(
            torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8), ImageReadMode.RGB
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"CIFAR-10 image {path} cannot be decoded ({exc}); the copy is corrupt.") from None
    if tuple(pixels.shape) != (3, 32, 32):
        raise DataError(f"CIFAR-10 image {path} has shape {tuple(pixels.shape)}, not 3x32x32; wrong dataset?")
    return pixels


def _cache_file(root: Path, files: Mapping[str, list[tuple[Path, int]]]) -> Path:
    key = f"{root.resolve()}|" + "|".join(f"{split}={len(items)}" for split, items in files.items())
    return cache_dir("cifar10") / f"png-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def read_png_folders(root: Path) -> CifarArrays:
    """Read `root/{train,test}/<class>/*.png`, decoding once into a cached uint8 array file."""
    files = _list_pngs(root)
    cached = _cache_file(root, files)
    arrays: dict[str, np.ndarray] | None = None
    if cached.is_file():
        try:
            with np.load(cached) as data:
                arrays = {name: data[name] for name in data.files}
            if any(len(arrays[f"{split}_labels"]) != len(items) for split, items in files.items()):
                arrays = None
        except (OSError, ValueError, KeyError):
            arrays = None  # a stale or truncated cache is rebuilt below
    if arrays is None:
        arrays = {}
        for split, items in files.items():
            pixels = [_decode(path) for path, _ in items]
            images = torch.stack(pixels) if pixels else torch.zeros((0, 3, 32, 32), dtype=torch.uint8)
            arrays[f"{split}_images"] = images.numpy()
            arrays[f"{split}_labels"] = np.array([label for _, label in items], dtype=np.int64)
        # Written under a temporary name and renamed, so a concurrent or killed run never sees half a file.
        with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".npz.tmp", delete=False) as handle:
            np.savez(handle, **arrays)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, cached)
    return CifarArrays(
        *_to_tensors(arrays["train_images"], arrays["train_labels"]),
        *_to_tensors(arrays["test_images"], arrays["test_labels"]),
        source=str(root),
        layout="png",
    )


# --- finding and checking ----------------------------------------------------------------------
def candidate_roots(data_dir: Path) -> list[Path]:
    """Where CIFAR-10 may live: `<data_dir>/cifar10/`, `<data_dir>/`, then the download cache."""
    return [data_dir / "cifar10", data_dir, cache_dir("cifar10")]


def find_cifar10(data_dir: Path) -> tuple[str, Path] | None:
    """(layout, folder) of the first copy found, pickles preferred; None if there is none."""
    for root in candidate_roots(data_dir):
        if (root / PICKLE_FOLDER).is_dir():
            return "pickle", root / PICKLE_FOLDER
        if (root / "train").is_dir() and (root / "test").is_dir():
            return "png", root
    return None


def check_counts(arrays: CifarArrays) -> None:
    """50,000 / 10,000 images, 5,000 / 1,000 of every class: anything else is a partial copy."""
    for split, total in COUNTS.items():
        labels = getattr(arrays, f"{split}_labels")
        per_class = torch.bincount(labels, minlength=len(CLASSES)).tolist()
        if len(labels) != total or per_class != [total // len(CLASSES)] * len(CLASSES):
            raise DataError(
                f"CIFAR-10 {split} split in {arrays.source} has {len(labels)} images (per class "
                f"{per_class}); expected {total:,} with {total // len(CLASSES):,} per class: the copy "
                f"is partial or corrupt."
            )


def load_cifar10(data_dir: Path) -> CifarArrays:
    """The verified dataset from whichever layout is present; one `DataError` if none is."""
    found = find_cifar10(data_dir)
    if found is None:
        raise DataError(f"CIFAR-10 not found under {data_dir}. {_how_to_get(data_dir)}")
    layout, folder = found
    arrays = read_pickles(folder) if layout == "pickle" else read_png_folders(folder)
    check_counts(arrays)
    return arrays


# --- data module -------------------------------------------------------------------------------
def augment_and_normalise(images: torch.Tensor, augment: bool) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) -> normalised float; with `augment`, the standard CIFAR augmentation.

    He et al. (2016, Section 4.2): pad 4 pixels with zeros, take a random 32x32 crop and flip
    horizontally with probability 1/2. Done for the whole batch by indexing, so it costs about as
    much as one copy of the batch.
    """
    if augment:
        batch = images.shape[0]
        padded = F.pad(images, (4, 4, 4, 4))
        offsets = torch.arange(32)
        rows = torch.randint(0, 9, (batch, 1)) + offsets
        cols = torch.randint(0, 9, (batch, 1)) + offsets
        cols = torch.where(torch.rand(batch, 1) < 0.5, cols.flip(1), cols)
        images = padded[
            torch.arange(batch)[:, None, None, None],
            torch.arange(3)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images.float().div_(255.0) - mean) / std


class CifarSubset(Dataset):
    """Indexed view of in-memory CIFAR images; fetches and augments whole batches at once.

    `cutout` > 0 (training only) then zeroes one square of that side per normalised image
    (`image_classification.cutout`, DeVries & Taylor 2017: 16 on CIFAR-10).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, augment: bool, cutout: int = 0
    ) -> None:
        self.images, self.labels, self.index, self.augment = images, labels, index, augment
        self.cutout = cutout if augment else 0

    def __len__(self) -> int:
        return len(self.index)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.index[torch.as_tensor(positions, dtype=torch.int64)]
        images = augment_and_normalise(self.images[rows], self.augment)
        return cutout(images, self.cutout), self.labels[rows]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([position])
        return images[0], labels[0]


def _batch_as_is(batch: Any) -> Any:
    return batch


class Cifar10DataModule(L.LightningDataModule):
    """Train / hold-out / test loaders of the search split.

    The recipe's `valid_size` images (default 25,000) of the training set form the hold-out, chosen
    by a permutation with `split_seed` (recipe.extra, default 0: the same split for every run);
    `train_subset` keeps the first images of the remaining training part. The test set is served in
    a fixed shuffled order so that a truncated evaluation (`limit_eval_batches`) sees all classes.
    """

    def __init__(self, arrays: CifarArrays, recipe: TrainRecipe, seed: int) -> None:
        super().__init__()
        self.arrays, self.recipe, self.seed = arrays, recipe, seed
        total = len(arrays.train_labels)
        valid_size = DEFAULT_VALID_SIZE if recipe.valid_size is None else recipe.valid_size
        if valid_size >= total:
            raise UsageError(
                f"recipe field 'valid_size' ({valid_size:,}) must be smaller than the {total:,} training "
                f"images, which the hold-out is taken from"
            )
        self.split_seed = int(recipe.extra.get("split_seed", 0))
        order = torch.randperm(total, generator=torch.Generator().manual_seed(self.split_seed))
        self.valid_index = order[:valid_size]
        self.train_index = order[valid_size:]
        if recipe.train_subset is not None:
            if recipe.train_subset < 1:
                raise UsageError(f"train_subset must be positive, got {recipe.train_subset}")
            self.train_index = self.train_index[: recipe.train_subset]
        test_total = len(arrays.test_labels)
        self.test_index = torch.randperm(test_total, generator=torch.Generator().manual_seed(0))
        self.eval_batch_size = int(recipe.extra.get("eval_batch_size", 256))
        self.num_workers = int(recipe.extra.get("num_workers", 0))

    def split_info(self) -> dict[str, Any]:
        """What a run record needs to identify the split exactly."""
        digest = hashlib.sha256(self.valid_index.sort().values.numpy().tobytes()).hexdigest()[:16]
        return {
            "source": self.arrays.source,
            "layout": self.arrays.layout,
            "split_seed": self.split_seed,
            "train": len(self.train_index),
            "valid": len(self.valid_index),
            "test": len(self.test_index),
            "valid_index_sha256": digest,
        }

    def _loader(self, dataset: CifarSubset, batch_size: int, shuffle: bool) -> DataLoader:
        # A final batch of one sample breaks BatchNorm in training mode; drop it only then.
        drop_last = shuffle and len(dataset) % batch_size == 1
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            collate_fn=_batch_as_is,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        data = CifarSubset(
            self.arrays.train_images,
            self.arrays.train_labels,
            self.train_index,
            augment=True,
            cutout=self.recipe.cutout,
        )
        return self._loader(data, self.recipe.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        data = CifarSubset(
            self.arrays.train_images, self.arrays.train_labels, self.valid_index, augment=False
        )
        return self._loader(data, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        data = CifarSubset(self.arrays.test_images, self.arrays.test_labels, self.test_index, augment=False)
        return self._loader(data, self.eval_batch_size, shuffle=False)


# --- the task ----------------------------------------------------------------------------------
def _presets() -> dict[str, Preset]:
    """He et al. (2016), Section 4.2: SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, lr / 10
    at 32k and 48k iterations, stop at 64k, on a 45k/5k train/val split. At 352 iterations per epoch
    of 45k images that is epochs 91 and 136 of 182."""
    paper = TrainRecipe(
        epochs=182,
        lr=0.1,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=128,
        schedule="multistep",
        milestones=(91, 136),
        valid_size=5_000,
    )
    cpu = paper.replace(epochs=10, schedule="cosine", milestones=(), train_subset=10_000)
    smoke = cpu.replace(
        epochs=1,
        batch_size=32,
        train_subset=128,
        limit_eval_batches=1,
        extra={"eval_batch_size": 64},
    )
    return {
        "smoke": Preset(
            "smoke",
            smoke,
            4,
            "1 epoch on 128 training images (batch 32); val/test on 64 images each: seconds",
        ),
        "cpu": Preset(
            "cpu",
            cpu,
            10,
            "10 epochs (cosine lr 0.1) on 10,000 of the 45,000 training images; "
            "val on the 5,000 hold-out, test on all 10,000: about 7 minutes for ResNet-20 on 2 cores",
        ),
        "paper": Preset(
            "paper",
            paper,
            100,
            "He et al. 2016 Section 4.2: 182 epochs (64k iterations) on 45k "
            "images, lr 0.1 / 10 at epochs 91 and 136; val on the 5k hold-out, test on 10k",
        ),
    }


class Cifar10Task(Task):
    """CIFAR-10 image classification, top-1 accuracy (%) on the test set."""

    name = "cifar10"
    metric = Metric("accuracy", "max")
    num_classes = len(CLASSES)
    input_shape = (3, 32, 32)
    #: colour jitter is not applied: the batched CIFAR augmentation has none (refused, not ignored)
    recipe_options = IMAGE_OPTIONS

    def __init__(self) -> None:
        self._presets = _presets()
        self._arrays: dict[Path, CifarArrays] = {}

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    def data(self, data_dir: Path) -> CifarArrays:
        """The verified dataset, loaded once per process and data folder."""
        key = Path(data_dir).expanduser().resolve()
        if key not in self._arrays:
            self._arrays[key] = load_cifar10(key)
        return self._arrays[key]

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> Cifar10DataModule:
        return Cifar10DataModule(self.data(data_dir), preset.recipe, seed)

    def lightning_module(self, model: torch.nn.Module, preset: Preset) -> L.LightningModule:
        return ImageClassificationModule(model, preset)

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        return (torch.randn(batch_size, *self.input_shape),)

    def reference_archs(self) -> Mapping[str, ReferenceArch]:
        return {
            "resnet20": ReferenceArch(
                build=lambda task: resnet20(task.num_classes), citation="He et al., CVPR 2016, Section 4.2"
            )
        }

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        found = find_cifar10(data_dir)
        if found is None:
            return [
                DataStatus(
                    "CIFAR-10",
                    "missing",
                    str(data_dir / "cifar10"),
                    f"neither {PICKLE_FOLDER}/ nor {{train,test}}/<class>/*.png found",
                )
            ]
        layout, folder = found
        if layout == "pickle":
            md5 = _published_md5()
            files = [ExpectedFile(name, min_size=1) for names in PICKLE_FILES.values() for name in names]
            row = status("CIFAR-10", folder, files, verify_hash=False)
            bad = [
                f.relpath
                for f in files
                if (folder / f.relpath).is_file() and _md5(folder / f.relpath) != md5[f.relpath]
            ]
            if bad:
                return [DataStatus("CIFAR-10", "corrupt", str(folder), "md5 mismatch: " + ", ".join(bad))]
            return [row]
        try:
            counts = {split: len(items) for split, items in _list_pngs(folder).items()}
        except DataError as exc:
            return [DataStatus("CIFAR-10", "corrupt", str(folder), str(exc))]
        if counts != COUNTS:
            return [DataStatus("CIFAR-10", "corrupt", str(folder), f"PNG counts {counts}, expected {COUNTS}")]
        return [DataStatus("CIFAR-10", "found", str(folder), "PNG folders, 50,000 train / 10,000 test")]


TASKS.add("cifar10", Cifar10Task)
