"""Every reproduce script runs end to end with `--preset smoke` into a temporary folder, so no
recipe goes stale (NASLib's scripts pointed at files that no longer existed).

The scripts are independent processes that spend most of their time starting Python and importing
torch, one command after another, so they are started together the first time any of them is
checked (one thread each), and each test waits for its own: the suite pays for the slowest script
and the cores' share of the rest, not for their sum.
"""

import os
import subprocess
from pathlib import Path

import pytest

from nasrepro.tracking.records import iter_records

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "reproduce").glob("*.sh"))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, data_root):
    env = dict(
        os.environ,
        NASREPRO_DATA=str(data_root),
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    runs = {}
    for script in SCRIPTS:
        out = tmp_path_factory.mktemp(script.stem)
        log = open(out.parent / f"{script.stem}.log", "w+")  # noqa: SIM115  (closed below)
        command = ["bash", str(script), "--preset", "smoke", "--out", str(out)]
        runs[script] = (subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), out, log)
    yield runs
    for process, _, log in runs.values():
        if process.poll() is None:
            process.kill()
        log.close()


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_smoke_preset_runs_and_writes_records(script, smoke_runs):
    process, out, log = smoke_runs[script]
    code = process.wait(timeout=1500)
    log.seek(0)
    assert code == 0, log.read()[-3000:]
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
