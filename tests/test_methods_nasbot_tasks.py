"""NASBOT's spaces and tasks: the NB201 cell's layer graph, the nasbot-mlp space and its torch
builder, the UCI regression tasks on the shared data (split, standardisation, bad files), and the
method's declarations and behaviour on a planted problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nasrepro.errors import DataError
from nasrepro.methods.nasbot.graph import LayerGraph
from nasrepro.methods.nasbot.otmann import OTMANN
from nasrepro.methods.nasbot.space import GraphMLP, LayerGraphSpace, chain_mlp
from nasrepro.methods.nasbot.views import nb201_graph, view_for
from nasrepro.spaces.nasbench201 import NB201Arch, NB201Space


def _cell(*ops: str) -> NB201Arch:
    return NB201Arch(tuple(ops))


def test_nb201_cell_graph() -> None:
    g = nb201_graph(_cell("nor_conv_3x3", "none", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none"))
    # ip -> stem -> conv3 (node 1) -> avg-pool (node 2: dead, its output feeds nothing) ...
    assert g.kind == "nb201"
    assert sorted(g.labels) == sorted(["ip", "conv3", "conv3", "conv1", "softmax", "op"])
    stem = 1
    (conv1,) = [i for i, label in enumerate(g.labels) if label == "conv1"]
    softmax = g.labels.index("softmax")
    assert set(g.parents[softmax]) == {stem, conv1}  # node 3 = skip(x) + conv1x1(node 1)
    # isomorphic cells give one graph; different cells are at positive OTMANN distance
    assert nb201_graph(str(_cell(*["nor_conv_3x3"] * 6))) == nb201_graph(_cell(*["nor_conv_3x3"] * 6))
    other = nb201_graph(_cell(*["nor_conv_1x1"] * 6))
    d = OTMANN("nb201").pair(nb201_graph(_cell(*["nor_conv_3x3"] * 6)), other)
    assert (d > 0).all()
    # every one of a few hundred random cells maps to a valid graph
    rng = np.random.default_rng(0)
    space = NB201Space()
    for _ in range(300):
        LayerGraph.parse(str(nb201_graph(space.sample(rng))))


def test_views_and_mlp_space_round_trip() -> None:
    space = LayerGraphSpace()
    assert view_for(space).kind == "mlp-reg" and view_for(NB201Space()).kind == "nb201"
    rng = np.random.default_rng(1)
    arch = space.sample(rng)
    assert space.parse(str(arch)) == arch and space.key(arch) == str(arch)
    with pytest.raises(Exception, match="mlp-reg"):
        space.parse("cnn|ip|conv3:8/1<0|softmax<1|op<2")


def test_graph_mlp_builds_branches_skips_and_crelu() -> None:
    g = LayerGraph.parse("mlp-reg|ip|relu:8<0|crelu:4<0|tanh:6<1,2|linear<1,3|op<4")
    model = GraphMLP(g, in_features=5, out_features=1)
    out = model(torch.randn(7, 5))
    assert out.shape == (7,)
    # the tanh layer sees relu (8) + crelu (2 x 4) features; the output layer relu (8) + tanh (6)
    widths = sorted(m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert widths == [5, 5, 14, 16]
    assert GraphMLP(chain_mlp((("relu", 8), ("relu", 8))), 3, 2)(torch.randn(4, 3)).shape == (4, 2)


@pytest.fixture(scope="module")
def uci_root(data_root: Path) -> Path:
    root = data_root / "uci"
    if not (root / "naval-propulsion-plant" / "data.txt").is_file():
        pytest.skip("the shared UCI data are not available")
    return root


def test_uci_naval_split_standardisation_and_metric(uci_root: Path) -> None:
    from nasrepro.tasks import get_task
    from nasrepro.tasks.uci import SPECS, load

    task = get_task("uci/naval")
    assert task.metric.direction == "min" and task.num_features == 16 and task.default_space == "nasbot-mlp"
    data = load(SPECS["naval"], uci_root / "naval-propulsion-plant")
    sizes = {k: len(v) for k, v in data.y.items()}
    assert sizes == {"train": 7160, "val": 2387, "test": 2387}
    assert abs(float(data.x["train"].mean())) < 1e-5 and abs(float(data.y["train"].std()) - 1) < 1e-4
    # a constant predictor (the training mean, 0 after standardising) scores MSE ~ 1
    assert float((data.y["test"] ** 2).mean()) == pytest.approx(1.0, abs=0.1)
    assert [s.status for s in task.check_data(uci_root.parent)] == ["found"]


def test_uci_bad_files_and_missing_sets_are_one_clear_line(uci_root: Path, tmp_path: Path) -> None:
    from nasrepro.tasks import get_task
    from nasrepro.tasks.uci import SPECS, load

    folder = tmp_path / "uci" / "naval-propulsion-plant"
    folder.mkdir(parents=True)
    shutil.copy(uci_root / "naval-propulsion-plant" / "SHA256SUMS", folder)
    (folder / "data.txt").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"data\.txt \(sha256 mismatch\)"):
        load(SPECS["naval"], folder)
    (folder / "SHA256SUMS").write_text("")  # no checksum: the shape check names the file
    with pytest.raises(DataError, match=r"data\.txt: expected 11934 rows x 18 columns"):
        load(SPECS["naval"], folder)
    task = get_task("uci/slice")
    with pytest.raises(DataError, match="slice.*archive.ics.uci.edu"):
        task.datamodule(task.preset("smoke"), tmp_path, 0)
    assert task.check_data(tmp_path)[0].status == "missing"


@pytest.mark.slow  # about a minute alone on 2 cores (OTMANN on MLPs of up to 200 units)
def test_nasbot_finds_a_planted_winner_faster_than_chance() -> None:
    """On a synthetic table over MLP graphs whose reward peaks at one network, the GP + EA reaches
    it closer than random sampling of the space with the same budget."""
    from nasrepro.harness.evaluator import Evaluator, Outcome
    from nasrepro.harness.run import run_of
    from nasrepro.harness.task import Metric, Task
    from nasrepro.methods.nasbot.search import NASBOT

    space = LayerGraphSpace()
    # far from the initial pool (wide tanh/elu layers), so the pool itself scores badly
    target = chain_mlp((("tanh", 200), ("tanh", 200), ("elu", 200), ("elu", 200), ("tanh", 200)))
    otmann = OTMANN("mlp-reg")

    from nasrepro.harness.recipe import Preset, TrainRecipe

    class Planted(Task):
        name = "planted"
        metric = Metric("score", "max")
        kind = "table"
        presets = {"cpu": Preset("cpu", TrainRecipe(epochs=1, lr=0.1), 30)}

    class Eval(Evaluator):
        __slots__ = ()

        def _evaluate(self, arch):
            d = otmann.pair(space.parse(arch), target)[1]
            return Outcome(val=-float(d), test=None, cost_seconds=0.0)

    results = []
    for seed in (0, 1):
        evaluator = Eval(Planted(), space, budget=30)
        run = run_of(evaluator, seed=seed, preset_name="cpu")
        NASBOT({"init_evals": 10, "hp_samples": 300}).search(run)
        results.append(max(q.val for q in evaluator.history))
    rand = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        rand.append(max(-otmann.pair(space.sample(rng), target)[1] for _ in range(30)))
    assert np.mean(results) > np.mean(rand) + 0.1 and min(results) > -0.3


def test_batches_of_two_never_repeat_and_survive_failures() -> None:
    """With two evaluation slots the synchronous batch scheduler proposes two networks per batch
    (the second with the first pending); no network is evaluated twice and failed evaluations are
    recorded, never retried. (The asynchronous scheduler: test_methods_nasbot_async.py.)"""
    from nasrepro.errors import EvaluationFailed
    from nasrepro.harness.evaluator import Evaluator, Outcome
    from nasrepro.harness.recipe import Preset, TrainRecipe
    from nasrepro.harness.run import run_of
    from nasrepro.harness.task import Metric, Task
    from nasrepro.methods.nasbot.search import NASBOT

    space = NB201Space()
    target = nb201_graph(
        _cell("nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3")
    )
    otmann = OTMANN("nb201")
    batches: list[int] = []

    class Synthetic(Task):
        name = "synthetic-nb201"
        metric = Metric("score", "max")
        kind = "table"
        presets = {"smoke": Preset("smoke", TrainRecipe(epochs=1, lr=0.1), 16)}

    class TwoSlots(Evaluator):
        __slots__ = ()

        @property
        def batch_size(self) -> int:
            return 2

        @property
        def workers(self) -> int:
            return 2

        def query_many(self, archs):
            batches.append(len(list(archs)))
            return super().query_many(archs)

        def _evaluate(self, arch):
            if "avg_pool_3x3~0" in str(arch):  # a worker that dies on some networks
                raise EvaluationFailed("worker died")
            return Outcome(val=-float(otmann.pair(nb201_graph(arch), target)[1]), test=None, cost_seconds=0.0)

    evaluator = TwoSlots(Synthetic(), space, budget=16)
    run = run_of(evaluator, seed=3, preset_name="smoke")
    options = {"init_evals": 4, "hp_samples": 200, "acq_min": 10, "acq_max": 20, "scheduler": "batch"}
    result = NASBOT(options).search(run)
    keys = [q.arch for q in evaluator.history]
    assert len(keys) == len(set(keys)) == 16 and evaluator.duplicates == 0
    assert max(batches) == 2 and result.extra["workers"] == 2
    assert result.extra["scheduler"] == "synchronous-batch (hallucinated pending)"
    assert any(q.status == "failed" for q in evaluator.history)
    assert result.best_arch in keys
