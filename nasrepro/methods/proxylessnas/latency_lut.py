"""A per-op latency look-up table (LUT) measured on the user's own device, and its end-to-end check.

ProxylessNAS makes latency differentiable by modelling it as a sum over the network's layers
(Cai, Zhu & Han, ICLR 2019, Sec. 3.3.1, Eq. (5)-(6)): E[latency] = sum_blocks sum_j p_j F(o_j) plus the
constant latency of the fixed layers, with F(o_j) read from a table. The authors released only a
Pixel-1 table (`mobile_trim.yaml`); the fact sheet's point 3 asks for a CPU table measured in-harness,
the only hardware path a CPU box can honestly reproduce. This module

* lays a `ProxylessSpace` out as LUT positions (`lut_layout`): the fixed stem ("Conv"), the fixed first
  block, every MBConv candidate at every searched position, the 1x1 feature-mix conv ("Conv_1") and
  everything after it ("Logits": pooling, dropout, classifier), keyed exactly like the released LUT
  (`cost.latency_key`: input/output H x W x C, expand, kernel, stride, idskip);
* measures each distinct entry once (`build_lut`): batch 1, eval mode, no grad, warm-up then the median
  of repeated timed runs -- the released code's CPU setting (`run_manager.net_latency`: batch 1, 10
  warm-up / 100 timed runs); the table's `meta` says what was measured where;
* predicts an architecture's latency by summing its entries (`predict_latency`; a zero block costs 0,
  because it is skipped) and gives each edge's cost vector for the differentiable E[latency]
  (`edge_costs`, for `cost.expected_cost`);
* is checked against measured end-to-end latency of random standalone networks by `lut_check`
  (with the ``build-lut`` / ``check-lut`` commands), the question the paper answers for its mobile
  predictor and that users of the released code keep asking (once-for-all#37: "how do I build a
  LUT for my own hardware?").

Cost on a shared 2-core AMD EPYC VM, 1 thread, 3 interleaved rounds: proxyless-cifar (70 entries, 32 px,
10 warm-up / 100 timed runs) builds in 15-25 s, its 50-network check in 2.5-4 min; proxyless-imagenet
(70 entries, 224 px, 3 warm-up / 20 timed runs) builds in ~20 s, its check in ~5 min. With background
load the absolute errors move by tens of percent (results/proxylessnas_lut_check_cpu.md): build and
check on a quiet machine.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.harness.machine import describe_device
from nasrepro.methods.proxylessnas.blocks import (
    ZERO,
    MBConv,
    MobileInvertedResidualBlock,
    candidate_op,
    conv_bn_act,
)
from nasrepro.methods.proxylessnas.cost import LatencyTable, latency_key, measure_latency
from nasrepro.methods.proxylessnas.spaces import ProxylessArch, ProxylessSpace, mbconv_space

#: the released LUT's layer types (`search/utils/latency_estimator.py`, `LatencyEstimator.predict`)
STEM, MBCONV, FEATURE_MIX, LOGITS = "Conv", "expanded_conv", "Conv_1", "Logits"

#: classifier outputs per space: the ImageNet space ends in 1000 classes (the released LUT's
#: "Logits-...-output:1000"), our CIFAR reduction in 10
NUM_CLASSES: dict[str, int] = {"proxyless-imagenet": 1000, "proxyless-cifar": 10}

ProgressFn = Callable[[int, int, str], None]


# --- layout: which entries a space needs --------------------------------------------------------------
def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after an odd-kernel "same"-padded conv: floor((size - 1) / stride) + 1."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class LutOp:
    """One LUT entry: its key, the module it times, and the (C, H, W) input it times it on."""

    key: str
    role: str  # "stem" | "first_block" | "block" | "feature_mix" | "logits"
    input_chw: tuple[int, int, int]
    build: Callable[[], nn.Module] = field(compare=False, repr=False)


def _logits_module(c_in: int, num_classes: int, dropout: float) -> nn.Module:
    """Everything after the feature-mix conv, as the released "Logits" entry: pool, dropout, linear
    (the same modules and order as `ProxylessNet.forward`)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
    )


def _mbconv_block(
    c_in: int, c_out: int, kernel: int, stride: int, expand: int, shortcut: bool | None = None
) -> Callable[[], nn.Module]:
    """A factory for one MBConv *block* (the op plus its identity shortcut when idskip = 1): the released
    "expanded_conv" entries time the MobileInvertedResidual block, shortcut add included."""

    def build() -> nn.Module:
        return MobileInvertedResidualBlock(
            MBConv(c_in, c_out, kernel, stride, expand), c_in, c_out, stride, shortcut=shortcut
        )

    return build


@dataclass(frozen=True)
class LutLayout:
    """The LUT positions of one space at one input size: fixed layers and, per searched edge (in
    `space.slots` order), the entry of each non-zero choice."""

    space: ProxylessSpace
    input_size: int
    num_classes: int
    fixed: tuple[LutOp, ...]
    edges: tuple[dict[str, LutOp], ...]  # op code -> entry (no entry for zero)

    def entries(self) -> OrderedDict[str, LutOp]:
        """Every distinct entry once, in network order (positions repeated inside a stage share keys)."""
        out: OrderedDict[str, LutOp] = OrderedDict()
        ops = [
            self.fixed[0],
            self.fixed[1],
            *(op for edge in self.edges for op in edge.values()),
            *self.fixed[2:],
        ]
        for op in ops:
            out.setdefault(op.key, op)
        return out

    def fixed_keys(self) -> list[str]:
        return [op.key for op in self.fixed]

    def arch_keys(self, arch: ProxylessArch | str) -> list[str]:
        """The keys whose sum is `arch`'s predicted latency: fixed layers plus each non-zero block."""
        arch = self.space.validate(arch)
        blocks = [
            edge[code].key for edge, code in zip(self.edges, arch.ops, strict=True) if code != ZERO.code
        ]
        return [self.fixed[0].key, self.fixed[1].key, *blocks, *(op.key for op in self.fixed[2:])]


def lut_layout(
    space: ProxylessSpace | str, input_size: int | None = None, num_classes: int | None = None
) -> LutLayout:
    """Walk the network once and name every LUT entry it can need (shapes follow the conv arithmetic).

    Mirrors the released `expected_latency()` of `super_proxyless.py`: "Conv" for the stem, an
    "expanded_conv" for the fixed first block (expand 1, no shortcut) and for each candidate of each
    searched block (idskip = 1 exactly where the block has an identity shortcut), "Conv_1" for the
    feature-mix conv, "Logits" for the rest.
    """
    space = mbconv_space(space)
    config = space.config
    size = int(input_size or config.input_size)
    if size < 1:
        raise UsageError(f"input_size must be a positive number of pixels, got {size}")
    classes = int(num_classes or default_num_classes(space))
    h = conv_out_size(size, config.stem_stride)
    stem = LutOp(
        latency_key(STEM, (size, size, 3), (h, h, config.stem_width)),
        "stem",
        (3, size, size),
        lambda: conv_bn_act(3, config.stem_width, 3, config.stem_stride),
    )
    first = LutOp(
        latency_key(MBCONV, (h, h, config.stem_width), (h, h, config.first_width), 1, 3, 1, 0),
        "first_block",
        (config.stem_width, h, h),
        _mbconv_block(config.stem_width, config.first_width, 3, 1, 1, shortcut=False),
    )
    edges = []
    for slot in space.slots:
        h_out = conv_out_size(h, slot.stride)
        idskip = int(slot.allows_zero)  # identity shortcut <=> stride 1 and equal widths
        ops = {}
        for code in slot.mbconv_codes:
            spec = candidate_op(code)
            assert spec.kernel is not None and spec.expand is not None
            key = latency_key(
                MBCONV,
                (h, h, slot.c_in),
                (h_out, h_out, slot.c_out),
                spec.expand,
                spec.kernel,
                slot.stride,
                idskip,
            )
            build = _mbconv_block(slot.c_in, slot.c_out, spec.kernel, slot.stride, spec.expand)
            ops[code] = LutOp(key, "block", (slot.c_in, h, h), build)
        edges.append(ops)
        h = h_out
    last = config.widths[-1]
    mix = LutOp(
        latency_key(FEATURE_MIX, (h, h, last), (h, h, config.head_width)),
        "feature_mix",
        (last, h, h),
        lambda: conv_bn_act(last, config.head_width, 1),
    )
    logits = LutOp(
        latency_key(LOGITS, (h, h, config.head_width), (classes,)),
        "logits",
        (config.head_width, h, h),
        lambda: _logits_module(config.head_width, classes, config.dropout),
    )
    return LutLayout(space, size, classes, (stem, first, mix, logits), tuple(edges))


def default_num_classes(space: ProxylessSpace) -> int:
    return NUM_CLASSES.get(space.name, 10)


def table_layout(space: ProxylessSpace | str, table: LatencyTable) -> LutLayout:
    """The layout a table was built for: its recorded input size and classes; for a table without that
    metadata (e.g. the released `mobile_trim.yaml`) the space's own input size and the class count of
    its "Logits" entry."""
    space = mbconv_space(space)
    classes = table.meta.get("num_classes")
    if classes is None:
        logits = [k for k in table.entries if k.startswith(f"{LOGITS}-")]
        classes = int(logits[0].rsplit(":", 1)[1]) if len(logits) == 1 else None
    return lut_layout(space, table.meta.get("input_size"), classes)


# --- building ---------------------------------------------------------------------------------------
def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, or a `UsageError` if it is CUDA and no CUDA device is usable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UsageError(f"unknown device {device!r} ({err}); use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device {device!r} requested but no CUDA device is available (torch.cuda.is_available() is "
            f"False); build the latency table with --device cpu, or run on a machine with a GPU"
        )
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"latency tables are built on cpu or cuda, got {device!r}")
    return dev


def measure_in_rounds(
    items: Sequence[tuple[str, Callable[[], nn.Module], tuple[int, ...]]],
    device: torch.device,
    warmup: int,
    repeats: int,
    rounds: int,
    threads: int,
    progress: ProgressFn | None = None,
) -> dict[str, float]:
    """ms per item: the minimum over `rounds` interleaved passes of each pass's median of `repeats` runs.

    On a shared machine background load only ever adds time, and it comes in bursts of seconds that a
    median of consecutive runs cannot outvote. Passing over all items `rounds` times and keeping each
    item's best pass spreads every item's measurements over the whole build, so one burst spoils at most
    one pass per item. Items are (name, module factory, input shape); modules are rebuilt per pass, so
    a large network need not stay in memory.
    """
    if rounds < 1:
        raise UsageError(f"rounds must be >= 1, got {rounds}")
    best: dict[str, float] = {}
    total, done = rounds * len(items), 0
    for _ in range(rounds):
        for name, build, shape in items:
            ms = measure_latency(build(), shape, device, warmup, repeats, threads)["latency_ms"]
            best[name] = min(ms, best.get(name, math.inf))
            done += 1
            if progress is not None:
                progress(done, total, name)
    return best


def build_lut(
    space: ProxylessSpace | str,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    input_size: int | None = None,
    num_classes: int | None = None,
    num_threads: int | None = None,
    rounds: int = 3,
    progress: ProgressFn | None = None,
) -> LatencyTable:
    """Measure every entry of `lut_layout(space)` on `device`: per entry the median ms of `repeats` timed
    runs, best of `rounds` interleaved passes (`measure_in_rounds`).

    Batch 1 is the paper's CPU and mobile setting (its GPU setting is batch 8). Each entry is a freshly
    built module in eval mode timed by `cost.measure_latency`; every distinct key is measured once
    (blocks 2..n of a stage share a position). `num_threads` defaults to torch's current setting and is
    recorded: CPU latency depends on it, and `check_lut` re-uses it.
    """
    dev = check_device(device)
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    layout = lut_layout(space, input_size, num_classes)
    threads = int(num_threads or torch.get_num_threads())
    entries = layout.entries()
    start = time.perf_counter()
    items = [(key, op.build, (batch_size, *op.input_chw)) for key, op in entries.items()]
    table = LatencyTable(measure_in_rounds(items, dev, warmup, repeats, rounds, threads, progress))
    table.meta = {
        "space": layout.space.name,
        "input_size": layout.input_size,
        "num_classes": layout.num_classes,
        "device": describe_device(dev),
        "device_type": dev.type,
        "torch": torch.__version__,
        "threads": threads,
        "batch_size": batch_size,
        "warmup": warmup,
        "repeats": repeats,
        "rounds": rounds,
        "statistic": "min over rounds of the median ms of single timed runs (eval mode, no grad, zero input)",
        "entries": len(entries),
        "build_seconds": round(time.perf_counter() - start, 2),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return table


# --- prediction -------------------------------------------------------------------------------------
def predict_latency(space: ProxylessSpace | str, arch: ProxylessArch | str, table: LatencyTable) -> float:
    """Predicted latency (ms) of `arch`: the sum of its blocks' entries plus the fixed layers'
    (Sec. 3.3.1: latency is additive over layers). A zero block is skipped, so it costs 0. A key the
    table lacks is a `UsageError` naming it (a table built for another space or input size)."""
    return table.total(table_layout(space, table).arch_keys(arch))


def edge_costs(space: ProxylessSpace | str, table: LatencyTable) -> tuple[list[list[float]], float]:
    """F(o_j) per searched edge in `slot.choices` order (0 for zero) and the fixed layers' constant: the
    inputs of `cost.expected_cost`, so that E[latency] = sum_e sum_j p_j F^e_j + constant (Eq. (6))."""
    layout = table_layout(space, table)
    costs = [
        [0.0 if code == ZERO.code else table[edge[code].key] for code in slot.choices]
        for slot, edge in zip(layout.space.slots, layout.edges, strict=True)
    ]
    return costs, table.total(layout.fixed_keys())
