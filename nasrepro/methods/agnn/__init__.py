"""AGNN / Auto-GNN (Zhou et al. 2019, arXiv 1909.03184): the reinforced conservative controller
(``agnn``) and its GraphNAS-style REINFORCE ablation (``graphnas-rl``)."""

from nasrepro.methods.agnn import search  # noqa: F401  (registration)
