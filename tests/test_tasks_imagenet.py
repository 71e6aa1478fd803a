"""ImageNet task: the shared sample (val/ only), a generated train/val layout, errors and a smoke fit."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import nasrepro.tasks.imagenet as imagenet
from nasrepro.errors import DataError, UsageError
from nasrepro.harness.recipe import TrainRecipe
from nasrepro.tasks import TASKS

DATA = os.environ.get("NASREPRO_DATA")
needs_data = pytest.mark.skipif(not DATA, reason="NASREPRO_DATA is not set")


def recipe(**changes) -> TrainRecipe:
    return TrainRecipe(epochs=1, lr=0.1, batch_size=4).replace(**changes)


def make_folder(root: Path, classes: dict[str, list[str]], per_class: int = 3) -> None:
    """A tiny ImageFolder tree: `{split: [class names]}` with `per_class` 40x30 JPEGs each."""
    from PIL import Image

    for split, names in classes.items():
        for index, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for k in range(per_class):
                Image.new("RGB", (40, 30), (10 * index, 20 * k, 90)).save(root / split / name / f"{k}.JPEG")


@needs_data
def test_sample_is_found_and_runs_in_sample_mode() -> None:
    root = imagenet.find_imagenet(Path(DATA))
    assert root == Path(DATA) / "imagenet-sample"
    module = imagenet.ImagenetDataModule(root, recipe(train_subset=8), seed=0)
    assert module.sample_mode and module.num_classes == 100
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (4, 3, 224, 224) and labels.shape == (4,)
    assert len(module.train_dataloader().dataset) == 8
    val_images, val_labels = next(iter(module.val_dataloader()))
    assert val_images.shape == (4, 3, 224, 224)
    assert val_labels.tolist() == [0, 1, 2, 3]  # one image per class, in wnid order
    assert len(module.test_dataloader().dataset) == 100
    (row,) = imagenet.ImagenetTask().check_data(Path(DATA))
    assert row.status == "found" and "sample only" in row.detail


@needs_data
def test_transforms_and_class_count_from_the_folder() -> None:
    from PIL import Image

    task = imagenet.ImagenetTask()
    assert task.num_classes_in(Path(DATA)) == 100
    path = next((Path(DATA) / "imagenet-sample" / "val" / "n01440764").iterdir())
    with Image.open(path) as image:
        image = image.convert("RGB")
        evaluated = imagenet.eval_transform()(image)
        assert torch.equal(evaluated, imagenet.eval_transform()(image))  # deterministic centre crop
        assert evaluated.shape == (3, 224, 224)
        assert imagenet.train_transform()(image).shape == (3, 224, 224)
        assert imagenet.eval_transform(64)(image).shape == (3, 64, 64)


def test_train_val_layout_holds_out_a_seeded_validation_split(tmp_path: Path) -> None:
    classes = ["n001", "n002", "n003"]
    make_folder(tmp_path / "imagenet", {"train": classes, "val": classes}, per_class=4)
    root = imagenet.find_imagenet(tmp_path)
    assert root == tmp_path / "imagenet"
    module = imagenet.ImagenetDataModule(root, recipe(valid_size=3, extra={"image_size": 32}), seed=0)
    assert not module.sample_mode and module.num_classes == 3
    train, valid = module._split(12)
    assert len(valid) == 3 and len(train) == 9 and not set(train) & set(valid)
    again = imagenet.ImagenetDataModule(root, recipe(valid_size=3), seed=5)._split(12)
    assert again[1] == valid  # the split does not depend on the run seed
    assert sum(len(y) for _, y in module.val_dataloader()) == 3
    test_labels = torch.cat([y for _, y in module.test_dataloader()])
    assert test_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    images, _ = next(iter(module.train_dataloader()))
    assert images.shape == (4, 3, 32, 32)
    assert imagenet.ImagenetTask().check_data(tmp_path)[0].status == "found"


def test_hold_out_size_is_a_recorded_recipe_field_checked_against_the_train_split(tmp_path: Path) -> None:
    task = imagenet.ImagenetTask()
    for name in ("smoke", "cpu", "paper"):  # the default, unchanged and recorded with every recipe
        assert task.preset(name).recipe.to_dict()["valid_size"] == imagenet.DEFAULT_VALID_SIZE == 10_000
    classes = ["n001", "n002", "n003"]
    make_folder(tmp_path / "imagenet", {"train": classes, "val": classes}, per_class=4)
    root = tmp_path / "imagenet"
    held = imagenet.ImagenetDataModule(root, recipe(valid_size=5, extra={"image_size": 32}), seed=0)
    assert sum(len(y) for _, y in held.val_dataloader()) == 5 and held.split_info()["valid_size"] == 5
    assert len(held.train_dataloader().dataset) == 7
    too_many = imagenet.ImagenetDataModule(root, recipe(valid_size=50_000), seed=0)
    with pytest.raises(
        UsageError, match="'valid_size' \\(50,000\\) must be smaller than the 12 images"
    ) as info:
        too_many.train_dataloader()
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="valid_size"):  # all of them: nothing left to train on
        imagenet.ImagenetDataModule(root, recipe(valid_size=12), seed=0)._split(12)


@needs_data
def test_sample_mode_takes_no_hold_out_whatever_valid_size_says() -> None:
    """The ProxylessNAS paper rows' 50,000 at smoke on the 100-image sample: the sample has no train
    split to hold images out of, so the loaders serve val/ as always and the split info says so."""
    root = imagenet.find_imagenet(Path(DATA))
    module = imagenet.ImagenetDataModule(root, recipe(valid_size=50_000, train_subset=8), seed=0)
    assert module.sample_mode and module.split_info()["valid_size"] is None
    assert len(module.train_dataloader().dataset) == 8 and len(module.val_dataloader().dataset) == 100


def test_mismatched_class_folders_are_a_data_error(tmp_path: Path) -> None:
    make_folder(tmp_path / "imagenet", {"train": ["n001", "n002"], "val": ["n001", "n003"]}, per_class=1)
    with pytest.raises(DataError, match="different class folders"):
        imagenet.ImagenetDataModule(tmp_path / "imagenet", recipe(), seed=0)
    assert imagenet.ImagenetTask().check_data(tmp_path)[0].status == "corrupt"


def test_missing_data_names_path_layout_and_source(tmp_path: Path) -> None:
    task = imagenet.ImagenetTask()
    with pytest.raises(DataError) as info:
        task.datamodule(task.preset("smoke"), tmp_path, seed=0)
    message = str(info.value)
    assert str(tmp_path) in message and "{train,val}/<wnid>" in message and "image-net.org" in message
    assert "\n" not in message
    (row,) = task.check_data(tmp_path)
    assert row.status == "missing"
    assert task.num_classes_in(tmp_path) == imagenet.IMAGENET_CLASSES


def test_registration_presets_and_reference_model() -> None:
    assert TASKS.get("imagenet") is imagenet.ImagenetTask
    task = imagenet.ImagenetTask()
    assert task.metric.name == "accuracy" and task.metric.direction == "max"
    paper = task.preset("paper").recipe
    assert (paper.epochs, paper.lr, paper.batch_size, paper.weight_decay) == (90, 0.1, 256, 1e-4)
    assert (paper.schedule, paper.milestones, paper.gamma) == ("multistep", (30, 60), 0.1)
    assert "val" in task.preset("smoke").description
    (x,) = task.example_input(2)
    assert x.shape == (2, 3, 224, 224)


@needs_data
def test_smoke_fit_of_resnet18(monkeypatch) -> None:
    from nasrepro.harness.training import fit_and_evaluate

    monkeypatch.setenv("NASREPRO_DATA", DATA)
    task = imagenet.ImagenetTask()
    model = task.reference_arch("resnet18").build(task)
    assert model.fc.out_features == 100
    result = fit_and_evaluate(task, model, task.preset("smoke"), seed=0, data_dir=Path(DATA))
    assert math.isfinite(result["val"]) and math.isfinite(result["test"])
    assert 0.0 <= result["test"] <= 100.0
