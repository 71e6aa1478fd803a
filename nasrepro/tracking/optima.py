"""The best value of each table task, kept in one small file beside the records.

Regret curves need the table's optimum, which no search record holds, and the leaderboard is
built from files alone (tracking imports no task). So the optimum of every table task is computed
once from the task's table and kept in `RESULTS/table_optima.json`:

    {"nasbench-graph/cora": {"val": 80.9, "test": 83.13, "test_of_best_val": 82.2,
                             "architectures": 26206, "source": "..."}}

`val`/`test` are the best validation and test values over the architectures a search can be
answered with (canonical representatives, as the `TableEvaluator` looks them up); a search's test
regret is `test - incumbent test` (for a metric where larger is better). `write` takes any object
with `items()` yielding (architecture, entry with `val` and `test`), i.e. a `harness.table.Table`,
without importing it; `write_for_tasks` does it for registered table tasks. Regenerate with::

    python -c "from pathlib import Path; from nasrepro.tasks import get_task, task_names; \
from nasrepro.spaces import get_space; from nasrepro.tracking.optima import write_for_tasks; \
write_for_tasks(Path('results'), {n: get_task(n) for n in task_names()}, get_space)"
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import DataError

FILENAME = "table_optima.json"


@dataclass(frozen=True)
class Optimum:
    """A table task's best values (percent, as the table records them)."""

    val: float
    test: float
    test_of_best_val: float
    architectures: int
    source: str


def compute(
    items: Iterable[tuple[Any, Any]],
    *,
    direction: str = "max",
    canonical: Callable[[Any], bool] | None = None,
    source: str = "",
) -> Optimum:
    """The optimum over `items` (pairs of architecture and entry with `val`/`test`); `canonical`
    keeps only the architectures a search can be answered with."""
    better = max if direction == "max" else min
    best_val = best_test = test_of_best_val = None
    n = 0
    for arch, entry in items:
        if canonical is not None and not canonical(arch):
            continue
        n += 1
        if best_val is None or better(entry.val, best_val) != best_val:
            best_val, test_of_best_val = entry.val, entry.test
        best_test = entry.test if best_test is None else better(best_test, entry.test)
    if best_val is None or best_test is None or test_of_best_val is None:
        raise DataError("the table has no architectures to take an optimum over")
    return Optimum(float(best_val), float(best_test), float(test_of_best_val), n, source)


def read(results_dir: Path) -> dict[str, Optimum]:
    """Every stored optimum ({} when the file does not exist); a broken file is a `DataError`."""
    path = results_dir / FILENAME
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {task: Optimum(**values) for task, values in raw.items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise DataError(f"{path} is not a table-optima file ({err}); delete it and regenerate it") from None


def write(results_dir: Path, optima: Mapping[str, Optimum]) -> Path:
    """Merge `optima` into the file (other tasks' entries stay), sorted and byte-stable."""
    merged = {**read(results_dir), **optima}
    for task, opt in merged.items():
        if not all(math.isfinite(v) for v in (opt.val, opt.test, opt.test_of_best_val)):
            raise DataError(f"optimum of {task} is not finite: {opt}")
    path = results_dir / FILENAME
    text = json.dumps({t: asdict(merged[t]) for t in sorted(merged)}, indent=1, sort_keys=True) + "\n"
    atomic_write_text(path, text)
    return path


def write_for_tasks(
    results_dir: Path, tasks: Mapping[str, Any], get_space: Callable[[str], Any] | None = None
) -> Path:
    """Compute and store the optimum of every table task in `tasks` ({name: Task}; tasks of other
    kinds are skipped). Tasks and spaces are used through their public interface only (`kind`,
    `table()`, `space()` or `default_space` resolved by `get_space`, `metric.direction`), so this
    module stays below the task layer."""
    optima = {}
    for name, task in sorted(tasks.items()):
        if getattr(task, "kind", None) != "table":
            continue
        space = task.space() or (get_space(task.default_space) if get_space else None)
        table = task.table()
        optima[name] = compute(
            table.items(),
            direction=task.metric.direction,
            canonical=None if space is None else (lambda arch, space=space: space.key(arch) == str(arch)),
            source=f"{type(table).__name__}: {len(table)} entries"
            + ("; canonical architectures only" if space is not None else ""),
        )
    return write(results_dir, optima)
