"""PTB task: published token counts, BPTT batching, state carrying, perplexity, schedule, errors, smoke fit."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import nasrepro.tasks.ptb as ptb
from nasrepro.errors import DataError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.tasks import TASKS
from nasrepro.tasks.models.lstm import LSTMLanguageModel, zaremba_medium

DATA = os.environ.get("NASREPRO_DATA")
needs_data = pytest.mark.skipif(not DATA, reason="NASREPRO_DATA is not set")


@pytest.fixture(scope="module")
def corpus() -> ptb.Corpus:
    if not DATA:
        pytest.skip("NASREPRO_DATA is not set")
    return ptb.load_ptb(Path(DATA))


def write_tiny(
    folder: Path, train: str = "a b c\nb c d\n", valid: str = "a d\n", test: str = "c b a\n"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"ptb.{split}.txt").write_text(text)
    return folder


def preset(**changes) -> Preset:
    base = TrainRecipe(
        epochs=1,
        lr=1.0,
        batch_size=2,
        schedule="constant",
        grad_clip=5.0,
        extra={"bptt": 3, "eval_batch_size": 2, "test_batch_size": 1},
    )
    return Preset("t", base.replace(**changes), 1)


# --- the real corpus ---------------------------------------------------------------------------
@needs_data
def test_published_token_counts_and_vocabulary(corpus: ptb.Corpus) -> None:
    assert [len(corpus.split(s)) for s in ptb.SPLITS] == [929_589, 73_760, 82_430]
    assert len(corpus.words) == 10_000 and "<unk>" in corpus.words and "N" in corpus.words
    eos = corpus.words.index("<eos>")
    assert int((corpus.train == eos).sum()) == 42_068  # one <eos> per line
    assert int(corpus.test[-1]) == eos
    assert max(int(corpus.split(s).max()) for s in ptb.SPLITS) == 9_999


@needs_data
def test_loaders_batchify_as_the_standard_recipe(corpus: ptb.Corpus) -> None:
    task = ptb.PTBTask()
    module = task.datamodule(task.preset("paper"), Path(DATA), seed=0)
    train = list(module.train_dataloader())
    assert len(train) == math.ceil((929_589 // 20 - 1) / 35)
    inputs, targets = train[0]
    assert inputs.shape == (35, 20) and targets.shape == (35, 20)
    # Column j of the first window is the start of the j-th contiguous stream.
    assert torch.equal(inputs[:, 1], corpus.train[929_589 // 20 : 929_589 // 20 + 35])
    assert torch.equal(targets[:-1], inputs[1:])
    assert torch.equal(train[1][0][0], targets[-1])  # windows continue each other
    valid_inputs, _ = next(iter(module.val_dataloader()))
    test_inputs, _ = next(iter(module.test_dataloader()))
    assert valid_inputs.shape == (35, 10) and test_inputs.shape == (35, 1)
    assert sum(t.numel() for _, t in module.test_dataloader()) == 82_430 - 1


@needs_data
def test_check_data_verifies_hashes() -> None:
    (row,) = ptb.PTBTask().check_data(Path(DATA))
    assert row.status == "found"


# --- batching primitives -----------------------------------------------------------------------
def test_batchify_and_windows() -> None:
    data = ptb.batchify(torch.arange(23), 4)
    assert data.shape == (5, 4) and data[:, 2].tolist() == [10, 11, 12, 13, 14]
    windows = ptb.BPTTWindows(data, 2)
    assert len(windows) == 2
    inputs, targets = windows[1]
    assert inputs.shape == (2, 4) and torch.equal(targets[0], data[3])
    assert windows[1][1].shape[0] == 2 and len(ptb.BPTTWindows(data, 3)[1][0]) == 1
    with pytest.raises(IndexError):
        windows[2]


# --- errors ------------------------------------------------------------------------------------
def test_missing_files_are_named(tmp_path: Path) -> None:
    write_tiny(tmp_path / "ptb").joinpath("ptb.valid.txt").unlink()
    with pytest.raises(DataError, match=r"missing ptb\.valid\.txt") as info:
        ptb.load_ptb(tmp_path)
    assert str(tmp_path / "ptb") in str(info.value) and "simple-examples" in str(info.value)
    assert ptb.PTBTask().check_data(tmp_path)[0].status == "corrupt"
    assert ptb.PTBTask().check_data(tmp_path / "nothing")[0].status == "missing"


def test_wrong_files_are_corrupt(tmp_path: Path) -> None:
    folder = write_tiny(tmp_path / "ptb")
    with pytest.raises(DataError, match="sha256 mismatch"):
        ptb.load_ptb(tmp_path)
    with pytest.raises(DataError, match="8 tokens, expected 929,589"):
        ptb.build_corpus(folder, expected_vocab=None)
    with pytest.raises(DataError, match="vocabulary has 5 words, expected 10,000"):
        ptb.build_corpus(folder)
    write_tiny(folder, valid="a zebra\n")
    with pytest.raises(DataError, match="outside the training vocabulary"):
        ptb.build_corpus(folder, expected_tokens=None, expected_vocab=None)


def test_tiny_corpus_vocabulary_order(tmp_path: Path) -> None:
    corpus = ptb.build_corpus(write_tiny(tmp_path), expected_tokens=None, expected_vocab=None)
    assert corpus.words == ("a", "b", "c", "<eos>", "d")
    assert corpus.train.tolist() == [0, 1, 2, 3, 1, 2, 4, 3] and corpus.test.tolist() == [2, 1, 0, 3]


# --- model and training module -----------------------------------------------------------------
def test_model_api_and_size() -> None:
    model = zaremba_medium()
    assert sum(p.numel() for p in model.parameters()) == 19_780_400
    h, c = model.init_hidden(3)
    assert h.shape == c.shape == (2, 3, 650)
    (tokens,) = ptb.PTBTask().example_input(3)
    model.eval()
    logits, hidden = model(tokens)
    assert logits.shape == (35, 3, 10_000)
    logits_again, _ = model(tokens, model.init_hidden(3))
    assert torch.allclose(logits, logits_again)  # None means the zero state
    carried, _ = model(tokens, hidden)
    assert not torch.allclose(carried, logits)


def tiny_module(tmp_path: Path, recipe_preset: Preset) -> tuple[ptb.LanguageModelModule, ptb.PTBDataModule]:
    text = "".join(f"{' '.join(str((i * 7 + k) % 11) for k in range(6))}\n" for i in range(30))
    corpus = ptb.build_corpus(write_tiny(tmp_path, text, text[:60], text[:90]), None, None)
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(corpus.words), hidden_size=8, num_layers=2, dropout=0.0, init_range=0.1)
    return ptb.LanguageModelModule(model, recipe_preset), ptb.PTBDataModule(corpus, recipe_preset.recipe)


def test_state_is_carried_detached_and_reset(tmp_path: Path) -> None:
    module, data = tiny_module(tmp_path, preset())
    first, second = list(data.train_dataloader())[:2]
    module._step(first, "train")
    carried = module._hidden["train"]
    assert all(not h.requires_grad for h in carried)
    loss = module._step(second, "train")
    loss.backward()  # would fail if the first window's graph were still attached and freed
    fresh = module.model(second[0])[0]
    assert not torch.allclose(module.model(second[0], carried)[0], fresh)
    module.on_train_epoch_start()
    assert "train" not in module._hidden


def test_test_perplexity_is_exp_of_token_mean_cross_entropy(tmp_path: Path) -> None:
    module, data = tiny_module(tmp_path, preset())
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
    )
    reported = trainer.test(module, datamodule=data, verbose=False)[0]["test/perplexity"]
    model = module.model.eval()
    total, count, hidden = 0.0, 0, None
    with torch.no_grad():
        for inputs, targets in data.test_dataloader():
            logits, hidden = model(inputs, hidden)
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
            ).item()
            count += targets.numel()
    assert reported == pytest.approx(math.exp(total / count), rel=1e-5)


def test_gradients_are_clipped_without_trainer_settings(tmp_path: Path) -> None:
    clip, lr = 1e-3, 1.0
    module, data = tiny_module(tmp_path, preset(grad_clip=clip, lr=lr, momentum=0.0))
    before = torch.cat([p.detach().flatten().clone() for p in module.model.parameters()])
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    after = torch.cat([p.detach().flatten() for p in module.model.parameters()])
    assert 0 < torch.linalg.vector_norm(after - before) <= lr * clip * 1.001


def test_zaremba_learning_rate_schedule() -> None:
    task = ptb.PTBTask()
    recipe = task.preset("paper").recipe
    assert (recipe.epochs, recipe.lr, recipe.batch_size, recipe.grad_clip, recipe.extra["bptt"]) == (
        39,
        1.0,
        20,
        5.0,
        35,
    )
    module = ptb.LanguageModelModule(LSTMLanguageModel(10, 4, 1, 0.0), task.preset("paper"))
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(recipe.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:6] == [1.0] * 6  # epochs 1-6 at lr 1
    assert rates[6] == pytest.approx(1 / 1.2) and rates[38] == pytest.approx(1.2**-33)


def test_registration_and_reference_archs() -> None:
    assert TASKS.get("ptb") is ptb.PTBTask
    task = ptb.PTBTask()
    assert task.metric.name == "perplexity" and task.metric.direction == "min"
    assert set(task.reference_archs()) == {"lstm", "lstm-small"}
    assert task.reference_arch("lstm").build(task).hidden_size == 650


@needs_data
def test_smoke_fit_of_the_lstm(corpus: ptb.Corpus) -> None:
    from nasrepro.harness.training import fit_and_evaluate

    task = ptb.PTBTask()
    task._corpus[Path(DATA).resolve()] = corpus
    model = task.reference_arch("lstm").build(task)
    result = fit_and_evaluate(task, model, task.preset("smoke"), seed=0, data_dir=Path(DATA))
    assert math.isfinite(result["val"]) and math.isfinite(result["test"])
    # An untrained 10,000-word model sits near perplexity 10,000; 3 steps cannot be far below.
    assert 1.0 < result["val"] < 20_000 and 1.0 < result["test"] < 20_000
