"""SIGKILL a ProxylessNAS search between supernet epochs, resume it, and compare with an uninterrupted run.

The supernet fit is the expensive state of a one-shot search; it is checkpointed at every epoch end
(`harness.oneshot.SupernetCheckpoint`) and a resumed run must continue it exactly: same alphas, same epoch log,
same derived architecture, the one evaluator query spent once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from supernet_kill import KilledSearch

from nasrepro.harness.oneshot import SUPERNET_CHECKPOINT
from nasrepro.tracking.records import strip_volatile

#: 1 warm-up + 4 joint epochs of 5 batches; joint epochs 1-3 each take an architecture step
CONFIG = {"warmup_epochs": 1, "epochs": 4, "train_batches": 5}
EPOCHS = 5

#: per-epoch log entries that are wall-clock measurements, not results
TIMINGS = ("weight_step_ms", "arch_step_ms")


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


def search_of(tmp_path: Path, data_root: Path) -> KilledSearch:
    return KilledSearch(tmp_path, data_root, "proxylessnas", "nasbench201/cifar10", CONFIG, budget=1)


def test_sigkill_between_supernet_epochs_then_resume_equals_uninterrupted(
    tmp_path: Path, data_root: Path
) -> None:
    search = search_of(tmp_path, data_root)
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    reference_proc = search.start(reference_out, resume=False)  # runs alongside
    proc = search.start(out, resume=False)
    # Kill once a joint epoch with an architecture step (Adam state, alpha moved) has been saved.
    epoch = search.kill_after(proc, out, epoch=2, within=90)
    assert epoch < EPOCHS - 1, "the search finished its fit before it could be killed"
    assert not list(out.rglob("*.json")), "a killed search must not leave a record"
    (checkpoint,) = out.rglob("*.checkpoint")
    assert checkpoint.stat().st_size > 0  # the search checkpoint carries the wall time spent so far

    resumed, started_from = search.finish(search.start(out, resume=True), out, timeout=120)
    assert started_from.endswith(SUPERNET_CHECKPOINT), started_from
    reference, started_from = search.finish(reference_proc, reference_out, timeout=120)
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
    search, out = search_of(tmp_path, data_root), tmp_path / "out"
    search.kill_after(search.start(out, resume=False), out, epoch=0, within=90)
    (stale,) = out.rglob(SUPERNET_CHECKPOINT)
    payload = torch.load(stale, map_location="cpu", weights_only=True)
    payload["proxyless"]["epoch_log"] = [{"epoch": -1}]  # would show in the record if it were reused
    torch.save(payload, stale)

    refused = search.start(out, resume=False)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode != 0 and "rerun with --resume to continue it" in err.decode()
    assert stale.exists()

    (search_checkpoint,) = out.rglob(".*.checkpoint")
    search_checkpoint.unlink()  # the user chose to start over
    record, started_from = search.finish(search.start(out, resume=False), out, timeout=120)
    assert started_from == "ckpt_path None"
    assert [row["epoch"] for row in record["method_extra"]["log"]["epochs"]] == list(range(EPOCHS))
    assert not list(out.rglob(SUPERNET_CHECKPOINT))
