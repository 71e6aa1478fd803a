"""A record's search cost as the leaderboard states it: charged cost and method overhead, apart.

Issue 16 item 3: a table search is charged the benchmark's recorded training time of every query
(machine-independent), or, where the table records none (NAS-Bench-Graph, the NB201 CSVs), its cost
is *unknown* and searches compare by unique queries; the look-up wall time is never a cost. The
method's own compute outside evaluations (controller updates, GP fits, predictor training) is
`search_cost.method_overhead_seconds`, reported beside it, never mixed in.

Records written before `search_cost.charged_cost` existed are read by their history: a legacy
table query's `cost_seconds` was the recorded training time *plus* the look-up wall time, so the
recorded part is `cost_seconds - wall_seconds`, and the legacy `cost_model` sentence says whether
the table had training times at all. `rerun_reason` names what such a record lacks.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from nasrepro.tracking.record import ABSENT, Record

#: legacy `cost_model` sentences of tables that record no training time
_NO_TIMES = ("no recorded training time", "record no training time")


@dataclass(frozen=True)
class Charged:
    """One record's cost: `seconds` is None when unknown; `source` says where the number came from."""

    seconds: float | None
    queries: int
    overhead_seconds: float | None
    table: bool
    source: str  # "record" | "derived from history"


def is_table_record(record: Record) -> bool:
    """A search answered by table look-ups (its preset trains nothing: zero epochs)."""
    if record.kind != "search":
        return False
    preset = record.config.get("preset")
    if isinstance(preset, dict) and isinstance(preset.get("recipe"), dict):
        return preset["recipe"].get("epochs") == 0
    return "table look-up" in record.scale


def charged(record: Record) -> Charged:
    """The charged cost and the method overhead of one record (see the module docstring)."""
    cost = record.search_cost
    overhead = cost.method_overhead_seconds
    overhead = None if overhead is ABSENT else overhead
    table = is_table_record(record)
    if cost.charged_cost is not ABSENT:
        return Charged(cost.charged_cost, cost.queries, overhead, table, "record")  # type: ignore[arg-type]
    return Charged(_from_history(record, table), cost.queries, overhead, table, "derived from history")


def _from_history(record: Record, table: bool) -> float | None:
    costs = [q.get("cost_seconds") for q in record.history]
    if any(c is None for c in costs):  # a new-format history with an unknown cost
        return None
    if not table:  # a training search: each query's cost was its own training time
        return round(sum(costs), 6) if costs else record.search_cost.evaluation_seconds
    model = (record.search_cost.cost_model or "").lower()
    if any(marker in model for marker in _NO_TIMES):
        return None
    if "plus look-up wall time" in model:  # legacy: recorded training time + look-up time
        return round(sum(q["cost_seconds"] - q.get("wall_seconds", 0.0) for q in record.history), 6)
    return round(sum(costs), 6)


def rerun_reason(record: Record) -> str:
    """Why a committed search record should be rerun to carry item 3's fields ('' if it need not)."""
    if record.kind != "search":
        return ""
    missing = [
        name
        for name in ("charged_cost", "method_overhead_seconds")
        if getattr(record.search_cost, name) is ABSENT
    ]
    return f"lacks search_cost.{' and '.join(missing)}" if missing else ""


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2g} s"


def render(records: list[Record]) -> str:
    """`500 q; charged unknown; overhead 0.31 s` (means over seeds) for one leaderboard row."""
    items = [charged(r) for r in records]
    queries = statistics.mean(c.queries for c in items)
    values = [c.seconds for c in items]
    if any(v is None for v in values):
        charge = "charged unknown" if items[0].table else "charged —"
    else:
        kind = "recorded training" if items[0].table else "training"
        charge = f"charged {_seconds(statistics.mean(values))} ({kind})"  # type: ignore[arg-type]
    overheads = [c.overhead_seconds for c in items if c.overhead_seconds is not None]
    overhead = f"overhead {_seconds(statistics.mean(overheads))}" if overheads else "overhead not recorded"
    if overheads and len(overheads) < len(items):
        overhead += f" ({len(overheads)}/{len(items)} seeds)"
    return f"{queries:.0f} q; {charge}; {overhead}"


def summary(records: list[Record]) -> dict[str, float | None]:
    """The cost columns of the CSV/JSON exports (means over seeds; None when unknown/unrecorded)."""
    items = [charged(r) for r in records]
    values = [c.seconds for c in items]
    overheads = [c.overhead_seconds for c in items if c.overhead_seconds is not None]
    return {
        "charged_seconds_mean": None if any(v is None for v in values) else statistics.mean(values),  # type: ignore[arg-type]
        "method_overhead_seconds_mean": statistics.mean(overheads) if overheads else None,
    }
