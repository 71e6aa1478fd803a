"""A separately installed distribution adds a space, a task and a method through entry points.

The distribution is made in the test: a module and a ``.dist-info`` folder (METADATA and
``entry_points.txt``) in a folder on the path, which is all `importlib.metadata` needs to see an
installed package. The public look-ups run in a subprocess, so the toy entries never join this
process's registries (where they would show up in other tests' lists of every method).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nasrepro.errors import NasreproError
from nasrepro.registry import EntryPointError, Registry

PLUGIN = '''
from collections.abc import Mapping

from nasrepro.errors import UsageError
from nasrepro.harness.method import Method, SearchResult
from nasrepro.harness.space import Space
from nasrepro.harness.table import Table, TableEntry, TableTask
from nasrepro.harness.task import Metric


class ToyPluginSpace(Space):
    """The eight 3-bit strings."""

    name = "toy-plugin-space"

    def sample(self, rng):
        return format(int(rng.integers(8)), "03b")

    def mutate(self, arch, rng):
        i = int(rng.integers(3))
        return arch[:i] + ("1" if arch[i] == "0" else "0") + arch[i + 1 :]

    def parse(self, text):
        if len(text) != 3 or set(text) - {"0", "1"}:
            raise UsageError(f"toy-plugin architecture must be 3 bits, got {text!r}")
        return text


class ToyPluginTable(Table):
    cost_model = "toy-plugin: free"

    def lookup(self, arch):
        return TableEntry(val=float(arch.count("1")), test=float(arch.count("1")), train_seconds=0.0)

    def __len__(self):
        return 8

    def items(self):
        return ((a, self.lookup(a)) for a in (format(i, "03b") for i in range(8)))


class ToyPluginTask(TableTask):
    name = "toy-plugin/ones"
    metric = Metric("ones", "max")
    default_space = "toy-plugin-space"

    def table(self):
        return ToyPluginTable()


class ToyPluginMethod(Method):
    """Reports the first sample."""

    name = "toy-plugin-method"

    def search(self, run):
        return SearchResult(best_arch=run.evaluator.query(run.space.sample(run.rng())).arch)
'''

ENTRY_POINTS = """
[nasrepro.spaces]
toy-plugin-space = toy_plugin:ToyPluginSpace

[nasrepro.tasks]
toy-plugin/ones = toy_plugin:ToyPluginTask

[nasrepro.methods]
toy-plugin-method = toy_plugin:ToyPluginMethod
"""


def make_distribution(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> Path:
    """An installed distribution `name` 0.1 in `site`: its modules and a `.dist-info` folder."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points).lstrip())
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def test_an_installed_plugin_is_found_by_name(tmp_path, monkeypatch):
    site = make_distribution(tmp_path / "site", "toy-plugin", ENTRY_POINTS, {"toy_plugin": PLUGIN})
    monkeypatch.setenv("PYTHONPATH", str(site))
    probe = textwrap.dedent(
        """
        import json, sys
        from nasrepro.methods import get_method
        from nasrepro.spaces import get_space
        from nasrepro.tasks import get_task

        space = get_space("toy-plugin-space")
        task = get_task("toy-plugin/ones")
        method = get_method("toy-plugin-method")
        print(json.dumps({
            "space": [type(space).__module__, space.parse("101")],
            "task": [type(task).__module__, task.kind, task.table().lookup("111").val],
            "method": [method.__module__, method.name],
            # found by its entry point's name, without importing every project module first
            "heavy": sorted(m for m in ("lightning", "torch_geometric") if m in sys.modules),
            "own": get_space("nasbench201").name,
        }))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {
        "space": ["toy_plugin", "101"],
        "task": ["toy_plugin", "table", 3.0],
        "method": ["toy_plugin", "toy-plugin-method"],
        "heavy": [],
        "own": "nasbench201",
    }


def test_entry_points_name_objects_or_self_registering_modules(tmp_path, monkeypatch):
    """`name = module:object` registers the object under `name`; `name = module` imports a
    module that registers its own entries (here into a registry it can import)."""
    site = tmp_path / "site"
    holder = f"holder_{tmp_path.name}"
    make_distribution(
        site,
        "two-forms",
        """
        [nasrepro_test.things]
        obj-form = two_forms_obj:THING
        module-form = two_forms_mod
        """,
        {
            holder: "from nasrepro.registry import Registry\nREG = Registry('thing', group='nasrepro_test.things')\n",
            "two_forms_obj": "THING = object()\n",
            "two_forms_mod": f"from {holder} import REG\nREG.add('from-module-a', 1)\nREG.add('from-module-b', 2)\n",
        },
    )
    monkeypatch.syspath_prepend(str(site))
    for module in (holder, "two_forms_obj", "two_forms_mod"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    import importlib

    reg = importlib.import_module(holder).REG
    assert reg.get("obj-form") is importlib.import_module("two_forms_obj").THING
    assert reg.get("from-module-b") == 2
    assert reg.names() == ["from-module-a", "from-module-b", "obj-form"]


def test_a_broken_entry_point_is_one_line_naming_it_and_its_distribution(tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path / "site",
        "broken-plugin",
        """
        [nasrepro_test.broken]
        half-done = broken_plugin_module:Space
        """,
        {"broken_plugin_module": "import a_module_that_does_not_exist\n"},
    )
    monkeypatch.syspath_prepend(str(site))
    reg: Registry[object] = Registry("space", group="nasrepro_test.broken")
    with pytest.raises(EntryPointError) as caught:
        reg.get("half-done")
    message = str(caught.value)
    assert "\n" not in message
    for part in (
        "'half-done'",
        "broken_plugin_module:Space",
        "broken-plugin 0.1",
        "a_module_that_does_not_exist",
    ):
        assert part in message, (part, message)
    assert isinstance(caught.value, NasreproError) and caught.value.exit_code == 1
    with pytest.raises(EntryPointError):  # listing every name meets the same broken plugin
        reg.names()


def test_an_entry_point_whose_object_has_another_name_is_refused(tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path / "site",
        "misnamed-plugin",
        "[nasrepro_test.misnamed]\nalias = misnamed_plugin:Thing\n",
        {"misnamed_plugin": "class Thing:\n    name = 'real-name'\n"},
    )
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(
        EntryPointError, match="'real-name'.*misnamed-plugin 0.1|misnamed-plugin 0.1.*'real-name'"
    ):
        Registry("thing", group="nasrepro_test.misnamed").get("alias")
