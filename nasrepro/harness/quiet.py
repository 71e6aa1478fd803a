"""Keep a run's output to the lines a user needs: dependencies' banners and chatter stay out.

Importing this module imports nothing heavy, so a table search that never trains never pays for
Lightning's import.
"""

from __future__ import annotations

import logging


def quiet_lightning() -> None:
    """Lightning's per-fit banners drown the one line a user needs; keep its warnings only."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
