"""MemNet's training recipe: the prototype's ``utils/train.py`` defaults (fact sheet memnet.md Sec. 3.6).

``train.py`` is what the prototype trained its top-K candidates with (MemNAS README: "train.py
trains the top-K candidates"), and the fact sheet's final training is the same recipe (Sec. 5 step
6): CIFAR-10, pad-4 crop + flip + Cutout (1 hole, 16 px), SGD lr 0.01, momentum 0.9, batch 128,
MultiStepLR milestones 60/180/240 with gamma 0.1, 300 epochs. The optimiser part is the space's
(`MemNetSpace.recipe_overrides`, every preset); the rest is applied here at ``paper`` only, where
the run means the paper's setting. Weight decay and Nesterov are not recorded for ``train.py``, so
the ``cifar10`` task's (1e-4, off) are kept [reconstruction].
"""

from __future__ import annotations

from typing import Any

#: ``train.py``'s defaults as training-recipe fields (memnet.md Sec. 3.6)
PROTOTYPE_TRAIN: dict[str, Any] = {
    "epochs": 300,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "batch_size": 128,
    "schedule": "multistep",
    "milestones": (60, 180, 240),
    "gamma": 0.1,
    "cutout": 16,
}


def final_recipe(task_name: str, preset_name: str) -> dict[str, Any]:
    """The prototype's recipe on CIFAR-10 at ``paper``; the task's (and space's) elsewhere."""
    if task_name == "cifar10" and preset_name == "paper":
        return dict(PROTOTYPE_TRAIN)
    return {}
