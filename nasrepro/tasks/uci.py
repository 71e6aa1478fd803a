"""UCI regression tasks of NASBOT's MLP experiments (Kandasamy et al. 2018, Sec. 5 and App. C):
``uci/naval``, ``uci/protein``, ``uci/indoor``, ``uci/blog`` on the real data under
``$NASREPRO_DATA/uci/`` (see its README), plus ``uci/slice`` and ``uci/news``, which that folder
lacks: they fail with one line naming where to get them.

Protocol (App. C, [UNVERIFIED] in the fact sheet): one fixed random 0.6 / 0.2 / 0.2 split of all
rows (seeded by the dataset name, never by the search seed), features and targets standardised
with the training split's mean and standard deviation (so a constant predictor scores MSE ~ 1),
metric = test MSE on the standardised targets, lower is better. Targets: naval = GT compressor
decay kMc (column 16), protein = RMSD, blog = comments in the next 24 h (column 280), indoor =
longitude and latitude (2 outputs, MSE averaged; interpretation: the paper does not say which).
Indoor's "not detected" RSSI 100 becomes -110 dBm, below every real reading.

Presets: ``paper`` = the code's MLP training (Adam, batch 256, 200 x 100 = 20K iterations at lr
1e-5); ``cpu`` = 5 x 100 = 500 iterations at lr 1e-3 (CPU scale); ``smoke`` = one short epoch on
512 rows. The search space is NASBOT's ``nasbot-mlp`` (registered by `nasrepro.methods.nasbot`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.errors import DataError
from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.task import DataStatus, Metric, Task
from nasrepro.paths import data_dir as default_data_dir
from nasrepro.tasks import TASKS
from nasrepro.tasks.datafiles import ExpectedFile, read_sha256sums, require, status

if TYPE_CHECKING:
    import lightning as L
    import torch

SPLIT = (0.6, 0.2, 0.2)
NOT_DETECTED_RSSI, NOT_DETECTED_AS = 100.0, -110.0
HOW_TO_GET = (
    "Get the UCI files as described in the datasets README (section 'UCI regression sets') and put "
    "them, with their SHA256SUMS, in this folder"
)


@dataclass(frozen=True)
class UCISpec:
    name: str
    folder: str
    files: tuple[str, ...]
    num_features: int
    num_outputs: int
    rows: int
    source: str = ""


SPECS: dict[str, UCISpec] = {
    "naval": UCISpec("naval", "naval-propulsion-plant", ("data.txt",), 16, 1, 11_934),
    "protein": UCISpec("protein", "protein-tertiary-structure", ("data.txt",), 9, 1, 45_730),
    "indoor": UCISpec("indoor", "indoor-location", ("UJIIndoorLoc.zip",), 520, 2, 21_048),
    "blog": UCISpec("blog", "blog-feedback", ("BlogFeedback.zip",), 280, 1, 60_021),
}
MISSING: dict[str, tuple[str, str]] = {
    "slice": (
        "slice-localisation",
        "UCI 'Relative location of CT slices on axial axis' (slice_localization_data.csv, 53,500 x 386): "
        "https://archive.ics.uci.edu/dataset/206",
    ),
    "news": (
        "online-news-popularity",
        "UCI 'Online News Popularity' (OnlineNewsPopularity.csv, 39,644 x 61): https://archive.ics.uci.edu/dataset/332",
    ),
}


def _expected(spec: UCISpec, root: Path) -> list[ExpectedFile]:
    sums_path = root / "SHA256SUMS"
    sums = read_sha256sums(sums_path) if sums_path.is_file() else {}
    return [ExpectedFile(f, sha256=sums.get(f)) for f in spec.files] + [ExpectedFile("SHA256SUMS")]


def _fail(path: Path, what: str) -> DataError:
    return DataError(f"UCI file {path}: {what}. {HOW_TO_GET}")


def _read_rows(spec: UCISpec, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, targets) of every row, as float64, after checking the checksums and shapes."""
    require(f"UCI {spec.name}", root, _expected(spec, root), HOW_TO_GET)
    path = root / spec.files[0]
    if spec.name in ("naval", "protein"):
        data = np.loadtxt(path)
        width = spec.num_features + (2 if spec.name == "naval" else 1)
        if data.ndim != 2 or data.shape != (spec.rows, width):
            raise _fail(path, f"expected {spec.rows} rows x {width} columns, found shape {data.shape}")
        return data[:, : spec.num_features], data[:, [spec.num_features]]
    import pandas as pd

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if spec.name == "indoor":
            parts = [n for n in names if n.endswith(("trainingData.csv", "validationData.csv"))]
            frames = [pd.read_csv(io.BytesIO(archive.read(n))) for n in sorted(parts)]
        else:
            parts = sorted(
                n for n in names if n.endswith(".csv") and n.split("/")[-1].startswith("blogData_")
            )
            frames = [pd.read_csv(io.BytesIO(archive.read(n)), header=None) for n in parts]
    if not frames:
        raise _fail(path, "holds none of the expected CSV files")
    frame = pd.concat(frames, ignore_index=True)
    if spec.name == "indoor":
        waps = [c for c in frame.columns if str(c).startswith("WAP")]
        if len(waps) != spec.num_features or len(frame) != spec.rows or "LATITUDE" not in frame:
            raise _fail(
                path, f"expected {spec.rows} rows with 520 WAP columns, found {len(frame)} x {len(waps)}"
            )
        x = frame[waps].to_numpy(dtype=np.float64)
        x[x == NOT_DETECTED_RSSI] = NOT_DETECTED_AS
        return x, frame[["LONGITUDE", "LATITUDE"]].to_numpy(dtype=np.float64)
    values = frame.to_numpy(dtype=np.float64)
    if values.shape != (spec.rows, spec.num_features + 1):
        raise _fail(
            path, f"expected {spec.rows} rows x {spec.num_features + 1} columns, found {values.shape}"
        )
    return values[:, : spec.num_features], values[:, [spec.num_features]]


@dataclass(frozen=True)
class UCIData:
    """Standardised splits: x/y per split name ('train', 'val', 'test')."""

    x: Mapping[str, np.ndarray]
    y: Mapping[str, np.ndarray]


_CACHE: dict[tuple[str, Path], UCIData] = {}


def load(spec: UCISpec, root: Path) -> UCIData:
    """The fixed split of `spec`'s rows, standardised with the training split's statistics."""
    key = (spec.name, root)
    if key not in _CACHE:
        x, y = _read_rows(spec, root)
        seed = int.from_bytes(spec.name.encode(), "little") % (2**32)
        order = np.random.default_rng(seed).permutation(len(x))
        n_train, n_val = round(SPLIT[0] * len(x)), round(SPLIT[1] * len(x))
        index = {
            "train": order[:n_train],
            "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :],
        }
        mean_x, std_x = x[index["train"]].mean(0), x[index["train"]].std(0)
        mean_y, std_y = y[index["train"]].mean(0), y[index["train"]].std(0)
        # constant columns (naval's T1, P1) stay 0 after centring; round-off leaves them a std of
        # ~1e-16, which must not be divided by
        std_x[std_x <= 1e-9 * (np.abs(mean_x) + 1)] = 1.0
        std_y[std_y <= 1e-9 * (np.abs(mean_y) + 1)] = 1.0
        _CACHE[key] = UCIData(
            x={k: ((x[v] - mean_x) / std_x).astype(np.float32) for k, v in index.items()},
            y={k: ((y[v] - mean_y) / std_y).astype(np.float32) for k, v in index.items()},
        )
    return _CACHE[key]


def _presets() -> dict[str, Preset]:
    paper = TrainRecipe(
        epochs=200, lr=1e-5, optimizer="adam", batch_size=256, schedule="constant", limit_train_batches=100
    )
    cpu = paper.replace(epochs=5, lr=1e-3)
    smoke = cpu.replace(epochs=1, train_subset=512, limit_train_batches=2)
    return {
        "smoke": Preset("smoke", smoke, 4, "2 batches on 512 rows, 4 architectures: seconds, no accuracy"),
        "cpu": Preset("cpu", cpu, 20, "500 Adam iterations at lr 1e-3 (CPU scale), 20 architectures"),
        "paper": Preset(
            "paper", paper, 100, "the code's 20K iterations at lr 1e-5, batch 256; ~100 networks"
        ),
    }


class UCITask(Task):
    """MLP regression on one UCI set; test MSE on standardised targets."""

    metric = Metric("mse", "min")
    default_space = "nasbot-mlp"

    def __init__(self, spec: UCISpec) -> None:
        self.spec = spec
        self.name = f"uci/{spec.name}"
        self._presets = _presets()

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    @property
    def num_features(self) -> int:
        return self.spec.num_features

    @property
    def num_outputs(self) -> int:
        return self.spec.num_outputs

    def folder(self, root: Path | None) -> Path:
        return default_data_dir(root) / "uci" / self.spec.folder

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        import torch

        return (torch.zeros(batch_size, self.num_features),)

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        root = self.folder(data_dir)
        return [status(f"uci/{self.spec.folder}", root, _expected(self.spec, root))]

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> L.LightningDataModule:
        return _datamodule(load(self.spec, self.folder(data_dir)), preset, seed)

    def lightning_module(self, model: torch.nn.Module, preset: Preset) -> L.LightningModule:
        return _regression_module(model, preset)


class MissingUCITask(UCITask):
    """A set of the paper that the shared data folder lacks: every use is one clear `DataError`."""

    def __init__(self, name: str, folder: str, where: str) -> None:
        super().__init__(UCISpec(name, folder, (), 1, 1, 0))
        self.where = where

    def _error(self, root: Path | None) -> DataError:
        return DataError(
            f"UCI {self.spec.name} is not in the shared data ({self.folder(root)} is missing); "
            f"get {self.where}, and add a loader for it"
        )

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        return [
            DataStatus(
                f"uci/{self.spec.folder}", "missing", str(self.folder(data_dir)), str(self._error(data_dir))
            )
        ]

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> L.LightningDataModule:
        raise self._error(data_dir)


def _datamodule(data: UCIData, preset: Preset, seed: int) -> L.LightningDataModule:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    recipe = preset.recipe

    def dataset(split: str) -> TensorDataset:
        x, y = data.x[split], data.y[split]
        if split == "train" and recipe.train_subset is not None:
            x, y = x[: recipe.train_subset], y[: recipe.train_subset]
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    class Data(L.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            gen = torch.Generator().manual_seed(seed)
            return DataLoader(dataset("train"), batch_size=recipe.batch_size, shuffle=True, generator=gen)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(dataset("val"), batch_size=4096)

        def test_dataloader(self) -> DataLoader:
            return DataLoader(dataset("test"), batch_size=4096)

    return Data()


def _regression_module(model: torch.nn.Module, preset: Preset) -> L.LightningModule:
    """Mean-squared-error training; logs `train/loss`, `val/mse`, `test/mse` (sample-weighted)."""
    import lightning as L
    import torch.nn.functional as F
    from torch import nn
    from torchmetrics import MeanMetric

    from nasrepro.harness.recipe import lightning_optimizers

    class Regression(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.recipe = preset.recipe
            self.train_loss = MeanMetric()
            self.mse = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

        def forward(self, x: Any) -> Any:
            out = self.model(x)
            return out if out.dim() == 2 else out.unsqueeze(-1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = F.mse_loss(self(x), y)
            self.train_loss.update(loss.detach(), weight=len(y))
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, batch_size=len(y))
            return loss

        def _evaluate(self, batch: Any, stage: str) -> None:
            x, y = batch
            self.mse[stage].update(((self(x) - y) ** 2).mean(dim=1))
            self.log(f"{stage}/mse", self.mse[stage], on_step=False, on_epoch=True, batch_size=len(y))

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self._evaluate(batch, "val")

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self._evaluate(batch, "test")

        def configure_optimizers(self) -> Any:
            return lightning_optimizers(self, self.model.parameters(), self.recipe)

    return Regression()


for _spec in SPECS.values():
    TASKS.add(f"uci/{_spec.name}", lambda _spec=_spec: UCITask(_spec))
for _name, (_folder, _where) in MISSING.items():
    TASKS.add(
        f"uci/{_name}",
        lambda _name=_name, _folder=_folder, _where=_where: MissingUCITask(_name, _folder, _where),
    )
