"""ProxylessNAS hardware-aware objective (Cai, Zhu & Han, ICLR 2019, Sec. 3.3) and Proxyless-R's reward.

* Expected cost, Sec. 3.3.1, Eq. (5)-(6): E[cost] = sum_edges sum_j p_j F(o_j) + constant, with F a
  per-candidate cost (latency from a look-up table, FLOPs, ...). It is differentiable in alpha through
  the edges' `cost_probs()`, so dE/dp_j = F(o_j).
* Regulariser forms, a registry (`REGULARIZERS`): the paper's additive ``"add"`` (CE + lambda2 E[lat],
  Eq. (7) without the weight-decay term, which is the optimiser's), and the released code's ``"mul#log"``
  (default) and ``"add#linear"`` (`GradientArchSearchConfig.add_regularization_loss`).
* `LatencyTable`: op descriptor -> ms, keyed like the released `mobile_trim.yaml` LUT.
* `measure_latency`: one op or block timed on this machine (batch, warm-up, median) to fill a table.
* REINFORCE (Proxyless-R, Sec. 3.3.2): reward R = acc * (ref / lat)^0.1 and the reward baseline.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.benchmark import Timer

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import DataError, UsageError
from nasrepro.harness.machine import describe_device


# --- expected cost -----------------------------------------------------------------------------------
def expected_cost(
    edges: Sequence[nn.Module], costs: Sequence[Sequence[float] | Tensor], constant: float = 0.0
) -> Tensor:
    """E[cost] = sum_e sum_j q^e_j F^e_j + constant, q^e = `edges[e].cost_probs()` (Sec. 3.3.1, Eq. (6)).

    `costs[e][j]` is F(o_j) of candidate j on edge e (0 for a zero candidate); `constant` is the cost of
    the fixed layers (stem, head), which has no gradient. `cost_probs()` is p, except right after a
    ``"two"``-mode architecture sample, where only the sampled pair counts, with the pair's softmax
    (as in the released code).
    """
    if len(edges) != len(costs):
        raise UsageError(f"expected_cost got {len(edges)} edges but {len(costs)} cost vectors")
    if not edges:
        raise UsageError("expected_cost needs at least one mixed edge")
    total: Tensor | None = None
    for e, (edge, cost) in enumerate(zip(edges, costs, strict=True)):
        q = edge.cost_probs()
        f = torch.as_tensor(cost, dtype=q.dtype, device=q.device)
        if f.shape != q.shape:
            raise UsageError(
                f"edge {e} has {q.numel()} candidates but its cost vector has shape {tuple(f.shape)}"
            )
        term = (q * f).sum()
        total = term if total is None else total + term
    return total + constant  # type: ignore[operator]


# --- regulariser forms ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdditiveCost:
    """Paper, Eq. (7): loss = CE + lambda2 * E[lat] (lambda2 > 0; the paper gives no value, so no default)."""

    lam: float

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise UsageError(f'regulariser "add" needs lam > 0, got {self.lam}')

    def __call__(self, ce: Tensor, expected: Tensor) -> Tensor:
        return ce + self.lam * expected


@dataclass(frozen=True)
class MulLogCost:
    """Released default ``mul#log``: loss = alpha * CE * (log E[lat] / log ref)^beta.

    Defaults alpha = 0.2, beta = 0.3 (`--grad_reg_loss_alpha/beta`). The log ratio is only a positive
    number when E and ref exceed 1, i.e. when costs are in units like ms (ref 80 ms for mobile).
    """

    ref: float
    alpha: float = 0.2
    beta: float = 0.3

    def __post_init__(self) -> None:
        if not self.ref > 1:
            raise UsageError(
                f'regulariser "mul#log" needs ref > 1 (log ref is its denominator), got {self.ref}; '
                "express the cost in units where the target exceeds 1 (e.g. ms, MFLOPs)"
            )

    def __call__(self, ce: Tensor, expected: Tensor) -> Tensor:
        if float(expected.detach()) <= 1:
            raise UsageError(
                f'regulariser "mul#log" needs E[cost] > 1, got {float(expected.detach()):.4g}; '
                "express the cost in units where it exceeds 1 (e.g. ms, MFLOPs)"
            )
        return self.alpha * ce * (torch.log(expected) / math.log(self.ref)) ** self.beta


@dataclass(frozen=True)
class AddLinearCost:
    """Released ``add#linear``: loss = CE + lambda * (E[lat] - ref) / ref (lambda 0.1 on the CLI)."""

    ref: float
    lam: float = 0.1

    def __post_init__(self) -> None:
        if not self.ref > 0:
            raise UsageError(f'regulariser "add#linear" needs ref > 0, got {self.ref}')

    def __call__(self, ce: Tensor, expected: Tensor) -> Tensor:
        return ce + self.lam * (expected - self.ref) / self.ref


REGULARIZERS: dict[str, type] = {"add": AdditiveCost, "mul#log": MulLogCost, "add#linear": AddLinearCost}


def make_regularizer(name: str, **kwargs: float) -> AdditiveCost | MulLogCost | AddLinearCost:
    """The loss form `name` with its hyper-parameters, e.g. make_regularizer("mul#log", ref=80.0)."""
    if name not in REGULARIZERS:
        raise UsageError(f"unknown ProxylessNAS regulariser {name!r}; choose one of {sorted(REGULARIZERS)}")
    try:
        return REGULARIZERS[name](**kwargs)
    except TypeError as err:
        raise UsageError(f"regulariser {name!r}: {err}") from None


# --- latency look-up table -----------------------------------------------------------------------------
def _shape(shape: Sequence[int] | str) -> str:
    return shape if isinstance(shape, str) else "x".join(str(int(d)) for d in shape)


def latency_key(
    op: str,
    input_shape: Sequence[int] | str,
    output_shape: Sequence[int] | str,
    expand: int | None = None,
    kernel: int | None = None,
    stride: int | None = None,
    idskip: int | None = None,
) -> str:
    """The released LUT's key: "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-
    idskip:0"; shapes are H x W x C; ops other than an MBConv ("Conv", "Conv_1", "Logits") carry only
    their input and output."""
    parts = [op, f"input:{_shape(input_shape)}", f"output:{_shape(output_shape)}"]
    extra = {"expand": expand, "kernel": kernel, "stride": stride, "idskip": idskip}
    given = {k: v for k, v in extra.items() if v is not None}
    if given and len(given) != len(extra):
        missing = sorted(set(extra) - set(given))
        raise UsageError(
            f"latency_key for {op!r}: give all of expand/kernel/stride/idskip or none; missing {missing}"
        )
    parts += [f"{k}:{int(v)}" for k, v in given.items()]
    return "-".join(parts)


class LatencyTable:
    """Per-op latency in ms for one device, JSON-serialisable: {"meta": {...}, "entries": {key: ms}}.

    `meta` records what the numbers mean (device, batch, threads, warm-up, repeats). A missing key is a
    `UsageError` naming the key: the search space asks for an op the table was not built for (e.g. the
    released proxyless_mobile's 32-channel stage 1 is outside `mobile_trim.yaml`).
    """

    def __init__(self, entries: Mapping[str, float] | None = None, meta: Mapping[str, Any] | None = None):
        self.entries: dict[str, float] = {str(k): float(v) for k, v in (entries or {}).items()}
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __setitem__(self, key: str, ms: float) -> None:
        if not math.isfinite(ms) or ms < 0:
            raise UsageError(f"latency of {key!r} must be a finite number of ms >= 0, got {ms}")
        self.entries[key] = float(ms)

    def __getitem__(self, key: str) -> float:
        try:
            return self.entries[key]
        except KeyError:
            source = self.meta.get("source", "this latency table")
            raise UsageError(
                f"{source} has no latency for {key!r} ({len(self.entries)} entries); measure it "
                "(cost.measure_latency) and add it, or use a search space the table covers"
            ) from None

    def lookup(
        self, op: str, input_shape: Sequence[int] | str, output_shape: Sequence[int] | str, **kw: int
    ) -> float:
        """`self[latency_key(op, input_shape, output_shape, **kw)]`."""
        return self[latency_key(op, input_shape, output_shape, **kw)]

    def total(self, keys: Iterable[str]) -> float:
        """Sum of the latencies of `keys` (an architecture's predicted latency)."""
        return sum(self[k] for k in keys)

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "entries": dict(sorted(self.entries.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "latency table") -> LatencyTable:
        if not isinstance(data, Mapping) or not isinstance(data.get("entries"), Mapping):
            raise DataError(
                f"{source} is not a latency table: expected a JSON object with an 'entries' object"
            )
        meta = dict(data.get("meta") or {})
        meta.setdefault("source", source)
        return cls(data["entries"], meta)

    @classmethod
    def from_released_lut(
        cls, lut: Mapping[str, Mapping[str, float]], source: str = "mobile_trim.yaml"
    ) -> LatencyTable:
        """The released LUT as parsed from YAML ({key: {"mean", "var", "count"}}): keeps the mean (ms)."""
        try:
            entries = {key: float(value["mean"]) for key, value in lut.items()}
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{source} is not a ProxylessNAS latency LUT ({err}); expected key -> {{mean: ms}}"
            ) from None
        return cls(entries, {"source": source, "statistic": "mean"})

    def save(self, path: str | Path) -> None:
        """Write JSON atomically (temporary file in the same folder + os.replace): never a partial file."""
        path = Path(path)
        meta = {k: v for k, v in self.meta.items() if k != "source"}
        text = json.dumps({"meta": meta, "entries": dict(sorted(self.entries.items()))}, indent=1)
        atomic_write_text(path, text + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"latency table {path} not found; build one with cost.measure_latency and save()")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"latency table {path} is not valid JSON ({err}); rebuild it") from None
        return cls.from_dict(data, source=str(path))


def measure_latency(
    module: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    warmup: int = 10,
    repeats: int = 100,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Median wall-clock ms of one no-grad, eval-mode forward of `module` on a zero input of `input_shape`.

    The released code times CPU latency at batch 1 with 10 warm-up and 100 timed runs
    (`run_manager.net_latency`); we take the median of `repeats` single runs, each timed by
    `torch.utils.benchmark.Timer` (which synchronises CUDA). The batch (`input_shape[0]`), device,
    thread count and run counts are returned so a `LatencyTable.meta` can record them.
    """
    if warmup < 0 or repeats < 1:
        raise UsageError(f"measure_latency needs warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    if len(input_shape) < 1 or any(int(d) < 1 for d in input_shape):
        raise UsageError(
            f"measure_latency needs a positive input shape (batch first), got {tuple(input_shape)}"
        )
    threads = num_threads or torch.get_num_threads()
    was_training = module.training
    params = next(module.parameters(), None)
    home = params.device if params is not None else torch.device("cpu")
    module.to(device).eval()
    try:
        x = torch.zeros(tuple(int(d) for d in input_shape), device=device)
        timer = Timer("module(x)", globals={"module": module, "x": x}, num_threads=threads)
        with torch.no_grad():
            for _ in range(warmup):
                module(x)
            times = [timer.timeit(1).median for _ in range(repeats)]
    finally:
        module.to(home).train(was_training)
    return {
        "latency_ms": statistics.median(times) * 1e3,
        "device": describe_device(device),
        "batch_size": int(input_shape[0]),
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
    }


# --- REINFORCE (Proxyless-R) ---------------------------------------------------------------------------
def reinforce_reward(acc: float, latency: float, ref: float, tradeoff: float = 0.1) -> float:
    """R = acc * (ref / lat)^tradeoff, i.e. MnasNet's ACC * (LAT / T)^w with w = -0.1 (Sec. 3.3.2).

    The released code passes acc in percent divided by 100 (`--rl_tradeoff_ratio 0.1`); pass a fraction.
    """
    if latency <= 0 or ref <= 0:
        raise UsageError(f"reinforce_reward needs latency > 0 and ref > 0, got {latency}, {ref}")
    return acc * (ref / latency) ** tradeoff


class RewardBaseline:
    """Moving baseline b for the REINFORCE advantage R - b (Proxyless-R, `rl_update_step`).

    First update: b = mean reward. Afterwards, with ``released_quirk=True`` (bit-faithful),
    b <- b + decay * (mean_R - b): the released code uses decay = 0.99 as a *step size*, so b is almost
    the latest batch mean. With ``released_quirk=False``, a standard EMA: b <- decay * b + (1 - decay) *
    mean_R. The released code updates b *before* computing the advantages, so use the returned value.
    """

    def __init__(self, decay: float = 0.99, released_quirk: bool = True) -> None:
        if not 0 <= decay <= 1:
            raise UsageError(f"RewardBaseline decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.released_quirk = released_quirk
        self.value: float | None = None

    def update(self, rewards: Sequence[float]) -> float:
        """Fold in one batch of rewards; returns the new baseline."""
        if len(rewards) == 0:
            raise UsageError("RewardBaseline.update needs at least one reward")
        mean = sum(rewards) / len(rewards)
        if self.value is None:
            self.value = mean
        elif self.released_quirk:
            self.value = self.value + self.decay * (mean - self.value)
        else:
            self.value = self.decay * self.value + (1 - self.decay) * mean
        return self.value
