"""FaDE's region-training sizes per (space family, preset), as data (read by `search`).

``hier`` rows are the hierarchical space on CIFAR-10 images, ``nb201`` rows NAS-Bench-201 (region
trained on CIFAR-10 images, final scores from the table). The authors trained on MNIST only and give
no CIFAR or NB-201 sizes: every row is ours. ``smoke`` is a few batches (well under a second per
region), ``cpu`` seconds to a minute per region on 2 cores, ``paper`` what a GPU run would use
(the authors' thesis-era settings: a few epochs on the whole 90% split).
"""

from __future__ import annotations

from dataclasses import dataclass

from nasrepro.harness.oneshot import PresetSizes


@dataclass(frozen=True)
class RegionBudget:
    """How big one region training is at one preset (a row of `REGION_PRESETS`)."""

    epochs: int
    batch_size: int
    arch_batch_size: int
    #: training images used (None: the task's whole train part)
    train_subset: int | None
    #: cap on steps per epoch (None: the whole train part)
    train_batches: int | None
    #: NB-201 region width and cells per stage (ignored on the hierarchical space)
    nb201_C: int = 16  # noqa: N815
    nb201_N: int = 5  # noqa: N815
    note: str = ""


REGION_PRESETS: PresetSizes[RegionBudget] = PresetSizes("fade", {
    ("hier", "smoke"): RegionBudget(1, 16, 16, 64, 2, note="1 epoch x 2 batches of 16: a fraction of a second"),
    ("hier", "cpu"): RegionBudget(
        3, 64, 64, 5_000, 40, note="3 epochs x 40 batches of 64 (2,560 of 5,000 images per epoch): ~10-30 s per region"
    ),
    ("hier", "paper"): RegionBudget(5, 128, 128, None, None, note="ours: 5 epochs on the 45k train part"),
    ("nb201", "smoke"): RegionBudget(
        1, 16, 16, 64, 2, nb201_C=8, nb201_N=1, note="C=8, N=1; 1 epoch x 2 batches of 16: about a second"
    ),
    ("nb201", "cpu"): RegionBudget(
        3, 64, 64, 5_000, 30, nb201_C=8, nb201_N=1,
        note="C=8, N=1; 3 epochs x 30 batches of 64: ~20-60 s per region of k=4 on 2 cores",
    ),
    ("nb201", "paper"): RegionBudget(
        5, 64, 64, None, None, nb201_C=16, nb201_N=5, note="ours: NB-201's search net C=16, N=5, 5 epochs"
    ),
})  # fmt: skip
