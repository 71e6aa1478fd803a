"""Hardware and cost metrics of any `nn.Module` on a task: parameters, FLOPs, latency, training memory.

Every run record carries these numbers (DESIGN.md, "Record"), ProxylessNAS optimises latency and MemNet
memory, and Lindauer & Hutter (2020, best practices 7 and 13) ask that search cost be reported on a named
device. One module owns the conventions so that all methods' numbers compare:

- `inputs` is the tuple of positional `forward` arguments (a graph model takes `(x, edge_index)`), as
  `Task.example_input(batch_size)` returns it; models may return a tensor or a tuple (`(logits, hidden)`).
- FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add as 2 FLOPs;
  the "FLOPs" that NAS papers quote (ProxylessNAS-mobile's 320M) are multiply-adds, i.e. our `macs`.
- Memory is reported in MiB (bytes / 2**20). MemNet/MemNAS tables use MB = 4 bytes x 1e6 elements, so
  their numbers are ~4.9% larger than ours for the same tensors.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from nasrepro.errors import UsageError
from nasrepro.harness.machine import describe_device

MIB = 2**20

# ops that ran but have no FLOP formula are reported, except views and these, which only create, copy,
# gather or reshape data and do no arithmetic
_DATA_MOVEMENT = frozenset(
    f"aten.{name}"
    for name in """
    arange empty empty_like empty_strided zeros zeros_like ones ones_like full full_like new_zeros new_ones
    new_empty new_full rand randn randint normal_ uniform_ bernoulli_ fill_ zero_ cat stack repeat clone
    copy_ _to_copy detach lift_fresh lift_fresh_copy index index_select gather select slice split
    unsafe_split split_with_sizes unbind contiguous constant_pad_nd embedding masked_fill masked_fill_
    _local_scalar_dense where scalar_tensor native_dropout set_ resize_
    """.split()  # noqa: SIM905  (a word list reads better than 50 quoted strings)
)


# --- parameters ---------------------------------------------------------------------------------------
def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once, as `model.parameters()` yields them).

    `trainable_only` counts only tensors with `requires_grad` (e.g. a supernet with frozen weights).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --- FLOPs --------------------------------------------------------------------------------------------
def _rnn_tokens(input_shape: torch.Size) -> int:
    """Time steps x batch of an RNN input (batch-first or not, batched or not, packed or padded)."""
    return math.prod(input_shape[:-1])


def _mkldnn_rnn_layer_flop(
    input_shape: torch.Size,
    w_ih: torch.Size,
    w_hh: torch.Size,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """One fused oneDNN LSTM layer/direction (the CPU path of `nn.LSTM`): both gate matmuls per token."""
    return 2 * _rnn_tokens(input_shape) * (math.prod(w_ih) + math.prod(w_hh))


def _cudnn_rnn_flop(
    input_shape: torch.Size, weights: list[torch.Size], *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    """cuDNN's whole RNN (all layers and directions): every 2-D weight (input, hidden, projection) is one
    matmul per token; biases and gate nonlinearities are not counted, as for `nn.Linear`."""
    return 2 * _rnn_tokens(input_shape) * sum(math.prod(w) for w in weights if len(w) == 2)


# The fused RNN kernels are single ops the stock counter has no formula for, so an LSTM language model
# would otherwise count 0 FLOPs; GRU/RNN on the CPU decompose into `addmm`, which is counted already.
_RNN_FORMULAS: dict[Any, Callable[..., int]] = {
    torch.ops.aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flop,
    torch.ops.aten._cudnn_rnn: _cudnn_rnn_flop,
}


class _OpLog(TorchDispatchMode):
    """Records every aten op a forward pass dispatches (to say which ops the counter did not see)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[Any, torch._ops.OpOverload] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.ops.setdefault(func.overloadpacket, func)
        return func(*args, **(kwargs or {}))


def count_flops(model: nn.Module, inputs: tuple) -> dict[str, Any]:
    """FLOPs of one inference forward pass (eval mode, `torch.no_grad()`), on the model's current device.

    Convention: `FlopCounterMode` counts one multiply-add as 2 FLOPs, so `flops = 2 * macs`; compare
    papers' "FLOPs" (ProxylessNAS 320M, MobileNetV2 300M) with `macs`. Only ops with a formula are
    counted: matrix products (`mm`, `addmm`, `bmm`, `baddbmm`), convolutions, scaled-dot-product
    attention, and -- added here -- the fused RNN kernels (`mkldnn_rnn_layer`, `_cudnn_rnn`). Biases are
    not counted. NOT counted: elementwise ops (activations, residual adds, normalisation in eval mode),
    pooling, softmax, reductions, embedding look-ups, sparse matmuls, and the gather/scatter ops of PyG
    message passing (`index_select`, `scatter_add_`, `scatter_reduce`): a GNN's count is only its
    dense transforms. Nothing is estimated for those; instead `uncounted_ops` names every arithmetic op
    that ran without a formula (views, tensor creation and pure data movement excluded), so a reader can
    see what the number leaves out.

    Returns `{"flops", "macs", "by_op": {op: flops}, "uncounted_ops": [op, ...]}`.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_RNN_FORMULAS)
    log = _OpLog()
    with _module_mode(model, training=False), torch.no_grad(), counter, log:
        model(*inputs)
    flops = int(counter.get_total_flops())
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    uncounted = sorted(
        str(packet)
        for packet, op in log.ops.items()
        if packet not in counter.flop_registry and not op.is_view and str(packet) not in _DATA_MOVEMENT
    )
    return {"flops": flops, "macs": flops // 2, "by_op": by_op, "uncounted_ops": uncounted}


# --- latency ------------------------------------------------------------------------------------------
def measure_latency(
    model: nn.Module,
    inputs: tuple,
    device: str | torch.device = "cpu",
    warmup: int = 10,
    min_run_time: float = 0.2,
    batch_size: int | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Median wall-clock time of one inference forward pass (eval mode, no grad) on `device`.

    Measured with `torch.utils.benchmark.Timer.blocked_autorange`, which repeats the call in blocks for
    at least `min_run_time` seconds and synchronises CUDA around every block, after `warmup` untimed calls
    (ProxylessNAS's code warms up 10 times on CPU). The model and inputs are moved to `device` for the
    measurement and the model is moved back afterwards. `Timer` would pin 1 thread by default; we time with
    `num_threads` (default: `torch.get_num_threads()`) and record it, because CPU latency depends on it.
    `batch_size` defaults to the first dimension of the first input tensor (nodes, for a graph model).

    Returns `{"latency_ms", "iqr_ms", "device", "batch_size", "threads", "runs"}`; `device` is
    `describe_device(device)` (e.g. "cpu:Intel(R) Xeon(R) ...") and `runs` the number of timed calls.
    """
    if warmup < 0 or min_run_time <= 0:
        raise UsageError(
            f"measure_latency needs warmup >= 0 and min_run_time > 0, got {warmup}, {min_run_time}"
        )
    name = describe_device(device)
    threads = num_threads or torch.get_num_threads()
    with _on_device(model, device) as moved, _module_mode(moved, training=False), torch.no_grad():
        inputs = _to_device(inputs, device)
        for _ in range(warmup):
            moved(*inputs)
        timer = Timer("model(*inputs)", globals={"model": moved, "inputs": inputs}, num_threads=threads)
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return {
        "latency_ms": measurement.median * 1e3,
        "iqr_ms": measurement.iqr * 1e3,
        "device": name,
        "batch_size": batch_size if batch_size is not None else _batch_size(inputs),
        "threads": threads,
        "runs": len(measurement.raw_times) * measurement.number_per_run,
    }


# --- training memory ----------------------------------------------------------------------------------
class _SavedTensorLog:
    """`saved_tensors_hooks` pack hook that sums the bytes of the distinct storages autograd saves.

    Storages of parameters and buffers are skipped (they are counted as parameters already); a storage
    saved by several ops (ReLU's output that the next Linear saves as its input) is counted once. The
    saved tensors are kept alive until `close()`, so no storage address is reused while we count.
    """

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.seen: set[int] = set()
        self.bytes = 0
        self._keep: list[torch.Tensor] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError, TypeError):  # sparse/nested/subclass without storage
            key, nbytes = id(tensor), tensor.numel() * tensor.element_size()
        if key not in self.exclude and key not in self.seen:
            self.seen.add(key)
            self.bytes += nbytes
            self._keep.append(tensor)
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def close(self) -> None:
        self._keep.clear()


def peak_training_memory(
    model: nn.Module,
    inputs: tuple,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    optimizer_state_per_param: float = 0.0,
) -> dict[str, Any]:
    """Analytic peak memory of one training step, so it works without a GPU.

    peak = parameters + buffers + gradients (trainable parameters) + optimizer state
    (`optimizer_state_per_param` x trainable bytes: 0 for plain SGD, 1 for SGD momentum, 2 for Adam)
    + activations saved for backward. The activations are measured, not modelled: one forward in train
    mode with grad enabled runs under `torch.autograd.graph.saved_tensors_hooks`, which sees exactly what
    autograd keeps for backward (a Linear keeps its input, a ReLU its output, a BatchNorm its input and
    statistics); distinct storages are summed once. That is more faithful than summing module outputs,
    which is reported too as `activation_outputs_mb` (leaf modules' forward-hook outputs, the
    torchsummary-style estimate) for comparison. Not included: temporaries during backward (up to the
    largest activation gradient), kernel workspaces, the allocator's fragmentation, and tensors a custom
    autograd Function stores on `ctx` as attributes instead of `save_for_backward`. Over-counted:
    tensors saved by a branch computed with grad and then detached before the loss (e.g.
    ProxylessNAS's inactive paths in `two`/`full` mode), which a real backward frees with the branch;
    compare with a measured peak there (`benchmarks/test_proxylessnas_bench.py` reports both). The loss is `loss_fn(output)` or else the sum of the first tensor
    output. Buffers' state (BN running stats) and the RNG are restored afterwards, so measuring does not
    perturb a seeded run.

    On CUDA a real forward+backward step is also run and `cuda_max_allocated_mb`
    (`torch.cuda.max_memory_allocated`, which includes the resident parameters) is returned as a
    cross-check; on the CPU that key is absent.
    """
    if optimizer_state_per_param < 0:
        raise UsageError(f"optimizer_state_per_param must be >= 0, got {optimizer_state_per_param}")
    params = list(model.parameters())
    buffers = list(model.buffers())
    param_bytes = sum(_nbytes(p) for p in params)
    trainable_bytes = sum(_nbytes(p) for p in params if p.requires_grad)
    buffer_bytes = sum(_nbytes(b) for b in buffers)
    log = _SavedTensorLog(exclude={t.untyped_storage().data_ptr() for t in [*params, *buffers]})
    device = _model_device(model)
    with _preserved_state(model, device), _module_mode(model, training=True), torch.enable_grad():
        with (
            _leaf_output_bytes(model) as outputs_bytes,
            torch.autograd.graph.saved_tensors_hooks(log.pack, log.unpack),
        ):
            loss = _loss(model(*inputs), loss_fn)
        del loss
        log.close()
        cuda_mb = _cuda_step_peak_mb(model, inputs, loss_fn, device) if device.type == "cuda" else None
    out = {
        "params_mb": param_bytes / MIB,
        "buffers_mb": buffer_bytes / MIB,
        "grads_mb": trainable_bytes / MIB,
        "optimizer_mb": optimizer_state_per_param * trainable_bytes / MIB,
        "activations_mb": log.bytes / MIB,
        "activation_outputs_mb": outputs_bytes[0] / MIB,
        "method": "analytic-saved-tensors",
    }
    out["peak_memory_mb"] = sum(
        out[k] for k in ("params_mb", "buffers_mb", "grads_mb", "optimizer_mb", "activations_mb")
    )
    if cuda_mb is not None:
        out["cuda_max_allocated_mb"] = cuda_mb
    return out


def _cuda_step_peak_mb(
    model: nn.Module, inputs: tuple, loss_fn: Callable[[Any], torch.Tensor] | None, device: torch.device
) -> float:
    """`torch.cuda.max_memory_allocated` over one real forward+backward; the model's grads are restored."""
    old_grads = [p.grad for p in model.parameters()]
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    _loss(model(*inputs), loss_fn).backward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / MIB
    for p, g in zip(model.parameters(), old_grads, strict=True):
        p.grad = g
    return peak


# --- the record's metrics -----------------------------------------------------------------------------
def model_metrics(
    model: nn.Module,
    inputs: tuple,
    device: str | torch.device = "cpu",
    latency: bool = True,
    *,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    optimizer_state_per_param: float = 0.0,
    batch_size: int | None = None,
    warmup: int = 10,
    min_run_time: float = 0.2,
) -> dict[str, Any]:
    """The hardware metrics of a run record: `params`, `flops`, `macs`, `latency_ms`, `latency_device`,
    `latency_batch`, `peak_memory_mb`.

    FLOPs and memory are measured where the model is; latency on `device`. With `latency=False` the three
    latency keys are left out (nothing is filled in that was not measured). `batch_size`, `warmup` and
    `min_run_time` go to `measure_latency`; `loss_fn` and `optimizer_state_per_param` to
    `peak_training_memory`.
    """
    flops = count_flops(model, inputs)
    memory = peak_training_memory(model, inputs, loss_fn, optimizer_state_per_param)
    out: dict[str, Any] = {"params": count_params(model), "flops": flops["flops"], "macs": flops["macs"]}
    if latency:
        timing = measure_latency(
            model, inputs, device, warmup=warmup, min_run_time=min_run_time, batch_size=batch_size
        )
        out.update(
            latency_ms=timing["latency_ms"],
            latency_device=timing["device"],
            latency_batch=timing["batch_size"],
        )
    out["peak_memory_mb"] = memory["peak_memory_mb"]
    return out


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _first_tensor(output: Any) -> torch.Tensor:
    for leaf in tree_leaves(output):
        if isinstance(leaf, torch.Tensor):
            return leaf
    raise UsageError(f"the model returned no tensor ({type(output).__name__}); pass loss_fn to reduce it")


def _loss(output: Any, loss_fn: Callable[[Any], torch.Tensor] | None) -> torch.Tensor:
    """`loss_fn(output)`, else the sum of the first tensor output (a language model's logits)."""
    return loss_fn(output) if loss_fn is not None else _first_tensor(output).sum()


def _batch_size(inputs: tuple) -> int:
    first = _first_tensor(inputs)
    return int(first.shape[0]) if first.dim() else 1


def _model_device(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _to_device(inputs: Any, device: str | torch.device) -> Any:
    """Tensors (and objects with `.to`, e.g. a PyG `Data`) moved to `device`; other values unchanged."""
    return tree_map(lambda x: x.to(device) if isinstance(x, torch.Tensor) or hasattr(x, "to") else x, inputs)


@contextlib.contextmanager
def _module_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Train/eval mode for the block, then every submodule's own previous mode back."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def _on_device(model: nn.Module, device: str | torch.device) -> Iterator[nn.Module]:
    """The model on `device` for the block, then back where it was."""
    home = _model_device(model)
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)


@contextlib.contextmanager
def _preserved_state(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Buffers (BN running statistics) and RNG state as they were before the block."""
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in saved:
                    b.copy_(saved[name])


@contextlib.contextmanager
def _leaf_output_bytes(model: nn.Module) -> Iterator[list[int]]:
    """Sums the output bytes of every leaf module during the block (the naive activation estimate)."""
    total = [0]

    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        total[0] += sum(_nbytes(t) for t in tree_leaves(output) if isinstance(t, torch.Tensor))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()
