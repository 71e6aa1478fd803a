"""Liveness-exact memory of any `nn.Module`: weights, peak activations (inference and one training
step) and their total, as MemNet/MemNAS define a network's memory (Liu et al., arXiv 1907.09569,
Introduction: parameters + intermediate feature maps, where a feature map is freed right after use).

Definition (every number is measured, none is modelled):

- The network is traced at the level of the tensor operations it executes (a `TorchDispatchMode`
  sees every aten op after autograd and composite decompositions), in execution order. Step 0 holds
  the inputs; op k is step k.
- Memory is tracked per *storage*: an op output whose storage did not exist before is allocated at
  its op's step; views (`t`, `view`, `expand`, slicing) and in-place ops (`relu_`, `add_`) return a
  storage that exists already and allocate nothing (detected by storage identity; the op schema's
  alias info names the kind). A storage is freed after the last op that reads it (through any view)
  has run. While op k runs its inputs and outputs are all live.
- The inputs count (live from step 0 to their last reader). The model's outputs stay live to the
  end of the inference trace (the caller holds them). Tensors that existed before the trace and are
  neither inputs nor weights (plain tensor attributes) count like inputs.
- peak = max over steps of the live bytes; weights = parameters + buffers (distinct storages);
  total = weights + inference peak (MemNAS's "total memory"); total_training = weights + training peak.
- Inference: eval mode, `torch.no_grad()`. Training step: train mode, forward, loss
  (`loss_fn(output)`, default the sum of the first output), `backward()`. Saved tensors stay live
  until backward unpacks them (`saved_tensors_hooks`) or an op reads them; parameter gradients stay
  live to the end of the step (the optimizer reads them). Optimizer state is not included.
- Not seen: kernel workspaces and temporaries inside one aten kernel, allocator rounding and
  fragmentation; the trace is of one eager execution order, not the best possible schedule.

Units: bytes at each tensor's own dtype size. MB = 1e6 bytes, MiB = 2**20 bytes, and `memnas_mb`
= elements x 4 bytes / 1e6, the unit of MemNAS's tables (fp32: 3.47M MobileNetV2 parameters ->
13.9 MB). `prototype_memory` reproduces the MemNAS prototype's own per-op formulas instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from nasrepro.errors import UsageError
from nasrepro.harness.metrics import (
    MIB,
    _loss,
    _model_device,
    _module_mode,
    _preserved_state,
    count_flops,
    count_params,
)

MB = 10**6
MEMNAS_BYTES_PER_ELEMENT = 4  # MemNAS counts every element at fp32 size


@dataclass(frozen=True)
class OpStep:
    """One step of a trace: the op, what it allocated and what was live while it ran."""

    op: str  # "inputs" for step 0, else the aten overload, e.g. "aten.addmm.default"
    kind: str  # "inputs", "alloc" (new storage), "view", "inplace", "alias" or "none" (see _alias_kind)
    allocated_bytes: int
    live_bytes: int


@dataclass(frozen=True)
class MemoryTrace:
    """The liveness simulation of one execution: every step, and the peaks in bytes and elements."""

    steps: tuple[OpStep, ...]
    peak_bytes: int
    peak_elements: int

    def table(self) -> str:
        """One line per step (for reading a trace by hand)."""
        rows = [
            f"{i:>4} {s.kind:<7} {s.allocated_bytes:>12} {s.live_bytes:>12}  {s.op}"
            for i, s in enumerate(self.steps)
        ]
        return "\n".join([f"{'step':>4} {'kind':<7} {'alloc B':>12} {'live B':>12}  op", *rows])


@dataclass(frozen=True)
class MemoryReport:
    """Parameters, FLOPs and the liveness-exact memory of one network on one input (see module doc)."""

    params: int
    flops: int | None  # FlopCounterMode convention: 2 per multiply-add
    macs: int | None  # what NAS papers call "FLOPs"
    weight_bytes: int
    weight_elements: int
    peak_inference_bytes: int
    peak_inference_elements: int
    peak_training_bytes: int
    peak_training_elements: int

    @property
    def total_bytes(self) -> int:
        """MemNAS's total memory: weights + peak inference activations."""
        return self.weight_bytes + self.peak_inference_bytes

    @property
    def total_training_bytes(self) -> int:
        return self.weight_bytes + self.peak_training_bytes

    def to_dict(self) -> dict[str, Any]:
        """Every count, plus each memory in MB (1e6 B), MiB (2**20 B) and MemNAS MB (4 B x elements / 1e6)."""
        out: dict[str, Any] = asdict(self)
        sizes = {
            "weight": (self.weight_bytes, self.weight_elements),
            "peak_inference": (self.peak_inference_bytes, self.peak_inference_elements),
            "peak_training": (self.peak_training_bytes, self.peak_training_elements),
            "total": (self.total_bytes, self.weight_elements + self.peak_inference_elements),
            "total_training": (self.total_training_bytes, self.weight_elements + self.peak_training_elements),
        }
        for name, (nbytes, elements) in sizes.items():
            out[f"{name}_bytes"] = nbytes
            out[f"{name}_mb"] = nbytes / MB
            out[f"{name}_mib"] = nbytes / MIB
            out[f"{name}_memnas_mb"] = elements * MEMNAS_BYTES_PER_ELEMENT / MB
        return out


# --- the exact tracer ---------------------------------------------------------------------------------
def _key(tensor: torch.Tensor) -> StorageWeakRef | None:
    """The identity of a tensor's storage. A weak reference keeps the storage's control block (not its
    data), so the identity is never reused during a trace. None for tensors without a storage."""
    try:
        return StorageWeakRef(tensor.untyped_storage())
    except (RuntimeError, NotImplementedError, TypeError):  # sparse, nested, subclass
        return None


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors in an op's arguments or results (tuples, lists, dicts), in order; `tree_leaves` is
    5x slower and this runs for every op."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (tuple, list)):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []


def _leaves(tree: Any) -> list[torch.Tensor]:
    """The tensors in a model's inputs or outputs (any pytree: named tuples, dataclasses registered)."""
    return [leaf for leaf in tree_leaves(tree) if isinstance(leaf, torch.Tensor)]


def _alias_kind(func: Any) -> str:
    """Why an op's outputs reuse an existing storage, from its schema's alias info: a view of an input,
    an input written in place, or "alias" (a kernel returning an existing storage although its schema
    promises a new one, e.g. `_unsafe_view`)."""
    if func.is_view:
        return "view"
    if any(a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments):
        return "inplace"
    return "alias"


class _Trace(TorchDispatchMode):
    """Records, per aten op in execution order, the storages it reads and the ones it creates.

    Buffers are `[nbytes, elements, first_step, last_step]`; weights' storages are not buffers.
    """

    def __init__(self, weights: set[StorageWeakRef]) -> None:
        super().__init__()
        self.weights = weights
        self.ids: dict[StorageWeakRef, int] = {}
        self.buffers: list[list[int]] = []
        self.ops: list[tuple[str, str]] = [("inputs", "inputs")]
        self._next_use: list[torch.Tensor] = []

    @property
    def step(self) -> int:
        return len(self.ops) - 1

    def _new(self, tensor: torch.Tensor, step: int, key: StorageWeakRef | None) -> None:
        nbytes = (
            tensor.untyped_storage().nbytes() if key is not None else tensor.numel() * tensor.element_size()
        )
        if key is not None:
            self.ids[key] = len(self.buffers)
        self.buffers.append([nbytes, nbytes // tensor.element_size(), step, step])

    def read(self, tensor: torch.Tensor, step: int, pre_existing: bool = True) -> None:
        """`tensor` is needed at `step`; an unseen storage existed before the trace (input, constant)."""
        key = _key(tensor)
        if key is None or key in self.weights:
            return
        if key not in self.ids:
            if not pre_existing:
                return
            self._new(tensor, 0, key)
        buffer = self.buffers[self.ids[key]]
        buffer[3] = max(buffer[3], step)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        step = self.step + 1
        for tensor in [*_tensors((args, kwargs)), *self._next_use]:
            self.read(tensor, step)
        self._next_use.clear()
        outputs, fresh = _tensors(out), 0
        for tensor in outputs:
            key = _key(tensor)
            if key is None or (key not in self.ids and key not in self.weights):
                self._new(tensor, step, key)
                fresh += 1
            else:  # the storage exists: a view, an in-place write, or an op returning its input
                self.read(tensor, step)
        kind = "none" if not outputs else "alloc" if fresh else _alias_kind(func)
        self.ops.append((str(func), kind))
        return out

    # saved-tensor hooks: autograd keeps what it saved until backward unpacks it for the next op
    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def unpack(self, tensor: torch.Tensor) -> torch.Tensor:
        self._next_use.append(tensor)
        return tensor

    def hold_to_end(self, tensors: list[torch.Tensor]) -> None:
        for tensor in tensors:
            self.read(tensor, self.step, pre_existing=False)

    def result(self) -> MemoryTrace:
        """Sweep the buffers' lifetimes: live(t) = sum of buffers with first <= t <= last."""
        for tensor in self._next_use:  # unpacked after the last op: needed at the last step
            self.read(tensor, self.step)
        n = self.step + 1
        delta_bytes, delta_elements, allocated = [0] * (n + 1), [0] * (n + 1), [0] * n
        for nbytes, elements, first, last in self.buffers:
            last = min(last, n - 1)
            delta_bytes[first] += nbytes
            delta_bytes[last + 1] -= nbytes
            delta_elements[first] += elements
            delta_elements[last + 1] -= elements
            allocated[first] += nbytes
        steps, live, live_elements, peak_elements = [], 0, 0, 0
        for t, (name, kind) in enumerate(self.ops):
            live += delta_bytes[t]
            live_elements += delta_elements[t]
            peak_elements = max(peak_elements, live_elements)
            steps.append(OpStep(name, kind, allocated[t], live))
        return MemoryTrace(tuple(steps), max(s.live_bytes for s in steps), peak_elements)


def _weight_storages(model: nn.Module) -> dict[StorageWeakRef, tuple[int, int]]:
    """Distinct storages of parameters and buffers -> (bytes, elements); shared weights count once."""
    out: dict[StorageWeakRef, tuple[int, int]] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        key = _key(tensor)
        if key is not None and key not in out:
            nbytes = tensor.untyped_storage().nbytes()
            out[key] = (nbytes, nbytes // tensor.element_size())
    return out


def trace_memory(
    model: nn.Module,
    inputs: tuple,
    training: bool = False,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
) -> MemoryTrace:
    """The step-by-step liveness of one inference pass (`training=False`) or one training step.

    The model's modes, buffers (BN running statistics), RNG state and `.grad`s are restored afterwards.
    """
    trace = _Trace(set(_weight_storages(model)))
    for tensor in _leaves(inputs):
        trace.read(tensor, 0)
    params = list(model.parameters())
    with _preserved_state(model, _model_device(model)), _module_mode(model, training=training):
        if not training:
            with torch.no_grad(), trace:
                output = model(*inputs)
            trace.hold_to_end(_leaves(output))
            return trace.result()
        old_grads = [p.grad for p in params]
        try:
            for p in params:
                p.grad = None
            hooks = torch.autograd.graph.saved_tensors_hooks(trace.pack, trace.unpack)
            with torch.enable_grad(), hooks, trace:
                loss = _loss(model(*inputs), loss_fn)
                if loss.requires_grad:
                    loss.backward()
            trace.hold_to_end([p.grad for p in params if p.grad is not None])
            return trace.result()
        finally:
            for p, grad in zip(params, old_grads, strict=True):
                p.grad = grad


def measure_memory(
    model: nn.Module,
    inputs: tuple,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    flops: bool = True,
) -> MemoryReport:
    """Parameters, FLOPs (`metrics.count_flops`, one more inference pass; skipped with `flops=False`),
    weights and the liveness-exact peaks of inference and of one training step (module docstring)."""
    weights = _weight_storages(model).values()
    counted = count_flops(model, inputs) if flops else None
    inference = trace_memory(model, inputs, training=False)
    training = trace_memory(model, inputs, training=True, loss_fn=loss_fn)
    return MemoryReport(
        params=count_params(model),
        flops=counted["flops"] if counted else None,
        macs=counted["macs"] if counted else None,
        weight_bytes=sum(b for b, _ in weights),
        weight_elements=sum(e for _, e in weights),
        peak_inference_bytes=inference.peak_bytes,
        peak_inference_elements=inference.peak_elements,
        peak_training_bytes=training.peak_bytes,
        peak_training_elements=training.peak_elements,
    )


# --- the MemNAS prototype's formulas (code-compatible mode) --------------------------------------------
class PrototypeCell(NamedTuple):
    """One MemNet cell: output = op1(in1) + op2(in2) (memnet.md Sec. 3.1).

    `in1`/`in2`: 0 = the block input, k = the output of the block's k-th cell (1-based, k < own index).
    `op1`/`op2`: op index 0-6 (`PROTOTYPE_OPS`) or None where trim removed it. `linked`: the cell feeds
    the block output (the link flag; trimming an edge clears it).
    """

    in1: int
    in2: int
    op1: int | None
    op2: int | None
    linked: bool = True


#: op index -> (name, conv weight count at `cin` input and `c` output channels), as `nets.py cal_weight`
#: counts them: BN and biases excluded; the pooling ops count their 1x1 conv; the factorised op counts
#: its 1x7 and 7x1 convs (memnet.md Sec. 3.3).
PROTOTYPE_OPS: dict[int, tuple[str, Callable[[int, int], int]]] = {
    0: ("1x1 conv + 3x3 avg pool", lambda cin, c: cin * c),
    1: ("1x1 conv + 3x3 max pool", lambda cin, c: cin * c),
    2: ("3x3 dilated conv (d=2)", lambda cin, c: cin * 9 * c),
    3: ("factorised 1x7 -> 7x1 conv", lambda cin, c: cin * 7 * c + c * 7 * c),
    4: ("5x5 depthwise-separable conv", lambda cin, c: cin * 25 + cin * c),
    5: ("3x3 depthwise-separable conv", lambda cin, c: cin * 9 + cin * c),
    6: ("3x3 conv", lambda cin, c: cin * 9 * c),
}


@dataclass(frozen=True)
class PrototypeMemory:
    """W + I in elements, the MemNAS prototype's memory model; `mb` at its 4 bytes per element."""

    weight_elements: int
    feature_elements: int

    @property
    def total_elements(self) -> int:
        return self.weight_elements + self.feature_elements

    @property
    def memnas_mb(self) -> float:
        return self.total_elements * MEMNAS_BYTES_PER_ELEMENT / MB


def _prototype_weight(op: int, slot: int, cin: int, c: int, reads_image: bool, typos: bool) -> int:
    """One op's weight count; `typos` reproduces `cal_weight`'s two slips in block 1's image-reading
    ops: op 5 in slot 1 counts a 3x3x3x3 depthwise kernel, ops 0/1 in slot 2 count C x C."""
    if typos and reads_image:
        if slot == 1 and op == 5:
            return 81 + cin * c
        if slot == 2 and op in (0, 1):
            return c * c
    return PROTOTYPE_OPS[op][1](cin, c)


def prototype_memory(
    blocks: Sequence[Sequence[PrototypeCell]],
    widths: Sequence[int] = (32, 32, 32, 32, 32),
    in_channels: int = 3,
    resolution: int = 32,
    prototype_typos: bool = False,
) -> PrototypeMemory:
    """The prototype's `cal_weight` (W) and `cal_in` (I) as memnet.md Sec. 3.3 describes them.

    W sums `PROTOTYPE_OPS` over every op of every block; an op reading a block input sees
    `in_channels` (block 1: the image, the stem is unused) or the previous block's output width
    (#linked cells x its width); other ops see the block's width. `widths` defaults to the prototype's
    (32 in all five blocks). I is block 1 only, at `resolution`^2 pixels per channel: each cell is two
    op nodes and an add node; in a wavefront schedule every node fires at the first step after its
    inputs were produced; a tensor is live from its step to its last consumer's step (linked cell
    outputs to the end, they form the block output); I = max over steps of live channels x pixels.
    A trimmed op is absent and the cell's output is the other op's output.
    """
    if len(blocks) != len(widths):
        raise UsageError(f"{len(blocks)} blocks but {len(widths)} widths; give one width per block")
    weight, block_in = 0, in_channels
    for b, (cells, c) in enumerate(zip(blocks, widths, strict=True)):
        for k, cell in enumerate(cells, start=1):
            if cell.op1 is None and cell.op2 is None:
                raise UsageError(f"block {b + 1} cell {k} has no op left; trim may remove one op per cell")
            for slot, (source, op) in enumerate(((cell.in1, cell.op1), (cell.in2, cell.op2)), start=1):
                if not 0 <= source < k:
                    raise UsageError(f"block {b + 1} cell {k} reads location {source}; use 0..{k - 1}")
                if op is None:
                    continue
                if op not in PROTOTYPE_OPS:
                    raise UsageError(f"op index {op} is not one of the 7 ops 0-6")
                cin = block_in if source == 0 else c
                weight += _prototype_weight(op, slot, cin, c, b == 0 and source == 0, prototype_typos)
        block_in = sum(cell.linked for cell in cells) * c
    return PrototypeMemory(weight, _block_features(blocks[0], in_channels, widths[0]) * resolution**2)


def _block_features(cells: Sequence[PrototypeCell], in_channels: int, c: int) -> int:
    """Peak live channels of one block under the wavefront schedule (see `prototype_memory`)."""
    ready = {0: 0}  # location -> step its tensor was produced (0 = block input)
    channels = {0: in_channels}
    nodes: list[tuple[Any, list[Any]]] = []  # (op name or cell index, [its inputs]) in cell order
    for k, cell in enumerate(cells, start=1):
        ops = [
            (f"op{k}.{i}", src)
            for i, (src, op) in enumerate(((cell.in1, cell.op1), (cell.in2, cell.op2)))
            if op is not None
        ]
        nodes += [(name, [src]) for name, src in ops]
        nodes.append((k, [name for name, _ in ops]))  # the add (an identity if one op was trimmed)
    consumers: dict[Any, list[Any]] = {}
    for name, srcs in nodes:
        for src in srcs:
            consumers.setdefault(src, []).append(name)
    pending = list(nodes)
    while pending:
        step = max(ready.values()) + 1
        fire = [(n, s) for n, s in pending if all(x in ready and ready[x] < step for x in s)]
        for name, srcs in fire:
            single_op_cell = isinstance(name, int) and len(srcs) == 1  # the add of a trimmed cell: identity
            ready[name], channels[name] = step, 0 if single_op_cell else c
        pending = [p for p in pending if p not in fire]
    end = max(ready.values())
    linked = {k for k, cell in enumerate(cells, start=1) if cell.linked}
    last = {
        n: max([ready[x] for x in consumers.get(n, [])] + [end if n in linked else ready[n]]) for n in ready
    }
    # a trimmed cell's output is its op's tensor: that tensor lives as long as the cell's output
    for name, srcs in nodes:
        if isinstance(name, int) and len(srcs) == 1:
            last[srcs[0]] = max(last[srcs[0]], last[name])
    return max(sum(channels[n] for n in ready if ready[n] <= t <= last[n]) for t in range(end + 1))
