"""ProxylessNAS mixed edge with binary gates (Cai, Zhu & Han, ICLR 2019, Sec. 3.2), and a DARTS-style baseline.

A mixed edge holds N candidate paths {o_i} and real architecture parameters alpha; p = softmax(alpha).
Binary gates g = binarize(p) are one-hot, so only the active path runs and training memory stays at
the level of one compact model (Sec. 3.2.1). The architecture gradient is the BinaryConnect-style
estimator of Sec. 3.2.1 / Eq. (4):

    dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i),    dL/dg_j = <o_j(x), dL/dy>.

Three gate modes (the released code's `MixedEdge.MODE`, `search/modules/mix_op.py`), chosen per edge:

* ``"two"`` -- the paper: per architecture step sample 2 distinct paths by multinomial(p) without
  replacement, re-normalise over the pair (`pair_probs = softmax(alpha[pair])`), draw the active path
  from `pair_probs`; apply the estimator over the pair; after the optimiser step `rescale_pair()` shifts
  both alphas so that the unsampled paths' probabilities stay unchanged (Sec. 3.2.1, last paragraph).
* ``"full_v2"`` -- the released search script's default (``--grad_binary_mode full_v2``): only the
  active path keeps activations; backward re-runs every other candidate without grad on the saved input
  to get dL/dg_k (1-path activation memory, N forwards per architecture step).
* ``"full"`` -- every candidate runs in forward (active with grad, the others detached), N x memory.

Zero protocol. A candidate named ``"zero"`` stands for "skip the block" (the released MBConv space adds
`Zero` only where stride 1 and in = out channels, and `MobileInvertedResidualBlock.forward` then returns
its input). The edge never calls a zero candidate's module: when a zero path is *active*, `forward`
returns ``None`` and the enclosing block must return its input unchanged (`edge.active_is_zero` says the
same before the call); when a zero path is sampled but *inactive* its output counts as all zeros, so its
gate gradient is 0. `set_arch_grad()` then leaves that edge's alpha without gradient for the step (the
released `set_arch_param_grad()` rule; microsoft/nni#2272), and `rescale_pair()` does nothing.

A training step uses the edge like this (the supernet loops over its edges; `cost.py` builds E[lat]):

    weight step:  edge.sample_weight_path(); loss(net(x)).backward(); w_opt.step()
    arch step:    edge.sample_arch_paths(); (ce + reg(E[lat])).backward(); edge.set_arch_grad();
                  a_opt.step(); edge.rescale_pair()
    evaluation:   edge.use_argmax()   # final architecture = argmax_i p_i (`convert_to_normal_net`)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasrepro.errors import UsageError

#: The candidate name that means "skip the block" (see the zero protocol in the module docstring).
ZERO = "zero"

#: alpha ~ N(0, 1e-3): the released code's `AP_path_alpha.data.normal_(0, 1e-3)` (std 1e-3).
ALPHA_INIT_STD = 1e-3


class _GateTap(torch.autograd.Function):
    """Identity on the active output in forward; in backward, dL/dg_k = <o_k(x), dL/dy> for every k.

    This is the `full_v2` trick of the released `ArchGradientFunction`: nothing but the active path's
    activations (plus the edge input) is kept, and the other candidates are re-run under `no_grad` on the
    saved input only when the gradient is needed. Unlike the released function, the active path's own
    graph is left to ordinary autograd, so its weights receive their gradient too (harmless in an
    architecture step, where only alpha is stepped; the gate gradients are identical).
    """

    @staticmethod
    def forward(ctx, active_out: Tensor, gates: Tensor, x: Tensor, edge: MixedEdge) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(active_out, x)
        # What to re-run is fixed now, so a resample before backward cannot change this step's gradient.
        ctx.ops = [
            None if k == edge.active_index or edge.names[k] == ZERO else edge.candidates[k]
            for k in range(len(edge.names))
        ]
        ctx.gated = edge.gated_indices
        ctx.active = edge.active_index
        return active_out.view_as(active_out)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor | None, None, None]:  # type: ignore[override]
        active_out, x = ctx.saved_tensors
        gate_grad = None
        if ctx.needs_input_grad[1]:
            gate_grad = torch.zeros(len(ctx.ops), dtype=grad_out.dtype, device=grad_out.device)
            with torch.no_grad():
                for k in ctx.gated:
                    if k == ctx.active:
                        gate_grad[k] = (active_out * grad_out).sum()
                    elif ctx.ops[k] is not None:  # a zero path has o(x) = 0, so its gate gradient is 0
                        gate_grad[k] = (ctx.ops[k](x.detach()) * grad_out).sum()
        return grad_out, gate_grad, None, None


def _forward_gated_sum(edge: MixedEdge, x: Tensor) -> Tensor:
    """y = sum_{k in gated} g_k * o_k(x), the inactive outputs detached (`two` and `full` modes).

    With g one-hot the value is the active output exactly (1*o + 0*o' = o in floating point), while
    autograd's product rule gives dL/dg_k = <o_k(x), dL/dy> for every gated k, active or not.
    """
    gates = edge.binary_gates
    active = edge.candidates[edge.active_index](x)
    y = gates[edge.active_index] * active
    for k in edge.gated_indices:
        if k == edge.active_index:
            continue
        out_k = torch.zeros_like(active) if edge.names[k] == ZERO else edge.candidates[k](x).detach()
        y = y + gates[k] * out_k
    return y


def _forward_active_tap(edge: MixedEdge, x: Tensor) -> Tensor:
    """Only the active path runs in forward; `_GateTap` recomputes the rest in backward (`full_v2`)."""
    active = edge.candidates[edge.active_index](x)
    return _GateTap.apply(active, edge.binary_gates, x, edge)


@dataclass(frozen=True)
class GateMode:
    """How an architecture step gates an edge: which paths are sampled and how dL/dg is obtained."""

    name: str
    #: True: 2 paths sampled without replacement, estimator and E[cost] over the pair (the paper).
    #: False: one path ~ p, estimator and E[cost] over all N candidates.
    pair: bool
    forward: Callable[[MixedEdge, Tensor], Tensor]
    doc: str


GATE_MODES: dict[str, GateMode] = {
    mode.name: mode
    for mode in (
        GateMode("two", True, _forward_gated_sum, "paper: 2 sampled paths, pair estimator + rescaling"),
        GateMode("full", False, _forward_gated_sum, "all paths run in forward, estimator over all N"),
        GateMode("full_v2", False, _forward_active_tap, "official default: active path only, re-run in bwd"),
    )
}


class CandidateEdge(nn.Module):
    """What both mixed ops share: N named candidate paths and their architecture parameters alpha.

    `candidates[i]` maps the edge input to the edge output (same shape for every non-zero candidate);
    `names[i]` labels it, and the name ``"zero"`` marks the skip candidate (module docstring). alpha
    (N,) is the only `nn.Parameter` the edge adds, so a weight optimiser over the other parameters
    never sees it.
    """

    def __init__(
        self,
        candidates: Sequence[nn.Module],
        names: Sequence[str],
        init_std: float = ALPHA_INIT_STD,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        kind = type(self).__name__
        if len(candidates) == 0 or len(candidates) != len(names):
            raise UsageError(
                f"{kind} needs one name per candidate and at least one candidate, got "
                f"{len(candidates)} candidates and {len(names)} names"
            )
        if len(set(names)) != len(names):
            raise UsageError(f"{kind} candidate names must be distinct, got {list(names)}")
        if all(name == ZERO for name in names):
            raise UsageError(f"{kind} needs at least one non-zero candidate")
        self.candidates = nn.ModuleList(candidates)
        self.names: tuple[str, ...] = tuple(names)
        self.alpha = nn.Parameter(torch.randn(len(names), generator=generator) * init_std)

    @property
    def probs(self) -> Tensor:
        """p = softmax(alpha), differentiable in alpha."""
        return F.softmax(self.alpha, dim=0)

    def cost_probs(self) -> Tensor:
        """The probabilities E[cost] is taken over (Sec. 3.3, Eq. (5)), differentiable in alpha."""
        return self.probs

    def chosen(self) -> int:
        """The final architecture's path on this edge: argmax_i p_i (`convert_to_normal_net`)."""
        return int(torch.argmax(self.alpha.detach()).item())

    def chosen_name(self) -> str:
        return self.names[self.chosen()]


class MixedEdge(CandidateEdge):
    """A ProxylessNAS mixed operation over any list of candidate modules (Sec. 3.2).

    The gates live outside the parameter list (`binary_gates`, rebuilt at each sample), so alpha stays
    the only parameter the edge adds.
    """

    def __init__(
        self,
        candidates: Sequence[nn.Module],
        names: Sequence[str],
        mode: str = "full_v2",
        init_std: float = ALPHA_INIT_STD,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(candidates, names, init_std, generator)
        self.mode = mode  # validated by the setter
        self._clear_sample()

    # --- mode -----------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode.name

    @mode.setter
    def mode(self, name: str) -> None:
        if name not in GATE_MODES:
            raise UsageError(f"unknown ProxylessNAS gate mode {name!r}; choose one of {sorted(GATE_MODES)}")
        if GATE_MODES[name].pair and len(self.names) < 2:
            raise UsageError(f"gate mode {name!r} samples 2 paths, but this edge has one candidate")
        self._mode = GATE_MODES[name]

    # --- probabilities --------------------------------------------------------------------------------
    def cost_probs(self) -> Tensor:
        """The probabilities E[cost] is taken over (Sec. 3.3, Eq. (5)), differentiable in alpha.

        After `sample_arch_paths()` in ``"two"`` mode: the pair's softmax at the pair's positions and 0
        elsewhere, so only the sampled pair counts (the released `current_prob_over_ops`); otherwise p.
        """
        if self._arch_step and self._mode.pair:
            pair = torch.tensor(self.gated_indices, device=self.alpha.device)
            out = torch.zeros_like(self.alpha)
            return out.index_put((pair,), F.softmax(self.alpha[pair], dim=0))
        return self.probs

    # --- sampling -------------------------------------------------------------------------------------
    def _clear_sample(self) -> None:
        self.active_index: int | None = None
        #: Indices whose gates are tracked this step (dL/dg_k exists for these).
        self.gated_indices: tuple[int, ...] = ()
        self.binary_gates: Tensor | None = None
        self._arch_step = False
        self._alpha_before: Tensor | None = None
        self._log_prob: Tensor | None = None

    def _release_weight_grads(self) -> None:
        # The released `binarize()` sets grad = None for every candidate's parameters each time a path is
        # sampled ("avoid over-regularization"): an unsampled path then gets no momentum or weight-decay
        # update from SGD, whose step skips parameters whose grad is None.
        for param in self.candidates.parameters():
            param.grad = None

    def _set_gates(self, active: int, gated: tuple[int, ...], arch_step: bool) -> None:
        self.active_index = active
        self.gated_indices = gated
        self._arch_step = arch_step
        self._alpha_before = None
        gates = torch.zeros(len(self.names), device=self.alpha.device, dtype=self.alpha.dtype)
        gates[active] = 1.0
        self.binary_gates = gates.requires_grad_(arch_step)

    def sample_weight_path(self, generator: torch.Generator | None = None) -> int:
        """Weight step (Sec. 3.2): one path g ~ p; only its parameters will receive gradients.

        Also keeps log p_active (differentiable in alpha) for the REINFORCE variant, Sec. 3.3.2.
        """
        self._release_weight_grads()
        probs = self.probs
        active = int(torch.multinomial(probs.detach(), 1, generator=generator).item())
        self._set_gates(active, (active,), arch_step=False)
        self._log_prob = torch.log(probs[active])
        return active

    def sample_arch_paths(self, generator: torch.Generator | None = None) -> int:
        """Architecture step: resample the gates under the edge's mode; return the active index.

        ``"two"``: 2 distinct indices ~ multinomial(p) without replacement, active one ~ softmax over
        the pair. ``"full"``/``"full_v2"``: active ~ p, every candidate gated.
        """
        self._release_weight_grads()
        probs = self.probs.detach()
        if self._mode.pair:
            pair = torch.multinomial(probs, 2, replacement=False, generator=generator)
            pair_probs = F.softmax(self.alpha.detach()[pair], dim=0)
            c = int(torch.multinomial(pair_probs, 1, generator=generator).item())
            active, inactive = int(pair[c].item()), int(pair[1 - c].item())
            self._set_gates(active, (active, inactive), arch_step=True)
        else:
            active = int(torch.multinomial(probs, 1, generator=generator).item())
            self._set_gates(active, tuple(range(len(self.names))), arch_step=True)
        return active

    def set_arch_paths(self, active: int, partner: int | None = None) -> None:
        """`sample_arch_paths()` with the outcome given (replaying a run, enumerating outcomes in tests).

        ``"two"`` mode needs the pair's other index `partner`; the other modes gate every candidate.
        """
        n = len(self.names)
        if not 0 <= active < n:
            raise UsageError(f"MixedEdge has {n} candidates; active index {active} is out of range")
        self._release_weight_grads()
        if self._mode.pair:
            if partner is None or not 0 <= partner < n or partner == active:
                raise UsageError(
                    f'gate mode "two" needs a partner index != {active} in [0, {n}), got {partner}'
                )
            self._set_gates(active, (active, partner), arch_step=True)
        else:
            self._set_gates(active, tuple(range(n)), arch_step=True)

    def set_active(self, index: int) -> None:
        """Fix one path deterministically (evaluation of a derived architecture); no gate gradients."""
        if not 0 <= index < len(self.names):
            raise UsageError(f"MixedEdge has {len(self.names)} candidates; index {index} is out of range")
        self._set_gates(index, (index,), arch_step=False)

    def use_argmax(self) -> int:
        """Run the argmax path (the derived architecture); returns its index."""
        self.set_active(self.chosen())
        return self.active_index  # type: ignore[return-value]

    @property
    def active_is_zero(self) -> bool:
        """True when the active path is the zero candidate: the block must return its input."""
        return self.active_index is not None and self.names[self.active_index] == ZERO

    def sampled_log_prob(self) -> Tensor:
        """log p_active of the last `sample_weight_path()` (Proxyless-R: gradient of log p(g))."""
        if self._log_prob is None:
            raise UsageError("sampled_log_prob() needs a preceding sample_weight_path() on this edge")
        return self._log_prob

    # --- forward --------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor | None:
        """The active path's output, or None when the active path is zero (block returns its input)."""
        if self.active_index is None:
            raise UsageError(
                "MixedEdge.forward needs a sampled path: call sample_weight_path(), sample_arch_paths(), "
                "set_active() or use_argmax() first"
            )
        if self.active_is_zero:
            return None
        if not self._arch_step:
            return self.candidates[self.active_index](x)
        return self._mode.forward(self, x)

    # --- architecture gradient ------------------------------------------------------------------------
    @property
    def gate_grad(self) -> Tensor | None:
        """dL/dg (N,) after backward of an architecture step (0 outside `gated_indices`)."""
        return None if self.binary_gates is None else self.binary_gates.grad

    def set_arch_grad(self) -> None:
        """Add the binary-gate estimator to alpha.grad (Sec. 3.2.1, Eq. (4)); call after `backward()`.

        dL/dalpha_i += sum_j dL/dg_j p_j (delta_ij - p_i), over the pair with the pair's softmax in
        ``"two"`` mode and over all N with p otherwise. It is *added* to whatever backward already put in
        alpha.grad (the E[lat] term reaches alpha by autograd through `cost_probs()`), as the released
        `set_arch_param_grad()` does. If the active path is zero, alpha.grad is set to None: no update on
        this edge this step, not even from the latency term (released code; microsoft/nni#2272).
        """
        if not self._arch_step:
            raise UsageError("set_arch_grad() needs a preceding sample_arch_paths() and backward()")
        if self.active_is_zero:
            self.alpha.grad = None
            return
        gate_grad = self.gate_grad
        if gate_grad is None:
            # The loss did not depend on this edge's gates; dL/dg = 0 gives a zero estimator.
            gate_grad = torch.zeros_like(self.alpha)
        idx = torch.tensor(self.gated_indices, device=self.alpha.device)
        alpha = self.alpha.detach()
        p = F.softmax(alpha[idx], dim=0)
        weighted = gate_grad[idx] * p  # v_j = dL/dg_j p_j
        est = weighted - p * weighted.sum()  # sum_j v_j (delta_ij - p_i) = v_i - p_i sum_j v_j
        if self.alpha.grad is None:
            self.alpha.grad = torch.zeros_like(alpha)
        self.alpha.grad.index_add_(0, idx, est.to(self.alpha.grad.dtype))
        if self._mode.pair:
            self._alpha_before = alpha[idx].clone()

    @torch.no_grad()
    def rescale_pair(self) -> None:
        """After the architecture optimiser step (``"two"`` mode): keep unsampled probabilities fixed.

        offset = log(sum_pair e^{alpha_new} / sum_pair e^{alpha_old}) is subtracted from both pair alphas
        (`rescale_updated_arch_param`), so sum_pair e^alpha -- hence the pair's mass and every unsampled
        p_k -- is what it was before the step. A no-op in the other modes and after a zero-active step, so
        a training loop may call it unconditionally.
        """
        if not self._mode.pair or self._alpha_before is None:
            return
        idx = torch.tensor(self.gated_indices, device=self.alpha.device)
        offset = torch.logsumexp(self.alpha[idx], 0) - torch.logsumexp(self._alpha_before, 0)
        self.alpha[idx] -= offset
        self._alpha_before = None

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, names={list(self.names)}"


class AllPathsEdge(CandidateEdge):
    """DARTS-style mixed op y = sum_i softmax(alpha)_i o_i(x): every path runs and keeps activations.

    The N x memory baseline that ProxylessNAS's binarised paths are measured against (Sec. 3.2,
    "One-Shot and DARTS ... memory grows linearly w.r.t. N"). Zero candidates contribute 0 (not run);
    the block adds its shortcut as usual.
    """

    def forward(self, x: Tensor) -> Tensor:
        probs = self.probs
        out: Tensor | int = 0
        for k, (name, op) in enumerate(zip(self.names, self.candidates, strict=True)):
            if name != ZERO:
                out = out + probs[k] * op(x)
        return out  # type: ignore[return-value]


def mixed_edges(module: nn.Module) -> Iterator[CandidateEdge]:
    """Every mixed edge inside `module`, in module order."""
    for sub in module.modules():
        if isinstance(sub, CandidateEdge):
            yield sub


def architecture_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The alphas of every mixed edge: what the architecture optimiser (Adam) steps."""
    return [edge.alpha for edge in mixed_edges(module)]


def weight_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Every parameter except the alphas: what the weight optimiser (SGD) steps."""
    arch = {id(p) for p in architecture_parameters(module)}
    return [p for p in module.parameters() if id(p) not in arch]
