"""SIGKILL a NAO-WS search between supernet epochs, resume it, and compare with an uninterrupted run.

The supernet fit and the controller rounds inside it are checkpointed at every epoch end
(`harness.oneshot.SupernetCheckpoint`, `WSSearchModule.on_save_checkpoint`); a resumed run must
continue them exactly: same pool, same round log (EPD weights included), same re-ranking (redone,
seeded per rank) and the one evaluator query spent once.
"""

from __future__ import annotations

from pathlib import Path

from supernet_kill import KilledSearch

from nasrepro.harness.oneshot import SUPERNET_CHECKPOINT
from nasrepro.tracking.records import strip_volatile

#: 4 epochs of 2 batches, scored after each: 3 controller rounds, then the final ranking
CONFIG = {"epochs": 4, "eval_every": 1, "train_batches": 2, "seed_archs": 5, "new_archs": 2, "top_k": 4,
          "epd_epochs": 2, "rerank_top": 2}  # fmt: skip
EPOCHS = 4


def comparable(record: dict) -> dict:
    extra = {k: v for k, v in record["method_extra"].items() if "seconds" not in k}
    cost = {k: v for k, v in record["search_cost"].items() if k != "method_overhead_seconds"}
    history = [
        {k: v for k, v in q.items() if "seconds" not in k and k != "cumulative_cost"}
        for q in record["history"]
    ]
    for q in history:
        q["metrics"] = {k: v for k, v in q["metrics"].items() if "seconds" not in k}
    return strip_volatile(
        {**record, "search_cost": cost, "method_extra": extra, "history": history, "config": {}}
    )


def test_sigkill_between_supernet_epochs_then_resume_equals_uninterrupted(tmp_path: Path, data_root: Path):
    search = KilledSearch(tmp_path, data_root, "nao-ws", "cifar10", CONFIG, only_weight_fits=True)
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    reference_proc = search.start(reference_out, resume=False)
    proc = search.start(out, resume=False)
    # Kill once an epoch with a controller round (EPD trained, pool renewed) has been saved.
    epoch = search.kill_after(proc, out, epoch=1, within=240)
    assert epoch < EPOCHS - 1, "the search finished its fit before it could be killed"
    assert not list(out.rglob("*.json")), "a killed search must not leave a record"

    resumed, started_from = search.finish(search.start(out, resume=True), out)
    assert started_from.endswith(SUPERNET_CHECKPOINT), started_from
    reference, started_from = search.finish(reference_proc, reference_out)
    assert started_from == "ckpt_path None"
    assert [r["epoch"] for r in resumed["method_extra"]["rounds"]] == list(range(1, EPOCHS + 1))
    assert resumed["method_extra"]["rounds"] == reference["method_extra"]["rounds"]
    assert comparable(resumed) == comparable(reference)
    assert resumed["search_cost"]["queries"] == 1
