"""`nasrepro data download NAME`: fetch a standard distribution into the data folder.

Downloads happen only when asked for, never implicitly inside a search, so an offline machine
never waits on a network; a failed download is one clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nasrepro.errors import DataError
from nasrepro.registry import Registry

DOWNLOADS: Registry[Callable[[Path], str]] = Registry("downloadable dataset")


def _planetoid(name: str) -> Callable[[Path], str]:
    def fetch(root: Path) -> str:
        from torch_geometric.data import download_url
        from torch_geometric.datasets import Planetoid

        from nasrepro.tasks.planetoid import FOLDER

        folder = root / FOLDER[name]
        # PyG's class owns the canonical URL (github.com/kimiyoung/planetoid, data/).
        for suffix in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"):
            download_url(f"{Planetoid.url}/ind.{name}.{suffix}", str(folder / "raw"), log=False)
        return f"downloaded {FOLDER[name]} to {folder / 'raw'}"

    return fetch


def _cifar10(root: Path) -> str:
    from nasrepro.tasks.cifar10 import download_cifar10

    download_cifar10(root / "cifar10")
    return f"downloaded CIFAR-10 (python pickles) to {root / 'cifar10'}"


for _name in ("cora", "citeseer", "pubmed"):
    DOWNLOADS.add(_name, _planetoid(_name))
DOWNLOADS.add("cifar10", _cifar10)


def download(name: str, root: Path) -> str:
    fetch = DOWNLOADS.get(name)
    try:
        return fetch(root)
    except OSError as err:  # URLError is an OSError
        raise DataError(
            f"downloading {name} into {root} failed ({err}); check the network or copy the files by hand"
        ) from None
