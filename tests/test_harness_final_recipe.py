"""A method's final-training recipe (`Method.final_recipe`) reaches the evaluator and the record.

The orchestration layer layers it on top of the task's preset and the space's overrides through
`with_overrides`, on train tasks only; an unknown key, or an option the task does not apply, is a
usage error before any work starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import toys

from nasrepro.app.requests import SearchRequest
from nasrepro.app.resolve import resolve_search
from nasrepro.app.search import run_search
from nasrepro.errors import UsageError
from nasrepro.harness.method import METHODS, Method, MethodConfig, SearchResult
from nasrepro.harness.run import Run
from nasrepro.harness.task import Task
from nasrepro.methods import method_names
from nasrepro.tasks import get_task


@dataclass
class RecipeToyConfig(MethodConfig):
    #: what `final_recipe` returns, at every task and preset
    recipe: dict[str, Any] = field(default_factory=dict)


class RecipeToy(Method):
    """Random search that declares a final-training recipe."""

    name = "test-final-recipe"
    Config = RecipeToyConfig

    def final_recipe(self, task: Task, preset_name: str) -> dict[str, Any]:
        return dict(self.config.recipe)  # type: ignore[attr-defined]

    def search(self, run: Run) -> SearchResult:
        rng = run.rng()
        while not run.evaluator.exhausted:
            run.evaluator.query(run.space.sample(rng))
        return self.result(run.evaluator)


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    toys.register()
    method_names()  # discover the real methods first
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # unregistered after the test
    METHODS.add(RecipeToy.name, RecipeToy)


def search(tmp_path, task: str, recipe: dict[str, Any], preset: str = "cpu") -> dict[str, Any]:
    request = SearchRequest(
        method=RecipeToy.name,
        task=task,
        budget=2,
        preset=preset,
        method_config={"recipe": recipe},
        out=tmp_path,
        wandb="disabled",
        measure=False,
    )
    return run_search(request)[0]


def as_json(value: Any) -> Any:
    """What a record holds: JSON values (a recipe's tuples are lists)."""
    return json.loads(json.dumps(value))


def test_the_final_recipe_is_what_the_evaluator_trains_and_the_record_shows(tmp_path):
    task_recipe = get_task("toy-live").preset("cpu").recipe
    assert (task_recipe.epochs, task_recipe.lr) == (2, 0.5)
    record = search(tmp_path, "toy-live", {"epochs": 3, "lr": 0.25, "label_smoothing": 0.0})
    recipe = record["config"]["preset"]["recipe"]
    assert (recipe["epochs"], recipe["lr"]) == (3, 0.25)
    assert record["config"]["method_recipe"] == {"epochs": 3, "lr": 0.25, "label_smoothing": 0.0}
    assert [q["metrics"]["epochs"] for q in record["history"]] == [3.0, 3.0]  # what was trained


def test_without_a_final_recipe_the_record_is_the_task_preset(tmp_path):
    record = search(tmp_path, "toy-live", {})
    assert record["config"]["preset"] == as_json(get_task("toy-live").preset("cpu").to_dict())
    assert "method_recipe" not in record["config"]


def test_smoke_keeps_its_sizes_but_applies_the_rest():
    resolved = resolve_search(
        RecipeToy.name, "toy-live", None, "smoke", 2, {"recipe": {"epochs": 300, "lr": 0.25}}, None
    )
    assert (resolved.preset.recipe.epochs, resolved.preset.recipe.lr) == (2, 0.25)


def test_a_table_task_is_unaffected(tmp_path):
    record = search(tmp_path, "toy-table", {"epochs": 3, "lr": 0.25})
    assert record["config"]["preset"] == as_json(get_task("toy-table").preset("cpu").to_dict())
    assert "method_recipe" not in record["config"]


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"no_such_field": 1}, "not training-recipe fields"),
        ({"cutout": 16}, "does not apply the recipe option"),  # the toy task applies no image option
        ({"schedule": "multistep"}, "milestone"),
    ],
)
def test_a_recipe_nothing_would_apply_is_a_usage_error_before_any_work(tmp_path, recipe, message):
    with pytest.raises(UsageError, match=message):
        search(tmp_path, "toy-live", recipe)
    assert not list(tmp_path.rglob("*.json"))  # refused at resolution: nothing ran, nothing written
