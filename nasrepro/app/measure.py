"""`nasrepro measure`: parameters, FLOPs and liveness-exact memory of one network (issue 12, item 1).

Two ways to name the network: `--task T --arch A` (a reference architecture of the task, e.g.
`resnet20`, or an architecture string of the task's space, measured on `task.example_input(1)`), or
`--model torchvision:NAME --input 1x3x224x224` (built with `weights=None`, nothing is downloaded).
The numbers and their definitions are `nasrepro.harness.memory`'s; `--json FILE` writes them atomically.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from nasrepro.errors import UsageError

TORCHVISION = "torchvision:"
UNITS = "MB = 1e6 bytes at each tensor's dtype; MiB = 2**20 bytes; MemNAS MB = 4 bytes x elements / 1e6"


def add_measure_parser(subcommands: Any) -> None:
    """Register `measure` on a jsonargparse subcommands action (`parser.add_subcommands()`)."""
    p = ArgumentParser(
        exit_on_error=False,
        description="Parameters, FLOPs, weight memory, peak activation memory (inference and one "
        "training step) and total memory of one network.",
    )
    p.add_argument("--task", type=str | None, default=None, help="see `nasrepro tasks`")
    p.add_argument(
        "--arch", type=str | None, default=None, help="a reference name (resnet20) or an arch string"
    )
    p.add_argument("--space", type=str | None, default=None, help="the space of --arch (default: the task's)")
    p.add_argument("--model", type=str | None, default=None, help="torchvision:NAME, built with weights=None")
    p.add_argument("--input", type=str | None, default=None, help="input shape for --model, e.g. 1x3x224x224")
    p.add_argument("--json", type=str | None, default=None, help="also write the numbers to this JSON file")
    subcommands.add_subcommand("measure", p, help="params, FLOPs and memory of one network")


def parse_shape(text: str) -> tuple[int, ...]:
    """`"1x3x224x224"` -> `(1, 3, 224, 224)`; every dimension a positive integer."""
    if not re.fullmatch(r"\s*[1-9]\d*(\s*x\s*[1-9]\d*)*\s*", text):
        raise UsageError(
            f"--input takes a shape like 1x3x224x224 (positive integers joined by x), got {text!r}"
        )
    return tuple(int(d) for d in text.split("x"))


def _torchvision_model(spec: str, shape: tuple[int, ...]) -> tuple[Any, tuple]:
    """The torchvision model `spec` names, untrained, and a random input of `shape` that it accepts."""
    import torch
    import torchvision

    name = spec[len(TORCHVISION) :]
    known = torchvision.models.list_models()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown torchvision model {name!r}; {hint}see torchvision.models.list_models()")
    model = torchvision.models.get_model(name, weights=None)  # fresh: probing may touch BN statistics
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    try:  # both modes: a training step can fail where inference works (BN on 1x1 maps at batch 1)
        with torch.no_grad():
            model.eval()(x)
            model.train()(x)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        mode = "training" if model.training else "inference"
        raise UsageError(
            f"input {'x'.join(map(str, shape))} does not fit torchvision:{name} in {mode} ({first}); "
            "give the shape the model expects, e.g. --input 1x3x224x224"
        ) from None
    return model, (x,)


def _task_model(task_name: str, arch: str, space_name: str | None) -> tuple[Any, tuple]:
    """A task's reference network called `arch`, or the model of `arch` in the task's (or --space's) space."""
    from nasrepro.spaces import get_space
    from nasrepro.tasks import get_task

    task = get_task(task_name)
    reference = task.reference_arch(arch) if space_name is None else None
    if reference is not None:
        model = reference.build(task)
    else:
        space = get_space(space_name) if space_name else task.space()
        if space is None and task.default_space:
            space = get_space(task.default_space)
        if space is None:
            names = ", ".join(task.reference_archs()) or "none"
            raise UsageError(
                f"{arch!r} is not a reference architecture of {task_name} ({names}) and the task has "
                "no default space; give --space"
            )
        if "model" not in space.views():
            raise UsageError(
                f"space {space.name!r} builds no models (a table-only space); it cannot be measured"
            )
        model = space.to_model(space.parse(arch), task)
    try:
        inputs = task.example_input(1)
    except NotImplementedError:
        raise UsageError(f"task {task_name!r} has no example input to measure a network on") from None
    return model, tuple(inputs)


def _lines(label: str, report: dict[str, Any]) -> list[str]:
    def mem(name: str) -> str:
        return (
            f"{report[f'{name}_mb']:.3f} MB ({report[f'{name}_mib']:.3f} MiB; "
            f"MemNAS {report[f'{name}_memnas_mb']:.3f} MB)"
        )

    flops = (
        "-"
        if report["flops"] is None
        else f"{report['flops'] / 1e6:.2f} M ({report['macs'] / 1e6:.2f} M multiply-adds)"
    )
    return [
        label,
        f"parameters                        {report['params']:,}",
        f"FLOPs                             {flops}",
        f"weights (parameters + buffers)    {mem('weight')}",
        f"peak activations, inference       {mem('peak_inference')}",
        f"peak activations, training step   {mem('peak_training')}",
        f"total (weights + inference peak)  {mem('total')}",
        f"total, training step              {mem('total_training')}",
        UNITS,
    ]


def cmd_measure(args: Namespace) -> int:
    """Validate, build, measure, print; write `--json` last, so a bad request writes nothing."""
    from nasrepro.harness.memory import measure_memory
    from nasrepro.paths import writable_file

    out = writable_file(args.json, "--json") if args.json else None
    if args.model is not None:
        if args.task or args.arch or args.space:
            raise UsageError("give --model, or --task with --arch, not both")
        if not args.model.startswith(TORCHVISION):
            raise UsageError(
                f"--model takes torchvision:NAME (e.g. torchvision:mobilenet_v2), got {args.model!r}"
            )
        if args.input is None:
            raise UsageError("--model needs --input, the input shape, e.g. --input 1x3x224x224")
        shape = parse_shape(args.input)
        model, inputs = _torchvision_model(args.model, shape)
        what: dict[str, Any] = {"model": args.model, "input": list(shape)}
    else:
        if not (args.task and args.arch):
            raise UsageError("give --task T --arch A, or --model torchvision:NAME --input SHAPE")
        if args.input is not None:
            raise UsageError("--input goes with --model; a task measures on its own example input")
        model, inputs = _task_model(args.task, args.arch, args.space)
        what = {"task": args.task, "arch": args.arch, "space": args.space}
        shapes = [list(x.shape) for x in inputs if hasattr(x, "shape")]
        what["input"] = shapes[0] if len(shapes) == 1 else shapes
    report = measure_memory(model, inputs).to_dict()
    label = " ".join(f"{k} {v}" for k, v in what.items() if v is not None and k != "input")
    print("\n".join(_lines(f"{label}  input {what['input']}", report)))
    if out is not None:
        from nasrepro.tracking.records import atomic_write_text

        payload = {**what, **report, "units": UNITS, "definition": "nasrepro.harness.memory"}
        atomic_write_text(out, json.dumps(payload, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out}")
    return 0
