"""ProxylessNAS's central claim, measured (Cai, Zhu & Han, ICLR 2019, Sec. 3.2; fact sheet Sec. 3.3 and
item 7): a binary-gate supernet step costs about what training the single sampled network costs, while a
DARTS-style supernet that runs every candidate pays ~N x in memory and time.

One pytest-benchmark group, side by side, on proxyless-cifar (11 searched edges, 6 MBConv candidates +
zero), batch 32 of 3x32x32, 1 CPU thread:

* ``binary-two:weight`` / ``binary-full_v2:weight`` -- weight step: one path sampled per edge, CE with
  label smoothing 0.1, SGD Nesterov (the released weight step);
* ``binary-two:arch`` / ``binary-full_v2:arch`` (and ``binary-full:arch``) -- architecture step: gates
  resampled under the mode, plain CE, binary-gate estimator into alpha, Adam, ``two``-mode rescaling;
* ``standalone:weight`` -- baseline (a): the sampled path trained as its own network
  (`ProxylessSpace.to_model` of the same architecture the binary memory numbers use);
* ``darts-all-paths:joint`` -- baseline (b): `AllPathsEdge` supernet, softmax(alpha)-weighted sum of
  all candidates, one first-order step of weights and alphas.

Memory, in each benchmark's ``extra_info`` (MiB), for one step whose active paths are those of a fixed
reference architecture (the standalone's), so all rows compare like with like:

* ``analytic_activations_mb`` / ``analytic_peak_mb`` -- `harness.metrics.peak_training_memory`: tensors
  autograd saves for backward, plus parameters, buffers and gradients. Its hook also counts what a
  sub-graph that is discarded during the forward saved (the ``two``/``full`` modes run inactive paths with
  grad and detach them), so it over-states those arch steps;
* ``retained_activations_mb`` -- the same saved tensors, counted only if still alive after the forward
  (weak references): what autograd really holds until backward;
* ``rss_peak_delta_mb`` -- real memory: the step is run in a fresh process (after one warm-up step,
  gradients released) with glibc forced to serve every allocation >= 64 KiB by mmap
  (``MALLOC_MMAP_THRESHOLD_=65536``, so freed memory leaves the RSS at once), and a thread samples
  /proc/self/statm every 0.2 ms; the number is the peak RSS minus the RSS just before the step. It
  includes gradients, optimizer state created by the step and allocator overheads;
* ``*_vs_standalone`` -- the ratios to the standalone network's numbers.

Time is the median of 5 steps (after warm-up) with the reference architecture's paths re-gated before each
step, so every row trains the same network. Run: ``pytest benchmarks/test_proxylessnas_bench.py -s``
(~3 min on 2 shared cores, most of it the 7 fresh processes; -s prints a table of time and memory ratios).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.harness.metrics import MIB, peak_training_memory
from nasrepro.methods.proxylessnas.spaces import CIFAR_SPACE, ProxylessArch, ProxylessSpace

try:  # the supernet is written by another part of the project; fall back to a minimal inline one
    from nasrepro.methods.proxylessnas.supernet import MBConvSupernet
except ImportError:  # pragma: no cover - only while supernet.py does not exist
    MBConvSupernet = None  # type: ignore[assignment,misc]

BATCH = 32
SEED = 0
GROUP = f"proxylessnas step: proxyless-cifar, batch {BATCH}, 3x32x32, 1 thread"
CASES = (
    "standalone:weight",
    "binary-two:weight",
    "binary-two:arch",
    "binary-full_v2:weight",
    "binary-full_v2:arch",
    "binary-full:arch",
    "darts-all-paths:joint",
)
RESULTS: dict[str, dict[str, float]] = {}
#: the deterministic memory claims (analytic counts, not timings or RSS), as (measure, bound) per case:
#: binary-gate steps hold one path's activations (<= 1.3x the standalone network), the DARTS-style
#: supernet all N paths' (>= 3x). ``two``'s arch step runs the detached partner too, so its bound is on
#: what autograd still holds after the forward (retained), not on what the hook saw in passing.
MEMORY_BOUNDS: dict[str, tuple[str, str, float]] = {
    "binary-two:weight": ("analytic_activations_mb", "<=", 1.3),
    "binary-full_v2:weight": ("analytic_activations_mb", "<=", 1.3),
    "binary-full_v2:arch": ("analytic_activations_mb", "<=", 1.3),
    "binary-two:arch": ("retained_activations_mb", "<=", 1.3),
    "darts-all-paths:joint": ("analytic_activations_mb", ">=", 3.0),
}


# --- the cases -----------------------------------------------------------------------------------------
@dataclass
class StepCase:
    """One configuration: its model, one training step, and how to fix its paths for memory counts."""

    name: str
    model: nn.Module
    #: one training step; sample=True draws fresh paths (as a search does), False keeps the fixed ones
    step: Callable[[bool], None]
    #: put the reference architecture's paths in place (weight or architecture gating)
    fix_paths: Callable[[], None]
    loss_fn: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor


def reference_arch() -> ProxylessArch:
    return ProxylessSpace(CIFAR_SPACE).sample(np.random.default_rng(SEED))


def build_case(name: str) -> StepCase:
    if MBConvSupernet is None:
        raise RuntimeError("nasrepro.methods.proxylessnas.supernet.MBConvSupernet is missing")
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    space = ProxylessSpace(CIFAR_SPACE)
    arch = reference_arch()
    indices = space.encode(arch)
    kind, _, phase = name.partition(":")

    def weight_loss(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y, label_smoothing=0.1)

    def plain_loss(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def sgd(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.025, momentum=0.9, nesterov=True, weight_decay=4e-5)

    def adam(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=1e-3, betas=(0.0, 0.999), eps=1e-8)

    if kind == "standalone":
        model = space.to_model(arch, types.SimpleNamespace(num_classes=10))
        opt = sgd(list(model.parameters()))

        def step(sample: bool = True) -> None:
            opt.zero_grad(set_to_none=True)
            weight_loss(model(x)).backward()
            opt.step()

        return StepCase(name, model, step, lambda: None, weight_loss, x)

    if kind == "darts-all-paths":
        net = MBConvSupernet(CIFAR_SPACE, 10, edge="all")
        w_opt, a_opt = sgd(net.weight_parameters()), adam(net.arch_parameters())

        def step(sample: bool = True) -> None:
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            plain_loss(net(x)).backward()
            w_opt.step()
            a_opt.step()

        return StepCase(name, net, step, lambda: None, plain_loss, x)

    mode = kind.removeprefix("binary-")
    net = MBConvSupernet(CIFAR_SPACE, 10, mode=mode, edge="binary")
    w_opt, a_opt = sgd(net.weight_parameters()), adam(net.arch_parameters())
    if phase == "weight":

        def step(sample: bool = True) -> None:
            if sample:
                net.sample_weight_paths()  # also releases every candidate's grad (released binarize())
            w_opt.zero_grad(set_to_none=True)
            weight_loss(net(x)).backward()
            w_opt.step()

        return StepCase(name, net, step, lambda: net.set_active(indices), weight_loss, x)

    def fix_arch_paths() -> None:
        for group, index in zip(net.groups, indices, strict=True):
            partner = (index + 1) % len(group[0].names) if mode == "two" else None
            group[0].set_arch_paths(index, partner)

    def arch_step(sample: bool = True) -> None:
        if sample:
            net.sample_arch_paths()
        a_opt.zero_grad(set_to_none=True)
        with net.weights_frozen():  # as the search's arch step: no dL/dW is computed
            plain_loss(net(x)).backward()
        net.set_arch_grads()
        a_opt.step()
        net.rescale()

    return StepCase(name, net, arch_step, fix_arch_paths, plain_loss, x)


# --- memory ----------------------------------------------------------------------------------------------
def retained_activations_mb(case: StepCase) -> float:
    """Saved-for-backward storages still alive after the forward (weakly referenced), params excluded."""
    model = case.model
    exclude = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    refs: list[weakref.ref] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        refs.append(weakref.ref(tensor))
        return tensor

    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = case.loss_fn(model(case.x))
    gc.collect()
    storages: dict[int, int] = {}
    for ref in refs:
        tensor = ref()
        if tensor is not None and tensor.untyped_storage().data_ptr() not in exclude:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    del loss
    model.load_state_dict(state)  # BN running statistics as before
    return sum(storages.values()) / MIB


def analytic_memory(case: StepCase) -> dict[str, float]:
    case.fix_paths()
    analytic = peak_training_memory(case.model, (case.x,), case.loss_fn)
    case.fix_paths()
    return {
        "analytic_activations_mb": analytic["activations_mb"],
        "analytic_peak_mb": analytic["peak_memory_mb"],
        "params_mb": analytic["params_mb"],
        "retained_activations_mb": retained_activations_mb(case),
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_step_peak(name: str) -> dict[str, float]:
    """In THIS process: one warm-up step, release gradients, then the peak RSS growth of one step with the
    reference architecture's paths (sampled by a 0.2 ms polling thread)."""
    torch.set_num_threads(1)
    case = build_case(name)
    case.fix_paths()
    case.step(False)
    for p in case.model.parameters():
        p.grad = None
    case.fix_paths()
    gc.collect()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    case.step(False)
    done.set()
    poller.join()
    return {"rss_before_mb": base / MIB, "rss_peak_delta_mb": (max(peak[0], _rss_bytes()) - base) / MIB}


def rss_in_fresh_process(name: str) -> dict[str, float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--rss", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the benchmarks ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_summary():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if "standalone:weight" in RESULTS:
        print("\n" + summary_table(RESULTS))


def summary_table(results: dict[str, dict[str, float]]) -> str:
    ref = results["standalone:weight"]
    lines = [
        f"{'case':24s} {'median s':>9s} {'time x':>7s} {'act MiB':>8s} {'x':>6s} {'retained':>9s} {'x':>6s} "
        f"{'RSS MiB':>8s} {'x':>6s}"
    ]
    for name, r in results.items():
        lines.append(
            f"{name:24s} {r['median_s']:9.4f} {r['median_s'] / ref['median_s']:7.2f} "
            f"{r['analytic_activations_mb']:8.1f} {r['analytic_activations_mb'] / ref['analytic_activations_mb']:6.2f} "
            f"{r['retained_activations_mb']:9.1f} {r['retained_activations_mb'] / ref['retained_activations_mb']:6.2f} "
            f"{r['rss_peak_delta_mb']:8.1f} {r['rss_peak_delta_mb'] / ref['rss_peak_delta_mb']:6.2f}"
        )
    return "\n".join(lines)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("name", CASES)
def test_step(benchmark, name: str) -> None:
    if MBConvSupernet is None:
        pytest.skip("supernet.py (MBConvSupernet) is not available")
    case = build_case(name)
    memory = analytic_memory(case)
    memory.update(rss_in_fresh_process(name))
    # Timed like for like: every step re-gates the reference architecture's paths (`fix_paths`, the
    # same work as sampling: gates set, candidate grads released) instead of drawing random ones, whose
    # zeros and small kernels would make the supernet look faster than the standalone network.

    def step() -> None:
        case.fix_paths()
        case.step(False)

    step()  # warm-up (lazy allocations, oneDNN primitive caches)
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    RESULTS[name] = {**memory, "median_s": benchmark.stats.stats.median}
    benchmark.extra_info.update({k: round(v, 3) for k, v in memory.items()})
    benchmark.extra_info["memory_method"] = (
        "analytic: harness.metrics.peak_training_memory; retained: saved tensors alive after forward; "
        "rss: fresh process, MALLOC_MMAP_THRESHOLD_=65536, 0.2 ms /proc/self/statm polling, peak - before"
    )
    if name != "standalone:weight" and "standalone:weight" in RESULTS:
        ref = RESULTS["standalone:weight"]
        for key in ("analytic_activations_mb", "retained_activations_mb", "rss_peak_delta_mb"):
            benchmark.extra_info[key.removesuffix("_mb") + "_vs_standalone"] = round(
                memory[key] / ref[key], 3
            )
        benchmark.extra_info["time_vs_standalone"] = round(RESULTS[name]["median_s"] / ref["median_s"], 3)
    assert all(np.isfinite(v) for v in memory.values())
    if name in MEMORY_BOUNDS:
        key, op, bound = MEMORY_BOUNDS[name]
        ratio = memory[key] / standalone_memory()[key]
        assert ratio <= bound if op == "<=" else ratio >= bound, (
            f"{name}: {key} {ratio:.2f}x, want {op} {bound}x"
        )


_STANDALONE: dict[str, float] = {}


def standalone_memory() -> dict[str, float]:
    """The standalone network's analytic memory (computed here when its own case did not run first)."""
    if not _STANDALONE:
        _STANDALONE.update(
            RESULTS.get("standalone:weight") or analytic_memory(build_case("standalone:weight"))
        )
    return _STANDALONE


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rss":
        print(json.dumps(rss_step_peak(sys.argv[2])))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} --rss CASE  (CASE in {', '.join(CASES)})")
