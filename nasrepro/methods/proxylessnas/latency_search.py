"""The one latency path of a ProxylessNAS search: build or load the table, check it, record both.

Sec. 3.3.1 makes latency differentiable through a per-op table F(o_j). A search with ``cost:
latency`` gets its table here and nowhere else:

* a table file (``latency_table``): a JSON table written by ``build-lut``, or the authors' released
  YAML format (``mobile_trim.yaml``: key -> {mean, var, count}; `read_released_lut`);
* otherwise the table is built by `latency_lut.build_lut` -- the code behind ``nasrepro proxylessnas
  build-lut`` -- on the *trainer's* device (`trainer_device`: the run's accelerator, so a GPU run
  measures CUDA latency) with the process's thread count (the trainer's thread setting), at the
  requested batch (1 for CPU/mobile; 8 for the paper's GPU row) and build-lut's warm-up, repeats and
  rounds. Then `lut_check.check_lut` -- the code behind ``check-lut`` -- measures ``check_n`` random
  standalone networks the same way and compares them with the table's sums.

The table's settings (`LatencyTable.meta`) and the check's summary go into the search record
(`SearchLatency.record`), so a reader knows what "ms" meant in that run and how well the additive
model held on that machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasrepro.errors import DataError, UsageError
from nasrepro.methods.proxylessnas.cost import LatencyTable
from nasrepro.methods.proxylessnas.latency_lut import build_lut, check_device
from nasrepro.methods.proxylessnas.lut_check import check_lut
from nasrepro.methods.proxylessnas.spaces import ProxylessSpace

#: Lightning accelerator names -> torch device type (the LUT is measured where the supernet trains)
ACCELERATOR_DEVICES = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}


def trainer_device(accelerator: str) -> torch.device:
    """The device a Trainer with `accelerator` trains on: ``auto`` is CUDA when available, else CPU.

    The supernet fit is one process on one device (`search.py`), so its first device is the device.
    Accelerators the LUT cannot be measured on (mps, tpu, ...) are a `UsageError` for a latency search.
    """
    name = str(accelerator).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ACCELERATOR_DEVICES:
        raise UsageError(
            f"a latency search measures its table on the trainer's device; accelerator {accelerator!r} is "
            f"not supported (use cpu or gpu), or pass a prebuilt table with latency_table"
        )
    return check_device(ACCELERATOR_DEVICES[name])


def read_released_lut(path: str | Path) -> LatencyTable:
    """The authors' released latency table format (YAML, ``key: {mean: ms, var: ..., count: n}``, keys as
    `cost.latency_key`), e.g. ``mobile_trim.yaml`` from the ProxylessNAS release; the mean is kept."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(f"released latency table {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DataError(f"{path} is not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a ProxylessNAS latency table: expected key -> {{mean, var, count}}")
    table = LatencyTable.from_released_lut(data, source=str(path))
    table.meta.update(device="released table (see its source)", file_format="released-yaml")
    return table


def load_table(path: str | Path) -> LatencyTable:
    """A table file: the released YAML format by suffix, else build-lut's JSON."""
    if str(path).endswith((".yaml", ".yml")):
        return read_released_lut(path)
    return LatencyTable.load(path)


@dataclass(frozen=True)
class LatencySettings:
    """How a search gets its table (the ``latency_*`` options of `search.ProxylessConfig`)."""

    table: str | None = None
    device: str | None = None  # None: the trainer's
    batch_size: int = 1
    warmup: int = 10
    repeats: int = 100
    rounds: int = 3
    check_n: int = 20

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.warmup < 0 or self.repeats < 1 or self.rounds < 1 or self.check_n < 0:
            raise UsageError(
                "latency options need batch_size >= 1, warmup >= 0, repeats >= 1, rounds >= 1, check_n >= 0; "
                f"got {self.batch_size}, {self.warmup}, {self.repeats}, {self.rounds}, {self.check_n}"
            )


@dataclass
class SearchLatency:
    """The table a search uses, and what goes into its record."""

    table: LatencyTable
    check: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """The table's settings (its `meta`, no entries) and the check's summary and settings."""
        return {
            "settings": dict(self.table.meta),
            "entries": len(self.table),
            "check": None if self.check is None else {k: self.check[k] for k in ("summary", "settings")},
        }


def search_latency(
    space: ProxylessSpace, settings: LatencySettings, accelerator: str, num_classes: int
) -> SearchLatency:
    """Load `settings.table`, or build the table for `space` on the trainer's device and check it.

    A loaded table is used as it is (a released or earlier-built table says in its `meta` where it was
    measured); a built one is `build_lut` at the process's thread count, followed by `check_lut` on
    `check_n` networks (0: no check).
    """
    if settings.table is not None:
        return SearchLatency(load_table(settings.table))
    device = check_device(settings.device) if settings.device else trainer_device(accelerator)
    threads = torch.get_num_threads()
    table = build_lut(
        space,
        device,
        batch_size=settings.batch_size,
        warmup=settings.warmup,
        repeats=settings.repeats,
        num_classes=num_classes,
        num_threads=threads,
        rounds=settings.rounds,
    )
    table.meta["built_by"] = "proxylessnas search (latency_lut.build_lut, the code of build-lut)"
    check = None
    if settings.check_n > 0:
        check = check_lut(space, table, n=max(settings.check_n, 2), seed=0, device=device)
    return SearchLatency(table, check)
