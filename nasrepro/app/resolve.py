"""Names -> objects, once per run: method, task, space, preset, budget and data folder.

Everything the command line names is looked up here and nowhere below; a method x task x space
combination that cannot work is refused here, before any work starts, with the choices that can.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nasrepro.errors import NasreproError, UsageError
from nasrepro.harness.method import Method, training_preset
from nasrepro.harness.recipe import Preset
from nasrepro.harness.space import Arch, Space
from nasrepro.harness.task import Task
from nasrepro.paths import data_dir as resolve_data_dir


@dataclass(frozen=True)
class Resolved:
    """The objects one search runs on."""

    method: Method
    task: Task
    space: Space
    #: the task's preset with the space's recipe overrides and (train tasks) the method's final
    #: recipe applied: what every evaluation trains with, and what the record shows
    preset: Preset
    budget: int
    data_dir: Path


def method_class(name: str) -> type[Method]:
    from nasrepro.methods import get_method

    return get_method(name)


def space_for(method: type[Method] | None, task: Task, name: str | None) -> Space:
    """`name`, else the method's default space for `task`, else the task's own default."""
    from nasrepro.spaces import get_space

    if name is None and method is not None:
        name = method.default_space_for(task.name)
    if name is None:
        own = task.space()
        if own is not None:
            return own
        if task.default_space is None:
            raise UsageError(f"task {task.name!r} has no default search space; pass --space")
        name = task.default_space
    from nasrepro.spaces import SPACES

    if name not in SPACES:
        from nasrepro.methods import method_names

        method_names()  # method packages register their own spaces (e.g. proxyless-cifar) on import
    return get_space(name)


def compatible_choices(method: type[Method]) -> list[str]:
    """`task (space)` pairs this method can run on, with the space it would pick by default."""
    from nasrepro.tasks import get_task, task_names

    found = []
    for name in task_names():
        task = get_task(name)
        try:
            space = space_for(method, task, None)
        except UsageError:
            continue
        if method.incompatibility(task, space) is None:
            found.append(f"{name} ({space.name})")
    return found


def check_compatible(method: type[Method], task: Task, space: Space) -> None:
    if task.kind == "table":  # a table answers only for the architectures of its own space
        own = task.space()
        own_name = own.name if own is not None else task.default_space
        if own_name is not None and space.name != own_name:
            raise UsageError(
                f"task {task.name!r} is a table of the {own_name!r} space and cannot look up "
                f"{space.name!r} architectures; drop --space or pass --space {own_name}"
            )
    reason = method.incompatibility(task, space)
    if reason is None:
        return
    choices = compatible_choices(method)
    raise UsageError(
        f"method {method.name!r} cannot search space {space.name!r} on task {task.name!r}: it {reason}; "
        f"it runs on: {', '.join(choices) or 'no registered task'}"
    )


def check_space_fits(task: Task, space: Space, arch: Arch | None = None) -> None:
    """One network of `space` (`arch`, else a sampled one) built for `task` and run once on its
    example input, for a `--space` the user chose on a live task: a space made for another kind of
    data (graphs, images, sequences) is one usage line here, not a traceback mid-training. Skipped
    where the task has no example input or its data is not at the default place."""
    import numpy as np
    import torch

    from nasrepro.errors import DataError

    try:
        arch = space.sample(np.random.default_rng(0)) if arch is None else arch
        model = space.to_model(arch, task)
        try:
            inputs = task.example_input(1)
        except (NotImplementedError, DataError):
            return
        model.eval()
        with torch.no_grad():
            model(*inputs)
    except DataError:
        return
    except NasreproError:
        raise
    except (TypeError, AttributeError, RuntimeError, ValueError, KeyError, IndexError) as err:
        first = (str(err).splitlines() or [""])[0][:160]
        raise UsageError(
            f"space {space.name!r} does not build networks for task {task.name!r} ({type(err).__name__}: "
            f"{first}); use a space made for it"
            + (f" (the task's default: {task.default_space})" if task.default_space else "")
        ) from None


def check_budget(budget: int | None, space: Space | None = None) -> None:
    """A positive budget that the space can fill with unique architectures (isomorphism classes
    where the space folds them): a larger one would only end, after the whole space, in a run of
    duplicate queries."""
    if budget is not None and budget < 1:
        raise UsageError(f"--budget must be a positive number of unique queries, got {budget}")
    if budget is None or space is None:
        return
    classes = space.describe().get("classes")
    limit = classes if classes is not None else space.size()
    if limit is not None and budget > limit:
        what = "isomorphism classes" if classes is not None else "architectures"
        raise UsageError(
            f"--budget {budget} is more unique queries than space {space.name!r} holds ({limit} {what}); "
            f"use at most {limit}"
        )


def resolve_search(
    method_name: str,
    task_name: str,
    space_name: str | None,
    preset_name: str,
    budget: int | None,
    method_config: dict,
    data_dir: Path | None,
) -> Resolved:
    """Every name of a search request as an object; usage errors before anything runs."""
    from nasrepro.tasks import get_task

    cls = method_class(method_name)
    method = cls(method_config)
    task = get_task(task_name)
    preset = task.preset(preset_name)
    try:
        space = space_for(cls, task, space_name)
    except UsageError as err:
        if space_name is not None:
            raise
        raise UsageError(
            f"{err}; method {cls.name!r} runs on: {', '.join(compatible_choices(cls)) or 'no registered task'}"
        ) from None
    check_compatible(cls, task, space)
    check_budget(budget, space)
    if space_name is not None and task.kind != "table":
        check_space_fits(task, space)
    return Resolved(
        method=method,
        task=task,
        space=space,
        preset=training_preset(task, space, method, preset_name),
        budget=budget or preset.search_budget,
        data_dir=resolve_data_dir(data_dir),
    )
