"""Comparisons at equal wall time on the search clock (issue 14 item 6: NASBOT vs the baselines "at
equal numbers of evaluations and at equal wall time")."""

from __future__ import annotations

from test_tracking_leaderboard_v2 import make_record

from nasrepro.tracking import equal_time
from nasrepro.tracking.leaderboard import Row, render_markdown, versus_random, versus_random_at_equal_time
from nasrepro.tracking.record import Record


def clocked(
    method: str, seed: int, queries: list[tuple[float, float, float]], direction: str = "min"
) -> Record:
    """A live-task search record; `queries` are (score, test, elapsed seconds) in booking order."""
    record = make_record(
        method=method,
        seed=seed,
        task="uci/toy",
        direction=direction,
        scale="cpu-scale",
        history=[(s, t) for s, t, _ in queries],
        test=min(t for _, t, _ in queries) if direction == "min" else max(t for _, t, _ in queries),
    )
    data = record.to_dict()
    for q, (_, _, elapsed) in zip(data["history"], queries, strict=True):
        q["elapsed_seconds"] = elapsed
    data["config"] = {"preset": {"recipe": {"epochs": 1}}}  # it trains: a live search
    sign = 1 if direction == "max" else -1
    data["best_arch"] = max(data["history"], key=lambda q: (sign * q["score"], -q["index"]))["arch"]
    return Record.from_dict(data)


def edited(record: Record, **changes) -> Record:
    return Record.from_dict({**record.to_dict(), **changes})


def test_the_incumbent_at_a_time_is_the_best_scored_query_booked_by_then():
    record = clocked("m", 0, [(0.5, 0.6, 1.0), (0.3, 0.35, 2.0), (0.1, 0.2, 5.0)])  # MSE: lower wins
    assert equal_time.incumbent_at(record, 0.5) is None  # nothing booked yet
    assert equal_time.incumbent_at(record, 1.0) == 0.6
    assert equal_time.incumbent_at(record, 4.9) == 0.35
    assert equal_time.incumbent_at(record, 9.0) == 0.2
    best_is_max = clocked("m", 0, [(0.5, 0.6, 1.0), (0.3, 0.35, 2.0)], direction="max")
    assert equal_time.incumbent_at(best_is_max, 9.0) == 0.6


def test_the_cut_is_the_shortest_whole_search_and_needs_every_clock():
    a = clocked("m", 0, [(1.0, 1.0, 3.0), (1.0, 1.0, 7.0)])
    b = clocked("m", 1, [(1.0, 1.0, 4.0)])
    assert equal_time.cutoff([a, b]) == 4.0
    unclocked = make_record(task="uci/toy", scale="cpu-scale")  # an older record: no stamps
    assert equal_time.cutoff([a, unclocked]) is None


def planted_rows() -> list[Row]:
    """A slow method that wins at equal evaluations and loses at equal time: each of its searches
    takes 100 s and finds MSE 0.1 only at the end, having booked MSE 0.9 at 10 s; random search
    finishes in 20 s at MSE 0.5 (seed-dependent jitter keeps the values distinct)."""
    slow = [clocked("slow", s, [(0.9, 0.9 + s / 100, 10.0), (0.1, 0.1 + s / 100, 100.0)]) for s in range(5)]
    fast = [clocked("random", s, [(0.6, 0.6 + s / 100, 5.0), (0.5, 0.5 + s / 100, 20.0)]) for s in range(5)]
    return [Row("uci/toy", "random", "cpu", 2, "val", fast), Row("uci/toy", "slow", "cpu", 2, "val", slow)]


def test_a_slow_method_can_win_at_equal_evaluations_and_lose_at_equal_time():
    rows = planted_rows()
    at_evaluations = versus_random(rows)[1]
    at_time = versus_random_at_equal_time(rows)[1]
    assert at_evaluations is not None and at_evaluations.label == "better"
    assert at_time is not None and at_time.seconds == 20.0
    assert at_time.tests == [0.9 + s / 100 for s in range(5)]  # only its first query was booked by 20 s
    assert at_time.verdict is not None and at_time.verdict.label == "worse"
    assert versus_random_at_equal_time(rows)[0] is None  # random search is not compared with itself
    board = render_markdown({"uci/toy": rows}, {})
    assert "At equal wall time" in board and "| slow | 20 |" in board


def test_pairs_that_cannot_share_a_clock_are_not_compared():
    rows = planted_rows()
    slow = rows[1].records

    def with_slow(records):
        return versus_random_at_equal_time([rows[0], Row("uci/toy", "slow", "cpu", 2, "val", records)])[1]

    assert with_slow(slow) is not None
    table = [edited(r, config={"preset": {"recipe": {"epochs": 0}}}) for r in slow]  # look-up time
    assert with_slow(table) is None
    elsewhere = [edited(slow[0], machine={"cpu_model": "other", "cpu_count": 64}), *slow[1:]]
    assert with_slow(elsewhere) is None
    # a method whose incumbent is not its best-scoring query (it picks by something else)
    other_pick = [edited(slow[0], best_arch="a0"), *slow[1:]]
    assert with_slow(other_pick) is None


def test_a_seed_with_nothing_booked_by_the_cut_ranks_last():
    """A method with a long start-up (a supernet before its first query) books nothing by T: it
    must lose, not shrink the sample to the seeds that were quicker."""
    late = [clocked("late", s, [(0.05, 0.05 + s / 100, 30.0 if s < 3 else 15.0)]) for s in range(5)]
    fast = [clocked("random", s, [(0.6, 0.6 + s / 100, 5.0), (0.5, 0.5 + s / 100, 20.0)]) for s in range(5)]
    rows = [Row("uci/toy", "random", "cpu", 2, "val", fast), Row("uci/toy", "late", "cpu", 2, "val", late)]
    at_time = versus_random_at_equal_time(rows)[1]
    assert at_time is not None and at_time.seconds == 15.0 and at_time.missing == 3  # seeds 3, 4 end at 15 s
    assert at_time.tests == [0.05 + s / 100 for s in (3, 4)]  # the mean is over the seeds that booked
    assert at_time.verdict is not None and at_time.verdict.n == 5  # ... the test ranks the rest last
    assert at_time.verdict.label != "better"
    assert "3 with nothing by T, ranked last" in render_markdown({"uci/toy": rows}, {})


def test_tables_without_a_clock_get_no_equal_time_block():
    rows = [
        Row("toy", name, "cpu", 1, "val", [make_record(method=name, seed=s, test=50.0 + s) for s in range(5)])
        for name in ("random", "other")
    ]
    assert versus_random_at_equal_time(rows) == [None, None]
    assert "At equal wall time" not in render_markdown({"toy": rows}, {})


def test_regression_errors_keep_significant_digits_on_the_leaderboard():
    from nasrepro.tracking.stats import mean_std

    assert mean_std([0.0123, 0.0125]) == "0.0124 ± 0.00014"  # not "0.01 ± 0.00"
    assert mean_std([93.1, 93.5]) == "93.30 ± 0.28"
    assert mean_std([0.5]) == "0.5" and mean_std([]) == "—"
