"""Comparisons at equal wall time, for searches that train what they evaluate.

Equal numbers of evaluations hide a method's own compute: NASBOT's GP fits and acquisition
optimisation, a controller's updates. NASBOT's paper compares methods at equal wall-clock time
(Kandasamy et al. 2018, Sec. 5; fact sheet `nasbot.md`), so on live tasks the leaderboard also
cuts every search at one time T and compares the incumbents there. The time axis is each query's
``elapsed_seconds``: the search's own clock when the answer was booked, evaluations and the
method's overhead together, earlier interrupted attempts included.

T for a row is the shortest whole search among its seeds and random search's seeds at the same
budget (`cutoff`), so every seed has run at least that long and none is extrapolated. A seed's
value at T is the test metric of the best-scoring query booked by T (`incumbent_at`); a seed with
nothing booked by then has no value and drops out of the test. The test is the leaderboard's own
(`stats.verdicts`: two-sided Mann-Whitney U, Holm across the task's rows). Wall time depends on the
machine and its load, so this is only a fair comparison between rows recorded on one machine under
similar load: the records say which machine, and the closing notes what else ran.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from nasrepro.tracking.record import Record
from nasrepro.tracking.stats import Verdict, mean_std, verdicts


def cutoff(records: Sequence[Record]) -> float | None:
    """The shortest search among `records` on the search clock; None when any record has no
    stamped history (older records, table searches written before the clock existed)."""
    finals = []
    for record in records:
        stamps = [q.get("elapsed_seconds") for q in record.history]
        if not stamps or any(s is None for s in stamps):
            return None
        finals.append(max(stamps))
    return min(finals) if finals else None


def incumbent_at(record: Record, seconds: float) -> float | None:
    """The test metric of the best-scoring query booked by `seconds` on the search clock (the
    reward decides "best", as for the record's own incumbent); None when nothing was booked yet."""
    sign = 1.0 if record.direction == "max" else -1.0
    best, test = -math.inf, None
    for q in record.history:
        if q.get("elapsed_seconds") is None or q["elapsed_seconds"] > seconds or q.get("score") is None:
            continue
        if sign * q["score"] > best:
            best, test = sign * q["score"], q.get("test")
    return test


@dataclass(frozen=True)
class EqualTime:
    """One row against random search, both cut at `seconds`."""

    seconds: float
    tests: list[float]
    baseline: list[float]
    verdict: Verdict | None

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "equal_time_seconds": self.seconds,
            "equal_time_test_mean": statistics.mean(self.tests) if self.tests else None,
            "equal_time_random_mean": statistics.mean(self.baseline) if self.baseline else None,
            **({f"equal_time_{k}": v for k, v in self.verdict.to_dict().items()} if self.verdict else {}),
        }


def compare(
    pairs: Sequence[tuple[Sequence[Record], Sequence[Record]] | None], larger_is_better: bool
) -> list[EqualTime | None]:
    """For each (row's records, random search's records) pair, both cut at their common `cutoff`;
    None where there is no pair or a record carries no clock. Holm's correction runs over the
    task's tested pairs together, as for the equal-evaluations verdicts."""
    cut: list[tuple[float, list[float], list[float]] | None] = []
    for pair in pairs:
        seconds = cutoff([*pair[0], *pair[1]]) if pair else None
        if pair is None or seconds is None:
            cut.append(None)
            continue
        values = [[v for r in side if (v := incumbent_at(r, seconds)) is not None] for side in pair]
        cut.append((seconds, values[0], values[1]))
    tested = verdicts([(c[1], c[2]) if c else None for c in cut], larger_is_better)
    return [
        None if c is None else EqualTime(c[0], c[1], c[2], verdict)
        for c, verdict in zip(cut, tested, strict=True)
    ]


def render(names: Sequence[str], compared: Sequence[EqualTime | None]) -> str:
    """The markdown block under a task's table; empty when no row has a clocked comparison."""
    lines = [
        f"| {name} | {c.seconds:.0f} | {mean_std(c.tests)} (n={len(c.tests)}) | "
        f"{mean_std(c.baseline)} (n={len(c.baseline)}) | {c.verdict.render() if c.verdict else '—'} |"
        for name, c in zip(names, compared, strict=True)
        if c is not None
    ]
    if not lines:
        return ""
    head = (
        "\nAt equal wall time (each search cut at T, the shortest whole search among the row's and "
        "random search's seeds on the search clock: evaluations and the method's own compute; the "
        "incumbent's test value at T; same test as above; one machine, compare rows recorded under "
        "similar load):\n\n| row | T (s) | test at T | random search at T | vs random search at T |\n"
        "|---|---|---|---|---|\n"
    )
    return head + "\n".join(lines) + "\n"
