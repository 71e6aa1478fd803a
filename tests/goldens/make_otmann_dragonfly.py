"""Golden OTMANN values from the reference implementation (dragonfly-opt `nn/otmann.py`).

Runs ONLY in a separate venv with dragonfly (never imported by the test suite, which reads the
committed JSON):

    python3 -m venv /tmp/dfly
    /tmp/dfly/bin/pip install 'numpy<1.24' 'scipy<1.11' setuptools wheel
    /tmp/dfly/bin/pip install --no-build-isolation dragonfly-opt 'pot<0.9.4'
    /tmp/dfly/bin/python tests/goldens/make_otmann_dragonfly.py > tests/goldens/otmann_dragonfly.json
    /tmp/dfly/bin/python tests/goldens/make_otmann_dragonfly.py --time   # reference ms per pair

The networks are dragonfly's own examples (`nn_examples.generate_cnn_architectures`,
`generate_mlp_architectures('reg'/'class')`), exported after dragonfly's topological sort as plain
lists (labels, units, strides, edges) so nasrepro can rebuild them without dragonfly. The blocked
MLPs shuffle their activations with numpy's global RNG, hence the fixed seed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import time

import numpy as np
from dragonfly.nn import nn_examples, otmann

SEED = 0
STRUCT_COEFFS = [0.1, 0.25, 0.61, 1.5]
MISLABEL_COEFFS = [1.0, 1.0, 1.0, 1.0]


#: Layers whose unit count dragonfly never reads (ip emits 1 channel, pools pass channels on, ip/op
#: and decision layers weigh zeta). `get_blocked_mlp` misaligns its unit list (it extends the list
#: of block sizes in place), so its ip/linear/op layers carry stray numbers; they are exported as None.
_NO_UNITS = {"ip", "op", "softmax", "linear", "max-pool", "avg-pool"}


def _plain(value):
    if value is None:
        return None
    return int(value)


def export(nn, kind: str) -> dict:
    """A dragonfly network as plain lists, plus the reference's own masses and path lengths."""
    rows, cols = nn.conn_mat.nonzero()
    groups = otmann.CNN_STRUCTURAL_PENALTY_GROUPS if kind == "cnn" else otmann.MLP_STRUCTURAL_PENALTY_GROUPS
    categories = [g + "-" + t for g in groups for t in otmann.PATH_LENGTH_TYPES]
    from_ip, to_op = nn.get_bkwd_ip_fwd_op_dists_of_all_layers(categories)
    strides = getattr(nn, "strides", [None] * nn.num_layers)
    return {
        "kind": kind,
        "labels": list(nn.layer_labels),
        "units": [
            None if label in _NO_UNITS else _plain(u)
            for label, u in zip(nn.layer_labels, nn.num_units_in_each_layer, strict=True)
        ],
        "strides": [_plain(s) for s in strides],
        "edges": sorted([int(a), int(b)] for a, b in zip(rows, cols, strict=True)),
        "masses": [float(m) for m in nn.layer_masses],
        "path_length_categories": categories,
        "from_ip": np.asarray(from_ip, dtype=float).tolist(),
        "to_op": np.asarray(to_op, dtype=float).tolist(),
    }


def families() -> dict[str, tuple[str, list]]:
    np.random.seed(SEED)
    return {
        "cnn": ("cnn", nn_examples.generate_cnn_architectures()),
        "mlp-reg": ("mlp-reg", nn_examples.generate_mlp_architectures("reg")),
        "mlp-class": ("mlp-class", nn_examples.generate_mlp_architectures("class")),
    }


def distances(kind: str, nns: list) -> list:
    """dragonfly's 8 distances per pair: [d(.1), dbar(.1), d(.25), dbar(.25), ...] -> [8][n][n]."""
    computer = otmann.get_default_otmann_distance_computer(kind, non_assignment_penalty=1.0)
    out = computer(nns, nns)
    return [np.asarray(m, dtype=float).tolist() for m in out]


def transports(kind: str, nns: list) -> list:
    """Full plans for a few pairs (struct coeff 0.61), to compare plans' costs entry by entry."""
    computer = otmann.get_default_otmann_distance_computer(kind, non_assignment_penalty=1.0)
    found = []
    for i, j in [(0, 1), (2, 3), (len(nns) - 2, len(nns) - 1)]:
        lmm = computer.get_mislabel_cost_matrix(nns[i], nns[j])
        struct = computer.get_struct_cost_matrix(nns[i], nns[j])
        cost = computer.get_ot_cost_matrix(lmm, struct, 1.0, 0.61, 1.0)
        found.append({"pair": [i, j], "struct_coeff": 0.61, "cost": cost.tolist()})
    return found


def timing(repeats: int) -> dict:
    """Reference seconds per pair over all ordered pairs of the 12 example CNNs (4 solves each)."""
    nns = families()["cnn"][1]
    computer = otmann.get_default_otmann_distance_computer("cnn", non_assignment_penalty=1.0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for a in nns:
            for b in nns:
                computer.evaluate_single(a, b)
        best = min(best, (time.perf_counter() - start) / len(nns) ** 2)
    return {"seconds_per_pair": best, "pairs": len(nns) ** 2, "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time", action="store_true", help="print the reference's time per pair as JSON")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.time:
        print(json.dumps(timing(args.repeats)))
        return
    golden = {
        "source": "dragonfly-opt nn/otmann.py get_default_otmann_distance_computer(non_assignment_penalty=1.0)",
        "versions": {
            "dragonfly-opt": importlib.metadata.version("dragonfly-opt"),
            "POT": importlib.metadata.version("POT"),
            "numpy": np.__version__,
            "scipy": importlib.metadata.version("scipy"),
            "python": platform.python_version(),
        },
        "generator": "tests/goldens/make_otmann_dragonfly.py",
        "numpy_seed": SEED,
        "non_assignment_penalty": 1.0,
        "mislabel_coeffs": MISLABEL_COEFFS,
        "struct_coeffs": STRUCT_COEFFS,
        "distance_order": "for each struct coeff: lp (raw d), emd (normalised d)",
        "families": {},
    }
    for name, (kind, nns) in families().items():
        golden["families"][name] = {
            "networks": [export(nn, kind) for nn in nns],
            "distances": distances(kind, nns),
            "cost_matrices": transports(kind, nns),
        }
    json.dump(golden, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
