"""OTMANN, the optimal-transport distance between layer graphs (Kandasamy et al. 2018, Sec. 3;
reference code: dragonfly `nn/otmann.py`, `utils/oper_utils.opt_transport`).

Each layer of G1 supplies its mass, each layer of G2 demands its mass; moving a unit of mass from
layer i to layer j costs

    C(i, j) = mislabel_coeff * C_lmm(i, j) + struct_coeff * C_str(i, j)                (Sec. 3.1)

with C_lmm the label-mismatch cost (`label_mismatch_costs`, x the non-assignment penalty nas) and
C_str the structural cost: the mean absolute difference of the layers' path-length features from
ip, plus the same to op, halved (`LayerGraph.path_lengths`). A dummy layer on each side absorbs
unassigned mass at cost nas (dummy<->dummy 0); supplies [m1, sum m2] and demands [m2, sum m1]
balance. d = sum(T * C) is the raw distance ("lp"), d / (tm1 + tm2) the normalised one ("emd").
Infinite costs are replaced by 7.65432e5, as in the reference.

Solving: the reference program verbatim -- the augmented (n1+1) x (n2+1) problem normalised to
unit mass and solved by POT's network simplex (the C++ `emd_c` that `ot.emd` wraps, called directly
with `ot.emd`'s own marginal rescaling; `ot.emd` itself if that module is missing or the solver
stops early). Speed comes from doing everything else once: masses, path-length features and
label codes are cached per graph, the cost matrices of a pair are built once for all k
coefficient pairs, and `matrix` builds one row network's structural costs against all layers of
the other list in one broadcast. (A per-label-class block decomposition of the program is exact
too -- edges costing >= 2 nas are never used -- but measured no faster on 8-45-layer networks.)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.graph import (
    CONV_LABELS,
    LABELS,
    MLP_RECTIFIERS,
    MLP_SIGMOIDS,
    NB201_CONV_LABELS,
    POOL_LABELS,
    LayerGraph,
)

REPLACE_INF_WITH = 7.65432e5
#: conv <-> res costs 0.9 x (filter-size cost) + 0.1 x nas (reference CONV_RES_RAW_COST_FRAC)
CONV_RES_RAW_COST_FRAC = 0.9
#: the reference's conv filter-size scale: sqrt(2)/10 * sqrt(|k - k'|)
CONV_SCALE = np.sqrt(2) / 10.0
POOL_POOL_COST = 0.5
#: The kernel's defaults (`get_default_otmann_distance_computer`): 4 OT solves per pair.
DEFAULT_MISLABEL_COEFFS: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
DEFAULT_STRUCT_COEFFS: tuple[float, ...] = (0.1, 0.25, 0.61, 1.5)
_NUM_ITER_MAX = 100000

try:  # POT's network simplex without `ot.emd`'s per-call bookkeeping (same C++ solver)
    from ot.lp.emd_wrap import emd_c as _emd_c
except ImportError:  # pragma: no cover - other POT layouts
    _emd_c = None


# --- label-mismatch costs (Sec. 3.1, App. table; code values) --------------------------------


def _cnn_label_cost(a: str, b: str, nas: float) -> float:
    if a == b:
        return 0.0
    a_conv, b_conv = a in CONV_LABELS + NB201_CONV_LABELS, b in CONV_LABELS + NB201_CONV_LABELS
    if a_conv and b_conv:
        raw = CONV_SCALE * np.sqrt(float(abs(int(a[-1]) - int(b[-1]))))
        if a[:-1] == b[:-1]:  # conv <-> conv or res <-> res
            return raw
        # conv <-> res: between the conv-conv cost and the non-assignment penalty
        return raw if raw > nas else CONV_RES_RAW_COST_FRAC * raw + (1 - CONV_RES_RAW_COST_FRAC) * nas
    if a in POOL_LABELS and b in POOL_LABELS:
        return POOL_POOL_COST
    return np.inf


def _mlp_label_cost(a: str, b: str, nas: float) -> float:
    if a == b:
        return 0.0
    if (a in MLP_RECTIFIERS and b in MLP_RECTIFIERS) or (a in MLP_SIGMOIDS and b in MLP_SIGMOIDS):
        return 0.1
    activations = MLP_RECTIFIERS + MLP_SIGMOIDS
    if a in activations and b in activations:
        return 0.25
    return np.inf


#: the NB201 view prices conv1 <-> conv3 with the CNN filter-size rule: sqrt(2)/10 * sqrt(2) = 0.2
_LABEL_COST = {
    "cnn": _cnn_label_cost,
    "mlp-reg": _mlp_label_cost,
    "mlp-class": _mlp_label_cost,
    "nb201": _cnn_label_cost,
}


@functools.cache
def label_mismatch_costs(kind: str, non_assignment_penalty: float = 1.0) -> np.ndarray:
    """The label-mismatch matrix over `LABELS[kind]`, every entry x nas (reference
    `get_cnn/mlp_layer_label_mismatch_penalties`); inf where labels may never be matched."""
    labels = LABELS[kind]
    nas = float(non_assignment_penalty)
    costs = np.array([[_LABEL_COST[kind](a, b, nas) * nas for b in labels] for a in labels])
    costs.setflags(write=False)
    return costs


# --- the transport program ---------------------------------------------------------------------


@dataclass(frozen=True)
class Transport:
    """One solved OTMANN program: augmented cost matrix and plan (last row/column = dummies)."""

    cost: np.ndarray
    plan: np.ndarray
    supplies: np.ndarray
    demands: np.ndarray

    @property
    def distance(self) -> float:
        """The raw OTMANN distance d = sum(T * C)."""
        return float(np.sum(self.plan * self.cost))

    @property
    def normalised(self) -> float:
        """d / (tm1 + tm2): in [0, nas] since routing everything through the dummies costs nas."""
        return self.distance / float(self.supplies.sum())


def _emd(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The reference `opt_transport`: normalise to unit mass, network simplex, rescale."""
    total = a.sum()
    a, b = a / total, b / b.sum()
    if _emd_c is not None:
        b = b * (a.sum() / b.sum())  # exactly what `ot.emd` does before calling the solver
        plan, _, _, _, code = _emd_c(a, b, np.ascontiguousarray(cost), _NUM_ITER_MAX, 1)
        if code == 1:  # OPTIMAL
            return plan * total
    return _pot_emd(a, b, cost) * total


def _pot_emd(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """`ot.emd` itself (checks marginals, warns when the solver stops before the optimum)."""
    import ot

    return ot.emd(a, b, cost)


def _augment(cost: np.ndarray, nas: float) -> np.ndarray:
    """Add the dummy row and column (cost nas, dummy <-> dummy 0) and cap infinities."""
    n1, n2 = cost.shape
    out = np.full((n1 + 1, n2 + 1), nas)
    out[:n1, :n2] = cost
    out[n1, n2] = 0.0
    out[~np.isfinite(out)] = REPLACE_INF_WITH
    return out


def _emd_cost(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """sum(T * C) of the optimal plan for unit-mass supplies a and demands b, where b has already
    been rescaled to a's sum as `ot.emd` does (`_balanced`)."""
    if _emd_c is not None:
        _, value, _, _, code = _emd_c(a, b, cost, _NUM_ITER_MAX, 1)
        if code == 1:  # OPTIMAL
            return float(value)
    return float(np.sum(_pot_emd(a, b, cost) * cost))  # POT's own wrapper: solves again and warns


def _balanced(m1: np.ndarray, m2: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit-mass supplies [m1, sum m2] and demands [m2, sum m1], and the total tm1 + tm2."""
    t1, t2 = float(m1.sum()), float(m2.sum())
    total = t1 + t2
    a = np.concatenate((m1, [t2])) / total
    b = np.concatenate((m2, [t1])) / total
    return a, b * (a.sum() / b.sum()), total


class OTMANN:
    """OTMANN for one network kind with the kernel's coefficient pairs.

    `pair(g1, g2)` returns the 2k distances [d(c1), dbar(c1), d(c2), dbar(c2), ...] (the
    reference's ``dist_type='lp-emd'`` order); `matrix(X1, X2)` the (2k, n1, n2) array for two
    lists, with the structural costs of one row network against all layers of X2 built at once.
    """

    def __init__(
        self,
        kind: str,
        non_assignment_penalty: float = 1.0,
        mislabel_coeffs: Sequence[float] = DEFAULT_MISLABEL_COEFFS,
        struct_coeffs: Sequence[float] = DEFAULT_STRUCT_COEFFS,
    ) -> None:
        if kind not in LABELS:
            raise UsageError(f"unknown NASBOT network kind {kind!r}; choose from {', '.join(LABELS)}")
        if len(mislabel_coeffs) != len(struct_coeffs) or not struct_coeffs:
            raise UsageError(
                f"OTMANN needs one mislabel coefficient per structural coefficient, got {len(mislabel_coeffs)} "
                f"and {len(struct_coeffs)}"
            )
        nas = float(non_assignment_penalty)
        if not (nas > 0 and 2 * nas < REPLACE_INF_WITH):
            raise UsageError(f"the non-assignment penalty must be in (0, {REPLACE_INF_WITH / 2}), got {nas}")
        self.kind = kind
        self.nas = nas
        self.mislabel_coeffs = tuple(float(c) for c in mislabel_coeffs)
        self.struct_coeffs = tuple(float(c) for c in struct_coeffs)
        self._lmm = label_mismatch_costs(kind, nas)

    # cost matrices ------------------------------------------------------------------------------

    def _check(self, g: LayerGraph) -> None:
        if g.kind != self.kind:
            raise UsageError(f"this OTMANN compares {self.kind} networks, got a {g.kind} graph: {g}")

    def cost_matrices(self, g1: LayerGraph, g2: LayerGraph) -> tuple[np.ndarray, np.ndarray]:
        """(C_lmm, C_str) between the layers of g1 (rows) and g2 (columns)."""
        self._check(g1)
        self._check(g2)
        return self._lmm[np.ix_(g1.label_codes, g2.label_codes)], _struct_costs(
            g1.path_lengths, g2.path_lengths
        )

    def transport(self, g1: LayerGraph, g2: LayerGraph, index: int = 0) -> Transport:
        """The solved program for coefficient pair `index`, with its full augmented plan."""
        lmm, struct = self.cost_matrices(g1, g2)
        cost = self.mislabel_coeffs[index] * lmm + self.struct_coeffs[index] * struct
        supplies = np.append(g1.masses, g2.masses.sum())
        demands = np.append(g2.masses, g1.masses.sum())
        augmented = _augment(cost, self.nas)
        return Transport(augmented, _emd(supplies, demands, augmented), supplies, demands)

    # distances ----------------------------------------------------------------------------------

    def pair(self, g1: LayerGraph, g2: LayerGraph) -> np.ndarray:
        """[d(c1), dbar(c1), ..., d(ck), dbar(ck)] for the coefficient pairs c1..ck."""
        lmm, struct = self.cost_matrices(g1, g2)
        return self._pair_from_costs(g1, g2, lmm, struct)

    def _pair_from_costs(
        self, g1: LayerGraph, g2: LayerGraph, lmm: np.ndarray, struct: np.ndarray
    ) -> np.ndarray:
        """The 2k distances from the pair's two cost matrices (built once for all k coefficients)."""
        a, b, total = _balanced(g1.masses, g2.masses)
        out = np.empty(2 * len(self.struct_coeffs))
        infinite = ~np.isfinite(lmm)
        lmm0 = np.where(infinite, 0.0, lmm)
        augmented = np.full((lmm.shape[0] + 1, lmm.shape[1] + 1), self.nas)
        augmented[-1, -1] = 0.0
        inner = augmented[:-1, :-1]
        for k, (mc, sc) in enumerate(zip(self.mislabel_coeffs, self.struct_coeffs, strict=True)):
            np.multiply(struct, sc, out=inner)  # = mc * C_lmm + sc * C_str, infinities capped
            inner += mc * lmm0
            inner[infinite] = REPLACE_INF_WITH
            out[2 * k] = _emd_cost(a, b, augmented) * total
        out[1::2] = out[0::2] / total
        return out

    def matrix(
        self, X1: Sequence[LayerGraph], X2: Sequence[LayerGraph] | None = None, workers: int = 1
    ) -> np.ndarray:
        """(2k, len(X1), len(X2)) distances; X2 defaults to X1 (then only i <= j is solved).
        `workers` > 1 splits the rows of a rectangular matrix over that many processes."""
        symmetric = X2 is None
        X2 = X1 if X2 is None else X2
        for g in (*X1, *X2):
            self._check(g)
        if workers > 1 and not symmetric and len(X1) > 1:
            from concurrent.futures import ProcessPoolExecutor

            chunks = [list(chunk) for chunk in np.array_split(np.arange(len(X1)), min(workers, len(X1)))]
            with ProcessPoolExecutor(len(chunks)) as pool:
                parts = pool.map(
                    self.matrix, [[X1[i] for i in chunk] for chunk in chunks], [X2] * len(chunks)
                )
                return np.concatenate(list(parts), axis=1)
        out = np.zeros((2 * len(self.struct_coeffs), len(X1), len(X2)))
        if not X1 or not X2:
            return out
        offsets = np.cumsum([0] + [g.num_layers for g in X2])
        codes2 = np.concatenate([g.label_codes for g in X2])
        from_ip2 = np.concatenate([g.path_lengths[0] for g in X2])
        to_op2 = np.concatenate([g.path_lengths[1] for g in X2])
        for i, g1 in enumerate(X1):
            start = i if symmetric else 0
            lo = offsets[start]
            lmm_all = self._lmm[np.ix_(g1.label_codes, codes2[lo:])]
            struct_all = _struct_costs(g1.path_lengths, (from_ip2[lo:], to_op2[lo:]))
            for j in range(start, len(X2)):
                cols = slice(offsets[j] - lo, offsets[j + 1] - lo)
                out[:, i, j] = self._pair_from_costs(g1, X2[j], lmm_all[:, cols], struct_all[:, cols])
                if symmetric:
                    out[:, j, i] = out[:, i, j]
        return out


def _struct_costs(
    features1: tuple[np.ndarray, np.ndarray], features2: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """C_str: (mean |from-ip feature differences| + mean |to-op feature differences|) / 2."""
    (from_ip1, to_op1), (from_ip2, to_op2) = features1, features2
    backward = np.abs(from_ip1[:, None, :] - from_ip2[None, :, :]).mean(axis=2)
    forward = np.abs(to_op1[:, None, :] - to_op2[None, :, :]).mean(axis=2)
    return (backward + forward) / 2
