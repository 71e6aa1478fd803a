"""Smoke means seconds (issue 11, item 8): what keeps a smoke evaluation small, asserted exactly.

No timing is asserted here (two shared cores make wall time noise); the timed comparison of the
harness with a plain loop lives in benchmarks/test_harness_bench.py. What is asserted is the
work a smoke fit does -- epochs, optimiser steps, evaluation passes -- and that the benchmark's
own protocol still applies at the real presets, so that neither side of the rule can break unseen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

import nasrepro.methods.proxylessnas.spaces  # noqa: F401  (registers the proxyless spaces)
from nasrepro.harness.recipe import SIZE_FIELDS, with_overrides
from nasrepro.harness.training import fit_and_evaluate
from nasrepro.spaces import get_space
from nasrepro.spaces.nasbench_graph import BENCH_HP
from nasrepro.tasks import get_task

#: the most epochs any live task's smoke preset may train: an epoch boundary, no more
SMOKE_MAX_EPOCHS = 2

#: every live task with the spaces and reference networks that train on it
TRAINED_ON = {
    "cora": ("nasbench-graph", "graphnas"),
    "citeseer": ("nasbench-graph", "graphnas"),
    "pubmed": ("nasbench-graph", "graphnas"),
    "cifar10": ("proxyless-cifar",),
    "imagenet": ("proxyless-imagenet",),
    "ptb": (),
}
CASES = [(task, ("space", space)) for task, spaces in TRAINED_ON.items() for space in spaces] + [
    (task, ("reference", ref)) for task in TRAINED_ON for ref in get_task(task).reference_archs()
]


def _overrides(task_name: str, source: tuple[str, str]) -> dict:
    task = get_task(task_name)
    kind, name = source
    if kind == "space":
        return get_space(name).recipe_overrides(task)
    return dict(task.reference_arch(name).recipe)


@pytest.mark.parametrize(("task_name", "source"), CASES, ids=[f"{t}-{s[1]}" for t, s in CASES])
def test_smoke_keeps_its_size_against_every_recipe_that_trains_on_the_task(task_name, source):
    task = get_task(task_name)
    smoke = task.preset("smoke")
    resolved = with_overrides(smoke, _overrides(task_name, source)).recipe
    assert resolved.epochs <= SMOKE_MAX_EPOCHS
    for name in SIZE_FIELDS:
        assert getattr(resolved, name) == getattr(smoke.recipe, name), name


@pytest.mark.parametrize("dataset", ["cora", "citeseer", "pubmed"])
def test_the_benchmark_protocol_applies_at_smoke_and_sizes_the_real_presets(dataset):
    """NAS-Bench-Graph's optimiser settings at every preset; its epoch count only at cpu/paper."""
    task, space = get_task(dataset), get_space("nasbench-graph")
    hp = BENCH_HP[dataset]
    for preset in ("smoke", "cpu", "paper"):
        recipe = with_overrides(task.preset(preset), space.recipe_overrides(task)).recipe
        assert (recipe.optimizer, recipe.lr, recipe.weight_decay) == (hp["optimizer"], hp["lr"], hp["wd"])
        assert (recipe.momentum, recipe.schedule) == (0.0, "constant")
        assert recipe.epochs == (SMOKE_MAX_EPOCHS if preset == "smoke" else hp["epochs"])
    graphnas = with_overrides(task.preset("cpu"), get_space("graphnas").recipe_overrides(task)).recipe
    assert graphnas.epochs == 300 and graphnas.optimizer == "adam"


class _Counts(L.Callback):
    """How many batches each stage ran (a Cora batch is the whole graph: one step per epoch)."""

    def __init__(self) -> None:
        self.train = self.val = self.test = 0

    def on_train_batch_end(self, *args) -> None:
        self.train += 1

    def on_validation_batch_end(self, *args) -> None:
        self.val += 1

    def on_test_batch_end(self, *args) -> None:
        self.test += 1


def test_one_smoke_child_on_cora_trains_two_steps_and_scores_the_selected_model_once(data_root):
    """The NB-Graph child of the issue: two optimiser steps, one validation pass per epoch (the
    benchmark's protocol selects the epoch of best validation accuracy) and one test pass; the
    selected weights are not validated a second time."""
    task, space = get_task("cora"), get_space("nasbench-graph")
    preset = with_overrides(task.preset("smoke"), space.recipe_overrides(task))
    counts = _Counts()
    model = space.to_model(space.parse("0,1,2,2:skip,cheb,gat,gcn"), task)
    result = fit_and_evaluate(task, model, preset, 0, data_root, callbacks=[counts])
    assert result["epochs"] == SMOKE_MAX_EPOCHS
    assert (counts.train, counts.val, counts.test) == (SMOKE_MAX_EPOCHS, SMOKE_MAX_EPOCHS, 1)


def test_a_table_search_prints_no_dependency_warning(tmp_path):
    """The offline default job, as a user runs it: nothing on stderr mentions a Warning."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # show every warning once, as a plain shell does
    command = [sys.executable, "-m", "nasrepro.cli", "search", "--preset", "smoke", "--seeds", "0"]
    command += ["--budget", "5", "--out", str(tmp_path), "--wandb", "disabled"]
    done = subprocess.run(
        command, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr, done.stderr[-2000:]
