"""Progress of a running search: queries done of the budget, the incumbent, elapsed and remaining time.

A live search at the cpu preset runs for an hour; without this it prints nothing until it ends. On
a terminal the line is a `tqdm` bar (Lightning already depends on tqdm); elsewhere (CI logs, files)
one plain line per query, so a log shows how far a run got. It is an evaluator listener: it sees
each newly booked query and nothing else, so it cannot change what the search computes.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

from nasrepro.harness.evaluator import Evaluator, Query


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SearchProgress:
    """Reports each new query of one seed's search to `stream` (stderr by default)."""

    def __init__(
        self, label: str, budget: int, stream: IO[str] | None = None, tty: bool | None = None
    ) -> None:
        self.label, self.budget = label, budget
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._start = time.monotonic()
        self._bar: Any = None

    def status(self, evaluator: Evaluator) -> str:
        """`best 78.31 | 0:12 elapsed, ~0:40 left` for the evaluator's state now."""
        done = evaluator.n_queries
        elapsed = time.monotonic() - self._start
        left = elapsed / done * (self.budget - done) if done else math.inf
        ok = [q for q in evaluator.history if q.status == "ok" and q.score is not None]
        best = f"{evaluator.best().score:.2f}" if ok else "-"
        return f"best {best} | {_clock(elapsed)} elapsed, ~{_clock(left)} left"

    def __call__(self, evaluator: Evaluator, query: Query) -> None:
        done = evaluator.n_queries
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.budget, desc=self.label, file=self.stream, leave=False)
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix_str(self.status(evaluator), refresh=True)
            if done >= self.budget:
                self.close()
            return
        score = "failed" if query.score is None else f"{query.score:.2f}"
        print(
            f"{self.label}: query {done}/{self.budget} {score} | {self.status(evaluator)}", file=self.stream
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
