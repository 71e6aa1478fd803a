"""NAO and NAO-WS (Luo, Tian, Qin, Chen & Liu, "Neural Architecture Optimization", NeurIPS 2018).

* `encoding` -- token encodings of the four cell spaces NAO searches, with exact round trips,
  grammar masks and the symmetric (branch-swap) augmentation;
* `epd` -- the encoder-predictor-decoder as one LightningModule, and the gradient step in its
  embedding space that proposes new architectures;
* `search` -- the search driver ``nao`` (seed pool, EPD rounds, gradient-ascent generation).
"""

from nasrepro.methods.nao import search  # noqa: F401  (registration)
