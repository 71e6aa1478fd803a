"""NASBOT (Kandasamy et al., NeurIPS 2018): layer graphs (`graph`), the OTMANN distance (`otmann`),
the GP surrogate (`gp`), the nine modifiers (`mutations`) and the evolutionary acquisition
optimiser (`ea`), the ``nasbot-mlp`` space (`space`), the ``nasbot-cnn`` space (`cnn_space`) with
its torch builder (`cnn`) and the ``nasbot`` method (`search`).

Importing `graph`/`otmann` stays cheap (numpy only); the method's torch code is imported when a
search runs.
"""

from nasrepro.methods.nasbot import cnn_space, search, space  # noqa: F401  (registration)
