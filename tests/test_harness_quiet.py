"""A search prints the lines a user needs, not one Lightning banner per trained network."""

from __future__ import annotations

import logging

import pytest

from nasrepro.harness.recipe import Preset, TrainRecipe
from nasrepro.harness.run import TrainerFactory
from nasrepro.harness.training import trainer_for


@pytest.mark.parametrize("build", ["trainer_for", "TrainerFactory"])
def test_every_trainer_keeps_lightning_quiet_even_after_a_late_import(build):
    """Importing Lightning sets its logger to INFO, undoing a `quiet_lightning()` called before the
    import (a seed's spawned worker does exactly that), so the trainers quieten it themselves."""
    logger = logging.getLogger("lightning.pytorch")
    logger.setLevel(logging.INFO)  # what `import lightning.pytorch` does
    if build == "trainer_for":
        trainer_for(Preset("test", TrainRecipe(epochs=1, lr=0.1, batch_size=8), 1), accelerator="cpu")
    else:
        TrainerFactory(accelerator="cpu")(max_epochs=1)
    assert logger.level == logging.WARNING
