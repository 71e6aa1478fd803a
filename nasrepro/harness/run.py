"""The run context (DESIGN.md, "Method"): everything a search may read, built once per seed.

The orchestration layer (`nasrepro.app`) resolves every name -- task, space, preset, data folder,
executor -- and hands the method one frozen `Run`. Methods read from it and never attach state
to harness objects, so a method cannot depend on how the runner happens to be written, and a
new method needs nothing but this object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrepro.harness.evaluator import Evaluator
from nasrepro.harness.recipe import Preset
from nasrepro.harness.space import Space
from nasrepro.harness.task import Task

if TYPE_CHECKING:
    import lightning as L

    from nasrepro.harness.executors.base import Executor


@dataclass(frozen=True)
class TrainerFactory:
    """Builds the Lightning `Trainer`s a method fits its own modules with (supernets, controllers).

    Devices, nodes, strategy and accelerator come from the command line once; `deterministic`
    defaults to on for reproducible CPU runs and is recorded (cuDNN is slower with it on a GPU).
    Any Trainer argument may be overridden per call.
    """

    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    deterministic: bool = True

    def __call__(self, **overrides: Any) -> L.Trainer:
        import lightning as L

        from nasrepro.harness.quiet import quiet_lightning

        quiet_lightning()  # importing Lightning after an earlier call set its logger back to INFO
        settings: dict[str, Any] = {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": self.strategy,
            "deterministic": self.deterministic,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "num_sanity_val_steps": 0,
        }
        settings.update(overrides)
        return L.Trainer(**settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": self.strategy,
            "deterministic": self.deterministic,
        }


def _no_checkpoint() -> None:
    """The checkpoint hook of a run that keeps no checkpoint (library use, tests)."""


@dataclass(frozen=True)
class Run:
    """One seed of one search, fully resolved.

    `artifacts_dir` is the method's own folder for state too costly to replay (a supernet's epoch
    checkpoint, weights kept for sharing): it survives an interruption and is cleared by the runner
    when the run starts afresh, so whatever a method finds there is this run's own. `resumed` says
    whether an earlier attempt's state was loaded; `elapsed_before` is that attempt's wall time.
    `save_checkpoint()` writes the search checkpoint now (e.g. at the end of a supernet epoch, so
    that the query history and the method's artifacts are saved together).
    """

    task: Task
    space: Space
    budget: int
    evaluator: Evaluator
    seed: int
    preset: Preset
    preset_name: str
    data_dir: Path
    artifacts_dir: Path
    trainer: TrainerFactory = field(default_factory=TrainerFactory)
    executor: Executor | None = None
    logger: Any = None
    resumed: bool = False
    elapsed_before: float = 0.0
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    save_checkpoint: Callable[[], None] = _no_checkpoint
    quiet: bool = True

    def rng(self, stream: int = 0) -> np.random.Generator:
        """The run's random stream number `stream` (independent streams from one seed)."""
        return np.random.default_rng([self.seed, stream]) if stream else np.random.default_rng(self.seed)


def run_of(
    evaluator: Evaluator,
    seed: int = 0,
    *,
    budget: int | None = None,
    preset_name: str = "cpu",
    data_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    **fields: Any,
) -> Run:
    """A `Run` around an evaluator built by hand (library use, tests, notebooks).

    The command line builds runs through `nasrepro.app`; this gives a method the same context
    without the runner: the budget is the evaluator's, the preset the task's `preset_name` (or the
    evaluator's own resolved preset when it trains), and without `artifacts_dir` the method keeps no
    state on disk beyond a temporary folder.
    """
    import tempfile

    from nasrepro.paths import data_dir as default_data_dir

    preset = getattr(evaluator, "preset", None) or evaluator.task.preset(preset_name)
    return Run(
        task=evaluator.task,
        space=evaluator.space,
        budget=budget if budget is not None else int(evaluator.budget or 0),
        evaluator=evaluator,
        seed=seed,
        preset=preset,
        preset_name=preset_name,
        data_dir=data_dir if data_dir is not None else default_data_dir(None),
        artifacts_dir=artifacts_dir
        if artifacts_dir is not None
        else Path(tempfile.mkdtemp(prefix="nasrepro-")),
        **fields,
    )
