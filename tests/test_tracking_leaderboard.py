import json
import shutil
from pathlib import Path

from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search
from nasrepro.tracking import optima
from nasrepro.tracking.leaderboard import build, group
from nasrepro.tracking.record import Record
from nasrepro.tracking.records import iter_loaded

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "runs"


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
    optima.write(tmp_path, {"toy": optima.compute(toy_task.table().items(), source="toy table")})
    readmes = tmp_path / "methods"
    (readmes / "random").mkdir(parents=True)
    (readmes / "random" / "README.md").write_text(
        "Hand text.\n<!-- leaderboard:results@toy:begin -->\n<!-- leaderboard:results@toy:end -->\n"
    )
    first = build(tmp_path, readmes_dir=readmes)
    snapshot = {p: p.read_bytes() for p in first}
    second = build(tmp_path, readmes_dir=readmes)
    assert [p for p in first if p.suffix != ".md" or p.name == "LEADERBOARD.md"] == second
    assert all(p.read_bytes() == snapshot[p] for p in second)
    block = (readmes / "random" / "README.md").read_text()
    assert block.startswith("Hand text.\n") and "| toy | random | smoke | 10 | 3 |" in block
    assert any(p.name == "toy_regret.png" for p in first)  # the optimum is known: regret curves
    for name in ("leaderboard_ranks.json", "leaderboard_claims.json"):
        assert (tmp_path / name).exists()
    assert json.loads((tmp_path / "leaderboard.json").read_text())[0]["charged_seconds_mean"] is not None
    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## toy" in board
    rows = [line for line in board.splitlines() if line.startswith("| random ")]
    assert len(rows) == 1 and "| 3 |" in rows[0]  # n seeds stated
    rs_row = next(line for line in board.splitlines() if line.startswith("| random-sampling "))
    assert rs_row.split("|")[8].strip() == "—"  # no RI of the baseline against itself
    assert rows[0].split("|")[8].strip().startswith("+")  # random search beats random sampling here
    assert any(p.name.endswith("best_so_far.png") for p in first)


def test_leaderboard_reads_committed_record_layouts(tmp_path):
    """The leaderboard reads records through `Record`: a search record in the oldest committed layout
    (no `tag`, no `method_extra`, no charged cost or method overhead: made from a committed record by
    removing what later harnesses added) and a reference evaluate record both land in their rows."""
    picked = {}
    for path in sorted(COMMITTED.rglob("*.json")):
        data = json.loads(path.read_text())
        if data["kind"] == "search" and not data.get("tag") and len(data["history"]) <= 100:
            picked.setdefault("old search", path)
        if data["kind"] == "evaluate" and data["space"]["name"] == "reference":
            picked.setdefault("reference", path)
        if len(picked) == 2:
            break
    assert len(picked) == 2
    for kind, path in picked.items():
        target = tmp_path / path.relative_to(COMMITTED.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        if kind == "old search":
            data = json.loads(target.read_text())
            for key in ("tag", "method_extra"):
                data.pop(key, None)
            for key in ("charged_cost", "method_overhead_seconds"):
                data["search_cost"].pop(key, None)
            target.write_text(json.dumps(data))
    loaded = [record for _, record in iter_loaded(tmp_path)]
    assert all(isinstance(r, Record) for r in loaded)
    names = {row.method for rows in group(loaded).values() for row in rows}
    old, ref = (json.loads(picked[k].read_text()) for k in ("old search", "reference"))
    assert names == {old["method"], f"{ref['method']} (trained)"}
    board = (build(tmp_path)[0]).read_text()
    assert f"| {old['method']} | {old['preset']} |" in board
