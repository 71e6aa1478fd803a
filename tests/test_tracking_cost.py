"""Search cost on the leaderboard (issue 16 item 3): charged cost and method overhead, apart."""

from __future__ import annotations

import copy

import pytest

from nasrepro.tracking import cost
from nasrepro.tracking.record import Record


def _record(history, search_cost, epochs=0, kind="search") -> Record:
    return Record.from_dict(
        {
            "schema_version": 1,
            "kind": kind,
            "method": "random",
            "task": "toy",
            "space": {"name": "toy"},
            "seed": 0,
            "preset": "cpu",
            "scale": "table look-up of the benchmark's own training runs",
            "budget": len(history),
            "reward": "val",
            "direction": "max",
            "metric": "accuracy",
            "best_arch": "a0",
            "metrics": {"val": 1.0, "test": 1.0},
            "search_cost": {"wall_seconds": 1.0, "device": "cpu", "device_hours": 0.0, **search_cost},
            "history": history,
            "duplicates": 0,
            "config": {"preset": {"recipe": {"epochs": epochs}}},
            "versions": {"nasrepro": "0", "python": "3", "torch": "2"},
            "machine": {},
            "git_commit": "x",
            "created": "now",
        }
    )


def _history(costs, walls):
    out, total = [], 0.0
    for i, (c, w) in enumerate(zip(costs, walls, strict=True)):
        total = None if c is None or total is None else total + c
        out.append(
            {
                "index": i,
                "arch": f"a{i}",
                "score": 1.0,
                "status": "ok",
                "cost_seconds": c,
                "cumulative_cost": total,
                "wall_seconds": w,
            }
        )
    return out


def test_recorded_charged_cost_and_overhead_are_reported_apart():
    rec = _record(
        _history([5.0, 7.0], [0.1, 0.2]), {"queries": 2, "charged_cost": 12.0, "method_overhead_seconds": 0.5}
    )
    got = cost.charged(rec)
    assert (got.seconds, got.overhead_seconds, got.source) == (12.0, 0.5, "record")
    assert cost.render([rec]) == "2 q; charged 12.0 s (recorded training); overhead 0.5 s"
    assert cost.rerun_reason(rec) == ""


def test_unknown_charged_cost_says_unknown_never_the_lookup_time():
    rec = _record(
        _history([None, None], [3.0, 4.0]),
        {"queries": 2, "charged_cost": None, "method_overhead_seconds": 0.2},
    )
    assert cost.charged(rec).seconds is None
    assert "charged unknown" in cost.render([rec]) and "7" not in cost.render([rec])
    assert cost.summary([rec])["charged_seconds_mean"] is None


def test_legacy_records_are_derived_from_history_and_listed_for_rerun():
    """Before charged_cost existed a table query cost its recorded time plus the look-up time."""
    legacy_times = _record(
        _history([5.5, 7.25], [0.5, 0.25]),
        {"queries": 2, "cost_model": "NB201's recorded ... time, plus look-up wall time"},
    )
    assert cost.charged(legacy_times).seconds == pytest.approx(12.0)  # look-up time taken out
    assert cost.charged(legacy_times).source == "derived from history"
    legacy_none = _record(
        _history([0.5, 0.25], [0.5, 0.25]),
        {
            "queries": 2,
            "cost_model": "no recorded training time in the shared CSVs; cost = look-up wall time only",
        },
    )
    assert cost.charged(legacy_none).seconds is None
    assert cost.render([legacy_none]) == "2 q; charged unknown; overhead not recorded"
    assert cost.rerun_reason(legacy_none) == "lacks search_cost.charged_cost and method_overhead_seconds"


def test_charged_cost_on_the_board_does_not_move_with_lookup_time():
    fast = _record(
        _history([5.0, 7.0], [0.001, 0.001]),
        {"queries": 2, "charged_cost": 12.0, "method_overhead_seconds": 0.5},
    )
    slow_dict = copy.deepcopy(fast.to_dict())
    for q in slow_dict["history"]:
        q["wall_seconds"] = 90.0
    slow_dict["search_cost"]["wall_seconds"] = 180.0
    slow = Record.from_dict(slow_dict)
    assert cost.render([slow]) == cost.render([fast])


def test_training_records_are_charged_their_training_time():
    rec = _record(_history([30.0, 45.0], [30.0, 45.0]), {"queries": 2}, epochs=5)
    assert not cost.charged(rec).table and cost.charged(rec).seconds == pytest.approx(75.0)
    assert "charged 75.0 s (training)" in cost.render([rec])
