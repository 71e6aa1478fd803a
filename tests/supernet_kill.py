"""Shared scaffolding of the one-shot SIGKILL-and-resume tests (ProxylessNAS, NAO-WS).

Each test runs a real search in a child interpreter (one thread, so every run sums floats in the
same order), kills it with SIGKILL once a supernet epoch checkpoint of a chosen epoch is on disk,
resumes it, and compares the record with an uninterrupted run. The child prints where the supernet
fit started from (``ckpt_path ...``), so a test can tell a resumed fit from a fresh one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from nasrepro.harness.oneshot import SUPERNET_CHECKPOINT
from nasrepro.tracking.records import read_record

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import lightning
    import torch
    torch.set_num_threads(1)  # the same float summation order in every run
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.search import run_search

    fit = lightning.Trainer.fit

    def reporting_fit(self, *args, **kwargs):  # tells the test where the supernet fit started from
        if {only_weight_fits}:
            print("ckpt_path", kwargs.get("ckpt_path"), flush=True)
        return fit(self, *args, **kwargs)

    lightning.Trainer.fit = reporting_fit

    req = SearchRequest(method={method!r}, task={task!r}, preset="smoke", seed=0, wandb="disabled",
                        measure=False, data_dir=Path(sys.argv[1]), out=Path(sys.argv[2]),
                        checkpoint_seconds=0.0, resume=sys.argv[3] == "1", method_config={config!r},
                        **{extra!r})
    print(run_search(req)[1], flush=True)
""")


class KilledSearch:
    """One search request run as child processes under `tmp_path` (see the module docstring)."""

    def __init__(
        self,
        tmp_path: Path,
        data_root: Path,
        method: str,
        task: str,
        config: dict[str, Any],
        *,
        only_weight_fits: bool = False,
        **request: Any,
    ) -> None:
        """`only_weight_fits`: report only fits given ``weights_only`` (a method whose search also
        trains stand-alone networks reports those fits too otherwise); `request`: further
        `SearchRequest` fields (e.g. budget)."""
        self.script = tmp_path / f"run_{method}.py"
        condition = "kwargs.get('weights_only')" if only_weight_fits else "True"
        self.script.write_text(
            SCRIPT.format(method=method, task=task, config=config, extra=request, only_weight_fits=condition)
        )
        self.data_root = data_root

    def start(self, out: Path, resume: bool) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        args = [sys.executable, str(self.script), str(self.data_root), str(out), "1" if resume else "0"]
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    @staticmethod
    def finish(proc: subprocess.Popen, out: Path, timeout: float = 300) -> tuple[dict, str]:
        """The record and the line saying which checkpoint (None: none) the supernet fit started from."""
        stdout, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err.decode()[-3000:]
        (path,) = out.rglob("*.json")
        (started_from,) = [line for line in stdout.decode().splitlines() if line.startswith("ckpt_path")]
        return read_record(path), started_from

    @staticmethod
    def kill_after(proc: subprocess.Popen, out: Path, epoch: int, within: float) -> int:
        """SIGKILL `proc` once a supernet checkpoint of epoch >= `epoch` is saved; that epoch."""
        deadline = time.monotonic() + within
        while (saved := saved_epoch(out)) is None or saved < epoch:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-3000:]
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return saved


def saved_epoch(out: Path) -> int | None:
    """The epoch of the latest supernet checkpoint (atomically replaced, so always whole), if any."""
    found = [p for p in out.rglob(SUPERNET_CHECKPOINT) if p.is_file()]
    if not found:
        return None
    return int(torch.load(found[0], map_location="cpu", weights_only=True)["epoch"])
