"""Golden tests of `harness.memory`: every expected number is arithmetic from shapes, one comment per step.

fp32 throughout: 4 bytes per element. Step 0 holds the inputs; op k is step k; a storage is live from
the step that produced it to the last step that reads it (both included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.harness.memory import (
    MB,
    MemoryReport,
    PrototypeCell,
    measure_memory,
    prototype_memory,
    trace_memory,
)
from nasrepro.harness.metrics import MIB

F32 = 4


def _chain(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=inplace), nn.Linear(8, 2))


def _name(op: str) -> str:
    """The op name without namespace and overload: aten.addmm.default -> addmm; "inputs" stays."""
    return op.split(".")[1] if "." in op else op


def _ops(trace) -> list[tuple[str, str]]:
    return [(_name(s.op), s.kind) for s in trace.steps]


# --- exact tracer: inference ----------------------------------------------------------------------------
def test_chain_linear_relu_linear():
    trace = trace_memory(_chain(), (torch.randn(3, 4),))
    x, h, r, y = 3 * 4 * F32, 3 * 8 * F32, 3 * 8 * F32, 3 * 2 * F32  # 48, 96, 96, 24 bytes
    assert _ops(trace) == [
        ("inputs", "inputs"), ("t", "view"), ("addmm", "alloc"), ("relu", "alloc"), ("t", "view"), ("addmm", "alloc"),
    ]  # fmt: skip
    assert [s.live_bytes for s in trace.steps] == [
        x,  # 0: the input
        x,  # 1: W1.t() is a view of a weight: nothing allocated
        x + h,  # 2: h = x W1^T + b1; x's last reader, so freed after this step
        h + r,  # 3: r = relu(h); h freed after
        r,  # 4: W2.t(), a view
        r + y,  # 5: y = r W2^T + b2 (the output, held to the end)
    ]
    assert trace.peak_bytes == h + r == 192
    assert trace.peak_elements == 192 // F32


def test_residual_block_keeps_its_input_alive():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + F.relu(self.lin(x))

    trace = trace_memory(Residual(), (torch.randn(2, 6),))
    t = 2 * 6 * F32  # every tensor here is 2x6: 48 bytes
    assert [s.live_bytes for s in trace.steps] == [
        t,  # 0: x
        t,  # 1: W.t() view
        2 * t,  # 2: x + h = lin(x)
        3 * t,  # 3: x (still needed by the add) + h + relu(h)
        3 * t,  # 4: x + relu(h) + the sum (h was freed after step 3)
    ]
    assert trace.peak_bytes == 144  # a plain chain of the same ops would peak at 2 * t = 96


def test_two_branch_cell_that_concatenates():
    class Cell(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.conv(x), F.relu(x)], dim=1)

    trace = trace_memory(Cell(), (torch.randn(1, 2, 4, 4),))
    x, a, b, out = 2 * 16 * F32, 3 * 16 * F32, 2 * 16 * F32, 5 * 16 * F32  # 128, 192, 128, 320 bytes
    assert _ops(trace) == [
        ("inputs", "inputs"),
        ("convolution", "alloc"),
        ("relu", "alloc"),
        ("cat", "alloc"),
    ]
    assert [s.live_bytes for s in trace.steps] == [
        x,  # 0: x
        x + a,  # 1: branch a = conv1x1(x), 3 channels
        x + a + b,  # 2: branch b = relu(x); x's last reader
        a + b + out,  # 3: both branches are read by the concatenation (5 channels)
    ]
    assert trace.peak_bytes == 640


def test_inplace_relu_allocates_nothing():
    trace = trace_memory(_chain(inplace=True), (torch.randn(3, 4),))
    x, h, y = 3 * 4 * F32, 3 * 8 * F32, 3 * 2 * F32
    assert _ops(trace)[3] == ("relu_", "inplace")
    assert [s.allocated_bytes for s in trace.steps] == [x, 0, h, 0, 0, y]
    assert [s.live_bytes for s in trace.steps] == [
        x,  # 0: x
        x,  # 1: view
        x + h,  # 2: h
        h,  # 3: relu_ writes into h: no new storage, x already freed
        h,  # 4: view
        h + y,  # 5: y
    ]
    assert trace.peak_bytes == 144  # the out-of-place chain peaks at 192


def test_view_allocates_nothing_but_a_copying_reshape_does():
    class Flatten(nn.Module):
        def __init__(self, transpose: bool) -> None:
            super().__init__()
            self.lin, self.transpose = nn.Linear(12, 5), transpose

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin((x.transpose(1, 2) if self.transpose else x).reshape(2, 12))

    x, y = 2 * 3 * 4 * F32, 2 * 5 * F32  # 96, 40 bytes
    view = trace_memory(Flatten(False), (torch.randn(2, 3, 4),))
    assert _ops(view)[1] == ("view", "view")
    assert [s.live_bytes for s in view.steps] == [
        x,  # 0: x
        x,  # 1: x.reshape(2, 12) of a contiguous tensor is a view
        x,  # 2: W.t() view
        x + y,  # 3: y = addmm; reads x through its view
    ]
    copy = trace_memory(Flatten(True), (torch.randn(2, 3, 4),))
    assert [(_name(s.op), s.kind, s.allocated_bytes, s.live_bytes) for s in copy.steps] == [
        ("inputs", "inputs", x, x),
        ("transpose", "view", 0, x),  # 1: transpose is a view
        ("clone", "alloc", x, 2 * x),  # 2: reshape of a non-contiguous tensor copies it
        ("_unsafe_view", "alias", 0, x),  # 3: ...and views the copy (x freed after step 2)
        ("t", "view", 0, x),
        ("addmm", "alloc", y, x + y),
    ]
    assert (view.peak_bytes, copy.peak_bytes) == (136, 192)


# --- exact tracer: one training step --------------------------------------------------------------------
def test_training_step_keeps_saved_tensors_and_gradients():
    trace = trace_memory(_chain(), (torch.randn(3, 4),), training=True)
    x, h, r = 3 * 4 * F32, 3 * 8 * F32, 3 * 8 * F32  # 48, 96, 96 bytes
    forward = [s.live_bytes for s in trace.steps[:4]]
    assert forward == [x, x, x + h, x + h + r]  # x is saved by addmm for dW1: it is not freed at step 2
    # the peak is at threshold_backward (relu's backward), which needs at once:
    grad_r, grad_h = 3 * 8 * F32, 3 * 8 * F32  # dL/dr (from the second addmm's backward) and dL/dh
    grad_w2, grad_b2 = 2 * 8 * F32, 2 * F32  # the second layer's gradients, already accumulated
    peak = x + r + grad_r + grad_h + grad_w2 + grad_b2  # x for dW1, r (relu saved its output)
    assert trace.peak_bytes == peak == 408
    assert max(trace.steps, key=lambda s: s.live_bytes).op == "aten.threshold_backward.default"
    grads = (8 * 4 + 8 + 2 * 8 + 2) * F32  # every parameter's gradient is live at the end
    assert trace.steps[-1].live_bytes == grads


def test_measure_memory_report_and_units():
    report = measure_memory(_chain(), (torch.randn(3, 4),))
    weights = (8 * 4 + 8 + 2 * 8 + 2) * F32  # W1, b1, W2, b2 = 58 elements
    assert report == MemoryReport(
        params=58,
        flops=2 * 3 * (4 * 8 + 8 * 2),  # FlopCounterMode: 2 per multiply-add of the two matmuls
        macs=3 * (4 * 8 + 8 * 2),
        weight_bytes=weights,
        weight_elements=58,
        peak_inference_bytes=192,
        peak_inference_elements=48,
        peak_training_bytes=408,
        peak_training_elements=102,
    )
    d = report.to_dict()
    assert report.total_bytes == d["total_bytes"] == weights + 192
    assert d["total_mb"] == (weights + 192) / MB and d["total_mib"] == (weights + 192) / MIB
    assert d["total_memnas_mb"] == (58 + 48) * 4 / 1e6
    assert d["total_training_bytes"] == weights + 408


def test_weights_count_buffers_and_shared_parameters_once_and_memnas_mb_counts_elements():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.BatchNorm1d(4), lin).double()
    report = measure_memory(model, (torch.randn(2, 4, dtype=torch.float64),), flops=False)
    # Linear once (16 + 4), BN weight, bias, running mean, running var (4 each), num_batches_tracked (int64)
    assert report.weight_elements == 20 + 16 + 1
    assert report.weight_bytes == (20 + 16) * 8 + 8
    assert report.flops is None
    d = report.to_dict()
    assert d["weight_memnas_mb"] == 37 * 4 / 1e6  # MemNAS counts 4 bytes per element whatever the dtype
    assert d["weight_mb"] == report.weight_bytes / 1e6


def test_measuring_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    model[0].weight.grad = torch.ones(4, 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 4)
    rng = torch.get_rng_state()
    measure_memory(model, (x,))  # dropout in the training step draws random numbers
    assert not model.training
    assert torch.equal(model[0].weight.grad, torch.ones(4, 4)) and model[0].bias.grad is None
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


# --- the MemNAS prototype's formulas ---------------------------------------------------------------------
C, IMAGE, PIXELS = 32, 3, 32 * 32  # the prototype's width in every block, RGB input, block 1 at 32x32


def test_prototype_single_cell():
    cell = [PrototypeCell(in1=0, in2=0, op1=5, op2=6, linked=True)]  # 3x3 sep conv + 3x3 conv
    got = prototype_memory([cell] * 5)
    block1 = (IMAGE * 9 + IMAGE * C) + IMAGE * 9 * C  # both ops read the image: 123 + 864
    later = (C * 9 + C * C) + C * 9 * C  # blocks 2-5 read block 1's output: 1 linked cell x 32 channels
    assert got.weight_elements == block1 + 4 * later == 43099
    # block 1 features: step 0 image (3); step 1 both ops fire (3 + 32 + 32), image last read;
    # step 2 the add (32 + 32 + 32): peak 96 channels
    assert got.feature_elements == 96 * PIXELS
    assert got.memnas_mb == (43099 + 96 * PIXELS) * 4 / 1e6
    # the prototype's slip: op 5 in slot 1 reading the image counts 3*3*3*3 instead of 3*3*3
    assert prototype_memory([cell] * 5, prototype_typos=True).weight_elements == 43099 - 27 + 81


def test_prototype_two_cells_wavefront_and_freeing():
    block = [
        PrototypeCell(0, 0, op1=6, op2=0, linked=False),  # cell 1: 3x3 conv, 1x1 conv + avg pool
        PrototypeCell(1, 0, op1=2, op2=3, linked=True),  # cell 2: dilated conv on cell 1, factorised on image
    ]
    got = prototype_memory([block] * 5)
    block1 = IMAGE * 9 * C + IMAGE * C + C * 9 * C + (IMAGE * 7 * C + C * 7 * C)  # 864+96+9216+7840
    later = C * 9 * C + C * C + C * 9 * C + (C * 7 * C + C * 7 * C)  # block input = 1 linked cell x 32
    assert got.weight_elements == block1 + 4 * later == 153184
    # step 1: cell 1's two ops and cell 2's op 2 (reads the image) fire: 3 + 3*32 = 99 channels
    # step 2: cell 1's add: its two op outputs + its output + cell 2's waiting op 2 = 4*32 = 128 (peak)
    # step 3: cell 2's op 1 (reads cell 1): 3*32; step 4: cell 2's add: 3*32
    assert got.feature_elements == 128 * PIXELS
    # the prototype's other slip: ops 0/1 in slot 2 reading the image count C*C instead of 3*C
    typos = prototype_memory([block] * 5, prototype_typos=True)
    assert typos.weight_elements == 153184 - IMAGE * C + C * C


def test_prototype_trimmed_op_and_widths():
    block = [PrototypeCell(0, 0, op1=6, op2=None, linked=True)]  # op 2 trimmed: output = the conv's
    got = prototype_memory([block] * 5, widths=(8, 8, 16, 16, 32))
    weights = 3 * 9 * 8 + 8 * 9 * 8 + 8 * 9 * 16 + 16 * 9 * 16 + 16 * 9 * 32  # cin = previous width
    assert got.weight_elements == weights
    assert got.feature_elements == (3 + 8) * PIXELS  # step 1: image + conv output; no add tensor


def test_prototype_rejects_bad_cells():
    import pytest

    from nasrepro.errors import UsageError

    with pytest.raises(UsageError, match="no op left"):
        prototype_memory([[PrototypeCell(0, 0, None, None)]] * 5)
    with pytest.raises(UsageError, match="reads location 1"):
        prototype_memory([[PrototypeCell(1, 0, 6, 6)]] * 5)
    with pytest.raises(UsageError, match="op index 7"):
        prototype_memory([[PrototypeCell(0, 0, 7, 6)]] * 5)
    with pytest.raises(UsageError, match="widths"):
        prototype_memory([[PrototypeCell(0, 0, 6, 6)]] * 4)
