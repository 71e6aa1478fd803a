"""Bad input, everywhere: one table of cases, each a clear one-line error of the right kind.

CLI-level usage errors (exit 2) are tabulated in test_cli.py; this table covers the library layer
and runtime failures (exit 1), so that every case in the "bad input" list has a test.
"""

import math
from pathlib import Path

import pytest
from torch import nn

from nasrepro.errors import DataError, EvaluationFailed, UsageError
from nasrepro.harness.recipe import TrainRecipe
from nasrepro.harness.train_evaluator import TrainEvaluator
from nasrepro.harness.training import fit_and_evaluate
from nasrepro.methods import get_method
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task


def _nb201():
    return get_space("nasbench201")


def _nbg():
    return get_space("nasbench-graph")


CASES = [
    # (what, callable, error type, substring of the one-line message)
    ("unknown task", lambda: get_task("cifar11"), UsageError, "Did you mean cifar10"),
    ("unknown method", lambda: get_method("proxyless"), UsageError, "unknown method"),
    ("unknown space", lambda: get_space("darts"), UsageError, "unknown space"),
    ("unknown preset", lambda: get_task("cora").preset("gpu"), UsageError, "smoke, cpu, paper"),
    ("malformed NB201 string", lambda: _nb201().parse("|conv~0|+|none~0|none~1|"), UsageError, "conv"),
    ("malformed NB-Graph string", lambda: _nbg().parse("0,1,2:gcn,gcn,gcn"), UsageError, "malformed"),
    ("all-skip NB-Graph arch", lambda: _nbg().parse("0,1,2,3:skip,skip,skip,skip"), UsageError, "all-skip"),
    ("unknown method option", lambda: get_method("evolution")({"populaton": 3}), UsageError, "populaton"),
    ("unknown recipe field", lambda: TrainRecipe(epochs=1, lr=0.1).replace(epoch=3), UsageError, "epoch"),
    (
        "missing dataset",
        lambda: get_task("ptb").datamodule(get_task("ptb").preset("smoke"), Path("/nonexistent"), 0),
        DataError,
        "/nonexistent",
    ),
]


@pytest.mark.parametrize("what, call, error, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(what, call, error, needle):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert needle in message and "\n" not in message, message


class NaNModel(nn.Module):
    """Diverges at once: what a bad architecture/learning-rate pair does to a real training run."""

    def __init__(self, task):
        super().__init__()
        self.lin = nn.Linear(task.num_features, task.num_classes)

    def forward(self, x, edge_index):
        return self.lin(x) * math.nan


def test_nan_loss_fails_the_evaluation_with_its_reason(data_root):
    task = get_task("cora")
    with pytest.raises(EvaluationFailed, match="non-finite training loss"):
        fit_and_evaluate(task, NaNModel(task), task.preset("smoke"), 0, data_root)


def test_nan_loss_in_a_search_is_recorded_and_the_search_goes_on(data_root, monkeypatch):
    task, space = get_task("cora"), _nbg()
    good, bad = space.parse("0,0,0,0:fc,fc,fc,fc"), space.parse("0,0,0,0:gcn,gcn,gcn,gcn")
    original = space.to_model
    monkeypatch.setattr(space, "to_model", lambda a, t: NaNModel(t) if a == bad else original(a, t))
    smoke = task.preset("smoke")
    monkeypatch.setitem(
        task._presets, "smoke", smoke.__class__("smoke", smoke.recipe.replace(epochs=3), smoke.search_budget)
    )
    ev = TrainEvaluator(task, space, budget=2, preset=task.preset("smoke"), data_dir=data_root)
    failed, ok = ev.query(bad), ev.query(good)
    assert failed.status == "failed" and "non-finite" in failed.reason
    assert ok.status == "ok" and ev.best() is ok


def test_torch_loads_nothing_unsafely():
    """Checkpoints are loaded with weights_only=True wherever the project loads them."""
    import re

    root = Path(__file__).resolve().parents[1] / "nasrepro"
    for path in root.rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"


@pytest.mark.parametrize(
    "module, argv, code",
    [
        ("nasrepro.app.rerun", ["--results", "/nonexistent"], 2),
        ("nasrepro.tracking.wandb_log", ["--dir", "/tmp", "/nonexistent.json"], 1),
        ("nasrepro.methods.fade.correlation", ["--summarise", "/nonexistent.json"], 2),
    ],
)
def test_python_m_entries_print_one_line_and_exit_with_the_errors_code(module, argv, code, capsys):
    """A module's ``python -m`` entry (`errors.run_main`) treats errors as ``nasrepro`` does."""
    import importlib

    from nasrepro.errors import run_main

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(argv))
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == code and err.startswith("error: ") and "\n" not in err


def test_bad_environment_variables_are_one_line_errors(monkeypatch):
    from nasrepro.app.parallel import env_workers
    from nasrepro.errors import DataError, UsageError
    from nasrepro.paths import cache_dir

    monkeypatch.setenv("NASREPRO_WORKERS", "abc")
    with pytest.raises(UsageError, match="NASREPRO_WORKERS='abc'"):
        env_workers()
    monkeypatch.setenv("NASREPRO_WORKERS", "3")
    assert env_workers() == 3
    monkeypatch.setenv("NASREPRO_CACHE", "/proc/no-such-place")
    with pytest.raises(DataError, match="set NASREPRO_CACHE to a writable folder"):
        cache_dir("x")
