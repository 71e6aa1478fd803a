"""Planetoid citation graphs (Cora, CiteSeer, PubMed) with the public split of Yang et al. (2016).

Read through `torch_geometric.datasets.Planetoid`. The dataset folder may be read-only, so PyG's
`processed/` files go to the cache: the raw files are linked into `cache/pyg/<Name>/raw/` after
their checksums are verified.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Data

from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.task import DataStatus, Metric, ReferenceArch, Task
from nasrepro.paths import cache_dir, data_dir
from nasrepro.tasks import TASKS
from nasrepro.tasks.datafiles import ExpectedFile, require, status
from nasrepro.tasks.models.gnn import GAT, GCN
from nasrepro.tasks.node_classification import NodeClassificationModule

RAW_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")

#: sha256 of the raw files of kimiyoung/planetoid @ af6abf4 (what PyG downloads).
SHA256: Mapping[str, Mapping[str, str]] = {
    "cora": {
        "allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
        "ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
        "graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
        "test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
        "tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
        "ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
        "x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
        "y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    },
    "citeseer": {
        "allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
        "ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
        "graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
        "test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
        "tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
        "ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
        "x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
        "y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    },
    "pubmed": {
        "allx": "508e538e2abdccdd54c4d3e9f49d638b4af7107d85845f66ddea5a5152658b7e",
        "ally": "0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e",
        "graph": "5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9",
        "test.index": "b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5",
        "tx": "4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d",
        "ty": "ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd",
        "x": "fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33",
        "y": "e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3",
    },
}
FOLDER = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
#: (nodes, features, classes, train, val, test) of the public split
SHAPES = {
    "cora": (2708, 1433, 7, 140, 500, 1000),
    "citeseer": (3327, 3703, 6, 120, 500, 1000),
    "pubmed": (19717, 500, 3, 60, 500, 1000),
}


def expected_files(name: str) -> list[ExpectedFile]:
    return [ExpectedFile(f"raw/ind.{name}.{suffix}", sha256=SHA256[name][suffix]) for suffix in RAW_SUFFIXES]


def how_to_get(name: str, root: Path) -> str:
    return (
        f"Run `nasrepro data download {name} --data-dir {root.parent}` where a network exists, or copy "
        f"the eight raw Planetoid files (github.com/kimiyoung/planetoid, data/) into {root / 'raw'}."
    )


def load_planetoid(name: str, root: Path, normalize: bool = True) -> Data:
    """The verified public-split graph, with row-normalised features (Kipf & Welling's preprocessing)
    or, with `normalize=False`, the raw bag-of-words features NAS-Bench-Graph trains on."""
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    folder = root / FOLDER[name]
    require(FOLDER[name], folder, expected_files(name), how_to_get(name, folder))
    # Link the verified raw files into a writable cache root, since PyG writes processed/ beside raw/.
    work = cache_dir("pyg") / FOLDER[name]
    (work / "raw").mkdir(parents=True, exist_ok=True)
    for suffix in RAW_SUFFIXES:
        link = work / "raw" / f"ind.{name}.{suffix}"
        target = (folder / "raw" / f"ind.{name}.{suffix}").resolve()
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(target, link)
    if (work / "processed").exists() and (work / "raw").stat().st_mtime > (
        work / "processed"
    ).stat().st_mtime:
        # Raw files were re-linked from a different source: processed tensors may be stale.
        for stale in (work / "processed").iterdir():
            stale.unlink()
    transform = NormalizeFeatures() if normalize else None
    dataset = Planetoid(str(work.parent), FOLDER[name], split="public", transform=transform)
    return dataset[0]


class GraphDataModule(L.LightningDataModule):
    """Serves the whole graph as the single batch of every epoch and every stage."""

    def __init__(self, data: Data) -> None:
        super().__init__()
        self.data = data

    def _loader(self) -> DataLoader:
        return DataLoader([self.data], batch_size=None, collate_fn=lambda item: item)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    val_dataloader = test_dataloader = train_dataloader


def _presets() -> dict[str, Preset]:
    """Kipf & Welling (2017) Section 5.2: Adam 0.01, weight decay 5e-4, dropout 0.5, 200 epochs.

    Full-batch training of a 2-layer GNN on Cora takes seconds on a CPU, so `cpu` is the paper setting.
    `smoke` proves that every code path runs (two epochs: an epoch boundary, then the final
    validation and test), not that anything learns: a searched child can be a 256-wide
    NAS-Bench-Graph DAG at about 0.2 s per full-batch epoch on two cores, which 100 epochs made
    half a minute per query. Its epoch count wins over a space's recipe (`with_overrides`).
    """
    paper = TrainRecipe(
        epochs=200, lr=0.01, optimizer="adam", weight_decay=5e-4, schedule="constant", dropout=0.5
    )
    # Search budgets (unique architectures trained): a live search trains every query for hundreds
    # of full-batch epochs, so the cpu preset keeps it to an hour on two cores.
    return {
        "smoke": Preset(
            "smoke", paper.replace(epochs=2), 3, "2 epochs, full graph, 3 architectures: seconds, no accuracy"
        ),
        "cpu": Preset(
            "cpu", paper, 20, "the paper recipe (200 full-batch epochs), which is CPU-cheap; 20 architectures"
        ),
        "paper": Preset("paper", paper, 500, "Kipf & Welling 2017 Section 5.2; 500 architectures"),
    }


class PlanetoidTask(Task):
    """Transductive node classification on the public Planetoid split (accuracy on 1,000 test nodes)."""

    metric = Metric("accuracy", "max")
    default_space = "nasbench-graph"
    node_features = True

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.name = dataset
        self._presets = _presets()
        self._data: dict[tuple[Path, bool], Data] = {}

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    def data(self, root: Path | None = None, normalize: bool = True) -> Data:
        root = data_dir(root)
        if (root, normalize) not in self._data:
            self._data[root, normalize] = load_planetoid(self.dataset, root, normalize)
        return self._data[root, normalize]

    @property
    def num_features(self) -> int:
        return SHAPES[self.dataset][1]

    @property
    def num_classes(self) -> int:
        return SHAPES[self.dataset][2]

    def datamodule(self, preset: Preset, data_dir: Path, seed: int) -> L.LightningDataModule:
        return GraphDataModule(self.data(data_dir, preset.recipe.normalize_features))

    def lightning_module(self, model: torch.nn.Module, preset: Preset) -> L.LightningModule:
        return NodeClassificationModule(model, preset)

    def example_input(self, batch_size: int = 1) -> tuple[Any, ...]:
        data = self.data()
        return (data.x, data.edge_index)

    def reference_archs(self) -> Mapping[str, ReferenceArch]:
        return {
            "gcn": ReferenceArch(
                build=lambda task: GCN(task.num_features, task.num_classes),
                citation="Kipf & Welling, ICLR 2017",
            ),
            "gat": ReferenceArch(
                build=lambda task: GAT(task.num_features, task.num_classes),
                # Veličković et al. 2018, Section 3.3: Adam lr 0.005, L2 5e-4 (Cora/CiteSeer).
                recipe={"lr": 0.005, "weight_decay": 5e-4, "dropout": 0.6},
                citation="Veličković et al., ICLR 2018",
            ),
        }

    def check_data(self, data_dir: Path) -> list[DataStatus]:
        folder = data_dir / FOLDER[self.dataset]
        return [status(FOLDER[self.dataset], folder, expected_files(self.dataset))]


for _name in FOLDER:
    TASKS.add(_name, lambda _name=_name: PlanetoidTask(_name))
