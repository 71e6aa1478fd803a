"""NAO and NAO-WS (Luo, Tian, Qin, Chen & Liu, "Neural Architecture Optimization", NeurIPS 2018).

* `encoding` -- token encodings of the four cell spaces NAO searches, with exact round trips,
  grammar masks and the symmetric (branch-swap) augmentation;
* `epd` -- the encoder-predictor-decoder as one LightningModule, and the gradient step in its
  embedding space that proposes new architectures;
* `search` -- the search driver ``nao`` (seed pool, EPD rounds, gradient-ascent generation);
* `supernet`, `ws_module`, `ws_controller`, `ws_search` -- ``nao-ws``: the weight-sharing supernet
  over the NAO-WS cell (`nasrepro.spaces.nao_cells`), its fit with controller rounds at the
  evaluation points, and the search driver that re-ranks the best by training them.
"""

from nasrepro.methods.nao import search, ws_search  # noqa: F401  (registration)
