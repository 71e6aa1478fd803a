"""FaDE (Neumeyer, Stier & Granitzer, IDA 2024, arXiv 2404.16218): the differentiable relative-performance
estimator on finite regions of hierarchical spaces and its (reconstructed) pseudo-gradient outer search,
registered as the method ``fade``."""

from nasrepro.methods.fade import search  # noqa: F401  (registration)
