"""SIGKILL a NAO-WS search between supernet epochs, resume it, and compare with an uninterrupted run.

The supernet fit and the controller rounds inside it are checkpointed at every epoch end
(`harness.oneshot.SupernetCheckpoint`, `WSSearchModule.on_save_checkpoint`); a resumed run must
continue them exactly: same pool, same round log (EPD weights included), same re-ranking (redone,
seeded per rank) and the one evaluator query spent once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from nasrepro.harness.oneshot import SUPERNET_CHECKPOINT
from nasrepro.tracking.records import read_record, strip_volatile

#: 4 epochs of 2 batches, scored after each: 3 controller rounds, then the final ranking
CONFIG = {"epochs": 4, "eval_every": 1, "train_batches": 2, "seed_archs": 5, "new_archs": 2, "top_k": 4,
          "epd_epochs": 2, "rerank_top": 2}  # fmt: skip
EPOCHS = 4

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import lightning
    import torch
    torch.set_num_threads(1)
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.search import run_search

    fit = lightning.Trainer.fit

    def reporting_fit(self, *args, **kwargs):  # tells the test where the supernet fit started from
        if kwargs.get("weights_only"):
            print("ckpt_path", kwargs.get("ckpt_path"), flush=True)
        return fit(self, *args, **kwargs)

    lightning.Trainer.fit = reporting_fit

    req = SearchRequest(method="nao-ws", task="cifar10", preset="smoke", seed=0, wandb="disabled",
                        measure=False, data_dir=Path(sys.argv[1]), out=Path(sys.argv[2]),
                        checkpoint_seconds=0.0, resume=sys.argv[3] == "1", method_config={config})
    print(run_search(req)[1], flush=True)
""")


def start(tmp_path: Path, data_root: Path, out: Path, resume: bool) -> subprocess.Popen:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(config=CONFIG))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(data_root), str(out), "1" if resume else "0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def finish(proc: subprocess.Popen, out: Path) -> tuple[dict, str]:
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    (path,) = out.rglob("*.json")
    (started_from,) = [line for line in stdout.decode().splitlines() if line.startswith("ckpt_path")]
    return read_record(path), started_from


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


def saved_epoch(out: Path) -> int | None:
    found = [p for p in out.rglob(SUPERNET_CHECKPOINT) if p.is_file()]
    if not found:
        return None
    return int(torch.load(found[0], map_location="cpu", weights_only=True)["epoch"])


def test_sigkill_between_supernet_epochs_then_resume_equals_uninterrupted(tmp_path: Path, data_root: Path):
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    reference_proc = start(tmp_path, data_root, reference_out, resume=False)
    proc = start(tmp_path, data_root, out, resume=False)

    # Kill once an epoch with a controller round (EPD trained, pool renewed) has been saved.
    deadline = time.monotonic() + 240
    while (epoch := saved_epoch(out)) is None or epoch < 1:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert epoch < EPOCHS - 1, "the search finished its fit before it could be killed"
    assert not list(out.rglob("*.json")), "a killed search must not leave a record"

    resumed, started_from = finish(start(tmp_path, data_root, out, resume=True), out)
    assert started_from.endswith(SUPERNET_CHECKPOINT), started_from
    reference, started_from = finish(reference_proc, reference_out)
    assert started_from == "ckpt_path None"
    assert [r["epoch"] for r in resumed["method_extra"]["rounds"]] == list(range(1, EPOCHS + 1))
    assert resumed["method_extra"]["rounds"] == reference["method_extra"]["rounds"]
    assert comparable(resumed) == comparable(reference)
    assert resumed["search_cost"]["queries"] == 1
