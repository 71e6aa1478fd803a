"""Resumable searches by deterministic replay.

A search's whole state is a deterministic function of (request, seed, the answers it received).
So the checkpoint stores the answers -- the evaluator's query history -- atomically, every few
seconds; `--resume` re-runs the method from its seed while the evaluator answers every query
it already answered from the checkpoint, at no cost and without evaluating again. The method's
RNG streams, population, controller or surrogate then pass through exactly the states they had,
and the search continues from the first unanswered query: no finished evaluation is lost or
repeated, and the final record equals an uninterrupted run's. A method whose replay asks for a
different architecture than the checkpoint recorded has diverged, which is reported, never
silently mixed. Methods with state too costly to rebuild (a trained supernet) additionally keep
Lightning checkpoints in `artifacts_dir`.

An asynchronous search (`Evaluator.submit` / `wait_any`) also has evaluations in flight when it is
killed. The checkpoint records their keys (``in_flight``): the replayed method submits them again,
they are evaluated once more (their first attempt died with the process) and nothing the
checkpoint answered is evaluated again; the history keeps the order answers arrived in, and the replay hands them back in
that order, so a search whose completion order was not deterministic (Ray) resumes exactly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import DataError, UsageError
from nasrepro.harness.evaluator import Evaluator, Query

FORMAT = 1


class SearchCheckpoint:
    """The on-disk state of one unfinished search (a JSON file beside its future record)."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], every_seconds: float = 5.0) -> None:
        self.path, self.fingerprint, self.every_seconds = path, fingerprint, every_seconds
        self._last_save = time.monotonic()
        self.elapsed_before = 0.0  # wall seconds spent by earlier, interrupted attempts
        self.resumed = False  # True once `load()` has read an earlier attempt's state
        self.in_flight: list[str] = []  # keys the earlier attempt had submitted, not received
        self._started = time.monotonic()

    @property
    def artifacts_dir(self) -> Path:
        return self.path.with_suffix(".artifacts")

    def load(self) -> list[Query]:
        """The answered queries of an interrupted run (empty when there is none)."""
        if not self.path.exists():
            return []
        try:
            state = json.loads(self.path.read_text())
            queries = [Query(**q) for q in state["history"]]
            in_flight = [str(key) for key in state.get("in_flight", [])]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(
                f"checkpoint {self.path} is corrupt ({err}); delete it to restart this seed"
            ) from None
        if state.get("format") != FORMAT:
            raise DataError(
                f"checkpoint {self.path} has format {state.get('format')}, expected {FORMAT}; delete it"
            )
        if state["fingerprint"] != self.fingerprint:
            changed = sorted(
                k
                for k in {**state["fingerprint"], **self.fingerprint}
                if state["fingerprint"].get(k) != self.fingerprint.get(k)
            )
            raise UsageError(
                f"checkpoint {self.path} belongs to a run with different {', '.join(changed)}; "
                f"rerun with the same options to continue it, or delete {self.path.name} (and the run's "
                "artifacts beside it) to start over with the new ones"
            )
        self.elapsed_before = float(state.get("wall_seconds", 0.0))
        self.resumed = True
        self.in_flight = in_flight
        return queries

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self._started

    def save(self, evaluator: Evaluator) -> None:
        state = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "wall_seconds": self.elapsed(),
            "history": [q.to_dict() for q in evaluator.history],
            "in_flight": evaluator.in_flight,
        }
        atomic_write_text(self.path, json.dumps(state, allow_nan=False))
        self._last_save = time.monotonic()

    def maybe_save(self, evaluator: Evaluator) -> None:
        if time.monotonic() - self._last_save >= self.every_seconds:
            self.save(evaluator)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.artifacts_dir.is_dir():
            import shutil

            shutil.rmtree(self.artifacts_dir)
