"""Speed of NASBOT's OTMANN distance, beside the reference implementation in the same run.

Run: `pytest benchmarks/test_nasbot_otmann_bench.py -s` (prints the side-by-side numbers).

* per pair: all 144 ordered pairs of dragonfly's 12 example CNNs (4 OT solves = 8 distances each).
  The reference (dragonfly-opt 0.1.7 `OTMANNDistanceComputer.evaluate_single`) runs in a
  subprocess of the dragonfly venv (`NASBOT_DRAGONFLY_PYTHON`, default /tmp/dfly/bin/python; see
  tests/goldens/make_otmann_dragonfly.py); without it that row is skipped.
* candidates x history: 200 candidates against a 500-network history (NASBOT's acquisition round),
  networks drawn around the example CNNs (units rescaled, conv sizes swapped, layers renumbered).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nasrepro.methods.nasbot.graph import CONV_LABELS, LayerGraph
from nasrepro.methods.nasbot.otmann import OTMANN

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "goldens" / "otmann_dragonfly.json"
DRAGONFLY_PYTHON = Path(os.environ.get("NASBOT_DRAGONFLY_PYTHON", "/tmp/dfly/bin/python"))


def example_cnns() -> list[LayerGraph]:
    nets = json.loads(GOLDEN.read_text())["families"]["cnn"]["networks"]
    return [
        LayerGraph(n["kind"], n["labels"], n["units"], n["strides"], tuple(map(tuple, n["edges"])))
        for n in nets
    ]


def variant(g: LayerGraph, rng: np.random.Generator) -> LayerGraph:
    """A nearby valid network: every unit count rescaled, some conv sizes swapped, renumbered."""
    labels = [
        str(rng.choice(CONV_LABELS)) if lab in CONV_LABELS and rng.random() < 0.3 else lab for lab in g.labels
    ]
    units = [None if u is None else max(8, int(u * rng.choice([0.5, 0.75, 1.0, 1.25, 2.0]))) for u in g.units]
    h = LayerGraph(g.kind, tuple(labels), tuple(units), g.strides, g.edges)
    return h.renumbered(list(rng.permutation(h.num_layers)))


def ours_seconds_per_pair(nets: list[LayerGraph], repeats: int = 5) -> float:
    otmann = OTMANN("cnn")
    best = float("inf")
    for _ in range(repeats):
        fresh = [LayerGraph.parse(str(g)) for g in nets]  # no cached features: they count too
        start = time.perf_counter()
        otmann.matrix(fresh, fresh)
        best = min(best, (time.perf_counter() - start) / len(nets) ** 2)
    return best


def reference_seconds_per_pair(repeats: int = 5) -> float | None:
    if not DRAGONFLY_PYTHON.exists():
        return None
    script = ROOT / "tests" / "goldens" / "make_otmann_dragonfly.py"
    done = subprocess.run(
        [str(DRAGONFLY_PYTHON), str(script), "--time", "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_pair"]


@pytest.mark.benchmark(group="OTMANN per pair (12 example CNNs, 144 pairs x 4 solves)")
def test_otmann_per_pair_speed(benchmark) -> None:
    nets = example_cnns()
    otmann = OTMANN("cnn")
    result = benchmark.pedantic(lambda: otmann.matrix(nets, nets), rounds=10, iterations=1, warmup_rounds=1)
    assert result.shape == (8, 12, 12)


def test_otmann_side_by_side_with_the_reference() -> None:
    """Same machine, same moment: ours (features computed inside the timing) vs dragonfly's."""
    reference = reference_seconds_per_pair()
    if reference is None:
        pytest.skip(f"no dragonfly venv at {DRAGONFLY_PYTHON} (see tests/goldens/make_otmann_dragonfly.py)")
    ours = ours_seconds_per_pair(example_cnns())
    print(
        f"\nOTMANN per pair: nasrepro {ours * 1e3:.3f} ms, dragonfly-opt 0.1.7 {reference * 1e3:.3f} ms, "
        f"speed-up {reference / ours:.1f}x",
        file=sys.stderr,
    )
    assert reference / ours > 2.0  # issue target 3x; the margin absorbs a shared, loaded machine


def test_candidates_against_history() -> None:
    """Target: under 10 s on 2 free cores (reported, not asserted: timings are the machine's)."""
    rng = np.random.default_rng(0)
    base = example_cnns()
    pool = [variant(base[i % len(base)], rng) for i in range(700)]
    history, candidates = pool[:500], pool[500:]
    otmann = OTMANN("cnn")
    workers = min(2, os.cpu_count() or 1)
    start = time.perf_counter()
    d = otmann.matrix(candidates, history, workers=workers)
    seconds = time.perf_counter() - start
    print(f"\nOTMANN 200 candidates x 500 history ({workers} workers): {seconds:.2f} s", file=sys.stderr)
    assert d.shape == (8, 200, 500) and np.isfinite(d).all()
    np.testing.assert_allclose(d[:, :3, :4], otmann.matrix(candidates[:3], history[:4]), rtol=1e-12)
