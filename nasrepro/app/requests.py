"""Requests: everything that defines one run, as plain names and values (stored in each record)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nasrepro.errors import UsageError

Reward = Literal["val", "test"]
WandbMode = Literal["offline", "online", "disabled"]


@dataclass
class SearchRequest:
    """Everything that defines one search run (all of it is stored in the record's `config`)."""

    method: str
    task: str
    seed: int = 0
    budget: int | None = None
    preset: str = "cpu"
    reward: Reward = "val"
    space: str | None = None
    method_config: dict[str, Any] = field(default_factory=dict)
    out: Path = Path("results")
    data_dir: Path | None = None
    wandb: WandbMode = "offline"
    measure: bool = True
    resume: bool = False
    checkpoint_seconds: float = 5.0
    #: where a train task's evaluations run: `local` (in-process) or `ray`
    executor: str = "local"
    #: evaluations in flight at once, on any executor
    workers: int = 1
    #: names a variant (another space, method options) so its records neither overwrite nor mix with
    #: the method's default runs; it appears in file names and leaderboard rows
    tag: str = ""
    #: deterministic kernels in the method's own fits (supernets, controllers): on by default for
    #: reproducible CPU runs; off is faster with cuDNN on a GPU. Recorded in every record's config.
    deterministic: bool = True
    #: print progress (a bar on a terminal, a line per query otherwise)
    progress: bool = False

    def to_config(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["out"] = str(self.out)
        out["data_dir"] = None  # machine-specific; not part of what defines the run
        out.pop("progress")  # how the run is shown, not what it computes
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed by this request."""
        keep = ("method", "task", "seed", "budget", "preset", "reward", "space", "method_config", "tag")
        return {k: v for k, v in self.to_config().items() if k in keep}


@dataclass
class EvaluateRequest:
    """Train one architecture from scratch under a task's protocol."""

    task: str
    arch: str
    preset: str = "cpu"
    seed: int = 0
    out: Path = Path("results")
    data_dir: Path | None = None
    wandb: WandbMode = "offline"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    #: the space `arch` belongs to (default: the task's); ignored for reference architectures
    space: str | None = None
    #: names a retraining study (e.g. the best architecture a method found): its records join the
    #: leaderboard as "<tag> (trained)" rows, untagged searched architectures stay diagnostics
    tag: str = ""

    def to_config(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["out"] = str(self.out)
        out["data_dir"] = None
        return out


def check_tag(tag: str) -> None:
    """A variant tag becomes part of file names: keep it to a safe alphabet."""
    if tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*", tag):
        raise UsageError(f"--tag {tag!r}: use letters, digits and _ . = + - (it becomes part of file names)")
