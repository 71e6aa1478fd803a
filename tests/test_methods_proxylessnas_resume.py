"""SIGKILL a ProxylessNAS search between supernet epochs, resume it, and compare with an uninterrupted run.

The supernet fit is the expensive state of a one-shot search; it is checkpointed at every epoch end
(`harness.oneshot.SupernetCheckpoint`) and a resumed run must continue it exactly: same alphas, same epoch log,
same derived architecture, the one evaluator query spent once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nasrepro.harness.oneshot import SUPERNET_CHECKPOINT
from nasrepro.tracking.records import read_record, strip_volatile

#: 1 warm-up + 4 joint epochs of 5 batches; joint epochs 1-3 each take an architecture step
CONFIG = {"warmup_epochs": 1, "epochs": 4, "train_batches": 5}
EPOCHS = 5

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import lightning
    import torch
    torch.set_num_threads(1)  # the same float summation order in every run
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.search import run_search

    fit = lightning.Trainer.fit

    def reporting_fit(self, *args, **kwargs):  # tells the test where the fit started from
        print("ckpt_path", kwargs.get("ckpt_path"), flush=True)
        return fit(self, *args, **kwargs)

    lightning.Trainer.fit = reporting_fit

    req = SearchRequest(method="proxylessnas", task="nasbench201/cifar10", preset="smoke", budget=1, seed=0,
                        wandb="disabled", measure=False, data_dir=Path(sys.argv[1]), out=Path(sys.argv[2]),
                        checkpoint_seconds=0.0, resume=sys.argv[3] == "1", method_config={config})
    print(run_search(req)[1], flush=True)
""")

#: per-epoch log entries that are wall-clock measurements, not results
TIMINGS = ("weight_step_ms", "arch_step_ms")


def start(tmp_path: Path, data_root: Path, out: Path, resume: bool) -> subprocess.Popen:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(config=CONFIG))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(data_root), str(out), "1" if resume else "0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def finish(proc: subprocess.Popen, out: Path) -> tuple[dict, str]:
    """The record and the line saying which checkpoint (None: none) the supernet fit started from."""
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    (path,) = out.rglob("*.json")
    (started_from,) = [line for line in stdout.decode().splitlines() if line.startswith("ckpt_path")]
    return read_record(path), started_from


def comparable(record: dict) -> dict:
    """What must equal across an interrupted and an uninterrupted run (timings removed)."""
    extra = dict(record["method_extra"])
    extra.pop("supernet_seconds")
    log = dict(extra.pop("log"))
    log["epochs"] = [{k: v for k, v in row.items() if k not in TIMINGS} for row in log["epochs"]]
    cost = {k: v for k, v in record["search_cost"].items() if k != "method_overhead_seconds"}  # wall time
    return strip_volatile(
        {**record, "search_cost": cost, "method_extra": {**extra, "log": log}, "config": {}}
    )


def saved_epoch(out: Path) -> int | None:
    """The epoch of the latest supernet checkpoint (atomically replaced, so always whole), if any."""
    found = [p for p in out.rglob(SUPERNET_CHECKPOINT) if p.is_file()]
    if not found:
        return None
    return int(torch.load(found[0], map_location="cpu", weights_only=True)["epoch"])


def test_sigkill_between_supernet_epochs_then_resume_equals_uninterrupted(
    tmp_path: Path, data_root: Path
) -> None:
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    reference_proc = start(tmp_path, data_root, reference_out, resume=False)  # runs alongside
    proc = start(tmp_path, data_root, out, resume=False)

    # Kill once a joint epoch with an architecture step (Adam state, alpha moved) has been saved.
    deadline = time.monotonic() + 90
    while (epoch := saved_epoch(out)) is None or epoch < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert epoch < EPOCHS - 1, "the search finished its fit before it could be killed"
    assert not list(out.rglob("*.json")), "a killed search must not leave a record"
    (checkpoint,) = out.rglob("*.checkpoint")
    assert checkpoint.stat().st_size > 0  # the search checkpoint carries the wall time spent so far

    resumed, started_from = finish(start(tmp_path, data_root, out, resume=True), out)
    assert started_from.endswith(SUPERNET_CHECKPOINT), started_from
    reference, started_from = finish(reference_proc, reference_out)
    assert started_from == "ckpt_path None"
    assert resumed["best_arch"] == reference["best_arch"]
    assert resumed["method_extra"]["alpha_probs"] == reference["method_extra"]["alpha_probs"]
    assert [row["epoch"] for row in resumed["method_extra"]["log"]["epochs"]] == list(range(EPOCHS))
    assert comparable(resumed) == comparable(reference)
    assert resumed["search_cost"]["queries"] == 1
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert not leftovers and not list(out.rglob("*.artifacts")), leftovers


@pytest.mark.slow  # 45 s of supernet fits; the runner's refusal itself is tested in test_harness_resume.py
def test_a_fresh_run_refuses_then_ignores_a_stale_supernet_checkpoint(
    tmp_path: Path, data_root: Path
) -> None:
    """Without --resume a killed run's state is never silently overwritten: the run refuses and says
    how to go on; once the search checkpoint is deleted, the left-over supernet state is discarded."""
    out = tmp_path / "out"
    proc = start(tmp_path, data_root, out, resume=False)
    deadline = time.monotonic() + 90
    while saved_epoch(out) is None:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (stale,) = out.rglob(SUPERNET_CHECKPOINT)
    payload = torch.load(stale, map_location="cpu", weights_only=True)
    payload["proxyless"]["epoch_log"] = [{"epoch": -1}]  # would show in the record if it were reused
    torch.save(payload, stale)

    refused = start(tmp_path, data_root, out, resume=False)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode != 0 and "rerun with --resume to continue it" in err.decode()
    assert stale.exists()

    (search_checkpoint,) = out.rglob(".*.checkpoint")
    search_checkpoint.unlink()  # the user chose to start over
    record, started_from = finish(start(tmp_path, data_root, out, resume=False), out)
    assert started_from == "ckpt_path None"
    assert [row["epoch"] for row in record["method_extra"]["log"]["epochs"]] == list(range(EPOCHS))
    assert not list(out.rglob(SUPERNET_CHECKPOINT))
