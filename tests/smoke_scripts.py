"""The reproduce scripts' smoke runs, started in the background as soon as pytest has collected them.

Each script is a chain of short `nasrepro` processes that mostly start Python and import torch, so
they overlap well with the rest of the suite: two at a time (one thread each) run beside the other
tests from the start of the session, and `tests/test_reproduce.py` waits for each one's result.
Nothing starts when no reproduce test was collected (e.g. `pytest tests/test_cli.py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

AT_ONCE = 2
#: where the session's `SmokeRuns` is kept (`config.stash`)
KEY: pytest.StashKey[SmokeRuns] = pytest.StashKey()


class SmokeRuns:
    def __init__(self, scripts: list[Path], data_root: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nasrepro-smoke-"))
        self.env = dict(
            os.environ,
            NASREPRO_DATA=str(data_root),
            WANDB_MODE="offline",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        self.done = {script: threading.Event() for script in scripts}
        self.codes: dict[Path, int] = {}
        self.processes: dict[Path, subprocess.Popen] = {}
        self._slots = threading.Semaphore(AT_ONCE)
        self._stopped = False
        threading.Thread(target=self._run_all, args=(scripts,), daemon=True).start()

    def out(self, script: Path) -> Path:
        return self.root / script.stem

    def log(self, script: Path) -> Path:
        return self.root / f"{script.stem}.log"

    def _run_all(self, scripts: list[Path]) -> None:
        for script in scripts:
            self._slots.acquire()
            if self._stopped:
                return
            threading.Thread(target=self._run_one, args=(script,), daemon=True).start()

    def _run_one(self, script: Path) -> None:
        try:
            self.out(script).mkdir(parents=True, exist_ok=True)
            with open(self.log(script), "w") as log:
                command = ["bash", str(script), "--preset", "smoke", "--out", str(self.out(script))]
                process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
                self.processes[script] = process
                self.codes[script] = process.wait()
        finally:
            self._slots.release()
            self.done[script].set()

    def wait(self, script: Path, timeout: float) -> tuple[int | None, Path, str]:
        """The script's exit code (None if it did not finish in time), output folder and log."""
        finished = self.done[script].wait(timeout)
        log = self.log(script).read_text() if self.log(script).exists() else ""
        return (self.codes.get(script) if finished else None), self.out(script), log

    def stop(self) -> None:
        self._stopped = True
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
