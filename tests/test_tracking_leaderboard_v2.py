"""Leaderboard v2 from records alone (issue 16 item 4, issue 12 item 5): cross-task ranks with a
Friedman test, regret curves, paper-claim verdicts, README blocks, incumbent costs and Pareto fronts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from nasrepro.errors import DataError
from nasrepro.tracking import claims, optima, pareto, ranks, readme_blocks, regret
from nasrepro.tracking.leaderboard import Row
from nasrepro.tracking.record import Record


def make_record(
    *,
    method: str = "random",
    task: str = "toy",
    seed: int = 0,
    test: float = 50.0,
    history: list[tuple[float, float]] | None = None,
    preset: str = "cpu",
    scale: str = "table look-up of the benchmark's own training runs",
    direction: str = "max",
    extra_metrics: dict | None = None,
    method_extra: dict | None = None,
) -> Record:
    """A valid search record; `history` is a list of (score, test) per unique query, whose best
    score (the first among equals) is the incumbent, as a search writes it."""
    if history is not None:
        sign = 1.0 if direction == "max" else -1.0
        best = max(range(len(history)), key=lambda i: (sign * history[i][0], -i))
        test = history[best][1]
    else:
        history, best = [(test, test)], 0
    data = {
        "schema_version": 1,
        "kind": "search",
        "method": method,
        "task": task,
        "space": {"name": "toy"},
        "seed": seed,
        "preset": preset,
        "scale": scale,
        "budget": max(len(history), 1),
        "reward": "val",
        "direction": direction,
        "metric": "accuracy",
        "best_arch": f"a{best}",
        "metrics": {"val": test, "test": test, **(extra_metrics or {})},
        "search_cost": {"wall_seconds": 1.0, "device": "cpu", "device_hours": 0.0, "queries": len(history)},
        "history": [
            {"index": i, "arch": f"a{i}", "score": s, "test": t, "cumulative_cost": 0.0, "status": "ok"}
            for i, (s, t) in enumerate(history)
        ],
        "duplicates": 0,
        "config": {"preset": {"recipe": {"epochs": 0}}},
        "versions": {"nasrepro": "0", "python": "3", "torch": "2"},
        "machine": {},
        "git_commit": "x",
        "created": "now",
    }
    if method_extra is not None:
        data["method_extra"] = method_extra
    return Record.from_dict(data)


def make_row(records: list[Record], budget: int | None = 100, preset: str = "cpu") -> Row:
    r = records[0]
    return Row(r.task, r.method, preset, budget, "val", records)


# --- cross-task ranks ---------------------------------------------------------------------------


def planted_rows(offsets: dict[str, float], n_tasks: int = 6, direction: str = "max") -> list[Row]:
    rng = random.Random(0)
    rows = []
    for t in range(n_tasks):
        for method, offset in offsets.items():
            recs = [
                make_record(
                    method=method, task=f"t{t}", seed=s, test=60 + offset + rng.random(), direction=direction
                )
                for s in range(3)
            ]
            rows.append(make_row(recs))
    return rows


def test_friedman_ranks_find_a_planted_order():
    ranked = ranks.cross_task_ranks(planted_rows({"best": 6.0, "middle": 3.0, "worst": 0.0}))
    assert len(ranked) == 1
    r = ranked[0]
    assert r.mean_ranks == {"best": 1.0, "middle": 2.0, "worst": 3.0}
    assert r.methods == ["best", "middle", "worst"]
    assert r.test == "Friedman" and r.pvalue < 0.01 and r.critical_difference is not None


def test_ranks_follow_the_metric_direction():
    ranked = ranks.cross_task_ranks(planted_rows({"high": 6.0, "low": 0.0, "mid": 3.0}, direction="min"))
    assert ranked[0].mean_ranks == {"low": 1.0, "mid": 2.0, "high": 3.0}


def test_no_difference_is_not_significant():
    rows = planted_rows({"a": 0.0, "b": 0.0, "c": 0.0}, n_tasks=8)
    assert ranks.cross_task_ranks(rows)[0].pvalue > 0.05


def test_incomplete_blocks_are_dropped_and_named():
    cells = {(f"t{t}", m): float(t) for t in range(6) for m in ("a", "b", "c")}
    cells.update({("t6", "a"): 1.0})  # t6 has only one method: the task goes
    cells.update({(f"t{t}", "d"): 1.0 for t in range(2)})  # d misses four tasks: the method goes
    tasks, methods, dropped_tasks, dropped_methods = ranks.complete_block(cells)
    assert methods == ["a", "b", "c"] and dropped_methods == ["d"]
    assert tasks == [f"t{t}" for t in range(6)] and dropped_tasks == ["t6"]
    few = {(f"t{t}", m): 1.0 for t in range(4) for m in ("a", "b")}
    assert ranks.rank_setting(("cpu", 100, "val"), few) is None  # fewer than five tasks


def test_the_largest_complete_block_is_kept_not_a_greedy_one():
    # the committed records' shape: two methods on 12 tasks, two more on 9 of them; dropping
    # greedily kept 2 x 12 = 24 cells, the largest block is 4 x 9 = 36
    cells = {(f"t{t:02d}", m): 1.0 for t in range(12) for m in ("evolution", "random")}
    cells.update({(f"t{t:02d}", m): 1.0 for t in range(9) for m in ("agnn", "rl")})
    tasks, methods, dropped_tasks, dropped_methods = ranks.complete_block(cells)
    assert methods == ["agnn", "evolution", "random", "rl"] and dropped_methods == []
    assert tasks == [f"t{t:02d}" for t in range(9)] and dropped_tasks == ["t09", "t10", "t11"]
    # more tasks than methods: the search runs over task subsets and finds the same block
    cells.update({(f"t{t:02d}", "x"): 1.0 for t in range(12, 30)})
    assert ranks.complete_block(cells)[1] == ["agnn", "evolution", "random", "rl"]


# mean final test accuracy per table task at cpu, budget 500 (the committed records at 3024559)
EVOLUTION_VS_RANDOM = {
    "nbg/arxiv": (72.0565, 72.0094), "nbg/citeseer": (70.17, 69.1067), "nbg/computers": (83.6549, 83.3829),
    "nbg/cora": (80.4933, 79.92), "nbg/cs": (90.6506, 90.4509), "nbg/photo": (91.8485, 91.7335),
    "nbg/physics": (92.0626, 91.4854), "nbg/proteins": (76.1124, 77.0221), "nbg/pubmed": (76.34, 75.9117),
    "nb201/cifar10": (94.3728, 94.1194), "nb201/cifar100": (73.5133, 72.5795),
    "nb201/imagenet16-120": (46.2583, 46.1825),
}  # fmt: skip


def test_two_methods_get_a_two_sided_wilcoxon_in_the_winners_direction():
    # evolution wins 11 of 12 tasks but has the smaller median over tasks (proteins reorders them):
    # autorank's one-sided test then asks whether random beats evolution and reports p = 0.99
    cells = {(t, "evolution"): e for t, (e, _) in EVOLUTION_VS_RANDOM.items()}
    cells.update({(t, "random"): r for t, (_, r) in EVOLUTION_VS_RANDOM.items()})
    r = ranks.rank_setting(("cpu", 500, "val"), cells)
    assert r is not None and r.test == "Wilcoxon signed-rank"
    assert r.mean_ranks == pytest.approx({"evolution": 13 / 12, "random": 23 / 12})
    assert r.pvalue == pytest.approx(2 * 43 / 4096)  # exact: W- = 10 (proteins' rank), n = 12


def test_random_sampling_is_not_ranked_and_cd_diagram_is_written(tmp_path):
    rows = planted_rows({"best": 6.0, "middle": 3.0, "random-sampling": -9.0})
    ranked = ranks.cross_task_ranks(rows)
    assert set(ranked[0].mean_ranks) == {"best", "middle"} and ranked[0].test == "Wilcoxon signed-rank"
    assert ranks.plot_cd(ranked[0], tmp_path / "two.png") is None  # no diagram for two methods
    three = ranks.cross_task_ranks(planted_rows({"best": 6.0, "middle": 3.0, "worst": 0.0}))
    path = ranks.plot_cd(three[0], tmp_path / "cd.png")
    assert path is not None and path.stat().st_size > 1000
    text = ranks.render(three, {three[0].slug: "figures/cd.png"})
    assert "| best | 1.00 |" in text and "How to cite" in text and "figures/cd.png" in text


# --- regret curves --------------------------------------------------------------------------------

OPT = optima.Optimum(val=90.0, test=95.0, test_of_best_val=94.0, architectures=10, source="toy")


def test_regret_curve_tracks_the_incumbent_by_reward_not_test():
    # query 2 has a better test but a worse score: the incumbent stays query 1
    rec = make_record(history=[(80.0, 85.0), (85.0, 90.0), (84.0, 95.0), (90.0, 94.0)])
    assert regret.regret_curve(rec, OPT).tolist() == [10.0, 5.0, 5.0, 1.0]


def test_regret_curve_of_a_minimised_metric():
    opt = optima.Optimum(val=1.0, test=2.0, test_of_best_val=2.0, architectures=3, source="toy")
    rec = make_record(history=[(5.0, 6.0), (3.0, 4.0)], direction="min")
    assert regret.regret_curve(rec, opt).tolist() == [4.0, 2.0]


def test_median_and_bootstrap_band():
    curves = np.array([[4.0, 2.0], [4.0, 2.0], [4.0, 2.0]])
    median, low, high = regret.median_band(curves)
    assert median.tolist() == low.tolist() == high.tolist() == [4.0, 2.0]
    spread = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    median, low, high = regret.median_band(spread)
    assert median[0] == 3.0 and low[0] <= 3.0 <= high[0] and low[0] >= 1.0 and high[0] <= 100.0
    assert regret.median_band(spread)[1].tolist() == low.tolist()  # fixed generator: byte-stable


def test_regret_figure_on_synthetic_records(tmp_path):
    good = [
        make_record(method="good", seed=s, history=[(80.0 + i, 80.0 + i) for i in range(15)])
        for s in range(3)
    ]
    bad = [make_record(method="bad", seed=s, history=[(70.0, 70.0)] * 15) for s in range(3)]
    rows = [make_row(good, 15), make_row(bad, 15)]
    curves = regret.curves_for(rows, OPT)
    final = regret.final_regrets(rows, OPT)
    assert final[("good", "cpu", "val", 15)] == pytest.approx(1.0)
    assert final[("bad", "cpu", "val", 15)] == pytest.approx(25.0)
    assert curves[0]["x"][0] == 1 and curves[0]["x"][-1] == 15
    assert regret.plot("toy", curves, OPT, tmp_path / "regret.png").stat().st_size > 1000


def test_a_seed_that_stopped_early_keeps_its_incumbent_to_the_longest():
    # cutting every seed at the shortest (3 queries) reported the short seed's regret for all
    long = make_record(seed=0, history=[(80.0, 80.0), (81.0, 81.0), (82.0, 82.0), (94.0, 94.0), (95.0, 95.0)])
    short = make_record(seed=1, history=[(80.0, 80.0), (90.0, 90.0), (91.0, 91.0)])
    (curve,) = regret.curves_for([make_row([long, short], 5)], OPT)
    assert curve["x"].tolist() == [1, 2, 3, 5]  # the log-spaced grid
    assert curve["median"].tolist() == pytest.approx([15.0, 9.5, 8.5, 2.0])  # (0 + 4) / 2 at the end


def test_a_row_whose_incumbent_is_not_its_best_reward_is_not_drawn():
    # MemNet picks with a memory penalty: its returned architecture (a0, test 70) is not the best
    # reward (a1, test 94); a curve of the best reward would credit it with 94
    picky = [make_record(method="memnet", seed=s, history=[(70.0, 70.0), (94.0, 94.0)]) for s in range(2)]
    picky = [
        Record.from_dict({**r.to_dict(), "best_arch": "a0", "metrics": {"val": 70.0, "test": 70.0}})
        for r in picky
    ]
    plain = [make_record(method="random", seed=s, history=[(70.0, 70.0), (94.0, 94.0)]) for s in range(2)]
    rows = [make_row(picky, 2), make_row(plain, 2)]
    assert [c["method"] for c in regret.curves_for(rows, OPT)] == ["random"]
    assert regret.not_drawn(rows) == ["memnet"]
    final = regret.final_regrets(rows, OPT)  # from each record's own incumbent
    assert final[("memnet", "cpu", "val", 2)] == pytest.approx(25.0)
    assert final[("random", "cpu", "val", 2)] == pytest.approx(1.0)


def test_optima_file_round_trip(tmp_path):
    class Entry:
        def __init__(self, val, test):
            self.val, self.test = val, test

    items = [("a", Entry(80, 90)), ("b", Entry(85, 88)), ("c", Entry(70, 93)), ("d", Entry(99, 99))]
    opt = optima.compute(items, canonical=lambda arch: arch != "d", source="toy")
    assert (opt.val, opt.test, opt.test_of_best_val, opt.architectures) == (85, 93, 88, 3)
    optima.write(tmp_path, {"toy": opt})
    assert optima.read(tmp_path) == {"toy": opt}
    (tmp_path / optima.FILENAME).write_text("[1, 2]")
    with pytest.raises(DataError):
        optima.read(tmp_path)


# --- paper claims ---------------------------------------------------------------------------------


def write_paper(methods_dir: Path, method: str, entries: str) -> None:
    folder = methods_dir / method
    folder.mkdir(parents=True)
    (folder / "paper.yaml").write_text(
        f"# Numbers reported by Doe et al. (X 2020), for the leaderboard.\nmethod: {method}\nresults:\n{entries}"
    )


def test_claim_verdicts(tmp_path):
    write_paper(
        tmp_path,
        "m",
        "  - {task: a, value: 80.0, table: T1}\n"
        "  - {task: b, value: 80.0, table: T2, spread: 3.0}\n"
        "  - {task: c, value: 80.0, table: T3}\n"
        "  - {task: d, value: 80.0, table: T4}\n"
        "  - {task: e, value: 80.0, table: T5}\n",
    )
    found = claims.read_claims(tmp_path)
    assert [c.citation for c in found] == ["Doe et al. (X 2020)"] * 5
    paper = "paper setting"
    rows = [
        make_row(
            [make_record(method="m", task="a", test=t, scale=paper) for t in (79.5, 79.3)], preset="paper"
        ),
        make_row([make_record(method="m", task="b", test=77.5, scale=paper)], preset="paper"),
        make_row([make_record(method="m", task="c", test=70.0, scale=paper)], preset="paper"),
        make_row([make_record(method="m", task="d", test=70.0, scale="cpu-scale")], preset="cpu"),
    ]
    verdicts = {j.claim.task: j.verdict for j in claims.judge_all(found, rows)}
    assert verdicts == {
        "a": "reproduced",  # 0.6 below, default tolerance 1
        "b": "reproduced",  # 2.5 below, within the paper's spread of 3
        "c": "not reproduced",
        "d": "not testable at this scale",
        "e": "not yet run",
    }
    judged = claims.judge_all(found, rows)
    assert judged[0].n == 2 and judged[0].ours == pytest.approx(79.4)
    text = claims.render(judged)
    assert (
        "| m | c | m | 80 (unverified) [T3] ± 1 (default) | 70.00 | 1 | paper | -10.00 | not reproduced |"
        in text
    )


def test_claims_judge_the_most_faithful_preset_and_table_lookups(tmp_path):
    write_paper(tmp_path, "m", "  - {task: a, value: 80.0, table: T1}\n")
    rows = [
        make_row([make_record(method="m", task="a", test=60.0, scale="cpu-scale")], preset="cpu"),
        make_row([make_record(method="m", task="a", test=80.5)], preset="paper"),  # a table look-up
    ]
    judged = claims.judge(claims.read_claims(tmp_path)[0], rows)
    assert judged.verdict == "reproduced" and judged.preset == "paper"


def test_a_claim_that_is_not_a_percentage_gets_a_relative_default_tolerance(tmp_path):
    write_paper(tmp_path, "m", "  - {task: a, value: 0.0075, metric: mse, table: T1}\n")
    (claim,) = claims.read_claims(tmp_path)
    assert claim.tolerance == pytest.approx(0.000375) and claim.tolerance_source == "default, 5% of the claim"
    for ours, verdict in [(0.0078, "reproduced"), (0.0070, "reproduced"), (0.5, "not reproduced")]:
        row = make_row([make_record(method="m", task="a", test=ours, direction="min")], preset="paper")
        assert claims.judge(claim, [row]).verdict == verdict, ours


def test_a_claim_measured_by_a_study_file_is_judged_from_it(tmp_path):
    methods, results = tmp_path / "methods", tmp_path / "results"
    write_paper(
        methods,
        "m",
        "  - {task: a, row: corr, value: 0.8, metric: Kendall, table: F1, study: s.json, measure: all.rho,"
        " n_key: all.n}\n",
    )
    (claim,) = claims.read_claims(methods)
    assert claims.judge(claim, [], results).verdict == "not yet run"
    results.mkdir()
    for preset, rho, verdict in [
        ("cpu", 0.9, "not testable at this scale"),
        ("paper", 0.78, "reproduced"),  # within the default tolerance: 5% of the claim, 0.04
        ("paper", 0.7, "not reproduced"),  # one "point" would have passed any positive correlation
    ]:
        (results / "s.json").write_text(json.dumps({"preset": preset, "all": {"rho": rho, "n": 12}}))
        judged = claims.judge(claim, [], results)
        assert (judged.verdict, judged.ours, judged.n, judged.preset) == (verdict, rho, 12, preset)


# --- README blocks --------------------------------------------------------------------------------

README = """# Method

Intro typed by hand.

<!-- leaderboard:results@toy:begin -->
old numbers
<!-- leaderboard:results@toy:end -->

Middle text.

<!-- leaderboard:claims:begin -->
<!-- leaderboard:claims:end -->
Tail.
"""


def test_readme_blocks_rewrite_only_between_markers(tmp_path):
    calls = []

    def render(method, name, argument):
        calls.append((method, name, argument))
        return f"generated {name} {argument}".strip()

    new = readme_blocks.rewrite(README, "m", render)
    assert calls == [("m", "results", "toy"), ("m", "claims", "")]
    assert "old numbers" not in new and "generated results toy" in new and "generated claims" in new
    assert new.replace("generated results toy", "old numbers").replace("\ngenerated claims", "") == README
    assert readme_blocks.rewrite(new, "m", render) == new  # idempotent

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text(README)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "README.md").write_text("no markers\n")
    changed = readme_blocks.rewrite_readmes(tmp_path, render)
    assert (
        changed == [folder / "README.md"] and (tmp_path / "plain" / "README.md").read_text() == "no markers\n"
    )
    top = tmp_path / "README.md"  # the repository README: blocks with no method
    top.write_text("intro\n<!-- leaderboard:board@toy:begin -->\nold\n<!-- leaderboard:board@toy:end -->\n")
    calls.clear()
    assert readme_blocks.rewrite_readmes(tmp_path, render, extra=[top]) == [top]
    assert calls[-1] == ("", "board", "toy") and "generated board toy" in top.read_text()


def test_readme_block_without_end_is_an_error():
    broken = "<!-- leaderboard:results:begin -->\nrest of the README\n"
    with pytest.raises(DataError, match="no matching end"):
        readme_blocks.rewrite(broken, "m", lambda *a: "x", where="m/README.md")


# --- incumbent costs and Pareto fronts -----------------------------------------------------------


def test_incumbent_memory_comes_from_metrics_then_method_report():
    measured = make_record(
        extra_metrics={"peak_memory_mb": 9.0, "total_mb": 12.0, "latency_ms": 3.0, "flops": 2e6}
    )
    assert pareto.memory_mb(measured) == (12.0, "metrics.total_mb")
    assert pareto.render([measured]) == "12.00 MB (total_mb), 3.00 ms, 2.0 MFLOPs"
    reported = make_record(method_extra={"incumbent_memory_mb": 5.8})
    assert pareto.memory_mb(reported) == (5.8, "method_extra.incumbent_memory_mb")
    assert pareto.render([make_record()]) == "—"
    proxyless = make_record(
        method_extra={"cost_kind": "flops", "cost_unit": "multiply-adds", "derived_expected_cost": 21938816.0}
    )
    assert pareto.render([proxyless]) == "21.9 million multiply-adds (method's expected flops)"
    latency = make_record(
        method_extra={"cost_kind": "latency", "cost_unit": "ms", "derived_expected_cost": 80.5}
    )
    assert pareto.summary([latency]) == {"incumbent_method_latency_mean": 80.5}


def test_pareto_front_keeps_only_non_dominated_points(tmp_path):
    pts = [(5.8, 94.0), (6.4, 95.7), (6.0, 93.0), (9.0, 95.0), (4.0, 90.0), (6.4, 95.0)]
    assert pareto.pareto_front(pts) == [(4.0, 90.0), (5.8, 94.0), (6.4, 95.7)]
    # lower is better (MSE, perplexity): uci/naval's committed points, whose front was drawn as
    # the single worst point when the direction was ignored
    mse = [(0.21, 0.3245), (0.26, 0.131), (0.30, 0.0875), (0.35, 0.2), (0.42, 0.0827), (1.62, 0.0799)]
    assert pareto.pareto_front(mse, "min") == [(0.21, 0.3245), (0.26, 0.131), (0.30, 0.0875), (0.42, 0.0827),
                                              (1.62, 0.0799)]  # fmt: skip
    rows = [
        make_row(
            [
                make_record(method="memnet", seed=s, test=94.0 + s, extra_metrics={"total_mb": 5.0 + s})
                for s in range(2)
            ]
        ),
        make_row([make_record(method="random", test=93.0)]),  # no memory: not on the figure
    ]
    assert [p[0] for p in pareto.points(rows)] == ["memnet", "memnet"]
    assert pareto.plot("toy", rows, tmp_path / "p.png").stat().st_size > 1000
    assert pareto.plot("toy", rows[1:], tmp_path / "q.png") is None


def test_unknown_readme_block_name_is_an_error(tmp_path):
    from nasrepro.tracking.leaderboard import _block_renderer

    render = _block_renderer({}, [], tmp_path)
    with pytest.raises(DataError, match="unknown leaderboard block 'bogus'"):
        render("m", "bogus", "")
    assert render("m", "results", "nowhere") == "(no records on nowhere yet)"
    assert render("m", "claims", "") == "(no claims)"


def test_study_block_renders_the_agreement_summary_from_its_json(tmp_path):
    import numpy as np

    from nasrepro.app.studies.table_agreement import agreement
    from nasrepro.tracking.leaderboard import _block_renderer

    render = _block_renderer({}, [], tmp_path)
    assert "has not been run" in render("", "study", "agreement_x")
    ours, table = np.array([70.0, 60.0, 50.0, 40.0, 10.0]), np.array([71.0, 59.0, 52.0, 41.0, 30.0])
    summary = {
        "task": "cora", "table": "nasbench-graph/cora", "preset": "cpu", "seeds_per_arch": [3],
        "all": agreement(ours, table, np.ones(5)), "top_quartile": {"n": 1},
        "far": [{"arch": "a", "ours_test_mean": 10.0, "table_test": 30.0}],
    }  # fmt: skip
    (tmp_path / "agreement_x.json").write_text(json.dumps(summary))
    block = render("", "study", "agreement_x")
    assert "whole sample (n = 5): Spearman **1.000**" in block and "mean |ours - table| **5.00**" in block
    assert "top quartile: only 1 architectures" in block
    assert "more than 10 points from the table: 1 (`a` (ours 10.0, table 30.0))" in block


def test_every_committed_paper_yaml_reads_as_claims():
    """Each method's paper.yaml is read by the claims section (a malformed entry fails here)."""
    from nasrepro.tracking.leaderboard import METHODS_DIR

    found = claims.read_claims(METHODS_DIR)
    files = sorted(METHODS_DIR.glob("*/paper.yaml"))
    assert len(files) >= 2 and len(found) >= 2
    assert all(c.citation and c.task and isinstance(c.value, float) for c in found)
    assert claims.judge_all(found, [])[0].verdict == "not yet run"
