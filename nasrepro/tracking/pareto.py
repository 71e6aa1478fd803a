"""Multi-objective results: the incumbent's cost beside its accuracy, and the Pareto front per task.

Issue 12 item 5. Methods that trade accuracy for a cost (MemNet: memory; ProxylessNAS: latency or
FLOPs) are only judged fairly with the cost on the same line. Each record's incumbent cost is
read from the record alone: its `metrics` (what the runner measured on the final architecture:
`peak_memory_mb`, `latency_ms`, `flops`, or a memory accounting's `total_mb`) and, failing those,
the method's own report (`method_extra.incumbent_memory_mb`; the cost a method optimised, e.g.
ProxylessNAS's expected FLOPs or latency of its derived architecture, `method_cost`). The memory is the first of
`MEMORY_KEYS` present, and the column says which one it is, because a peak-activation memory and a
weights-plus-activations total are different quantities.

The Pareto front (higher test metric, lower memory) is taken over every record of the task, one
point per seed, so a method's point cloud can be read against the front.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nasrepro.tracking.record import Record

#: memory figures in MB, most complete first (weights + peak activations, then peak alone)
MEMORY_KEYS = ("total_mb", "memory_mb", "total_memory_mb", "peak_memory_mb")
EXTRA_MEMORY_KEYS = ("incumbent_memory_mb",)


def memory_mb(record: Record) -> tuple[float, str] | None:
    """(MB, where it came from) of the record's incumbent, or None when the record has none."""
    for key in MEMORY_KEYS:
        value = record.metrics.extra.get(key)
        if isinstance(value, int | float):
            return float(value), f"metrics.{key}"
    extra = record.method_extra or {}
    for key in EXTRA_MEMORY_KEYS:
        value = extra.get(key)
        if isinstance(value, int | float):
            return float(value), f"method_extra.{key}"
    return None


def method_cost(record: Record) -> tuple[float, str, str] | None:
    """(value, kind, unit) of the cost the method itself optimised for its incumbent, when it reports
    one (ProxylessNAS: `method_extra.derived_expected_cost` of `cost_kind` in `cost_unit`, e.g. the
    expected multiply-adds or latency-table milliseconds of the derived architecture)."""
    extra = record.method_extra or {}
    value, kind = extra.get("derived_expected_cost"), extra.get("cost_kind")
    if isinstance(value, int | float) and isinstance(kind, str):
        return float(value), kind, str(extra.get("cost_unit") or "")
    return None


def incumbent_costs(record: Record) -> dict[str, float]:
    """The incumbent's cost figures present in the record: memory_mb, latency_ms, flops, and the
    method's own optimised cost (`method_cost`) as `method_<kind>`."""
    out: dict[str, float] = {}
    memory = memory_mb(record)
    if memory is not None:
        out["memory_mb"] = memory[0]
    for key in ("latency_ms", "flops"):
        value = record.metrics.extra.get(key)
        if isinstance(value, int | float):
            out[key] = float(value)
    own = method_cost(record)
    if own is not None:
        out[f"method_{own[1]}"] = own[0]
    return out


def summary(records: Sequence[Record]) -> dict[str, float]:
    """Means over the seeds that report each figure (for the exports)."""
    per = [incumbent_costs(r) for r in records]
    keys = sorted({k for p in per for k in p})
    return {f"incumbent_{k}_mean": statistics.mean(p[k] for p in per if k in p) for k in keys}


def render(records: Sequence[Record]) -> str:
    """`9.10 MB (peak_memory_mb), 5.28 ms, 35.2 MFLOPs` for one row; '—' without figures."""
    means = summary(records)
    parts = []
    if "incumbent_memory_mb_mean" in means:
        source = memory_mb(next(r for r in records if memory_mb(r) is not None))
        parts.append(f"{means['incumbent_memory_mb_mean']:.2f} MB ({source[1].split('.')[-1]})")  # type: ignore[index]
    if "incumbent_latency_ms_mean" in means:
        parts.append(f"{means['incumbent_latency_ms_mean']:.2f} ms")
    if "incumbent_flops_mean" in means:
        parts.append(f"{means['incumbent_flops_mean'] / 1e6:.1f} MFLOPs")
    for key in sorted(k for k in means if k.startswith("incumbent_method_")):
        kind = key.removeprefix("incumbent_method_").removesuffix("_mean")
        unit = next((c[2] for r in records if (c := method_cost(r)) is not None and c[1] == kind), "")
        value = means[key]
        shown = f"{value / 1e6:.3g} million" if value >= 1e5 else f"{value:.3g}"
        parts.append(f"{shown} {unit} (method's expected {kind})".replace("  ", " "))
    return ", ".join(parts) or "—"


def pareto_front(points: Sequence[tuple[float, float]], direction: str = "max") -> list[tuple[float, float]]:
    """The non-dominated (memory, metric) points: lower memory is better, and a higher metric when
    `direction` is "max" (accuracy), a lower one when "min" (MSE, perplexity). Sorted by memory; a
    point is kept when its metric beats every cheaper point's."""
    sign = 1.0 if direction == "max" else -1.0
    front: list[tuple[float, float]] = []
    for memory, value in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if not front or sign * value > sign * front[-1][1]:
            front.append((memory, value))
    return front


def points(rows: Sequence[Any]) -> list[tuple[str, float, float]]:
    """(row label, memory MB, test metric) of every record with both."""
    out = []
    for row in rows:
        for record in row.records:
            memory = memory_mb(record)
            if memory is not None and record.metrics.test is not None:
                out.append((row.method, memory[0], float(record.metrics.test)))
    return out


def plot(
    task: str, rows: Sequence[Any], path: Path, metric: str = "accuracy", direction: str = "max"
) -> Path | None:
    """The test metric vs memory, one point per record, the Pareto front over all of them (in the
    metric's `direction`) drawn as steps."""
    pts = points(rows)
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for i, method in enumerate(sorted({p[0] for p in pts})):
        xs = [p[1] for p in pts if p[0] == method]
        ys = [p[2] for p in pts if p[0] == method]
        ax.scatter(xs, ys, s=16, alpha=0.75, label=method, color=plt.get_cmap("tab10")(i % 10))
    front = pareto_front([(p[1], p[2]) for p in pts], direction)
    ax.step(
        [f[0] for f in front],
        [f[1] for f in front],
        where="post",
        color="black",
        linewidth=1,
        label="Pareto front",
    )
    sources = sorted(
        {m[1].split(".")[-1] for row in rows for r in row.records if (m := memory_mb(r)) is not None}
    )
    ax.set_xlabel(f"incumbent memory, MB ({' / '.join(sources)})")
    ax.set_ylabel(f"test {metric}")
    better = "higher" if direction == "max" else "lower"
    ax.set_title(f"{task}: test {metric} ({better} is better) vs memory, one point per run", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
