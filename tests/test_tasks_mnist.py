"""The MNIST task (FaDE's data) on a tiny IDX set written here: MNIST itself is not among the
shared datasets, so these tests pin the reader, the split and the error lines, not accuracy."""

import struct

import numpy as np
import pytest
import torch

from nasrepro.cli import main
from nasrepro.errors import DataError, UsageError
from nasrepro.tasks import mnist

SIZES = {"train": 120, "test": 40}


def _write_idx(folder, split, n, rng):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    # every pixel of image i carries its label, so any misalignment of images and labels shows
    images = np.repeat(labels[:, None, None] * 20, 28 * 28).reshape(n, 28, 28).astype(np.uint8)
    image_file, label_file = mnist.FILES[split]
    (folder / image_file).write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    (folder / label_file).write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return labels


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    folder = tmp_path / mnist.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {split: _write_idx(folder, split, n, rng) for split, n in SIZES.items()}
    monkeypatch.setattr(mnist, "COUNTS", SIZES)
    monkeypatch.setattr(mnist, "DEFAULT_VALID_SIZE", 12)
    return tmp_path, labels


def test_reader_split_and_normalisation(tiny_mnist):
    root, labels = tiny_mnist
    arrays = mnist.load_mnist(root)
    assert arrays.images["train"].shape == (120, 1, 28, 28)
    assert torch.equal(arrays.labels["test"], torch.as_tensor(labels["test"], dtype=torch.int64))
    task = mnist.MnistTask()
    dm = task.datamodule(task.preset("paper"), root, seed=0)
    assert (len(dm.train), len(dm.valid), len(dm.test)) == (108, 12, 40)
    # images still match their labels after the split, and carry the code's normalisation
    for data in (dm.train, dm.valid, dm.test):
        x, y = data.tensors
        expected = ((y.float() * 20 / 255.0) - mnist.MEAN) / mnist.STD
        assert torch.allclose(x[:, 0, 0, 0], expected)
    # hold-out and training part are disjoint and together the whole training set
    train_vals = sorted(dm.train.tensors[1].tolist() + dm.valid.tensors[1].tolist())
    assert train_vals == sorted(labels["train"].tolist())
    # the split is fixed by split_seed, not by the run's seed
    again = task.datamodule(task.preset("paper"), root, seed=5)
    assert torch.equal(again.valid.tensors[1], dm.valid.tensors[1])
    assert task.check_data(root)[0].status == "found"


def test_missing_or_wrong_files_are_one_clear_error(tmp_path, tiny_mnist):
    with pytest.raises(DataError, match="MNIST.*download=True"):
        mnist.load_mnist(tmp_path / "nowhere")
    assert mnist.MnistTask().check_data(tmp_path / "nowhere")[0].status == "missing"
    root, _ = tiny_mnist
    (root / mnist.FOLDER / mnist.FILES["test"][1]).write_bytes(struct.pack(">II", 2049, 10) + bytes(10))
    with pytest.raises(DataError, match="test has 40 images and 10 labels"):
        mnist.load_mnist(root)


def test_valid_size_must_leave_training_images(tiny_mnist):
    root, _ = tiny_mnist
    task = mnist.MnistTask()
    preset = task.preset("smoke")
    too_big = preset.__class__(
        preset.name, preset.recipe.replace(valid_size=120), preset.search_budget, preset.description
    )
    with pytest.raises(UsageError, match="valid_size"):
        task.datamodule(too_big, root, seed=0)


def test_a_search_runs_on_mnist_and_a_missing_folder_exits_1(tiny_mnist, tmp_path, capsys):
    root, _ = tiny_mnist
    out = tmp_path / "out"
    argv = ["search", "--method", "random", "--task", "mnist", "--preset", "smoke", "--seed", "0"]
    argv += ["--budget", "1", "--out", str(out), "--wandb", "disabled", "--quiet"]
    assert main([*argv, "--data-dir", str(root)]) == 0
    (record,) = out.glob("runs/mnist/random/*.json")
    assert record.stat().st_size > 0
    capsys.readouterr()
    assert main([*argv, "--data-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MNIST" in err[0]
