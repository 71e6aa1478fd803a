"""CIFAR-10 task: both on-disk layouts, the cache, the split, augmentation, errors and a smoke fit."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import nasrepro.tasks.cifar10 as cifar
from nasrepro.errors import DataError, UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.tasks import TASKS
from nasrepro.tasks.image_classification import optimizers_for
from nasrepro.tasks.models.resnet import CifarResNet, resnet20

DATA = os.environ.get("NASREPRO_DATA")
needs_data = pytest.mark.skipif(not DATA, reason="NASREPRO_DATA is not set")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """A private cache folder for this module, so the PNG decoding is exercised and not reused."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("nasrepro-cache")
    patch.setenv("NASREPRO_CACHE", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="module")
def arrays(cache: Path) -> cifar.CifarArrays:
    """All 60,000 images decoded once (load_cifar10 checks the 50k/10k and per-class counts)."""
    if not DATA:
        pytest.skip("NASREPRO_DATA is not set")
    return cifar.load_cifar10(Path(DATA))


def recipe(**changes) -> TrainRecipe:
    return TrainRecipe(epochs=1, lr=0.1, batch_size=32).replace(**changes)


# --- the shared PNG copy -----------------------------------------------------------------------
@needs_data
def test_png_layout_full_counts_and_statistics(arrays: cifar.CifarArrays) -> None:
    assert arrays.layout == "png"
    assert arrays.train_images.shape == (50_000, 3, 32, 32) and arrays.train_images.dtype == torch.uint8
    assert arrays.test_images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(arrays.train_labels).tolist() == [5_000] * 10
    assert torch.bincount(arrays.test_labels).tolist() == [1_000] * 10
    # The published normalisation constants are the training set's own statistics.
    pixels = arrays.train_images[::10].to(torch.float64) / 255.0
    assert pixels.mean(dim=(0, 2, 3)).tolist() == pytest.approx(cifar.MEAN, abs=2e-3)
    assert pixels.std(dim=(0, 2, 3)).tolist() == pytest.approx(cifar.STD, abs=2e-3)


@needs_data
def test_labels_follow_alphabetical_folders(arrays: cifar.CifarArrays) -> None:
    root = Path(DATA) / "cifar10" / "test"
    frog = sorted((root / "frog").iterdir())[0]
    index = 6 * 1_000  # frog is CIFAR label 6; files are sorted within each class
    assert arrays.test_labels[index] == cifar.CLASSES.index("frog") == 6
    assert torch.equal(arrays.test_images[index], cifar._decode(frog))


@needs_data
def test_decoded_pixels_are_cached_and_reused(arrays: cifar.CifarArrays, cache: Path, monkeypatch) -> None:
    files = list((cache / "cifar10").glob("png-*.npz"))
    assert len(files) == 1 and not list((cache / "cifar10").glob("*.tmp"))

    def no_decoding(path: Path) -> None:
        raise AssertionError(f"decoded {path} although the cache exists")

    monkeypatch.setattr(cifar, "_decode", no_decoding)
    again = cifar.read_png_folders(Path(DATA) / "cifar10")
    assert torch.equal(again.train_images[:500], arrays.train_images[:500])
    assert torch.equal(again.test_labels, arrays.test_labels)


@needs_data
def test_check_data_reports_found() -> None:
    (row,) = cifar.Cifar10Task().check_data(Path(DATA))
    assert row.status == "found" and row.path.endswith("cifar10")


# --- split, loaders, augmentation --------------------------------------------------------------
@needs_data
def test_search_split_is_fixed_disjoint_and_recorded(arrays: cifar.CifarArrays) -> None:
    module = cifar.Cifar10DataModule(arrays, recipe(), seed=3)
    assert len(module.train_index) == len(module.valid_index) == 25_000
    both = torch.cat([module.train_index, module.valid_index])
    assert torch.equal(both.sort().values, torch.arange(50_000))
    other_seed = cifar.Cifar10DataModule(arrays, recipe(), seed=4)
    assert torch.equal(other_seed.valid_index, module.valid_index)  # same split for every run
    other_split = cifar.Cifar10DataModule(arrays, recipe(extra={"split_seed": 1}), seed=3)
    assert not torch.equal(other_split.valid_index, module.valid_index)
    info = module.split_info()
    assert info["train"] == 25_000 and info["valid"] == 25_000 and info["split_seed"] == 0
    assert info["valid_index_sha256"] != other_split.split_info()["valid_index_sha256"]

    small = cifar.Cifar10DataModule(arrays, recipe(train_subset=100, valid_size=5_000), seed=0)
    assert len(small.train_index) == 100 and len(small.valid_index) == 5_000
    with pytest.raises(UsageError, match="valid_size"):
        cifar.Cifar10DataModule(arrays, recipe(valid_size=50_000), seed=0)


@needs_data
def test_loaders_serve_normalised_batches(arrays: cifar.CifarArrays) -> None:
    module = cifar.Cifar10DataModule(arrays, recipe(train_subset=64, extra={"eval_batch_size": 100}), seed=0)
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (32,)
    val_images, val_labels = next(iter(module.val_dataloader()))
    first = module.valid_index[0]
    expected = cifar.augment_and_normalise(arrays.train_images[first : first + 1], augment=False)
    assert torch.allclose(val_images[0], expected[0]) and val_labels[0] == arrays.train_labels[first]
    test_images, test_labels = next(iter(module.test_dataloader()))
    assert test_images.shape == (100, 3, 32, 32)
    # The fixed test order mixes classes, so a truncated evaluation is not one class only.
    assert len(test_labels.unique()) == 10
    assert sum(len(y) for _, y in module.test_dataloader()) == 10_000


def test_augmentation_is_a_padded_crop_or_its_mirror() -> None:
    torch.manual_seed(0)
    images = torch.randint(1, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = cifar.augment_and_normalise(images, augment=True)
    mean, std = torch.tensor(cifar.MEAN).view(3, 1, 1), torch.tensor(cifar.STD).view(3, 1, 1)
    restored = torch.round((out * std + mean) * 255).to(torch.int64)
    padded = torch.nn.functional.pad(images.to(torch.int64), (4, 4, 4, 4))
    flips = 0
    for i in range(16):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                restored[i], (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy : dy + 32, dx : dx + 32])
            )
        ]
        assert matches, f"image {i} is not a crop of the padded input"
        flips += matches[0][2]
    assert 0 < flips < 16
    plain = cifar.augment_and_normalise(images, augment=False)
    assert torch.allclose(plain, (images.float() / 255 - mean) / std)


# --- the official pickle layout (tiny generated copy) ------------------------------------------
def write_fake_pickles(folder: Path, per_file: int = 4) -> np.ndarray:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [*cifar.PICKLE_FILES["train"], *cifar.PICKLE_FILES["test"]]:
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        first = data if first is None else first
        with (folder / name).open("wb") as handle:
            pickle.dump({"data": data, "labels": list(range(per_file)), "batch_label": name}, handle)
    return first


def test_pickle_reader_reads_channel_major_rows(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / cifar.PICKLE_FOLDER
    first = write_fake_pickles(folder)
    arrays = cifar.read_pickles(folder, verify_md5=False)
    assert arrays.layout == "pickle"
    assert arrays.train_images.shape == (20, 3, 32, 32) and arrays.test_images.shape == (4, 3, 32, 32)
    # row = 1024 red, then 1024 green, then 1024 blue values, each row-major
    assert arrays.train_images[0, 1, 2, 3] == first[0, 1024 + 2 * 32 + 3]
    assert arrays.train_labels.tolist() == [0, 1, 2, 3] * 5


def test_pickle_layout_is_found_and_md5_checked(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "cifar10" / cifar.PICKLE_FOLDER
    write_fake_pickles(folder)
    assert cifar.find_cifar10(tmp_path) == ("pickle", folder)
    with pytest.raises(DataError, match=r"data_batch_1 is corrupt \(md5"):
        cifar.load_cifar10(tmp_path)
    (row,) = cifar.Cifar10Task().check_data(tmp_path)
    assert row.status == "corrupt" and "data_batch_1" in row.detail


def test_corrupt_and_partial_pickles_are_data_errors(tmp_path: Path) -> None:
    folder = tmp_path / cifar.PICKLE_FOLDER
    write_fake_pickles(folder)
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="data_batch_3 cannot be read"):
        cifar.read_pickles(folder, verify_md5=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        cifar.read_pickles(folder, verify_md5=False)


# --- errors for missing data and wrong layouts -------------------------------------------------
def test_missing_data_names_path_layouts_and_remedy(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError) as info:
        cifar.load_cifar10(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message
    assert cifar.PICKLE_FOLDER in message and "{train,test}/<class>/*.png" in message
    assert "download_cifar10" in message
    (row,) = cifar.Cifar10Task().check_data(tmp_path)
    assert row.status == "missing"


def test_wrong_class_folders_are_rejected(tmp_path: Path, cache: Path) -> None:
    for split in ("train", "test"):
        for name in ("cats", "dogs"):
            (tmp_path / "cifar10" / split / name).mkdir(parents=True)
    with pytest.raises(DataError, match="class folders"):
        cifar.load_cifar10(tmp_path)


def test_partial_png_copy_fails_the_count_check(tmp_path: Path, cache: Path) -> None:
    from torchvision.io import write_png

    for split in ("train", "test"):
        for name in cifar.CLASSES:
            (tmp_path / split / name).mkdir(parents=True)
            write_png(torch.full((3, 32, 32), 7, dtype=torch.uint8), str(tmp_path / split / name / "a.png"))
    arrays = cifar.read_png_folders(tmp_path)
    assert arrays.train_images.shape == (10, 3, 32, 32) and int(arrays.train_images[0, 0, 0, 0]) == 7
    with pytest.raises(DataError, match="expected 50,000 with 5,000 per class"):
        cifar.check_counts(arrays)


# --- model, task, recipe -----------------------------------------------------------------------
def test_resnet20_matches_the_paper() -> None:
    model = resnet20()
    assert sum(p.numel() for p in model.parameters()) == 269_722  # "0.27M" (He et al. 2016, Table 6)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 20  # 19 convolutions + the classifier, no projection shortcuts
    with pytest.raises(UsageError):
        CifarResNet(21)


def test_task_registration_presets_and_recipes() -> None:
    assert TASKS.get("cifar10") is cifar.Cifar10Task
    task = cifar.Cifar10Task()
    assert task.metric.name == "accuracy" and task.metric.direction == "max"
    assert set(task.presets) == {"smoke", "cpu", "paper"}
    (x,) = task.example_input(4)
    assert x.shape == (4, 3, 32, 32)
    paper = task.preset("paper").recipe
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch_size) == (0.1, 0.9, 1e-4, 128)
    model = resnet20()
    config = optimizers_for(model.parameters(), paper)
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(paper.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[90] == pytest.approx(0.1) and rates[91] == pytest.approx(0.01)
    assert rates[136] == pytest.approx(0.001) and rates[-1] == pytest.approx(0.001)


@needs_data
def test_smoke_fit_of_resnet20(arrays: cifar.CifarArrays) -> None:
    from nasrepro.harness.training import fit_and_evaluate

    task = cifar.Cifar10Task()
    model = task.reference_arch("resnet20").build(task)
    before = [p.detach().clone() for p in model.parameters()]
    result = fit_and_evaluate(task, model, task.preset("smoke"), seed=0, data_dir=Path(DATA))
    assert math.isfinite(result["val"]) and math.isfinite(result["test"])
    assert 0.0 <= result["val"] <= 100.0 and 0.0 <= result["test"] <= 100.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_label_smoothing_is_read_from_the_recipe() -> None:
    from nasrepro.tasks.image_classification import ImageClassificationModule

    preset = Preset("x", recipe(label_smoothing=0.1), 1)
    module = ImageClassificationModule(resnet20(), preset)
    assert module.label_smoothing == 0.1
    assert ImageClassificationModule(resnet20(), Preset("y", recipe(), 1)).label_smoothing == 0.0
