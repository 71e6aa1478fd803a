"""Penn Treebank word-level language modelling, in Mikolov et al.'s (2010) preprocessed form.

Files `<data_dir>/ptb/ptb.{train,valid,test}.txt`: one sentence a line, 10,000-word vocabulary with
`<unk>`, numbers as `N`. An `<eos>` token ends every line; the vocabulary is built from the training
file and must come to exactly 10,000 words, and the three splits to 929,589 / 73,760 / 82,430
tokens -- anything else is not this dataset.

Protocol (Zaremba et al. 2014; the word_language_model / AWD-LSTM recipe): each split is one token
stream cut into `batch_size` parallel streams ("batchify"), read in consecutive windows of `bptt`
tokens; the recurrent state is carried from window to window and detached (truncated BPTT) and
reset to zero at each epoch. Metric: perplexity, exp of the token-averaged cross-entropy, on the
validation stream (eval batch 10) and the test stream (batch 1, as AWD-LSTM and its successors).
`extra["lm_schedule"]` (recorded with every preset): `plain`, the above; `darts`, AWD-LSTM's NT-ASGD,
AR/TAR and variable windows as DARTS and NAO train their final language models (`lm_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import SumMetric

from nasrepro.errors import DataError, UsageError
from nasrepro.harness.recipe import Preset, TrainRecipe, build_optimizer, lightning_optimizers
from nasrepro.harness.task import DataStatus, Metric, ReferenceArch, Task
from nasrepro.tasks import TASKS
from nasrepro.tasks.datafiles import ExpectedFile, require, status
from nasrepro.tasks.models.lstm import detach_hidden, zaremba_medium, zaremba_small

SPLITS = ("train", "valid", "test")
TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}
VOCAB_SIZE = 10_000
EOS = "<eos>"
#: sha256 of Mikolov's files (md5-equal to torchtext's PennTreebank constants)
SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}


def expected_files() -> list[ExpectedFile]:
    return [ExpectedFile(f"ptb.{split}.txt", sha256=SHA256[split]) for split in SPLITS]


def how_to_get(folder: Path) -> str:
    return (
        f"Copy ptb.train.txt, ptb.valid.txt and ptb.test.txt of Mikolov's simple-examples "
        f"(http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz, data/) into {folder}."
    )


@dataclass(frozen=True)
class Corpus:
    """Word ids of the three splits and the vocabulary (index = id, in order of first appearance)."""

    words: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def split(self, name: str) -> torch.Tensor:
        return getattr(self, name)


def tokenize(path: Path) -> list[str]:
    """The file's words with `<eos>` after each line."""
    out: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            out.extend(line.split())
            out.append(EOS)
    return out


def build_corpus(
    folder: Path, expected_tokens: Mapping[str, int] | None = TOKENS, expected_vocab: int | None = VOCAB_SIZE
) -> Corpus:
    """Tokenise the three files with a vocabulary built from train; verify the published counts."""
    tokens = {split: tokenize(folder / f"ptb.{split}.txt") for split in SPLITS}
    index: dict[str, int] = {}
    for word in tokens["train"]:
        index.setdefault(word, len(index))
    if expected_vocab is not None and len(index) != expected_vocab:
        raise DataError(
            f"PTB in {folder} is corrupt: the training vocabulary has {len(index):,} words, "
            f"expected {expected_vocab:,}. {how_to_get(folder)}"
        )
    ids: dict[str, torch.Tensor] = {}
    for split, words in tokens.items():
        if expected_tokens is not None and len(words) != expected_tokens[split]:
            raise DataError(
                f"PTB file {folder / f'ptb.{split}.txt'} is corrupt: {len(words):,} tokens, expected "
                f"{expected_tokens[split]:,}. {how_to_get(folder)}"
            )
        unknown = sorted({w for w in words if w not in index})
        if unknown:
            raise DataError(
                f"PTB file {folder / f'ptb.{split}.txt'} has {len(unknown)} words outside the training "
                f"vocabulary (e.g. {unknown[0]!r}): not Mikolov's preprocessing. {how_to_get(folder)}"
            )
        ids[split] = torch.tensor([index[w] for w in words], dtype=torch.int64)
    return Corpus(tuple(index), ids["train"], ids["valid"], ids["test"])


def load_ptb(data_dir: Path) -> Corpus:
    folder = Path(data_dir) / "ptb"
    require("PTB", folder, expected_files(), how_to_get(folder))
    return build_corpus(folder)


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) -> (N // batch_size, batch_size): `batch_size` contiguous streams side by side, tail dropped."""
    if batch_size < 1:
        raise UsageError(f"batch size must be positive, got {batch_size}")
    steps = len(stream) // batch_size
    return stream[: steps * batch_size].view(batch_size, steps).t().contiguous()


class BPTTWindows(Dataset):
    """Consecutive (input, target) windows of a batchified stream, each `(seq_len, batch)`, in order."""

    def __init__(self, data: torch.Tensor, bptt: int) -> None:
        if bptt < 1:
            raise UsageError(f"bptt must be positive, got {bptt}")
        self.data, self.bptt = data, bptt

    def __len__(self) -> int:
        return math.ceil((len(self.data) - 1) / self.bptt)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.bptt
        length = min(self.bptt, len(self.data) - 1 - start)
        return self.data[start : start + length], self.data[start + 1 : start + 1 + length]


class PTBDataModule(L.LightningDataModule):
    """Train/valid/test BPTT streams. Order matters (the state flows across windows): never shuffled.

    Batch sizes: `recipe.batch_size` for training, `extra["eval_batch_size"]` (default 10) for
    validation and `extra["test_batch_size"]` (default 1) for test; `extra["bptt"]` (default 35).
    Under `extra["lm_schedule"]: darts` with `variable_bptt` the training windows have drawn lengths
    (`lm_schedule.VariableWindowSampler`, seeded by `seed`). Under DDP the eval streams must not be
    sharded, so evaluate on one device.
    """

    def __init__(self, corpus: Corpus, recipe: TrainRecipe, seed: int = 0) -> None:
        super().__init__()
        self.corpus, self.recipe, self.seed = corpus, recipe, seed
        self.bptt = int(recipe.extra.get("bptt", 35))
        self.batch_sizes = {
            "train": recipe.batch_size,
            "valid": int(recipe.extra.get("eval_batch_size", 10)),
            "test": int(recipe.extra.get("test_batch_size", 1)),
        }

    def _loader(self, split: str) -> DataLoader:
        data = batchify(self.corpus.split(split), self.batch_sizes[split])
        return DataLoader(BPTTWindows(data, self.bptt), batch_size=None, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        from nasrepro.tasks.lm_schedule import StreamWindows, VariableWindowSampler, schedule_of

        schedule = schedule_of(self.recipe)
        if schedule is None or not schedule.variable_bptt:
            return self._loader("train")
        data = batchify(self.corpus.train, self.batch_sizes["train"])
        sampler = VariableWindowSampler(len(data), self.bptt, self.seed, schedule.max_seq_len_delta)
        return DataLoader(StreamWindows(data), batch_size=None, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class LanguageModelModule(L.LightningModule):
    """Truncated-BPTT training of any model with the `forward(tokens, hidden) -> (logits, hidden)` API.

    The state is carried across consecutive windows and detached, reset to `None` (zero state) at
    the start of every epoch of every stage; gradients are clipped to norm `recipe.grad_clip`.
    Logged: `train/loss` (epoch mean), `val/perplexity`, `test/perplexity`, `val/loss`, `test/loss`.
    Perplexity is exp of the token-weighted mean cross-entropy over the whole evaluated stream.
    """

    def __init__(self, model: nn.Module, preset: Preset) -> None:
        super().__init__()
        self.model = model
        self.recipe = preset.recipe
        self._hidden: dict[str, Any] = {}
        # Keys carry a suffix: a bare "train" would clash with `nn.Module.train`.
        self.sums = nn.ModuleDict(
            {
                f"{stage}_{kind}": SumMetric()
                for stage in ("train", "val", "test")
                for kind in ("nll", "tokens")
            }
        )

    def forward(self, tokens: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
        return self.model(tokens, hidden)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, targets = batch
        logits, hidden = self(inputs, self._hidden.get(stage))
        self._hidden[stage] = detach_hidden(hidden)
        return self._cross_entropy(logits, targets, stage)

    def _cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor, stage: str) -> torch.Tensor:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.sums[f"{stage}_nll"].update(loss.detach() * targets.numel())
        self.sums[f"{stage}_tokens"].update(targets.numel())
        return loss

    def _epoch_end(self, stage: str) -> None:
        nll, tokens = self.sums[f"{stage}_nll"], self.sums[f"{stage}_tokens"]
        mean = (nll.compute() / tokens.compute().clamp(min=1)).float()
        self.log(f"{stage}/loss", mean)
        if stage != "train":
            self.log(f"{stage}/perplexity", torch.exp(mean))
        nll.reset()
        tokens.reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        self._hidden.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._hidden.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._hidden.pop("test", None)

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the global gradient norm (Zaremba et al. 2014, Section 4: norm 5), whatever the Trainer says."""
        clip = self.recipe.grad_clip if self.recipe.grad_clip is not None else gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> Any:
        """The recipe's optimiser; with `extra["lr_decay"]`, Zaremba's schedule instead of the recipe's.

        Zaremba et al. (2014), Section 4: constant lr for `lr_decay_start` epochs, then divided by
        `lr_decay` after each further epoch.
        """
        decay = self.recipe.extra.get("lr_decay")
        if decay is None:
            return lightning_optimizers(self, self.model.parameters(), self.recipe)
        start = int(self.recipe.extra.get("lr_decay_start", 0))
        optimizer = build_optimizer(self.model.parameters(), self.recipe)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: float(decay) ** -max(0, epoch + 1 - start)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _presets() -> dict[str, Preset]:
    """`paper`: Zaremba et al. (2014) "medium": SGD lr 1, 39 epochs, lr / 1.2 per epoch after epoch 6,
    gradient norm 5, 35 unrolled steps, batch 20."""
    extra = {"bptt": 35, "lr_decay": 1.2, "lr_decay_start": 6, "eval_batch_size": 10, "test_batch_size": 1,
             "lm_schedule": "plain"}  # fmt: skip
    paper = TrainRecipe(
        epochs=39,
        lr=1.0,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        batch_size=20,
        schedule="constant",
        grad_clip=5.0,
        dropout=0.5,
        extra=extra,
    )
    cpu = paper.replace(
        epochs=4, limit_train_batches=200, extra={**extra, "lr_decay_start": 2, "test_batch_size": 10}
    )
    smoke = cpu.replace(
        epochs=1, limit_train_batches=3, limit_eval_batches=3, extra={**cpu.extra, "bptt": 10}
    )
    return {
        "smoke": Preset(
            "smoke", smoke, 2, "3 training windows of 10 x 20 tokens, 3 windows of val and test: seconds"
        ),
        "cpu": Preset(
            "cpu",
            cpu,
            4,
            "4 epochs truncated to 200 windows each (560k tokens, 0.6 of one real epoch), "
            "lr / 1.2 per epoch after epoch 2; full val and test streams at batch 10: about 8 minutes for the medium LSTM on 2 cores",
        ),
        "paper": Preset(
            "paper",
            paper,
            100,
            "Zaremba et al. 2014 medium: 39 epochs, lr 1 / 1.2 after epoch 6, "
            "clip 5, bptt 35, batch 20; val batch 10, test batch 1",
        ),
    }


class PTBTask(Task):
    """Penn Treebank word-level perplexity (lower is better)."""

    name = "ptb"
    metric = Metric("perplexity", "min")
    vocab_size = VOCAB_SIZE

    def __init__(self) -> None:
        self._presets = _presets()
        self._corpus: dict[Path, Corpus] = {}

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    def corpus(self, data_dir: Path) -> Corpus:
        key = Path(data_dir).expanduser().resolve()
        if key not in self._corpus:
            self._corpus[key] = load_ptb(key)
        return self._corpus[key]

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> PTBDataModule:
        return PTBDataModule(self.corpus(data_dir), preset.recipe, seed)

    def lightning_module(self, model: nn.Module, preset: Preset) -> L.LightningModule:
        """`LanguageModelModule`, or under `extra["lm_schedule"]: darts` its AWD-LSTM/DARTS variant."""
        from nasrepro.tasks.lm_schedule import DartsLanguageModelModule, schedule_of

        if schedule_of(preset.recipe) is None:
            return LanguageModelModule(model, preset)
        return DartsLanguageModelModule(model, preset)

    def check_recipe(self, recipe: TrainRecipe) -> None:
        """Also refuse an unknown `lm_schedule` or settings it would not apply (`lm_schedule.schedule_of`)."""
        from nasrepro.tasks.lm_schedule import schedule_of

        super().check_recipe(recipe)
        schedule_of(recipe)

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        """One window of `bptt` = 35 tokens, time-major; the state defaults to zero (`hidden=None`)."""
        return (torch.randint(0, VOCAB_SIZE, (35, batch_size)),)

    def reference_archs(self) -> Mapping[str, ReferenceArch]:
        small_extra = {
            "bptt": 20,
            "lr_decay": 2.0,
            "lr_decay_start": 4,
            "eval_batch_size": 10,
            "test_batch_size": 1,
            "lm_schedule": "plain",
        }
        return {
            "lstm": ReferenceArch(
                build=lambda task: zaremba_medium(task.vocab_size),
                citation="Zaremba et al. 2014, medium regularised LSTM",
            ),
            # The non-regularised baseline as TensorFlow's ptb_word_lm "small" config trains it: 13 epochs,
            # lr halved per epoch after epoch 4, bptt 20, no dropout.
            "lstm-small": ReferenceArch(
                build=lambda task: zaremba_small(task.vocab_size),
                recipe={"epochs": 13, "dropout": 0.0, "extra": small_extra},
                citation="Zaremba et al. 2014, non-regularised LSTM (TF ptb_word_lm small)",
            ),
        }

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        return [status("PTB", Path(data_dir) / "ptb", expected_files())]


TASKS.add("ptb", PTBTask)
