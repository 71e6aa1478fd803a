"""Every reproduce script runs end to end with `--preset smoke` into a temporary folder, so no
recipe goes stale (NASLib's scripts pointed at files that no longer existed).

The scripts run in the background from the start of the session, beside the other tests
(`tests/smoke_scripts.py`, started by `conftest.pytest_collection_modifyitems`); each test here
waits for its own script's result.
"""

import subprocess
from pathlib import Path

import pytest

from nasrepro.tracking.records import iter_records

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "reproduce").glob("*.sh"))


@pytest.fixture(scope="module")
def smoke_runs(request, data_root):
    import smoke_scripts

    runs = request.config.stash.get(smoke_scripts.KEY, None)
    if runs is None:  # collected some other way: start them now
        runs = smoke_scripts.SmokeRuns(SCRIPTS, data_root)
        request.config.stash[smoke_scripts.KEY] = runs
    return runs


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_smoke_preset_runs_and_writes_records(script, smoke_runs):
    code, out, log = smoke_runs.wait(script, timeout=1400)
    assert code == 0, log[-3000:]
    records = list(iter_records(out))
    assert records, "the script wrote no run records"
    assert all(r["preset"] == "smoke" for _, r in records)
    assert (out / "LEADERBOARD.md").is_file()


def test_scripts_reject_unknown_presets(tmp_path):
    for script in SCRIPTS:
        proc = subprocess.run(
            ["bash", str(script), "--preset", "huge", "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "smoke" in proc.stderr
