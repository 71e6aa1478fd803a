"""Package discovery of `nasrepro.registry.Registry`, on a throw-away package made in the test."""

from __future__ import annotations

import importlib
import sys

import pytest

from nasrepro.errors import UsageError


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package whose modules register into its own registry: `alpha` ('alpha'), `beta_gamma`
    ('beta-gamma/x', 'beta-gamma/y'), an empty module, a subpackage still being built (registers
    nothing), a folder without `__init__.py` and a private module that must not be imported."""
    name = f"regpkg_{tmp_path.name}"
    root = tmp_path / name
    (root / "wip").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "__init__.py").write_text(
        f"from nasrepro.registry import Registry\nREG = Registry('thing', package={name!r})\n"
    )
    (root / "alpha.py").write_text(f"from {name} import REG\nREG.add('alpha', 1)\n")
    (root / "beta_gamma.py").write_text(
        f"from {name} import REG\nREG.add('beta-gamma/x', 2)\nREG.add('beta-gamma/y', 3)\n"
    )
    (root / "empty.py").write_text('"""Nothing registered yet."""\n')
    (root / "wip" / "__init__.py").write_text('"""A paper\'s package still being built."""\n')
    (root / "notes" / "README.md").write_text("not a module\n")
    (root / "_private.py").write_text("raise RuntimeError('private modules are not discovered')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_a_name_imports_only_the_module_its_stem_names(package):
    reg = importlib.import_module(package).REG
    assert reg.get("beta-gamma/y") == 3
    assert f"{package}.beta_gamma" in sys.modules
    assert f"{package}.alpha" not in sys.modules and f"{package}.empty" not in sys.modules


def test_every_module_is_discovered_and_empty_ones_do_no_harm(package):
    reg = importlib.import_module(package).REG
    assert reg.get("alpha") == 1
    assert reg.names() == ["alpha", "beta-gamma/x", "beta-gamma/y"]
    assert {f"{package}.empty", f"{package}.wip"} <= set(sys.modules)
    assert f"{package}._private" not in sys.modules


def test_a_name_no_stem_matches_loads_everything_and_unknown_names_suggest(package):
    reg = importlib.import_module(package).REG
    assert "beta-gamma/x" in reg and "delta" not in reg
    with pytest.raises(UsageError, match=r"unknown thing 'alpah'\. Did you mean alpha\?"):
        reg.get("alpah")
