"""What NAO-WS does differently per task, by task name (`WS_TASKS`): CIFAR-10 searches the
convolutional cell (NAO_pytorch ``NAO_V1/train_search.py``), PTB the recurrent cell (renqianluo/NAO
``NAO-WS/rnn/train_search.py``). The search driver (`ws_search`) looks the task up once and passes
the object below; everything else -- the seed pool, the fit, the controller rounds, the EPD, the
final training -- is one code path.

A `WSTask` gives: the spaces it can search, the `WS_PRESETS` family sizing its fit, the token
encoding and controller settings of the released script (`WSOptions`), the supernet, the held-out
loader that scores architectures, the search module, the re-ranking spec and the final recipe.
Heavy imports (torch, Lightning) stay inside the methods, so refusing a bad request is cheap.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasrepro.registry import Registry
from nasrepro.spaces.nao_cells import WS_OPS, NaoCellSpace
from nasrepro.spaces.nao_rnn_cells import NaoRnnCellSpace

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import DataLoader

    from nasrepro.harness.run import Run
    from nasrepro.harness.space import Space
    from nasrepro.methods.nao.ws_rerank import RerankSpec

#: NAO_V1 ``train_cifar.py``'s auxiliary loss weight and drop probability (1 - drop_path_keep_prob)
FINAL_REGULARISERS = {"aux_weight": 0.4, "drop_path": 0.2}


@dataclass(frozen=True)
class WSOptions:
    """Supernet-training and controller settings whose released defaults differ between the two
    scripts; an option the user leaves None takes the task's value (`WSTask.options`)."""

    lr: float
    lr_min: float
    momentum: float
    weight_decay: float
    grad_clip: float
    mlp_layers: int
    mlp_dropout: float
    encoder_dropout: float
    max_eta: float
    #: DARTS's temporal activation regularisation weight (``beta``); 0 on images
    tar_beta: float = 0.0


class WSTask(ABC):
    """NAO-WS's per-task parts (see the module docstring)."""

    #: the `WS_PRESETS` family whose rows size the fit
    family: str
    #: the registered token encoding (`encoding.CODECS`) of this task's cells
    codec: str
    #: the space searched when ``--space`` is not given (a smoke-size final network)
    default_space: str
    defaults: WSOptions
    #: tokens concatenated per encoder step (``source_length / encoder_length`` of the script)
    tokens_per_step: int = 2

    def options(self, config: Any) -> WSOptions:
        """The task's defaults with `config`'s non-None values on top."""
        given = {f.name: getattr(config, f.name, None) for f in dataclasses.fields(WSOptions)}
        return dataclasses.replace(self.defaults, **{k: v for k, v in given.items() if v is not None})

    @abstractmethod
    def incompatibility(self, space: Space) -> str | None:
        """Why this task's supernet cannot search `space`, or None."""

    @abstractmethod
    def supernet(self, run: Run, space: Space, size: Any, config: Any) -> nn.Module: ...

    @abstractmethod
    def held_out(self, datamodule: Any, size: Any, seed: int) -> DataLoader: ...

    @abstractmethod
    def module_class(self) -> type: ...

    def module_kwargs(self, options: WSOptions) -> dict[str, Any]:
        return {}

    @abstractmethod
    def rerank_spec(self, run: Run, space: Space, size: Any, options: WSOptions) -> RerankSpec: ...

    @abstractmethod
    def final_recipe(self, preset_name: str) -> dict[str, Any]: ...


WS_TASKS: Registry[WSTask] = Registry("NAO-WS task")


class ImageWS(WSTask):
    """CIFAR-10: NAO_V1's convolutional supernet (`supernet.NAOSupernet`)."""

    family, codec, default_space = "nao-cells", "nao-ws", "nao-cells-n1f8"
    defaults = WSOptions(lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                         mlp_layers=3, mlp_dropout=0.1, encoder_dropout=0.0, max_eta=50.0)  # fmt: skip

    def incompatibility(self, space: Space) -> str | None:
        if not isinstance(space, NaoCellSpace) or space.ops != WS_OPS:
            return (
                "has a supernet over the 5-op NAO-WS cell only (nao-cells, nao-cells-n2f16, nao-cells-n1f8)"
            )
        return None

    def supernet(self, run: Run, space: Space, size: Any, config: Any) -> nn.Module:
        from nasrepro.methods.nao.supernet import NAOSupernet

        classes = int(getattr(run.task, "num_classes", 10))
        return NAOSupernet(size.layers, size.channels, classes, config.drop_path_keep, config.auxiliary)

    def held_out(self, datamodule: Any, size: Any, seed: int) -> DataLoader:
        from nasrepro.harness.oneshot import arch_loader

        return arch_loader(datamodule, size.arch_batch_size, seed)

    def module_class(self) -> type:
        from nasrepro.methods.nao.ws_module import WSSearchModule

        return WSSearchModule

    def rerank_spec(self, run: Run, space: Space, size: Any, options: WSOptions) -> RerankSpec:
        from nasrepro.methods.nao.ws_rerank import RerankSpec
        from nasrepro.spaces.nao_cells_net import NAONetwork

        classes = int(getattr(run.task, "num_classes", 10))
        changes = {"schedule": "cosine", "optimizer": "sgd", "lr": options.lr, "momentum": options.momentum,
                   "weight_decay": options.weight_decay, "grad_clip": options.grad_clip}  # fmt: skip
        return RerankSpec(lambda a: NAONetwork(a, classes, size.layers, size.channels), changes)

    def final_recipe(self, preset_name: str) -> dict[str, Any]:
        """NAO_V1 ``train_cifar.py``'s regularisers of the derived network at every preset: the
        auxiliary head's loss with weight 0.4 (``--use_aux_head``, ``loss += 0.4 * aux_loss``) and
        drop-path keep 0.8 (drop 0.2, ramped up over training; `harness.model_hooks`). At ``paper``
        also the rest beyond the space's optimiser: 600 epochs, batch 128, dropout 0.4 (``keep_prob``
        0.6), Cutout 16. At ``smoke`` the preset's sizes still win (`recipe.with_overrides`)."""
        recipe: dict[str, Any] = dict(FINAL_REGULARISERS)
        if preset_name == "paper":
            recipe.update(epochs=600, batch_size=128, dropout=0.4, cutout=16)
        return recipe


class LanguageWS(WSTask):
    """PTB: the recurrent-cell supernet (`rnn_supernet.NAORnnSupernet`), ``NAO-WS/rnn`` settings:
    child lr 0.25 constant, no momentum, weight decay 5e-7, clip 10 (``train_search.sh`` and
    ``train_search.py`` defaults), TAR beta 1e-3; controller MLP 4 x 200 without dropout, encoder
    dropout 0.1, 2 tokens per encoder step (``source_length`` 22, ``encoder_length`` 11, emb 48),
    eta up to 30 (``controller_max_step_size``)."""

    family, codec, default_space = "nao-rnn-cells", "ptb", "nao-rnn-cells-h32"
    defaults = WSOptions(lr=0.25, lr_min=0.25, momentum=0.0, weight_decay=5e-7, grad_clip=10.0,
                         mlp_layers=4, mlp_dropout=0.0, encoder_dropout=0.1, max_eta=30.0, tar_beta=1e-3)  # fmt: skip

    def incompatibility(self, space: Space) -> str | None:
        if not isinstance(space, NaoRnnCellSpace):
            return "has a supernet over NAO's recurrent cell only on ptb (nao-rnn-cells, nao-rnn-cells-h300, nao-rnn-cells-h32)"
        return None

    def lm_size(self, space: Space, size: Any) -> Any:
        """The space's dropouts at the search width (``size.channels`` hidden units)."""
        return dataclasses.replace(space.lm, hidden=size.channels)  # type: ignore[attr-defined]

    def supernet(self, run: Run, space: Space, size: Any, config: Any) -> nn.Module:
        from nasrepro.methods.nao.rnn_supernet import NAORnnSupernet

        return NAORnnSupernet(int(run.task.vocab_size), self.lm_size(space, size))  # type: ignore[attr-defined]

    def held_out(self, datamodule: Any, size: Any, seed: int) -> DataLoader:
        """Random windows of the validation stream cut into ``arch_batch_size`` streams (the code's
        ``val_data = batchify(corpus.valid, eval_batch_size)`` and a random window per scoring)."""
        import torch
        from torch.utils.data import DataLoader

        from nasrepro.tasks.ptb import BPTTWindows, batchify

        windows = BPTTWindows(batchify(datamodule.corpus.valid, size.arch_batch_size), datamodule.bptt)
        return DataLoader(
            windows, batch_size=None, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )

    def module_class(self) -> type:
        from nasrepro.methods.nao.ws_lm import WSLanguageModelSearch

        return WSLanguageModelSearch

    def module_kwargs(self, options: WSOptions) -> dict[str, Any]:
        return {"tar_beta": options.tar_beta}

    def rerank_spec(self, run: Run, space: Space, size: Any, options: WSOptions) -> RerankSpec:
        from nasrepro.methods.nao.ws_rerank import RerankSpec
        from nasrepro.spaces.nao_rnn_net import CellLanguageModel

        vocab, lm = int(run.task.vocab_size), self.lm_size(space, size)  # type: ignore[attr-defined]
        changes = {**space.recipe_overrides(run.task), "schedule": "constant"}
        return RerankSpec(
            lambda a: CellLanguageModel(a, vocab, lm), changes, "val/perplexity", maximise=False
        )

    def final_recipe(self, preset_name: str) -> dict[str, Any]:
        """At ``paper``: ``NAO-WS/rnn/train_final.sh`` (``train.py`` defaults) beyond the space's
        optimiser -- 4000 epochs, batch 64, bptt 35, validation batch 10, test batch 1, and the
        code's schedule (`tasks.lm_schedule`, ``lm_schedule: darts``): SGD at a constant lr (the
        task's per-epoch decay off) switched to averaged SGD after ``nonmono`` 5, AR 0 / TAR 1e-3,
        variable windows (``max_seq_len_delta`` 20), scored on the epoch of least validation loss
        (the code tests its best checkpoint). ``smoke`` and ``cpu`` keep the task's plain schedule."""
        if preset_name != "paper":
            return {}
        darts = {"lm_schedule": "darts", "nonmono": 5, "ar_alpha": 0.0, "tar_beta": 1e-3,
                 "variable_bptt": True, "max_seq_len_delta": 20}  # fmt: skip
        return {"epochs": 4000, "batch_size": 64, "select": "min-val-loss",
                "extra": {"bptt": 35, "eval_batch_size": 10, "test_batch_size": 1, **darts}}  # fmt: skip


WS_TASKS.add("cifar10", ImageWS())
WS_TASKS.add("ptb", LanguageWS())
