from nasrepro import tasks
from nasrepro.harness.recipe import PRESETS


def test_lazy_index_matches_the_registry():
    tasks._load()
    registered = {name for name in tasks.TASKS.names() if name != "toy"}
    assert registered == set(tasks.MODULE_OF)
    for name in registered:
        assert tasks.TASKS.get(name).__module__ == f"nasrepro.tasks.{tasks.MODULE_OF[name]}"


def test_every_task_has_the_three_presets_and_a_metric():
    for name in tasks.MODULE_OF:
        task = tasks.get_task(name)
        assert tuple(task.presets) == PRESETS, name
        assert task.metric.direction in ("max", "min") and task.name == name
        assert task.preset("smoke").search_budget <= task.preset("paper").search_budget
