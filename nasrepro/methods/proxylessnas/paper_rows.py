"""The paper's rows as data: what `reproduce/proxylessnas.sh --preset paper` runs, row by row.

Each `PaperRow` is one row of Cai, Zhu & Han (ICLR 2019) Table 1-3 the suite can run: the search
(method options, so the record says what was run), the cost it optimises and its target, the
images held out (for architecture steps, then for the retraining's validation), and the recipe the
derived network is retrained with. The ImageNet rows follow the released code: search
``search/imagenet_arch_search.py`` (50,000 images of ImageNet train held out; targets
``ref_values``: mobile 80 ms), retraining ``search/imagenet_run_exp.py`` (`RELEASED_RETRAIN`, on
the same 50,000-image hold-out; fact sheet Sec. 3.1-3.2).

``python -m nasrepro.methods.proxylessnas.paper_rows --out DIR [--dry-run]`` prints every row's exact
command and configuration; without ``--dry-run`` it runs the rows this machine can run and names, for
each other row, what it lacks (ImageNet's train split, a CUDA GPU, the released mobile latency table).

The retraining recipe is applied: `ProxylessNAS.final_recipe` (`retrain.final_recipe`) gives the
derived network's training at ``paper`` -- every ImageNet row `RELEASED_RETRAIN` (the GPU row with
its dropout 0.3, method option ``retrain_dropout``), the CIFAR row Cutout 16 on top of the task's
preset -- and the runner trains with it and records it (``config.preset``, ``config.method_recipe``).
Each row's configuration shows the recipe its derived network is trained with (``trained_recipe``),
computed by the harness's own layering (`harness.method.training_preset`). What still differs from
the released retraining is listed in `retrain` and the README ("Deviations").
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nasrepro.errors import UsageError
from nasrepro.methods.proxylessnas.retrain import GPU_DROPOUT, RELEASED_RETRAIN, RetrainRecipe

if TYPE_CHECKING:
    from nasrepro.harness.recipe import TrainRecipe

#: the environment variable naming the released Pixel-1 table (``mobile_trim.yaml``), which is not
#: shipped: its content is not available to this project (README, "Latency tables")
MOBILE_LUT_ENV = "PROXYLESS_MOBILE_LUT"
#: images of ImageNet train held out for architecture steps (released ``valid_size``)
RELEASED_HOLD_OUT = 50_000


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper: its search, cost and target, hold-out, retraining and requirements."""

    name: str
    table: str
    task: str
    seeds: str
    tag: str
    method_config: dict[str, Any]
    #: "latency" | "flops" | "none" (accuracy only)
    cost_kind: str
    #: the cost target (ms for latency); None: E[cost] under uniform alpha (no released target)
    ref: float | None
    #: images held out of the train split (recipe ``valid_size``), for architecture steps in the
    #: search and for validation when the derived network is retrained (``trained_recipe``)
    hold_out: int
    #: the released retraining recipe (None: none was released; the CIFAR row's Cutout is `retrain`'s)
    retrain: RetrainRecipe | None
    #: what the row needs: "imagenet" (the train split), "cuda", "mobile_lut"
    needs: tuple[str, ...]
    paper_value: str
    note: str = ""
    deterministic: bool = True
    extra_args: tuple[str, ...] = field(default=())

    def command(self, out: str) -> list[str]:
        """The exact ``nasrepro search`` command of this row."""
        args = [
            "nasrepro", "search", "--method", "proxylessnas", "--task", self.task, "--seeds", self.seeds,
            "--budget", "1", "--preset", "paper", "--out", out, "--wandb", "disabled", "--tag", self.tag,
            "--method-config", json.dumps(self.method_config, sort_keys=True),
        ]  # fmt: skip
        if not self.deterministic:
            args += ["--deterministic", "false"]
        return [*args, *self.extra_args]

    def configuration(self) -> dict[str, Any]:
        out = asdict(self)
        out["retrain"] = asdict(self.retrain) if self.retrain else None
        out["trained_recipe"] = trained_recipe(self).to_dict()
        return out


def trained_recipe(row: PaperRow) -> TrainRecipe:
    """The recipe the row's derived network is trained with: the task's ``paper`` preset, the space's
    overrides and the method's final recipe, layered by the harness exactly as a run layers them."""
    from nasrepro.harness.method import training_preset
    from nasrepro.methods.proxylessnas.search import ProxylessNAS
    from nasrepro.spaces import get_space
    from nasrepro.tasks import get_task

    task = get_task(row.task)
    space = get_space(ProxylessNAS.default_space_for(row.task) or "")
    return training_preset(task, space, ProxylessNAS(dict(row.method_config)), "paper").recipe


def _imagenet(name: str, **kw: Any) -> PaperRow:
    config = {"column": "code", "valid_size": RELEASED_HOLD_OUT, **kw.pop("config")}
    return PaperRow(
        name=name, task="imagenet", seeds="0", method_config=config, hold_out=RELEASED_HOLD_OUT,
        retrain=kw.pop("retrain", RELEASED_RETRAIN), **kw,
    )  # fmt: skip


_MOBILE_LUT = f"${MOBILE_LUT_ENV}"

#: the paper's rows (CIFAR first: it runs on a machine without ImageNet or a GPU)
PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow(
        name="cifar10-proxyless-g", table="Table 1, Proxyless-G + c/o (2.08% error, 5.7M params)",
        task="cifar10", seeds="0-2", tag="mbconv", method_config={"column": "code"}, cost_kind="flops",
        ref=None, hold_out=5_000, retrain=None, needs=(), paper_value="97.92",
        note="reconstruction: the tree-cell space had no released search code, so proxyless-cifar (MBConv, "
        "32 px) is searched; no released CIFAR search target (ref: E[FLOPs] under uniform alpha) or "
        "retraining recipe: the task's paper preset with Cutout 16 (Table 1's c/o; the length is "
        "DeVries & Taylor's CIFAR-10 value); hold-out 5,000 is the cifar10 task's paper split",
    ),
    _imagenet(
        "imagenet-proxyless-g-mobile", table="Table 2, Proxyless-G + latency loss (74.2 top-1, 79 ms)",
        tag="g-mobile", config={"cost": "latency", "latency_table": _MOBILE_LUT, "ref": 80.0},
        cost_kind="latency", ref=80.0, needs=("imagenet", "cuda", "mobile_lut"), paper_value="74.2 [UNVERIFIED]",
        note="released mul#log (0.2 CE (log E / log 80)^0.3) on the Pixel-1 table",
    ),
    _imagenet(
        "imagenet-proxyless-g-nolat", table="Table 2, Proxyless-G without latency loss (71.8 top-1, 83 ms)",
        tag="g-nolat", config={"regularizer": "none"}, cost_kind="none", ref=None,
        needs=("imagenet", "cuda"), paper_value="71.8 [UNVERIFIED]",
    ),
    _imagenet(
        "imagenet-proxyless-r-mobile", table="Table 2, Proxyless-R mobile (74.6 top-1, 78 ms)",
        tag="r-mobile", config={"algorithm": "rl", "cost": "latency", "latency_table": _MOBILE_LUT, "ref": 80.0},
        cost_kind="latency", ref=80.0, needs=("imagenet", "cuda", "mobile_lut"), paper_value="74.6",
        note="REINFORCE, reward acc (80 / lat)^0.1, 10 samples per update, 300 updates per epoch",
    ),
    _imagenet(
        "imagenet-proxyless-gpu", table="Table 3, Proxyless (GPU) (75.1 top-1, 5.1 ms on V100, batch 8)",
        tag="gpu",
        config={"cost": "latency", "latency_device": "cuda", "latency_batch_size": 8, "retrain_dropout": GPU_DROPOUT},
        cost_kind="latency", ref=None, needs=("imagenet", "cuda"), paper_value="75.1",
        retrain=RetrainRecipe(dropout=GPU_DROPOUT), deterministic=False,
        note="latency table measured with CUDA at batch 8 on the user's GPU by build-lut's code; the released "
        "gpu8 target table is empty, so ref is E[latency] under uniform alpha; dropout 0.3 (released GPU net); "
        "deterministic kernels off for cuDNN speed (recorded)",
    ),
)  # fmt: skip


def rows_by_name() -> dict[str, PaperRow]:
    return {row.name: row for row in PAPER_ROWS}


# --- what this machine lacks -------------------------------------------------------------------------
def _has_imagenet_train(data_dir: Path) -> bool:
    from nasrepro.tasks.imagenet import find_imagenet

    root = find_imagenet(data_dir)
    return root is not None and (root / "train").is_dir()


REQUIREMENTS: dict[str, tuple[Callable[[Path], bool], str]] = {
    "imagenet": (_has_imagenet_train, "ImageNet with its train/ split under the data folder"),
    "cuda": (lambda _: torch.cuda.is_available(), "a CUDA GPU (~200 GPU-hours per search)"),
    "mobile_lut": (
        lambda _: bool(os.environ.get(MOBILE_LUT_ENV)) and Path(os.environ[MOBILE_LUT_ENV]).is_file(),
        f"the released Pixel-1 table mobile_trim.yaml, named by ${MOBILE_LUT_ENV} (not shipped: README)",
    ),
}


def missing(row: PaperRow, data_dir: Path) -> list[str]:
    """What `row` needs and this machine lacks, one phrase each (empty: it can run)."""
    return [REQUIREMENTS[need][1] for need in row.needs if not REQUIREMENTS[need][0](data_dir)]


def expand(args: Sequence[str]) -> list[str]:
    """The command with ``$PROXYLESS_MOBILE_LUT`` replaced by its value."""
    return [a.replace(_MOBILE_LUT, os.environ.get(MOBILE_LUT_ENV, _MOBILE_LUT)) for a in args]


def main(argv: Sequence[str] | None = None) -> int:
    from nasrepro.paths import data_dir as default_data_dir

    parser = argparse.ArgumentParser(prog="python -m nasrepro.methods.proxylessnas.paper_rows")
    parser.add_argument("--out", default="results")
    parser.add_argument("--dry-run", action="store_true", help="print every row's command and configuration")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    args = parser.parse_args(argv)
    table = rows_by_name()
    names = [n for n in args.rows.split(",") if n] or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise UsageError(f"unknown ProxylessNAS paper rows {unknown}; choose from {', '.join(table)}")
    data = default_data_dir(None)
    blocked = []
    for name in names:
        row = table[name]
        print(f"# {row.name}: {row.table}")
        print("# configuration: " + json.dumps(row.configuration(), sort_keys=True))
        print(shlex.join(expand(row.command(args.out))), flush=True)
        if args.dry_run:
            continue
        lacks = missing(row, data)
        if lacks:
            blocked.append(f"{row.name} needs {'; '.join(lacks)}")
            print(f"# not run here: {blocked[-1]}", flush=True)
            continue
        subprocess.run(expand(row.command(args.out)), check=True)
    if blocked:
        print("paper rows not run on this machine: " + " | ".join(blocked), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
