"""Memory saving of MemNet's incumbents against other methods' incumbents, from records alone.

    python -m nasrepro.methods.memnet.report [--results results] [--task nasbench201/cifar10] [--preset cpu]
                                             [--space nasbench201] [--bound 1.5]

For every method with records of `task` at `preset`, the mean over seeds of the incumbent's
validation and test accuracy and of its memory M = W + I (MemNAS MB,
`harness.arch_memory.network_memory` on the real network; not every record carries it, so it is
measured here), then MemNet's saving against each: 1 - M_memnet / M_other, beside the accuracy it
gives up. This is the suite's counterpart of MemNet's "24.17% average saving of total memory"
(MemNet abstract), which compares against hand-designed and NAS networks of the literature instead.
With `--bound B`, the rows tagged `boundB` are also compared at equal numbers of evaluated networks,
beside the table's most accurate architecture without and within the bound (`matched`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean
from typing import Any


def incumbents(results: Path, task_name: str, preset: str) -> dict[str, list[dict[str, Any]]]:
    """method (with tag) -> one row per seed: best_arch, val, test, and the record's budget."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((results / "runs" / task_name).glob("*/*.json")):
        record = json.loads(path.read_text())
        if record.get("kind") != "search" or record.get("preset") != preset:
            continue
        name = record["method"] + (f"[{record['tag']}]" if record.get("tag") else "")
        out.setdefault(f"{name} b{record['budget']}", []).append(
            {"arch": record["best_arch"], "val": record["metrics"]["val"], "test": record["metrics"]["test"]}
        )
    return out


def summarise(results: Path, task_name: str, preset: str, space_name: str) -> list[dict[str, Any]]:
    from nasrepro.harness.arch_memory import network_memory
    from nasrepro.spaces import get_space
    from nasrepro.tasks import get_task

    task, space = get_task(task_name), get_space(space_name)
    rows = []
    for name, seeds in sorted(incumbents(results, task_name, preset).items()):
        mems = [network_memory(space, task, space.parse(s["arch"])).total_mb for s in seeds]
        rows.append(
            {
                "method": name,
                "seeds": len(seeds),
                "val": mean(s["val"] for s in seeds),
                "test": mean(s["test"] for s in seeds),
                "memory_mb": mean(mems),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--task", default="nasbench201/cifar10")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--space", default="nasbench201", help="the space the records searched")
    parser.add_argument(
        "--bound",
        type=float,
        default=None,
        help="also compare the rows tagged bound<BOUND> at equal numbers of evaluated networks (`matched`)",
    )
    args = parser.parse_args(argv)
    rows = summarise(args.results, args.task, args.preset, args.space)
    print("| method | seeds | val % | test % | incumbent memory (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['seeds']} | {r['val']:.2f} | {r['test']:.2f} | {r['memory_mb']:.3f} |")
    ours = [r for r in rows if r["method"].startswith("memnet")]
    others = [r for r in rows if not r["method"].startswith("memnet")]
    print("\n| memnet row | against | memory saving | test % given up |")
    print("|---|---|---|---|")
    for mine in ours:
        for other in others:
            saving = 100 * (1 - mine["memory_mb"] / other["memory_mb"])
            print(
                f"| {mine['method']} | {other['method']} | {saving:.1f}% | {other['test'] - mine['test']:+.2f} |"
            )
    if args.bound is not None:
        from nasrepro.methods.memnet.matched import render

        print("\n" + render(args.results, args.task, args.preset, args.space, args.bound))


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
