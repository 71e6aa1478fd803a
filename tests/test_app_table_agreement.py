"""The table-agreement study (issue 16 item 2): stratified by table validation accuracy, rank and
absolute agreement with bootstrap intervals, and a noise ceiling that behaves like one."""

import numpy as np
import pytest

from nasrepro.app.studies.table_agreement import agreement, stratified_archs
from nasrepro.errors import UsageError
from nasrepro.tasks import get_task


def test_sample_takes_one_architecture_per_validation_stratum():
    task = get_task("nasbench-graph/cora")
    archs = stratified_archs(task, 12)
    assert archs == stratified_archs(task, 12) and len(set(archs)) == 12
    space, table = task.space(), task.table()
    vals = [table.lookup(space.parse(a)).val for a in archs]
    assert vals == sorted(vals)  # strata are in order of validation accuracy
    assert vals[0] < 70 and vals[-1] > 80  # the whole range, not a 6-point band


def test_agreement_ranks_a_faithful_replica_high_and_a_reversed_one_negative():
    rng = np.random.default_rng(0)
    table = np.linspace(60, 84, 40)
    spread = np.full(40, 0.5)
    faithful = agreement(table + rng.normal(0, 0.4, 40), table, spread)
    assert faithful["spearman"] > 0.95 and faithful["mean_abs_diff"] < 1
    lo, hi = faithful["spearman_ci95"]
    assert lo <= faithful["spearman"] <= hi
    reversed_ = agreement(table[::-1].copy(), table, spread)
    assert reversed_["spearman"] < -0.95 and reversed_["kendall"] < -0.9


def test_noise_ceiling_falls_with_the_per_seed_spread():
    table = np.linspace(78, 82, 30)  # a narrow band, like a search's top quartile
    quiet = agreement(table, table, np.full(30, 0.01))
    noisy = agreement(table, table, np.full(30, 2.0))
    assert quiet["ceiling_spearman"] > 0.99 > noisy["ceiling_spearman"]
    assert noisy["ceiling_mean_abs_diff"] == pytest.approx(2 * np.sqrt(2 / 3) * np.sqrt(2 / np.pi), rel=0.1)


def test_noise_ceiling_of_a_table_whose_spread_is_only_seed_noise_is_zero():
    """All architectures equally good: the table's values differ by seed noise alone, so two replicas
    rank them independently. Treating the table's values as exact would claim about 0.58 here."""
    rng = np.random.default_rng(3)
    spread = np.full(200, 1.0)
    table = 80 + rng.normal(0, 1 / np.sqrt(3), 200)  # 3-seed means of one true accuracy
    pure_noise = agreement(table, table, spread)
    assert abs(pure_noise["ceiling_spearman"]) < 0.1 and pure_noise["ceiling_true_spread_fraction"] < 0.1
    signal = agreement(table, np.linspace(60, 84, 200), spread)
    assert signal["ceiling_spearman"] > 0.97 and signal["ceiling_true_spread_fraction"] > 0.99


def test_one_architecture_with_diverged_seeds_does_not_set_every_architectures_noise():
    # Cora's sample has two architectures with per-seed SDs of 39 and 21 points; pooling the noise
    # (the method of moments) gave them 88% of it and called 22% of the table's variance noise for
    # every architecture, so the "ceiling" fell below the observed agreement
    table = np.linspace(76, 84, 40)
    spread = np.full(40, 1.0)
    spread[20] = 40.0
    a = agreement(table, table, spread)  # pooled: 0% signal and a ceiling of 0.00
    assert a["ceiling_true_spread_fraction"] > 0.9 and a["ceiling_spearman"] > 0.8
    lo, hi = a["ceiling_spearman_range95"]
    assert lo <= a["ceiling_spearman"] <= hi < 1.0


def test_vectorised_rank_statistics_equal_scipy_with_ties():
    from scipy import stats

    from nasrepro.app.studies.table_agreement import kendall_b, spearman

    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, (5, 25)).astype(float), rng.integers(0, 6, (5, 25)).astype(float)
    for i in range(5):
        assert kendall_b(x, y)[i] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic)
        assert spearman(x, y)[i] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic)


@pytest.mark.parametrize(
    "argv,needle",
    [
        *(([f"--shard={shard}"], "--shard") for shard in ["2/2", "1", "a/b", "-1/2"]),
        (["--n", "3"], "--n must be at least 4"),
        (["--probe", "-1"], "--probe"),
        (["--out", "/nonexistent"], "need at least four trained architectures"),
        (["--task", "cora", "--table", "cora"], "--table must name a table task"),
        (["--task", "citeseer", "--table", "nasbench-graph/cora"], "tabulates cora, not --task citeseer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys):
    from nasrepro.cli import main as cli

    assert cli(["study", "table-agreement", *argv, "--summarise-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nasrepro: error: ") and needle in err


def test_studies_are_listed_and_an_unknown_one_is_refused(capsys):
    from nasrepro.app.studies import STUDIES
    from nasrepro.cli import main as cli

    assert cli(["study", "--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in STUDIES) and "live training" in listing.lower()
    assert cli(["study", "nope"]) == 2 and "no study 'nope'" in capsys.readouterr().err


def test_probe_seeds_are_reported_beside_a_far_architecture_and_kept_out_of_the_statistics(monkeypatch):
    """`--probe` trains a far architecture at seeds 3, 6, ...: the sample stays the seed-0 records."""
    from nasrepro.app.studies import table_agreement as study

    task = get_task("nasbench-graph/cora")
    space, table = task.space(), task.table()
    archs = stratified_archs(task, 6)

    def record(arch: str, seed: int, tests: list[float]) -> dict:
        return {
            "kind": "evaluate", "task": "cora", "preset": "cpu", "space": {"name": space.name}, "seed": seed,
            "config": {"preset": {"recipe": {"select": "min-val-loss"}}}, "best_arch": arch,
            "metrics": {"test": sum(tests) / len(tests), "test_seeds": tests},
        }  # fmt: skip

    sample = [record(a, 0, [table.lookup(space.parse(a)).test] * 3) for a in archs[1:]]
    far = archs[0]
    sample.append(record(far, 0, [table.lookup(space.parse(far)).test + 30.0] * 3))  # 30 points off
    probe = record(far, 3, [1.0, 2.0, 3.0])
    monkeypatch.setattr(study, "iter_records", lambda out: iter([(None, r) for r in [*sample, probe]]))
    summary = study.summarise(None, "cora", task, "cpu")
    assert summary["all"]["n"] == 6 and summary["all"]["mean_abs_diff"] == pytest.approx(5.0)
    assert [r["arch"] for r in summary["far"]] == [far]
    assert summary["far"][0]["probe_test_seeds"] == [1.0, 2.0, 3.0]
    assert "3 more seeds (`--probe`): 1.0, 2.0, 3.0" in study.render(summary, "f.png")
    assert "No finding recorded." in study.render(summary, "f.png")


def test_findings_are_attached_to_far_architectures_and_never_go_stale(tmp_path):
    from nasrepro.app.studies import table_agreement as study

    summary = {"far": [{"arch": "a", "ours_test_mean": 10.0, "table_test": 30.0, "ours_test_seeds": [10.0]}]}
    path = tmp_path / "f.yaml"
    study.add_findings(summary, path)  # no file: nothing attached
    assert "finding" not in summary["far"][0]
    path.write_text("a: >\n  collapses to a\n  constant prediction\n")
    study.add_findings(summary, path)
    assert summary["far"][0]["finding"] == "collapses to a constant prediction"
    assert study._far(summary["far"][0]).endswith("). collapses to a constant prediction")
    path.write_text("b: was far once\n")
    with pytest.raises(UsageError, match=r"not far from the table: \['b'\]"):
        study.add_findings(summary, path)


def test_figure_adds_a_top_quartile_panel_at_its_own_scale(tmp_path):
    import matplotlib.image

    from nasrepro.app.studies.table_agreement import plot

    ours, table = np.array([70.0, 60.0, 50.0, 80.5, 79.5]), np.array([71.0, 59.0, 52.0, 80.0, 80.2])
    rows = [
        {"table_test": t, "ours_test_mean": o, "ours_test_std": 0.5, "top_quartile": t >= 80}
        for o, t in zip(ours, table, strict=True)
    ]
    summary = {
        "task": "cora",
        "table": "nasbench-graph/cora",
        "rows": rows,
        "all": agreement(ours, table, np.ones(5)),
    }
    plot({**summary, "top_quartile": {"n": 2}}, tmp_path / "two.png")
    plot({**summary, "rows": [{**r, "top_quartile": False} for r in rows]}, tmp_path / "one.png")
    two, one = matplotlib.image.imread(tmp_path / "two.png"), matplotlib.image.imread(tmp_path / "one.png")
    assert two.shape[0] == one.shape[0] and two.shape[1] == 2 * one.shape[1]


def test_the_tables_own_validation_vs_test_agreement_is_reported():
    from nasrepro.app.studies.table_agreement import _with_self_agreement

    rows = [{"table_val": v, "table_test": t} for v, t in [(1, 10), (2, 20), (3, 30), (4, 40)]]
    assert _with_self_agreement({}, rows)["table_val_vs_test_kendall"] == pytest.approx(1.0)
    flipped = [{**r, "table_test": -r["table_test"]} for r in rows]
    assert _with_self_agreement({"n": 4}, flipped) == {
        "n": 4,
        "table_val_vs_test_kendall": pytest.approx(-1.0),
    }
