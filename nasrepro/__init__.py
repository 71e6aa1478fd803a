"""nasrepro: a benchmark and reproduction suite for neural architecture search.

Data flows one way: task -> space -> method (search) -> evaluator -> record -> leaderboard.
"""

import logging
import warnings

__version__ = "0.1.0"

# torch_geometric 2.8 applies `torch.jit.script` to two classes at import time
# (nn/pool/select/base.py `SelectOutput`, nn/pool/connect/base.py `ConnectOutput`), which the installed torch
# (2.14) answers with a FutureWarning: two lines on every command's stderr that no user can act on. It is
# the dependency's to fix; nasrepro itself never calls `torch.jit.script`. Silenced here, before any
# of the modules that import PyG (tasks, spaces, methods) loads, by exact message and issuing module.
warnings.filterwarnings(
    "ignore",
    message=r"`torch\.jit\.script` is deprecated",
    category=FutureWarning,
    module=r"torch\.jit\._script",
)
# Lightning 2.6 builds torch's deprecated `LeafSpec` in its own pytree copy at every fit
# (lightning/pytorch/utilities/_pytree.py), one FutureWarning per live command; also not ours.
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"lightning\.pytorch\.utilities\._pytree",
)
# torch logs at import of `torch.utils.cpp_extension` (pulled in by `torch.utils.benchmark`) that a CUDA
# toolkit exists without a CUDA runtime: noise on CPU machines, for every entry point (the CLI, the
# study and rerun modules, worker processes), so it is silenced once here.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
