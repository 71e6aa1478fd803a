"""The `nasrepro` command: one contract for every method and task (DESIGN.md, "The command line").

Arguments are typed (jsonargparse), may come from a YAML file (`--config FILE`) with command-line
overrides, and every usage error is one line on stderr with exit status 2; runtime failures
(missing data, failed evaluations) are one line with exit status 1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from nasrepro.app.measure import add_measure_parser, cmd_measure
from nasrepro.errors import NasreproError, UsageError
from nasrepro.harness.seeds import parse_seeds

DEFAULT_TASK = "nasbench-graph/cora"
DEFAULT_METHOD = "evolution"
DEFAULT_SEEDS = "0-4"
Preset = Literal["smoke", "cpu", "paper"]
Wandb = Literal["offline", "online", "disabled"]


# --- parser ------------------------------------------------------------------------------------
def _common(parser: ArgumentParser) -> None:
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of these options")
    parser.add_argument(
        "--data-dir",
        type=str | None,
        default=None,
        help="dataset folder (default: $NASREPRO_DATA, else ~/.cache/nasrepro)",
    )


def _search_parser() -> ArgumentParser:
    p = ArgumentParser(
        exit_on_error=False, description="Run a NAS method on a task and write one record per seed."
    )
    _common(p)
    p.add_argument("--method", type=str, default=DEFAULT_METHOD, help="see `nasrepro methods`")
    p.add_argument("--task", type=str, default=DEFAULT_TASK, help="see `nasrepro tasks`")
    p.add_argument("--space", type=str | None, default=None, help="search space (default: the task's)")
    p.add_argument("--seed", type=int | None, default=None, help="one seed")
    p.add_argument(
        "--seeds", type=str | None, default=None, help=f"seed ranges, e.g. 0-19 (default {DEFAULT_SEEDS})"
    )
    p.add_argument("--budget", type=int | None, default=None, help="unique queries (default: the preset's)")
    p.add_argument("--preset", type=Preset, default="cpu")
    p.add_argument(
        "--reward",
        type=Literal["val", "test"],
        default="val",
        help="search reward; 'test' exists only to compare with tables that selected on test",
    )
    p.add_argument(
        "--method-config", type=dict[str, Any], default={}, help="method hyper-parameters (YAML/JSON)"
    )
    p.add_argument(
        "--executor",
        type=Literal["local", "ray"],
        default="local",
        help="where evaluations run: local (in this process) or ray (--workers at once)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="evaluations in flight at once within one search (any executor)",
    )
    p.add_argument(
        "--parallel-seeds",
        type=int | None,
        default=None,
        help="seeds run at once in separate processes (default: one process for table tasks, "
        "else one per core; $NASREPRO_WORKERS)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output while searching")
    p.add_argument(
        "--deterministic",
        type=bool,
        default=True,
        help="deterministic kernels in the method's own fits (false: faster on GPUs); recorded",
    )
    p.add_argument("--resume", action="store_true", help="continue unfinished seeds from their checkpoints")
    p.add_argument(
        "--tag", type=str, default="", help="names a variant (other space/options): kept apart in records"
    )
    p.add_argument("--out", type=str, default="results")
    p.add_argument("--wandb", type=Wandb, default="offline")
    return p


def _evaluate_parser() -> ArgumentParser:
    p = ArgumentParser(
        exit_on_error=False, description="Train one architecture from scratch with the task's protocol."
    )
    _common(p)
    p.add_argument("--task", type=str, required=True)
    p.add_argument(
        "--arch",
        type=str,
        required=True,
        help="a reference name (gcn, gat, resnet20, lstm) or an arch string",
    )
    p.add_argument("--preset", type=Preset, default="cpu")
    p.add_argument("--seed", type=int | None, default=None)
    p.add_argument("--seeds", type=str | None, default=None, help="seed ranges, e.g. 0-9")
    p.add_argument("--out", type=str, default="results")
    p.add_argument("--wandb", type=Wandb, default="offline")
    p.add_argument("--devices", type=int | str, default="auto", help="Lightning devices")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", type=str, default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--space", type=str | None, default=None, help="the space of --arch (default: the task's)")
    p.add_argument("--tag", type=str, default="", help="a retraining study's name: joins the leaderboard")
    return p


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="nasrepro",
        exit_on_error=False,
        description="Neural architecture search: reproduce, compare, cite.",
    )
    sub = parser.add_subcommands(required=False, dest="command")
    sub.add_subcommand("search", _search_parser(), help="run a NAS method (the default command)")
    sub.add_subcommand("evaluate", _evaluate_parser(), help="train one architecture from scratch")
    add_measure_parser(sub)
    sub.add_subcommand("tasks", ArgumentParser(exit_on_error=False), help="list registered tasks")
    sub.add_subcommand("methods", ArgumentParser(exit_on_error=False), help="list registered methods")

    data = ArgumentParser(exit_on_error=False, description="Dataset utilities.")
    sub.add_subcommand("data", data, help="check, download or convert datasets")
    data_sub = data.add_subcommands(required=True, dest="action")
    check = ArgumentParser(exit_on_error=False)
    check.add_argument("--data-dir", type=str | None, default=None)
    data_sub.add_subcommand("check", check, help="found / missing / corrupt for every dataset")
    download = ArgumentParser(exit_on_error=False)
    download.add_argument("name", type=Literal["cora", "citeseer", "pubmed", "cifar10"])
    download.add_argument("--data-dir", type=str | None, default=None)
    data_sub.add_subcommand("download", download, help="download a standard distribution (needs a network)")
    convert = ArgumentParser(exit_on_error=False)
    convert.add_argument(
        "--source",
        type=str,
        required=True,
        help="the official NATS-Bench/NAS-Bench-201 file, or a folder of the shared CSVs",
    )
    convert.add_argument("--out", type=str, required=True, help="the compact Parquet table to write")
    data_sub.add_subcommand("convert-nb201", convert, help="write nasrepro's compact NAS-Bench-201 table")

    board = ArgumentParser(exit_on_error=False)
    board.add_argument("--results", type=str, default="results")
    board.add_argument(
        "--wandb", type=Wandb, default="disabled", help="also log the leaderboard as a wandb.Table"
    )
    sub.add_subcommand("leaderboard", board, help="write RESULTS/LEADERBOARD.md and figures from records")
    wb = ArgumentParser(exit_on_error=False)
    wb.add_argument(
        "--results", type=str, default="results", help="records under RESULTS/runs; runs to RESULTS/wandb"
    )
    wb.add_argument("--wandb", type=Literal["offline", "online"], default="offline")
    wb.add_argument(
        "records", nargs="*", default=[], help="record files (default: every record under --results)"
    )
    sub.add_subcommand(
        "wandb-log", wb, help="log run records to W&B, one run each (searches do this themselves)"
    )
    for tool, module in TOOLS.items():  # listed in --help; parsed by the tool's own module
        sub.add_subcommand(tool, ArgumentParser(exit_on_error=False), help=f"{tool} tools ({module})")
    return parser


# --- commands ----------------------------------------------------------------------------------
def _seeds(args: Namespace, default: str) -> list[int]:
    if args.seed is not None and args.seeds is not None:
        raise UsageError("give --seed or --seeds, not both")
    if args.seed is not None:
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        return [args.seed]
    return parse_seeds(default if args.seeds is None else args.seeds)  # "" is an error, not the default


def _summary(records: list[dict[str, Any]], what: str) -> str:
    tests = [r["metrics"]["test"] for r in records if r["metrics"].get("test") is not None]
    metric = records[0].get("metric", "score")
    if not tests:
        return f"{what}: no test metric"
    if len(tests) == 1:
        return f"{what}: test {metric} {tests[0]:.2f} (n=1)"
    return (
        f"{what}: test {metric} {statistics.mean(tests):.2f} ± {statistics.stdev(tests):.2f} "
        f"(mean ± std over n={len(tests)} seeds)"
    )


def _out_dir(text: str) -> Path:
    """`--out` as a folder this process can write, or one line saying why not."""
    from nasrepro.paths import writable_dir

    return writable_dir(text, "--out")


def _positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}")


def cmd_search(args: Namespace) -> int:
    from nasrepro.app.parallel import run_many
    from nasrepro.app.requests import SearchRequest
    from nasrepro.app.resolve import check_budget
    from nasrepro.app.search import resolve

    check_budget(args.budget)
    _positive("--workers", args.workers)
    _positive("--parallel-seeds", args.parallel_seeds)
    if args.executor == "local" and args.workers != 1:
        raise UsageError(
            f"the local executor runs one evaluation at a time, got --workers {args.workers}; "
            "use --executor ray to run several at once (--parallel-seeds runs seeds side by side)"
        )
    requests = [
        SearchRequest(
            method=args.method,
            task=args.task,
            seed=seed,
            budget=args.budget,
            preset=args.preset,
            reward=args.reward,
            space=args.space,
            method_config=dict(args.method_config),
            out=_out_dir(args.out),
            data_dir=Path(args.data_dir) if args.data_dir else None,
            wandb=args.wandb,
            resume=args.resume,
            tag=args.tag,
            executor=args.executor,
            workers=args.workers,
            progress=not args.quiet,
            deterministic=args.deterministic,
        )
        for seed in _seeds(args, DEFAULT_SEEDS)
    ]
    resolved = resolve(requests[0])  # fail fast on names and options before starting processes
    parallel = args.parallel_seeds
    if parallel is None:
        # A table look-up is cheaper than starting a process (torch import); training is not.
        parallel = 1 if resolved.task.kind == "table" else None
    if args.executor == "ray":  # the parallelism is inside each search
        parallel = 1
    # with --resume, a seed finished by an earlier command returns its old record: logged back then
    done_before = {p for p in _record_paths(requests, resolved.budget) if args.resume and p.exists()}
    results = run_many("search", requests, parallel)
    _log_to_wandb([path for _, path in results if path not in done_before], args.wandb, args.out)
    for record, path in results:
        print(
            f"seed {record['seed']:>3}: best {record['best_arch']}  val {record['metrics']['val']:.2f}  "
            f"test {record['metrics']['test']:.2f}  ({record['search_cost']['queries']} queries)  -> {path}"
        )
    print(_summary([r for r, _ in results], f"{args.method} on {args.task} [{args.preset}]"))
    print(f"records in {Path(args.out) / 'runs' / args.task / args.method}")
    return 0


def _record_paths(requests: Sequence[Any], budget: int) -> list[Path]:
    from nasrepro.tracking.records import record_path

    return [record_path(r.out, r.task, r.method, r.preset, r.seed, budget, tag=r.tag) for r in requests]


def _log_to_wandb(paths: list[Path], mode: str, out: str) -> None:
    """The records this command wrote, as W&B runs, by a detached process once the records are on
    disk (seeds finished before a `--resume` were logged by their own command)."""
    from nasrepro.tracking.wandb_log import log_in_background

    folder = Path(out) / "wandb"
    if log_in_background(paths, mode, folder) is not None:
        print(f"W&B ({mode}): logging {len(paths)} run(s) in the background into {folder} (log: logger.log)")


def cmd_wandb_log(args: Namespace) -> int:
    """Log existing records as W&B runs, in the foreground (e.g. committed results, or after a
    background logger was stopped)."""
    from nasrepro.tracking.records import iter_records
    from nasrepro.tracking.wandb_log import log_files

    paths = [Path(p) for p in args.records] or [path for path, _ in iter_records(Path(args.results))]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no record file at {missing[0]}; give run record JSON files or --results DIR")
    if not paths:
        raise UsageError(f"no run records under {args.results}/runs; give record files or another --results")
    folders = log_files(paths, args.wandb, Path(args.results) / "wandb")
    print(f"logged {len(folders)} run(s) ({args.wandb}) into {Path(args.results) / 'wandb'}")
    return 0


def cmd_evaluate(args: Namespace) -> int:
    from nasrepro.app.parallel import run_many
    from nasrepro.app.requests import EvaluateRequest

    requests = [
        EvaluateRequest(
            task=args.task,
            arch=args.arch,
            preset=args.preset,
            seed=seed,
            out=_out_dir(args.out),
            data_dir=Path(args.data_dir) if args.data_dir else None,
            wandb=args.wandb,
            devices=args.devices,
            num_nodes=args.num_nodes,
            strategy=args.strategy,
            space=args.space,
            tag=args.tag,
        )
        for seed in _seeds(args, "0")
    ]
    results = run_many("evaluate", requests, 1)
    for record, path in results:
        print(
            f"seed {record['seed']:>3}: val {record['metrics']['val']:.2f}  test {record['metrics']['test']:.2f}"
            f"  ({record['metrics']['train_seconds']:.1f} s)  -> {path}"
        )
    print(_summary([r for r, _ in results], f"{args.arch} on {args.task} [{args.preset}]"))
    return 0


def cmd_tasks(args: Namespace) -> int:
    from nasrepro.tasks import get_task, task_names

    for name in task_names():
        task = get_task(name)
        print(
            f"{name:<28} {task.kind:<6} {task.metric.name} ({task.metric.direction})  "
            f"space: {task.default_space or '-'}"
        )
    return 0


def cmd_methods(args: Namespace) -> int:
    """Per method: what it is, its paper, the task kinds and space views it needs, its default spaces."""
    from nasrepro.methods import get_method, method_names

    for name in method_names():
        method = get_method(name)
        doc = next(iter((method.__doc__ or "").strip().splitlines()), "")
        print(f"{name:<16} {doc}")
        print(f"{'':<16} paper: {method.paper or '-'}")
        views = ", ".join(sorted(method.needs - {"basic"})) or "any"
        print(f"{'':<16} tasks: {', '.join(sorted(method.task_kinds))} (space view: {views})")
        if method.default_spaces:
            defaults = ", ".join(f"{task} -> {space}" for task, space in method.default_spaces.items())
            print(f"{'':<16} default spaces: {defaults}")
    return 0


def cmd_data(args: Namespace) -> int:
    from nasrepro.paths import data_dir

    action = args.action
    sub = args[action]
    if action == "check":
        from nasrepro.tasks import get_task, task_names

        root = data_dir(sub.data_dir)
        if not root.is_dir():
            raise UsageError(f"data folder {root} does not exist; pass --data-dir or set NASREPRO_DATA to it")
        rows = [row for name in task_names() for row in get_task(name).check_data(root)]
        seen, unique = set(), []
        for row in rows:
            if (row.dataset, row.path) not in seen:
                seen.add((row.dataset, row.path))
                unique.append(row)
        print(f"data dir: {root}")
        print(f"{'dataset':<22} {'status':<9} {'path':<50} detail")
        for row in unique:
            print(f"{row.dataset:<22} {row.status:<9} {row.path:<50} {row.detail}")
        return 0
    if action == "download":
        from nasrepro.tasks.downloads import download

        print(download(sub.name, data_dir(sub.data_dir)))
        return 0
    from nasrepro.paths import writable_file
    from nasrepro.tasks import nasbench201

    source, out = Path(sub.source), writable_file(sub.out, "--out")  # before the conversion runs
    if source.is_dir():
        written = nasbench201.convert_from_csvs(source, out)
    elif source.exists():
        written = nasbench201.convert_from_official(source, out)
    else:
        raise UsageError(
            f"--source {source} does not exist; give the official benchmark file or the CSV folder"
        )
    print(f"wrote {written}")
    return 0


def cmd_leaderboard(args: Namespace) -> int:
    from nasrepro.tracking.leaderboard import build

    written = build(Path(args.results), wandb=args.wandb)
    for path in written:
        print(path)
    return 0


#: commands that parse their own arguments, `nasrepro <tool> ...`: module paths with a
#: `main(argv) -> int` that raises `UsageError` on bad input (imported only when called)
TOOLS = {
    "proxylessnas": "nasrepro.methods.proxylessnas.tools",  # build-lut | check-lut | export-config
    "study": "nasrepro.app.studies",  # table-agreement
}

COMMANDS = {
    "search": cmd_search,
    "evaluate": cmd_evaluate,
    "measure": cmd_measure,
    "tasks": cmd_tasks,
    "methods": cmd_methods,
    "data": cmd_data,
    "leaderboard": cmd_leaderboard,
    "wandb-log": cmd_wandb_log,
}


def _one_line(message: str) -> str:
    """A parser or library message as one line: for a value of the wrong type, the option, the value
    and the types it accepts (jsonargparse spreads those over a dozen lines)."""
    text = str(message)
    key = re.search(r'Parser key "([^"]+)"', text)
    given = re.search(r"Given value: (.*)", text)
    if key and given:
        expected = re.findall(r"Expected a <class '(\w+)'>", text) or re.findall(r"<class '(\w+)'>", text)
        wanted = [name for name in dict.fromkeys(expected) if name != "NoneType"]
        option = "--" + key[1].replace("_", "-")
        accepts = f"; expected {' or '.join(wanted)}" if wanted else ""
        return f"{option} (config key {key[1]!r}) got {given[1].strip()!r}{accepts}"
    got = re.search(r"Got value: (.*)", text)
    if key and got:
        option = "--" + key[1].replace("_", "-")
        choices = re.search(r"Literal\[(.*?)\]", text)
        if choices:
            return f"{option} got {got[1].strip()!r}; choose one of {choices[1]}"
        if "dict" in text:
            return f"{option} got {got[1].strip()!r}, which is not a YAML/JSON mapping; write e.g. '{{population: 10}}'"
        return f"{option} got {got[1].strip()!r}: {text.split('. Got value')[0].split(': ', 1)[-1]}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 2:
        lines = lines[:2]
    return " ".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["search", *argv]
    try:
        if argv and argv[0] in TOOLS:
            import importlib

            return importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
        args = build_parser().parse_args(argv)
        command = args.command or "search"
        return COMMANDS[command](args[command] if args.command else _search_parser().get_defaults())
    except UsageError as err:
        print(f"nasrepro: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except NasreproError as err:
        print(f"nasrepro: error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except argparse.ArgumentError as err:
        print(f"nasrepro: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasrepro: interrupted; finished records are on disk", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
