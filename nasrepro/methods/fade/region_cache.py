"""Finished region trainings of one search, kept so that a resumed search does not train them again.

A region training is the expensive part of a FaDE step (minutes at cpu scale, hours at paper), and
it is deterministic given the step (`training.RegionTrainer` seeds every fit from the run's seed
and the step), so an interrupted search could replay it exactly by training again, which is what
it did. This cache makes the replay free: after each fit the step's FaDE-ranks and report are
written atomically to ``regions.json`` in the run's artifacts folder (cleared by the runner when a
run starts afresh, kept across an interruption). A cached step is reused only if its region --
every stage's candidate units -- is the one the resumed search proposes at that step; anything else
means the search diverged, which is an error rather than a silent retrain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import NasreproError

FILE = "regions.json"


class RegionCache:
    """Step -> (region, FaDE-ranks, report, seconds) of the fits this run has finished."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILE
        self._steps: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._steps = json.loads(self.path.read_text())

    def get(
        self, step: int, region: list[list[str]]
    ) -> tuple[list[list[float]], dict[str, Any], float] | None:
        """The cached fit of `step`, or None if this run has not finished it."""
        entry = self._steps.get(str(step))
        if entry is None:
            return None
        if entry["region"] != region:
            raise NasreproError(
                f"resumed fade search diverged at step {step}: its region differs from the one the "
                f"interrupted run trained ({self.path}); delete the checkpoint to restart this seed"
            )
        return entry["ranks"], entry["report"], float(entry["seconds"])

    def put(
        self,
        step: int,
        region: list[list[str]],
        ranks: list[list[float]],
        report: dict[str, Any],
        seconds: float,
    ) -> None:
        self._steps[str(step)] = {"region": region, "ranks": ranks, "report": report, "seconds": seconds}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self._steps, allow_nan=False))
