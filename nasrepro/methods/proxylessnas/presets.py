"""ProxylessNAS's supernet sizes per (space family, preset), as data (read by `search`).

``mbconv`` rows are the proxyless-* spaces, ``nb201`` rows NAS-Bench-201. ``smoke`` is a handful of
batches (seconds), ``cpu`` about 10-15 min on 2 cores, ``paper`` the released ImageNet recipe
(``imagenet_arch_search.py``: 40 warm-up + 120 joint epochs, batch 256). The paper never ran on
NAS-Bench-201 and released no CIFAR search code, so the ``paper`` rows of those spaces are ours,
labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from nasrepro.harness.oneshot import PresetSizes


@dataclass(frozen=True)
class SearchBudget:
    """How big one supernet fit is at one preset (a row of `SEARCH_PRESETS`)."""

    warmup_epochs: int
    epochs: int
    batch_size: int
    arch_batch_size: int
    #: training images used for weight steps (None: the task's whole train part)
    train_subset: int | None
    #: cap on weight steps per epoch (None: the whole train part)
    train_batches: int | None
    rl_updates_per_epoch: int
    derived_eval_batches: int
    #: NB201 supernet width and cells per stage (ignored on MBConv spaces)
    nb201_C: int = 16  # noqa: N815
    nb201_N: int = 5  # noqa: N815
    note: str = ""


SEARCH_PRESETS: PresetSizes[SearchBudget] = PresetSizes("proxylessnas", {
    ("mbconv", "smoke"): SearchBudget(1, 2, 8, 8, 80, 5, 2, 1, note="3 epochs x 5 batches of 8: seconds"),
    ("mbconv", "cpu"): SearchBudget(
        2, 6, 64, 64, 2_560, None, 20, 2,
        note="2 warm-up + 6 joint epochs on 2,560 images (40 batches of 64): ~10 min on 2 idle cores "
        "(weight step ~1.2 s, full_v2 arch step ~2.5 s); alpha stays near uniform at this scale",
    ),
    ("mbconv", "paper"): SearchBudget(
        40, 120, 256, 256, None, None, 300, 4,
        note="released imagenet_arch_search.py: 40 warm-up + 120 joint epochs, batch 256",
    ),
    ("nb201", "smoke"): SearchBudget(
        1, 2, 8, 8, 80, 5, 2, 1, nb201_C=8, nb201_N=1, note="C=8, N=1; 3 epochs x 5 batches of 8: seconds"
    ),
    ("nb201", "cpu"): SearchBudget(
        2, 8, 64, 64, 5_000, None, 20, 2, nb201_C=16, nb201_N=1,
        note="C=16, N=1 (one cell per stage); 2 + 8 epochs on 5,000 images (78 batches of 64): ~6-13 min on 2 cores",
    ),
    ("nb201", "paper"): SearchBudget(
        15, 50, 64, 64, None, None, 300, 4, nb201_C=16, nb201_N=5,
        note="ours (ProxylessNAS never ran on NB201): NB201's search net C=16, N=5, batch 64, DARTS-on-NB201's "
        "50 epochs plus 15 warm-up epochs (about the released 40:120 ratio)",
    ),
})  # fmt: skip
