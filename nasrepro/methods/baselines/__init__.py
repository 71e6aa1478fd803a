"""The yardsticks every NAS claim needs (Lindauer & Hutter 2020, best practice 8): random sampling,
random search and regularized evolution, runnable on every space through the same contract."""

from nasrepro.methods.baselines import evolution, random_search  # noqa: F401  (registration)
