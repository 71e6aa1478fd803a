"""MemNet against its baselines under the same memory bound, at equal numbers of evaluated networks.

Issue 12 item 4. MemNet stops when its score stops improving, after far fewer networks than its
budget (`search_cost.queries`), while random search and regularized evolution spend the whole
budget; comparing incumbents at equal budgets then credits the baselines with networks MemNet never
asked for. Here each baseline seed is cut to the number of networks the MemNet seed of the same
number evaluated: its incumbent is the most rewarded (validation by default) of its first n
queries. Neither baseline reads its budget before it is spent, so the first n queries of a budget-B
record are exactly the search a budget-n run would make (tested in
tests/test_methods_baselines_bound.py): the cut is a budget-n search, not an approximation.

The two table architectures beside them (`oracles`): the most accurate one without a bound (what an
accuracy-only search converges to) and the most accurate one within the bound (the best any bounded
search can find), by validation accuracy over NB-201's canonical cells, as the table optimum is
taken (`tracking.optima`). Memory is MemNet's M = W + I (`harness.arch_memory.network_memory`).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean
from typing import Any


def records_by_row(results: Path, task_name: str, preset: str) -> dict[str, dict[int, dict[str, Any]]]:
    """Row name (method, [tag], budget, as `report.incumbents` names them) -> seed -> record."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted((results / "runs" / task_name).glob("*/*.json")):
        record = json.loads(path.read_text())
        if record.get("kind") != "search" or record.get("preset") != preset:
            continue
        name = record["method"] + (f"[{record['tag']}]" if record.get("tag") else "")
        out.setdefault(f"{name} b{record['budget']}", {})[int(record["seed"])] = record
    return out


def first_n_incumbent(record: dict[str, Any], n: int) -> dict[str, Any]:
    """The most rewarded successful query among the record's first `n` (the first of equals, as the
    evaluator's `best` picks it)."""
    sign = 1.0 if record.get("direction", "max") == "max" else -1.0
    ok = [q for q in record["history"][:n] if q.get("status", "ok") == "ok" and q.get("score") is not None]
    return max(ok, key=lambda q: sign * q["score"])


def own_incumbent(record: dict[str, Any]) -> dict[str, Any]:
    """The record's incumbent as its method chose it (MemNet: by its score S, not by accuracy)."""
    metrics = record["metrics"]
    return {
        "queries": len(record["history"]),
        "arch": record["best_arch"],
        "val": metrics["val"],
        "test": metrics["test"],
    }


def matched(reference: dict[int, dict[str, Any]], other: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed both rows have: `other`'s incumbent after as many queries as `reference` made."""
    out = []
    for seed in sorted(set(reference) & set(other)):
        n = len(reference[seed]["history"])
        best = first_n_incumbent(other[seed], n)
        out.append(
            {"seed": seed, "queries": n, "arch": best["arch"], "val": best["val"], "test": best["test"]}
        )
    return out


def oracles(task: Any, space: Any, bound_mb: float) -> dict[str, Any]:
    """The table's most accurate canonical architecture (by validation) without and within the bound,
    and how many canonical architectures the bound admits (traces every one: minutes on NB-201)."""
    from nasrepro.harness.arch_memory import network_memory

    best: dict[str, Any] | None = None
    best_within: dict[str, Any] | None = None
    total = within = 0
    for arch, entry in task.table().items():
        if space.key(arch) != str(arch):
            continue
        total += 1
        mem = network_memory(space, task, arch).total_mb
        row = {"arch": str(arch), "val": entry.val, "test": entry.test, "memory_mb": mem}
        if best is None or entry.val > best["val"]:
            best = row
        if mem <= bound_mb:
            within += 1
            if best_within is None or entry.val > best_within["val"]:
                best_within = row
    return {"canonical": total, "within": within, "best": best, "best_within": best_within}


def summary(rows: list[dict[str, Any]], memory: Any) -> dict[str, float]:
    """Means over seeds of queries, validation, test and incumbent memory (MB)."""
    return {
        "seeds": len(rows),
        "queries": mean(r["queries"] for r in rows),
        "val": mean(r["val"] for r in rows),
        "test": mean(r["test"] for r in rows),
        "memory_mb": mean(memory(r["arch"]) for r in rows),
    }


def render(results: Path, task_name: str, preset: str, space_name: str, bound_mb: float) -> str:
    """The Markdown tables of the comparison under `bound_mb` (rows tagged ``bound<bound_mb>``)."""
    from nasrepro.harness.arch_memory import network_memory
    from nasrepro.spaces import get_space
    from nasrepro.tasks import get_task

    task, space = get_task(task_name), get_space(space_name)
    memory = lambda arch: network_memory(space, task, space.parse(arch)).total_mb  # noqa: E731
    rows = records_by_row(results, task_name, preset)
    tag = f"[bound{bound_mb:g}]"
    references = sorted(r for r in rows if r.startswith("memnet") and tag in r)
    baselines = sorted(r for r in rows if not r.startswith("memnet") and tag in r)
    lines = [
        "| row | cut to the queries of | seeds | queries (mean) | val % | test % | incumbent memory (MB) "
        "| memory saving of the memnet row | test % it gives up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ref in references:
        mine = summary([own_incumbent(r) for r in rows[ref].values()], memory)
        lines.append(
            f"| {ref} | (its own) | {mine['seeds']} | {mine['queries']:.1f} | {mine['val']:.2f} | "
            f"{mine['test']:.2f} | {mine['memory_mb']:.3f} | — | — |"
        )
        for base in baselines:
            s = summary(matched(rows[ref], rows[base]), memory)
            lines.append(
                f"| {base} | {ref} | {s['seeds']} | {s['queries']:.1f} | {s['val']:.2f} | {s['test']:.2f} | "
                f"{s['memory_mb']:.3f} | {100 * (1 - mine['memory_mb'] / s['memory_mb']):.1f}% | "
                f"{s['test'] - mine['test']:+.2f} |"
            )
    lines += [
        "",
        "| row | proposals rejected by the bound (all seeds) | heaviest network queried (MB) |",
        "|---|---|---|",
    ]
    for base in baselines:
        extras = [r.get("method_extra") or {} for r in rows[base].values()]
        if all("over_bound" in e and "heaviest_queried_mb" in e for e in extras):
            rejected, heaviest = (
                sum(e["over_bound"] for e in extras),
                max(e["heaviest_queried_mb"] for e in extras),
            )
            lines.append(f"| {base} | {rejected} | {heaviest:.3f} |")
    found = oracles(task, space, bound_mb)
    lines += [
        "",
        f"| table architecture ({found['canonical']} canonical cells, {found['within']} within "
        f"{bound_mb:g} MB) | val % | test % | memory (MB) |",
        "|---|---|---|---|",
    ]
    for label, key in (
        ("most accurate, no bound", "best"),
        (f"most accurate within {bound_mb:g} MB", "best_within"),
    ):
        o = found[key]
        arch = o["arch"].replace("|", "\\|")  # a pipe would end the Markdown table cell
        lines.append(f"| {label}: `{arch}` | {o['val']:.2f} | {o['test']:.2f} | {o['memory_mb']:.3f} |")
    return "\n".join(lines)
