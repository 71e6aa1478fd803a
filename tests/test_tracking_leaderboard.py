from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.tracking.leaderboard import build


def make_records(tmp_path, monkeypatch, toy_task):
    from nasrepro import tasks

    tasks._load()
    monkeypatch.setitem(tasks._instances, "toy", toy_task)
    for method in ("random-sampling", "random", "evolution"):
        for seed in range(3):
            config = {"population": 4, "sample_size": 2} if method == "evolution" else {}
            run_search(
                SearchRequest(
                    method=method,
                    task="toy",
                    seed=seed,
                    budget=10,
                    preset="smoke",
                    out=tmp_path,
                    wandb="disabled",
                    method_config=config,
                )
            )


def test_leaderboard_rows_and_byte_stability(tmp_path, monkeypatch, toy_task):
    make_records(tmp_path, monkeypatch, toy_task)
    first = build(tmp_path)
    snapshot = {p: p.read_bytes() for p in first}
    second = build(tmp_path)
    assert first == second and all(p.read_bytes() == snapshot[p] for p in second)
    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## toy" in board
    rows = [line for line in board.splitlines() if line.startswith("| random ")]
    assert len(rows) == 1 and "| 3 |" in rows[0]  # n seeds stated
    rs_row = next(line for line in board.splitlines() if line.startswith("| random-sampling "))
    assert rs_row.split("|")[8].strip() == "—"  # no RI of the baseline against itself
    assert rows[0].split("|")[8].strip().startswith("+")  # random search beats random sampling here
    assert any(p.name.endswith("best_so_far.png") for p in first)
