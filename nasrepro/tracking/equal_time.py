"""Comparisons at equal wall time, for searches that train what they evaluate.

Equal numbers of evaluations hide a method's own compute: NASBOT's GP fits and acquisition
optimisation, a controller's updates. NASBOT's paper compares methods at equal wall-clock time
(Kandasamy et al. 2018, Sec. 5; fact sheet `nasbot.md`), so on live tasks the leaderboard also
cuts every search at one time T and compares the incumbents there. The time axis is each query's
``elapsed_seconds``: the search's own clock when the answer was booked, evaluations and the
method's overhead together, earlier interrupted attempts included (approximately: a resumed search
counts its first attempt up to the last checkpoint, then replays the method's own compute).

T for a row is the shortest whole search among its seeds and random search's seeds at the same
budget (`cutoff`), so every seed has run at least that long and none is extrapolated. A seed's
value at T is the test metric of the best-scoring query booked by T (`incumbent_at`); a seed with
nothing booked by then has no incumbent and ranks last in the test (its mean leaves it out and
says how many). The test is the leaderboard's own (`stats.verdicts`: two-sided Mann-Whitney U,
Holm across the task's rows).

A pair is left out (`comparable`) when any of its records is a table search (T would be look-up
time), was recorded on another kind of machine (CPU model, core count, GPUs) than the others, or
comes from a method whose final incumbent is not its best-scoring query (it picks by something
else, so "best by score at T" would not be its incumbent at T). Wall time also depends on the load, so
rows are fair to compare only when recorded under similar load: the closing notes say what else ran.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from nasrepro.tracking.cost import is_table_record
from nasrepro.tracking.record import Record
from nasrepro.tracking.regret import best_scoring_query, follows_best_score
from nasrepro.tracking.stats import Verdict, mean_std, verdicts

#: what makes two records' clocks comparable (the load is not recorded per query)
MACHINE_KEYS = ("cpu_model", "cpu_count", "gpus")


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
    found = best_scoring_query(record, seconds)
    return None if found is None else found.get("test")


def comparable(records: Sequence[Record]) -> bool:
    """Whether a pair's records can be cut at one wall time (module docstring)."""
    if any(is_table_record(r) for r in records):
        return False
    machines = {tuple(repr(r.machine.get(k)) for k in MACHINE_KEYS) for r in records}
    if len(machines) > 1:
        return False
    # the method's own incumbent must be the best-scoring query
    return all(follows_best_score(record) for record in records)


@dataclass(frozen=True)
class EqualTime:
    """One row against random search, both cut at `seconds`."""

    seconds: float
    tests: list[float]
    baseline: list[float]
    verdict: Verdict | None
    missing: int = 0  # the row's seeds with nothing booked by T (ranked last in the test)
    baseline_missing: int = 0

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "equal_time_seconds": self.seconds,
            "equal_time_test_mean": statistics.mean(self.tests) if self.tests else None,
            "equal_time_random_mean": statistics.mean(self.baseline) if self.baseline else None,
            "equal_time_missing": self.missing,
            "equal_time_random_missing": self.baseline_missing,
            **({f"equal_time_{k}": v for k, v in self.verdict.to_dict().items()} if self.verdict else {}),
        }


def compare(
    pairs: Sequence[tuple[Sequence[Record], Sequence[Record]] | None], larger_is_better: bool
) -> list[EqualTime | None]:
    """For each (row's records, random search's records) pair, both cut at their common `cutoff`;
    None where there is no pair or a record carries no clock. Holm's correction runs over the
    task's tested pairs together, as for the equal-evaluations verdicts."""
    worst = -math.inf if larger_is_better else math.inf  # no incumbent by T ranks last
    cut: list[tuple[float, list[float | None], list[float | None]] | None] = []
    for pair in pairs:
        seconds = cutoff([*pair[0], *pair[1]]) if pair and comparable([*pair[0], *pair[1]]) else None
        if pair is None or seconds is None:
            cut.append(None)
            continue
        cut.append(
            (
                seconds,
                [incumbent_at(r, seconds) for r in pair[0]],
                [incumbent_at(r, seconds) for r in pair[1]],
            )
        )
    ranked = [
        ([worst if v is None else v for v in c[1]], [worst if v is None else v for v in c[2]]) if c else None
        for c in cut
    ]
    tested = verdicts(ranked, larger_is_better)
    out: list[EqualTime | None] = []
    for c, verdict in zip(cut, tested, strict=True):
        if c is None:
            out.append(None)
            continue
        seconds, row, base = c
        out.append(
            EqualTime(
                seconds,
                [v for v in row if v is not None],
                [v for v in base if v is not None],
                verdict,
                missing=row.count(None),
                baseline_missing=base.count(None),
            )
        )
    return out


def _n(values: Sequence[float], missing: int) -> str:
    return f"n={len(values)}" + (f", {missing} with nothing by T, ranked last" if missing else "")


def render(names: Sequence[str], compared: Sequence[EqualTime | None]) -> str:
    """The markdown block under a task's table; empty when no row has a clocked comparison."""
    lines = [
        f"| {name} | {c.seconds:.0f} | {mean_std(c.tests)} ({_n(c.tests, c.missing)}) | "
        f"{mean_std(c.baseline)} ({_n(c.baseline, c.baseline_missing)}) | "
        f"{c.verdict.render() if c.verdict else '—'} |"
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
