"""A real 2-process DDP fit on the CPU equals the single-process fit, bit for bit.

`fit_and_evaluate(..., devices=2, strategy="ddp", accelerator="cpu")` trains the reference GCN on
Cora in two processes joined by the gloo backend. Lightning's `ddp` strategy re-launches the
running *script* for every extra rank, which a pytest process is not, so the fit runs in a small
script (written to `tmp_path`) under `subprocess`; `ddp_spawn` is not needed.

Why the results must be identical, not merely close:
- full-batch training: every rank sees the whole graph (the distributed sampler hands both ranks the
  single "batch"), so each rank's gradient is the single-process gradient on the same weights;
- every rank seeds with the same seed (`seed_everything` does not offset it by rank), so both draw
  the same dropout masks as the single process;
- DDP averages the two (identical) gradients: (g + g) / 2 and g/2 + g/2 are exact in floating point;
- every process runs one intra-op thread (`OMP_NUM_THREADS=1`), so summation orders agree.
So the tolerance is zero; the final weights are compared by hash as well. A per-rank dropout seed
would break the second point -- then the averaged gradient is an unbiased two-mask estimate and
only a statistical tolerance (a few points of accuracy) would be principled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasrepro.tasks import get_task

SCRIPT = '''
"""Fit the reference GCN on Cora through fit_and_evaluate; every rank writes its result."""
import argparse
import hashlib
import json
from pathlib import Path

import lightning as L
import torch

from nasrepro.harness.recipe import with_overrides
from nasrepro.harness.quiet import quiet_lightning
from nasrepro.harness.training import fit_and_evaluate
from nasrepro.tasks import get_task

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--data-dir", required=True)
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--strategy", default="auto")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

quiet_lightning()
task = get_task("cora")
reference = task.reference_arch("gcn")
preset = with_overrides(task.preset("smoke"), reference.recipe)
L.seed_everything(args.seed, verbose=False)  # the weight initialisation, identical in every process
model = reference.build(task)
result = fit_and_evaluate(
    task, model, preset, args.seed, Path(args.data_dir),
    devices=args.devices, strategy=args.strategy, accelerator="cpu",
)
dist = torch.distributed
joined = dist.is_available() and dist.is_initialized()
rank, world = (dist.get_rank(), dist.get_world_size()) if joined else (0, 1)
weights = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().tobytes()
result.update(
    rank=rank, world_size=world, threads=torch.get_num_threads(),
    weights_sha256=hashlib.sha256(weights).hexdigest(),
)
Path(args.out, f"devices{args.devices}-rank{rank}.json").write_text(json.dumps(result))
'''

TIMEOUT = 300


def launch(script: Path, out: Path, data_root: Path, devices: int, strategy: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # Lightning keeps it; every process sums in the same order
        "GLOO_SOCKET_IFNAME": "lo",  # the process group talks over loopback only
        "MASTER_ADDR": "127.0.0.1",
    }
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    command = [sys.executable, str(script), "--out", str(out), "--data-dir", str(data_root)]
    command += ["--devices", str(devices), "--strategy", strategy]
    return subprocess.Popen(
        command, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen) -> None:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"fit did not finish in {TIMEOUT} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_ddp_fit_equals_single_process_fit(tmp_path, data_root):
    script = tmp_path / "fit_gcn.py"
    script.write_text(SCRIPT)
    # Both fits at once: three single-threaded processes on two cores.
    runs = [launch(script, tmp_path, data_root, 2, "ddp"), launch(script, tmp_path, data_root, 1, "auto")]
    for process in runs:
        finish(process)

    single = json.loads((tmp_path / "devices1-rank0.json").read_text())
    ranks = [json.loads((tmp_path / f"devices2-rank{r}.json").read_text()) for r in (0, 1)]
    assert single["world_size"] == 1
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert {r["threads"] for r in [single, *ranks]} == {1}
    for result in ranks:
        assert (result["val"], result["test"]) == (single["val"], single["test"])
        assert result["weights_sha256"] == single["weights_sha256"]
        assert result["epochs"] == single["epochs"] == get_task("cora").preset("smoke").recipe.epochs
    assert single["val"] > 2 * 100 / 7  # it learned (twice chance on 7 classes), not an untrained net
