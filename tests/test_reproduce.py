"""Every reproduce script runs end to end with `--preset smoke` into a temporary folder, so no
recipe goes stale (NASLib's scripts pointed at files that no longer existed)."""

import os
import subprocess
from pathlib import Path

import pytest

from nasrepro.tracking.records import iter_records

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "reproduce").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_smoke_preset_runs_and_writes_records(script, tmp_path, data_root):
    env = dict(os.environ, NASREPRO_DATA=str(data_root), WANDB_MODE="offline")
    proc = subprocess.run(
        ["bash", str(script), "--preset", "smoke", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list(iter_records(tmp_path))
    assert records, "the script wrote no run records"
    assert all(r["preset"] == "smoke" for _, r in records)
    assert (tmp_path / "LEADERBOARD.md").is_file()


def test_scripts_reject_unknown_presets(tmp_path):
    for script in SCRIPTS:
        proc = subprocess.run(
            ["bash", str(script), "--preset", "huge", "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "smoke" in proc.stderr
