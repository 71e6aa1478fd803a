"""MemNet / MemNAS (Liu, Wu, Ma & Seok, arXiv 1907.09569; CVPR 2020): memory-efficiency guided
grow-trim search (``memnet``) and its random-ranking ablation (``memnet-random``)."""

from nasrepro.methods.memnet import search  # noqa: F401  (registration)
