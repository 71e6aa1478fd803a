import json
import subprocess
import sys

from nasrepro import tasks
from nasrepro.harness.recipe import PRESETS

HEAVY = ("lightning", "torchvision", "torch_geometric")


def _real_task_names() -> list[str]:
    """The project's own tasks (other tests register toy tasks defined in tests/)."""
    return [
        name
        for name in tasks.task_names()
        if getattr(tasks.TASKS.get(name), "__module__", "").startswith("nasrepro.")
    ]


def test_every_task_has_the_three_presets_and_a_metric():
    names = _real_task_names()
    assert {"cora", "cifar10", "nasbench-graph/cora", "nasbench201/cifar10"} <= set(names)
    for name in names:
        task = tasks.get_task(name)
        assert tuple(task.presets) == PRESETS, name
        assert task.metric.direction in ("max", "min") and task.name == name
        assert task.preset("smoke").search_budget <= task.preset("paper").search_budget


def test_a_table_search_imports_no_training_library():
    """Looking up any table task and its space (what a table search does before its first query)
    must not import torch, Lightning, torchvision or PyG: they cost seconds of start-up per process
    (issue 11; the networks the spaces build live in `spaces/*_net.py`, imported only to train)."""
    table = [name for name in _real_task_names() if tasks.get_task(name).kind == "table"]
    assert len(table) >= 12  # nine NAS-Bench-Graph datasets and three NAS-Bench-201 ones
    probe = (
        "import json, sys\n"
        "from nasrepro.tasks import get_task\n"
        f"for name in {table!r}:\n"
        "    get_task(name).space()\n"
        f"heavy = sorted(m for m in {HEAVY + ('torch',)!r} if m in sys.modules)\n"
        "spaces = sorted(m for m in sys.modules if m.startswith('nasrepro.spaces.nasbench'))\n"
        "print(json.dumps([heavy, spaces]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    heavy, spaces = json.loads(out.stdout.strip().splitlines()[-1])
    # both table spaces were really loaded, so the probe is not vacuous
    assert heavy == [] and spaces == ["nasrepro.spaces.nasbench201", "nasrepro.spaces.nasbench_graph"]
