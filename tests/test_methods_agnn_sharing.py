"""AGNN's constrained parameter sharing: bit-equal inheritance of homogeneous layers only."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from nasrepro.harness.recipe import with_overrides
from nasrepro.harness.train_evaluator import TrainEvaluator
from nasrepro.methods.agnn.sharing import ConstrainedSharing
from nasrepro.spaces.graphnas import GraphNasSpace
from nasrepro.tasks import get_task

SPACE = GraphNasSpace()
TASK = SimpleNamespace(num_features=12, num_classes=3, name="toy")
PARENT = "gat,mean,relu,4,8|gcn,sum,linear,1,classes"


def trained_parent(sharing: ConstrainedSharing) -> torch.nn.Module:
    torch.manual_seed(0)
    model = SPACE.to_model(SPACE.parse(PARENT), TASK)
    with torch.no_grad():  # "training": weights no fresh initialisation could give
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    sharing.after_fit(PARENT, SPACE.parse(PARENT), model)
    sharing.parent = PARENT
    return model


def test_homogeneous_layers_are_inherited_bit_equal_and_the_output_layer_is_not():
    sharing = ConstrainedSharing(fine_tune_epochs=7)
    parent = trained_parent(sharing)
    child_arch = SPACE.parse("gat,mean,relu,4,8|gat,sum,linear,1,classes")  # output layer changed
    child = SPACE.to_model(child_arch, TASK)  # activation changed
    overrides = sharing.before_fit("child", child_arch, child)
    assert overrides["epochs"] == 7
    assert overrides["metrics"] == {
        "inherited_layers": 1.0,
        "shareable_layers": 1.0,
        "heterogeneous_layers": 0.0,
    }
    got, want = dict(child.named_parameters()), dict(parent.named_parameters())
    for name in got:
        if name.startswith("layers.0."):
            assert torch.equal(got[name], want[name]), name
        elif name in want and got[name].shape == want[name].shape:  # the output layer: never shared
            assert not torch.equal(got[name], want[name]), name


@pytest.mark.parametrize(
    ("homogeneity", "inherited"), [("paper", 0.0), ("shapes", 1.0)], ids=["paper", "shapes"]
)
def test_another_activation_is_not_homogeneous_under_the_paper_rule(homogeneity, inherited):
    """Same tensors, other activation: AGNN's homogeneity condition refuses, the shapes rule copies."""
    from nasrepro.methods.agnn.sharing import attention_and_activation

    signature = attention_and_activation if homogeneity == "paper" else None
    sharing = ConstrainedSharing(fine_tune_epochs=7, signature=signature)
    trained_parent(sharing)
    child_arch = SPACE.parse("gat,mean,elu,4,8|gcn,sum,linear,1,classes")
    child = SPACE.to_model(child_arch, TASK)
    metrics = sharing.before_fit("child", child_arch, child)["metrics"]
    assert metrics["inherited_layers"] == inherited
    assert metrics["heterogeneous_layers"] == 1.0 - inherited


def test_nothing_crosses_a_shape_mismatch():
    sharing = ConstrainedSharing(fine_tune_epochs=7)
    parent = trained_parent(sharing)
    child_arch = SPACE.parse("gat,mean,relu,4,16|gcn,sum,linear,1,classes")
    child = SPACE.to_model(child_arch, TASK)  # wider
    before = {n: p.clone() for n, p in child.named_parameters()}
    overrides = sharing.before_fit("child", child_arch, child)
    assert "epochs" not in overrides  # nothing inherited: trained with the full recipe
    assert overrides["metrics"]["inherited_layers"] == 0.0
    for name, p in child.named_parameters():
        assert torch.equal(p, before[name]), name
    assert parent is not None


def test_a_layer_with_other_tensors_is_not_homogeneous():
    sharing = ConstrainedSharing(fine_tune_epochs=7)
    trained_parent(sharing)
    # gcn has no attention vector: same weight shape, different tensor set -> no partial copy
    child_arch = SPACE.parse("gcn,mean,relu,4,8|gcn,sum,linear,1,classes")
    child = SPACE.to_model(child_arch, TASK)
    assert sharing.before_fit("child", child_arch, child)["metrics"]["inherited_layers"] == 0.0


def test_only_the_parent_is_a_source_and_retain_bounds_the_bank():
    sharing = ConstrainedSharing(fine_tune_epochs=7)
    trained_parent(sharing)
    sharing.parent = "someone-else"
    child_arch = SPACE.parse("gat,mean,elu,4,8|gcn,sum,linear,1,classes")
    child = SPACE.to_model(child_arch, TASK)
    assert sharing.before_fit("child", child_arch, child)["metrics"]["inherited_layers"] == 0.0
    sharing.retain([])
    assert not sharing.has(PARENT)


def test_a_restarted_search_reads_the_parent_from_the_store(tmp_path):
    """After a crash the parent's weights exist only on disk; a new instance must inherit them."""
    first = ConstrainedSharing(fine_tune_epochs=7, store=tmp_path)
    parent = trained_parent(first)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and not list(tmp_path.glob("*.tmp"))

    restarted = ConstrainedSharing(fine_tune_epochs=7, store=tmp_path)  # a fresh process
    restarted.parent = PARENT
    child_arch = SPACE.parse("gat,mean,relu,4,8|gat,sum,linear,1,classes")
    child = SPACE.to_model(child_arch, TASK)
    assert restarted.before_fit("child", child_arch, child)["metrics"]["inherited_layers"] == 1.0
    got, want = dict(child.named_parameters()), dict(parent.named_parameters())
    assert all(torch.equal(got[n], want[n]) for n in got if n.startswith("layers.0."))

    restarted.after_fit("child", child_arch, child)
    restarted.retain(["child"])  # the parent is no longer a possible source: gone from disk too
    assert not restarted.has(PARENT)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # the child's own weights


def test_train_evaluator_fine_tunes_inherited_children_on_cora(data_root):
    task = get_task("cora")
    sharing = ConstrainedSharing(fine_tune_epochs=1)
    preset = with_overrides(task.preset("smoke"), SPACE.recipe_overrides(task))
    assert preset.recipe.epochs > 1, "the smoke recipe must be longer than the fine-tuning for this test"
    evaluator = TrainEvaluator(task, SPACE, budget=2, preset=preset, data_dir=data_root, warm_start=sharing)
    parent = evaluator.query(SPACE.parse("gcn,sum,relu,1,16|gcn,sum,linear,1,classes"))
    sharing.parent = parent.arch
    child = evaluator.query(SPACE.parse("gcn,sum,relu,1,16|gat,sum,linear,1,classes"))
    assert parent.metrics["inherited_layers"] == 0.0
    assert child.metrics["inherited_layers"] == 1.0
    assert (parent.metrics["epochs"], child.metrics["epochs"]) == (float(preset.recipe.epochs), 1.0)
    assert child.status == "ok" and child.val is not None


@pytest.mark.slow  # minutes: the sampled GraphNAS children can be 16-head, 256-unit GATs
def test_agnn_search_with_sharing_on_cora_inherits_from_the_incumbent(data_root, tmp_path):
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.search import run_search

    request = SearchRequest(
        method="agnn",
        task="cora",
        space="graphnas",
        seed=0,
        budget=4,
        preset="smoke",
        method_config={"share": True, "ctrl_steps": 3},
        wandb="disabled",
        measure=False,
        data_dir=data_root,
        out=tmp_path,
    )
    record, _ = run_search(request)
    history = record["history"]
    assert len(history) == 4 and all(q["status"] == "ok" for q in history)
    assert history[0]["metrics"]["inherited_layers"] == 0.0  # the first incumbent has no parent
    # children differ from the incumbent in one action class; those keeping layer 0's shapes inherit it
    assert any(q["metrics"]["inherited_layers"] == 1.0 for q in history[1:])


SHARE_SCRIPT = """
import sys
from pathlib import Path
from nasrepro.app.requests import SearchRequest
from nasrepro.app.search import run_search

req = SearchRequest(method="agnn", task="cora", space="graphnas", seed=0, budget=5, preset="smoke",
                    method_config={"share": True, "ctrl_steps": 2}, wandb="disabled", measure=False,
                    data_dir=sys.argv[1], out=Path(sys.argv[2]), resume=sys.argv[3] == "1",
                    checkpoint_seconds=0.0)
run_search(req)
"""


@pytest.mark.slow  # three short live searches on Cora (minutes)
def test_sigkilled_sharing_search_resumes_to_the_uninterrupted_record(data_root, tmp_path):
    """Replayed children are not retrained, so the parent's weights must come back from the store."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from nasrepro.tracking.records import read_record, strip_volatile

    script = tmp_path / "share.py"
    script.write_text(SHARE_SCRIPT)

    def start(out, resume):
        args = [sys.executable, str(script), str(data_root), str(out), "1" if resume else "0"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        return subprocess.Popen(args, stderr=subprocess.PIPE, env=env)

    reference = start(tmp_path / "reference", False)
    assert reference.wait(timeout=900) == 0, reference.stderr.read().decode()
    (path,) = (tmp_path / "reference").rglob("*.json")
    want = read_record(path)

    killed_out = tmp_path / "killed"
    proc = start(killed_out, False)
    deadline = time.monotonic() + 900
    while True:  # kill once the first incumbent is checkpointed: its first child must inherit from disk
        checkpoints = list(killed_out.rglob(".*.checkpoint"))
        if checkpoints and len(json.loads(checkpoints[0].read_text())["history"]) >= 1:
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    replayed = len(json.loads(checkpoints[0].read_text())["history"])
    assert list(killed_out.rglob("agnn-sharing/*.pt")), "the kept weights must be on disk"
    proc = start(killed_out, True)
    assert proc.wait(timeout=900) == 0, proc.stderr.read().decode()
    (path,) = killed_out.rglob("*.json")
    got = read_record(path)

    def timeless(query):  # wall-clock fields differ between any two runs
        kept = {
            k: v
            for k, v in query.items()
            if k not in ("cost_seconds", "cumulative_cost", "wall_seconds", "elapsed_seconds")
        }
        return kept | {"metrics": {k: v for k, v in query["metrics"].items() if k != "train_seconds"}}

    assert [timeless(q) for q in got["history"]] == [timeless(q) for q in want["history"]]
    assert strip_volatile(got)["best_arch"] == strip_volatile(want)["best_arch"]
    # a child trained after the resume inherited weights its parent got before the kill
    assert any(q["metrics"]["inherited_layers"] > 0 for q in got["history"][replayed:])
