"""Protocol-exact training (issue 16 item 1): every key a space's recipe declares is applied or is an
error; `select: best-val` scores the epoch with the best validation score, chosen on validation alone;
`repeats` averages fresh networks over seeds; NAS-Bench-Graph trains on raw features."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import toys

from nasrepro.errors import EvaluationFailed, UsageError
from nasrepro.harness.recipe import TrainRecipe, with_overrides
from nasrepro.harness.training import KeepBestValidation, fit_and_evaluate
from nasrepro.spaces.nasbench_graph import MODEL_KEYS, NasBenchGraphSpace, recipe_hint
from nasrepro.tasks import get_task

ARCH = "1" * toys.N_FEATURES  # every feature kept: the label is learnable


class ValTrace(L.Callback):
    def __init__(self) -> None:
        self.vals: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self.vals.append(float(trainer.callback_metrics["val/accuracy"]))


class BreakFromEpoch(L.Callback):
    """Plants the best epoch: from `epoch` on, the network is zeroed after every step (chance level)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.current_epoch >= self.epoch:
            for p in pl_module.parameters():
                p.data.zero_()


def _toy(select: str, repeats: int = 1):
    task = toys.ToyLiveTask()
    space = task.space()
    preset = task.preset("cpu")
    recipe = dataclasses.replace(preset.recipe, epochs=4, select=select, repeats=repeats)
    return task, space, dataclasses.replace(preset, recipe=recipe)


@pytest.mark.parametrize("select", ["best-val", "final"])
def test_best_val_selection_scores_the_planted_best_epoch(select, tmp_path):
    task, space, preset = _toy(select)
    trace = ValTrace()
    model = space.to_model(ARCH, task)
    result = fit_and_evaluate(task, model, preset, 0, tmp_path, callbacks=[trace, BreakFromEpoch(2)])
    if select == "best-val":
        assert len(trace.vals) == 4 and max(trace.vals[:2]) > 70 > max(trace.vals[2:])
        assert result["val"] == pytest.approx(max(trace.vals)) and result["best_epochs"][0] < 2
        assert result["test"] > 70  # the restored weights, not the broken final ones, are tested
    else:
        assert trace.vals == [] and result["val"] < 70 and "best_epochs" not in result


def _validate(keep: KeepBestValidation, module: torch.nn.Module, epoch: int, **metrics: float) -> None:
    trainer = SimpleNamespace(
        sanity_checking=False,
        current_epoch=epoch,
        callback_metrics={k.replace("_", "/"): v for k, v in metrics.items()},
    )
    module.weight.data.fill_(float(epoch))  # marks which epoch's weights are kept
    keep.on_validation_end(trainer, module)


@pytest.mark.parametrize(
    ("select", "chosen"), [("min-val-loss", 2), ("best-val", 1)], ids=["min-val-loss", "best-val"]
)
def test_the_select_rule_keeps_its_planted_epoch_and_reports_that_epochs_score(select, chosen):
    """Losses and accuracies planted to disagree: the code's rule (lowest loss) keeps epoch 2, the
    accuracy reading keeps epoch 1; a NaN loss never qualifies; the reported score is the kept epoch's."""
    keep, module = KeepBestValidation.for_rule(select, "accuracy", "max"), torch.nn.Linear(1, 1)
    for epoch, (loss, acc) in enumerate([(0.9, 60.0), (0.7, 80.0), (0.3, 70.0), (float("nan"), 90.0)]):
        _validate(keep, module, epoch, val_loss=loss, val_accuracy=acc if epoch < 3 else float("nan"))
    keep.on_fit_end(None, module)
    assert keep.best_epoch == chosen and keep.best == [60.0, 80.0, 70.0][chosen]
    assert module.weight.item() == chosen


class NaNFromEpoch(L.Callback):
    """Plants a divergence: from `epoch` on, one weight is NaN before every step."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.current_epoch >= self.epoch:
            next(pl_module.parameters()).data.view(-1)[0] = float("nan")


@pytest.mark.parametrize("select", ["min-val-loss", "best-val", "final"])
def test_a_diverged_fit_keeps_its_last_selected_epoch_or_fails(select, tmp_path):
    """The benchmark never selects a NaN-loss epoch, so a selecting fit ends at divergence with the
    epoch it had; a fit scored on its final weights has nothing to fall back on and fails."""
    task, space, preset = _toy(select)
    model = space.to_model(ARCH, task)
    if select == "final":
        with pytest.raises(EvaluationFailed, match="non-finite"):
            fit_and_evaluate(task, model, preset, 0, tmp_path, callbacks=[NaNFromEpoch(2)])
        return
    result = fit_and_evaluate(task, model, preset, 0, tmp_path, callbacks=[NaNFromEpoch(2)])
    assert result["diverged_epochs"] == [2] and result["best_epochs"][0] < 2
    assert result["test"] > 70  # the kept weights are scored, not the NaN ones


def test_repeats_average_fresh_networks_over_seeds(tmp_path):
    task, space, preset = _toy("final", repeats=3)
    built = []

    def build():
        built.append(space.to_model(ARCH, task))
        return built[-1]

    torch.manual_seed(0)  # repeat 0 trains the network it is given: build it as `single`'s below
    result = fit_and_evaluate(task, build(), preset, 7, tmp_path, build=build)
    assert len(built) == 3 and len(result["val_seeds"]) == 3
    assert result["val"] == pytest.approx(sum(result["val_seeds"]) / 3)
    assert result["test"] == pytest.approx(sum(result["test_seeds"]) / 3)
    torch.manual_seed(0)
    single = fit_and_evaluate(task, space.to_model(ARCH, task), _toy("final")[2], 7, tmp_path)
    assert single["val"] == pytest.approx(result["val_seeds"][0])  # repeat 0 is the plain fit
    with pytest.raises(UsageError, match="model builder"):
        fit_and_evaluate(task, build(), preset, 7, tmp_path)


class SeedReporter(L.Callback):
    """A `FitReporter`: the seed each fit started under, and an event that never happened."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.seed = torch.initial_seed()

    def fit_report(self) -> dict[str, int | None]:
        return {"fit_seed": self.seed, "never": None}


def test_fit_reports_are_kept_per_seed(tmp_path):
    task, space, preset = _toy("final", repeats=3)
    build = lambda: space.to_model(ARCH, task)  # noqa: E731
    result = fit_and_evaluate(task, build(), preset, 7, tmp_path, build=build, callbacks=[SeedReporter()])
    assert result["reported"] == {"fit_seeds": [7, 8, 9], "nevers": [None, None, None]}
    assert fit_and_evaluate(task, build(), _toy("final")[2], 7, tmp_path)["reported"] == {}


def test_a_trained_query_keeps_the_reported_values_per_seed():
    from nasrepro.harness.train_evaluator import fit_metrics

    result = {"train_seconds": 1.5, "epochs": 2, "reported": {"asgd_switch_epochs": [3, None, 7]}}
    assert fit_metrics(result, 10) == {
        "params": 10.0, "train_seconds": 1.5, "epochs": 2.0,
        "asgd_switch_epochs[0]": 3.0, "asgd_switch_epochs[2]": 7.0,
    }  # fmt: skip


def test_a_recipe_key_nothing_applies_is_an_error():
    preset = toys.ToyLiveTask().preset("cpu")
    with pytest.raises(UsageError, match=r"\['hidden_dim'\] are not training-recipe fields"):
        with_overrides(preset, {"lr": 0.1, "hidden_dim": 256})
    with pytest.raises(UsageError, match="repeats"):
        TrainRecipe(epochs=1, lr=0.1, repeats=0)


def test_raw_features_on_a_task_without_node_features_are_refused(tmp_path):
    task, space, preset = _toy("final")
    preset = dataclasses.replace(preset, recipe=preset.recipe.replace(normalize_features=False))
    with pytest.raises(UsageError, match="no node features"):
        fit_and_evaluate(task, space.to_model(ARCH, task), preset, 0, tmp_path)


@pytest.mark.parametrize("dataset", ["cora", "citeseer"])
def test_nasbench_graph_protocol_is_applied_whole(dataset):
    """Every hint key is either a recipe field the trainer applies or a network setting to_model builds."""
    task, space = get_task(dataset), NasBenchGraphSpace()
    hint = recipe_hint(dataset)
    cpu = with_overrides(task.preset("cpu"), space.recipe_overrides(task)).recipe
    recipe_keys = set(hint) - MODEL_KEYS - {"source"}
    assert {k: getattr(cpu, k) for k in recipe_keys} == {k: hint[k] for k in recipe_keys}
    assert (cpu.select, cpu.repeats, cpu.normalize_features, cpu.momentum) == ("min-val-loss", 3, False, 0.0)
    net = space.to_model(space.parse("0,1,2,2:fc,gat,gcn,graph"), task)
    built = (net.norms[0].num_features, len(net.pre), len(net.post))
    assert built == (hint["hidden_dim"], hint["num_pre"], hint["num_pro"])
    assert net.dropout == hint["dropout"]
    smoke = with_overrides(task.preset("smoke"), space.recipe_overrides(task)).recipe
    assert smoke.repeats == 1 and smoke.select == "min-val-loss" and not smoke.normalize_features


def test_planetoid_raw_features_are_the_bag_of_words(data_root):
    task = get_task("cora")
    raw, normalised = task.data(data_root, normalize=False).x, task.data(data_root).x
    assert set(raw.unique().tolist()) == {0.0, 1.0} and raw.sum(1).max() > 1
    assert normalised.sum(1).sub(1).abs().max() < 1e-5
