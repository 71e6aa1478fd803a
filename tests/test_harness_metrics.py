"""Hardware metrics against hand-computed numbers (nasrepro.harness.metrics)."""

from __future__ import annotations

import re
import socket

import pytest
import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.harness.machine import describe_device, machine_info, search_cost
from nasrepro.harness.metrics import (
    MIB,
    count_flops,
    count_params,
    measure_latency,
    model_metrics,
    peak_training_memory,
)

F32 = 4  # bytes per float32 element


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))


def conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))


# --- parameters -------------------------------------------------------------------------------------
def test_count_params_of_linear_conv_stack():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    conv = 8 * 3 * 3 * 3 + 8
    linear = 128 * 10 + 10
    assert count_params(model) == conv + linear
    model[0].requires_grad_(False)
    assert count_params(model, trainable_only=True) == linear
    assert count_params(model) == conv + linear


def test_shared_parameters_are_counted_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert count_params(model) == 4 * 4 + 4


# --- FLOPs --------------------------------------------------------------------------------------------
def test_flops_of_linear_are_2_in_out_batch():
    batch, n_in, n_out = 7, 13, 11
    result = count_flops(nn.Linear(n_in, n_out), (torch.randn(batch, n_in),))
    assert result["flops"] == 2 * n_in * n_out * batch
    assert result["macs"] == n_in * n_out * batch
    assert result["by_op"] == {"aten.addmm": 2 * n_in * n_out * batch}


@pytest.mark.parametrize(("stride", "padding", "groups"), [(1, 1, 1), (2, 0, 1), (1, 1, 2)])
def test_flops_of_conv2d_follow_the_formula(stride, padding, groups):
    batch, c_in, c_out, k, size = 2, 4, 6, 3, 16
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups)
    out_size = (size + 2 * padding - k) // stride + 1
    macs = batch * c_out * out_size * out_size * (c_in // groups) * k * k
    result = count_flops(conv, (torch.randn(batch, c_in, size, size),))
    assert result["macs"] == macs
    assert result["flops"] == 2 * macs


def test_elementwise_ops_are_named_not_counted():
    result = count_flops(mlp(), (torch.randn(3, 10),))
    assert result["flops"] == 2 * 3 * (10 * 20 + 20 * 5)
    assert result["uncounted_ops"] == ["aten.relu"]


def test_fused_lstm_kernel_is_counted_as_its_gate_matmuls():
    torch.manual_seed(0)
    lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    steps, batch = 5, 3
    weights = sum(p.numel() for name, p in lstm.named_parameters() if name.startswith("weight"))
    # layer 1: 2 x (80x10 + 80x20); layer 2 (input 40): 2 x (80x40 + 80x20)
    assert weights == 2 * (800 + 1600) + 2 * (3200 + 1600)
    result = count_flops(lstm, (torch.randn(steps, batch, 10),))
    assert result["flops"] == 2 * steps * batch * weights


def test_cudnn_rnn_formula_counts_every_2d_weight_once_per_token():
    from nasrepro.harness.metrics import _cudnn_rnn_flop  # the GPU path; no GPU here, so test the formula

    weights = [torch.Size([80, 10]), torch.Size([80, 20]), torch.Size([80]), torch.Size([80])]
    assert _cudnn_rnn_flop(torch.Size([5, 3, 10]), weights) == 2 * 15 * (800 + 1600)
    assert _cudnn_rnn_flop(torch.Size([9, 10]), weights) == 2 * 9 * (800 + 1600)  # packed sequence


def test_count_flops_restores_training_mode():
    model = conv_bn_net().train()
    model[1].eval()
    count_flops(model, (torch.randn(1, 3, 8, 8),))
    assert model.training and model[0].training and not model[1].training


# --- latency ------------------------------------------------------------------------------------------
def test_latency_is_positive_and_records_device_batch_threads():
    model = mlp()
    result = measure_latency(model, (torch.randn(6, 10),), device="cpu", warmup=2, min_run_time=0.05)
    assert result["latency_ms"] > 0 and result["iqr_ms"] >= 0
    assert result["device"].startswith("cpu:") and len(result["device"]) > 4
    assert result["batch_size"] == 6
    assert result["threads"] == torch.get_num_threads()
    assert result["runs"] >= 1
    assert model.training  # eval mode only during the measurement


def test_latency_batch_can_be_given_and_bad_settings_are_usage_errors():
    model = mlp()
    result = measure_latency(model, (torch.randn(6, 10),), warmup=0, min_run_time=0.02, batch_size=1)
    assert result["batch_size"] == 1
    with pytest.raises(UsageError, match="min_run_time"):
        measure_latency(model, (torch.randn(6, 10),), min_run_time=0)


# --- memory -------------------------------------------------------------------------------------------
def test_params_and_grads_mb_are_bytes_over_2_pow_20():
    model = mlp()
    n = 10 * 20 + 20 + 20 * 5 + 5
    result = peak_training_memory(model, (torch.randn(4, 10),), optimizer_state_per_param=2)
    assert result["params_mb"] == n * F32 / 2**20
    assert result["grads_mb"] == n * F32 / 2**20
    assert result["optimizer_mb"] == 2 * n * F32 / 2**20
    assert result["method"] == "analytic-saved-tensors"
    total = sum(result[k] for k in ("params_mb", "buffers_mb", "grads_mb", "optimizer_mb", "activations_mb"))
    assert result["peak_memory_mb"] == pytest.approx(total, rel=1e-12)
    assert "cuda_max_allocated_mb" not in result


def test_frozen_parameters_have_no_gradient_memory():
    model = mlp()
    model[0].requires_grad_(False)
    result = peak_training_memory(model, (torch.randn(4, 10),))
    assert result["grads_mb"] == (20 * 5 + 5) * F32 / MIB


def test_mlp_activations_are_exactly_what_autograd_saves():
    # Linear(10,20) saves its input x (weight too, but that is a parameter); ReLU saves its output,
    # which is the very tensor the second Linear saves as its input -> counted once. sum() saves nothing.
    batch = 4
    result = peak_training_memory(mlp(), (torch.randn(batch, 10),))
    assert result["activations_mb"] * MIB == batch * (10 + 20) * F32
    # forward hooks see each leaf's output: 20 (Linear) + 20 (ReLU) + 5 (Linear) per sample
    assert result["activation_outputs_mb"] * MIB == batch * (20 + 20 + 5) * F32


def test_conv_bn_activations_skip_parameters_and_buffers():
    # Conv saves x; BN saves its input (conv output) and save_mean/save_invstd (8 each) -- its weight and
    # running stats are parameters/buffers; ReLU saves its output, which the last conv saves too.
    batch, size = 2, 16
    x = torch.randn(batch, 3, size, size)
    model = conv_bn_net()
    result = peak_training_memory(model, (x,))
    expected = (batch * 3 * size * size + 2 * batch * 8 * size * size + 2 * 8) * F32
    assert result["activations_mb"] * MIB == expected
    assert result["buffers_mb"] * MIB == (8 + 8) * F32 + 8  # running mean/var + int64 num_batches_tracked


def test_activations_grow_with_batch_in_proportion():
    small = peak_training_memory(mlp(), (torch.randn(2, 10),))
    big = peak_training_memory(mlp(), (torch.randn(16, 10),))
    assert big["activations_mb"] == 8 * small["activations_mb"]
    assert big["params_mb"] == small["params_mb"]


def test_memory_measurement_leaves_the_model_untouched():
    model = nn.Sequential(conv_bn_net(), nn.Dropout(0.5)).eval()  # train-mode BN and dropout would change
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    peak_training_memory(model, (torch.randn(2, 3, 8, 8),))
    assert torch.rand(1) != expected_next  # randn above consumed the stream ...
    torch.manual_seed(123)
    peak_training_memory(model, (torch.zeros(2, 3, 8, 8),))
    assert torch.rand(1) == expected_next  # ... but the measurement itself did not
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_loss_fn_and_tuple_outputs():
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 8)
    x = torch.randn(5, 2, 6)
    default = peak_training_memory(lstm, (x,))  # (output, (h, c)) -> sum of output
    custom = peak_training_memory(lstm, (x,), loss_fn=lambda out: out[1][0].pow(2).sum())
    assert default["activations_mb"] > 0
    assert custom["activations_mb"] > default["activations_mb"]  # pow saves its input h
    with pytest.raises(UsageError, match="optimizer_state_per_param"):
        peak_training_memory(lstm, (x,), optimizer_state_per_param=-1)


# --- the record ---------------------------------------------------------------------------------------
def test_model_metrics_keys_and_values():
    model = mlp()
    x = torch.randn(3, 10)
    result = model_metrics(model, (x,), min_run_time=0.02)
    assert set(result) == {
        "params",
        "flops",
        "macs",
        "latency_ms",
        "latency_device",
        "latency_batch",
        "peak_memory_mb",
    }
    assert result["params"] == 325
    assert result["flops"] == 2 * 3 * (10 * 20 + 20 * 5) and result["macs"] == result["flops"] // 2
    assert result["latency_batch"] == 3 and result["latency_ms"] > 0
    assert result["peak_memory_mb"] == peak_training_memory(model, (x,))["peak_memory_mb"]
    no_latency = model_metrics(model, (x,), latency=False)
    assert "latency_ms" not in no_latency and "latency_device" not in no_latency


def test_search_cost_and_devices():
    cost = search_cost(5400, "cpu", n_devices=4)
    assert cost["device_hours"] == 6.0 and cost["wall_seconds"] == 5400.0
    assert cost["device"] == describe_device("cpu") and cost["device"].startswith("cpu:")
    assert search_cost(3600, "cpu")["device_hours"] == 1.0
    with pytest.raises(UsageError, match="wall_seconds"):
        search_cost(-1, "cpu")
    with pytest.raises(UsageError, match="n_devices"):
        search_cost(1, "cpu", n_devices=0)
    with pytest.raises(UsageError, match="unknown device"):
        describe_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="cuda"):
            describe_device("cuda")


def test_machine_info_has_no_hostname():
    info = machine_info()
    assert {"host_id", "cpu_model", "cpu_count", "ram_gib", "torch", "cuda", "gpus"} <= set(info)
    assert re.fullmatch(r"[0-9a-f]{12}", info["host_id"])
    assert socket.gethostname() not in str(info)
    assert info["torch"] == torch.__version__ and info["ram_gib"] > 0 and info["cpu_count"] >= 1


# --- a graph model ------------------------------------------------------------------------------------
def test_gcn_through_every_function():
    from torch_geometric.nn import GCN

    torch.manual_seed(0)
    n_nodes, n_in, hidden, n_out = 12, 8, 16, 3
    model = GCN(n_in, hidden, num_layers=2, out_channels=n_out)
    x = torch.randn(n_nodes, n_in)
    edge_index = torch.randint(0, n_nodes, (2, 40))
    inputs = (x, edge_index)

    assert count_params(model) == n_in * hidden + hidden + hidden * n_out + n_out
    flops = count_flops(model, inputs)
    # only the dense transforms X W are counted; the normalisation and scatter aggregation are named
    assert flops["flops"] == 2 * n_nodes * (n_in * hidden + hidden * n_out)
    assert any("scatter" in op for op in flops["uncounted_ops"])

    latency = measure_latency(model, inputs, warmup=1, min_run_time=0.02)
    assert latency["latency_ms"] > 0 and latency["batch_size"] == n_nodes

    memory = peak_training_memory(model, inputs)
    assert memory["activations_mb"] * MIB >= n_nodes * (n_in + hidden) * F32  # both layers' inputs at least
    assert memory["params_mb"] * MIB == count_params(model) * F32

    record = model_metrics(model, inputs, latency=False)
    assert record["flops"] == flops["flops"] and record["peak_memory_mb"] == memory["peak_memory_mb"]
