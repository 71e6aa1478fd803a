"""One NAO-WS controller round: train the EPD on the scored pool, then generate new architectures
(Luo et al. 2018, Sec. 3.2-3.4; NAO_pytorch ``NAO_V1/train_search.py``, after each evaluation point).

1. **Targets** (Sec. 3.2): the pool's weight-sharing accuracies, min-max normalised (1 = best).
2. **Train the EPD** (Eq. 1-3): ``epd_epochs`` epochs of Adam (a fresh optimiser every round, as the
   code builds ``nao_optimizer`` inside its loop; the EPD's weights carry over), loss
   ``trade_off * MSE + (1 - trade_off) * NLL``, gradient-norm clip, with the symmetric augmentation
   of Sec. 3.4 (one node's branches swapped per cell and draw, ``NAODataset(swap=True)``). A plain
   loop of the EPD's own loss: it runs inside the supernet's Lightning fit, which cannot nest another.
3. **Generate** (Sec. 3.3, Eq. 4): from the ``top_k`` best of the pool, gradient ascent in the
   embedding space with eta = eta_step, 2 eta_step, ... up to ``max_eta`` until ``new_archs``
   architectures not in the pool are decoded (``generate_new_arch`` loop; de-duplicated by the
   space's isomorphism key); the TF NAO-WS adds ``random_new`` uniform ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from nasrepro.errors import NasreproError
from nasrepro.methods.nao.encoding import Codec
from nasrepro.methods.nao.epd import (
    EPD,
    ArchDataset,
    hamming_distance,
    kendall_tau_b,
    normalise_scores,
    pairwise_accuracy,
)
from nasrepro.spaces.nao_cells import ConvArch, NaoCellSpace


@dataclass(frozen=True)
class ControllerSettings:
    new_archs: int
    top_k: int
    epd_epochs: int
    random_new: int = 0
    epd_batch_size: int = 100  # NAO_V1 ``controller_batch_size``
    max_eta: float = 50.0  # NAO_V1 ``max_step_size``
    eta_step: float = 1.0
    augment: bool = True


def fit_epd(epd: EPD, codec: Codec[Any], tokens: list[tuple[int, ...]], targets: np.ndarray,
            settings: ControllerSettings, seed: int) -> None:  # fmt: skip
    """`settings.epd_epochs` epochs of the EPD's joint loss on (tokens, targets) (Eq. 3)."""
    data = ArchDataset(
        codec, tokens, targets, augment=settings.augment and bool(codec.swap_groups), seed=seed
    )
    loader = DataLoader(
        data, batch_size=settings.epd_batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = epd.configure_optimizers()
    epd.train()
    for epoch in range(settings.epd_epochs):
        for batch in loader:
            batch = [t.to(epd.device) for t in batch]
            loss, mse, nll, _ = epd._losses(batch)  # the module's own Eq. 3 loss
            if not torch.isfinite(loss.detach()):
                raise NasreproError(
                    f"NAO-WS EPD loss is {loss.item()} in epoch {epoch} (mse {mse.item()}, nll {nll.item()})"
                )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(epd.parameters(), epd.hparams.grad_clip)
            optimizer.step()
    epd.eval()


def generate(epd: EPD, codec: Codec[Any], space: NaoCellSpace, seeds: list[tuple[int, ...]],
             seen: set[str], settings: ControllerSettings) -> tuple[list[tuple[int, ...]], float | None]:  # fmt: skip
    """Up to `settings.new_archs` sequences whose architectures are not in `seen`: every seed moved by
    eta = eta_step, 2 eta_step, ... <= max_eta in turn (``Encoder.infer``); also the last eta used."""
    known, out, last = set(seen), [], None
    seeds_t = torch.tensor(seeds, dtype=torch.long, device=epd.device)
    eta = settings.eta_step
    while len(out) < settings.new_archs and eta <= settings.max_eta + 1e-9:
        last = eta
        for row in epd.improve(seeds_t, eta).tolist():
            key = space.key(codec.from_tokens(row))
            if key not in known:
                known.add(key)
                out.append(tuple(row))
                if len(out) == settings.new_archs:
                    break
        eta += settings.eta_step
    return out, last


def controller_round(epd: EPD, codec: Codec[Any], space: NaoCellSpace, ranked: list[ConvArch],
                     scores: list[float], settings: ControllerSettings, seed: int) -> tuple[list[ConvArch], dict[str, Any]]:  # fmt: skip
    """New architectures for the pool (generated, then random), best first in `ranked`; and what
    the record keeps of the round. A failed EPD fit is reported and generates nothing."""
    info: dict[str, Any] = {"generated": 0, "random": 0, "last_eta": None, "failure": ""}
    tokens = [codec.to_tokens(a) for a in ranked]
    seen = {space.key(a) for a in ranked}
    new: list[ConvArch] = []
    try:
        targets = normalise_scores(scores, maximise=True)
        fit_epd(epd, codec, tokens, targets, settings, seed)
        with torch.no_grad():
            batch = torch.tensor(tokens, dtype=torch.long, device=epd.device)
            memory, emb = epd.encode(batch)
            predicted, decoded = epd.predict(emb), epd.generate(memory, emb)
        if len(tokens) >= 2:
            info["pairwise_accuracy"] = round(pairwise_accuracy(targets, predicted.cpu()), 4)
            tau = kendall_tau_b(targets, predicted.cpu())  # the pool is sorted: see kendall_tau_b
            info["kendall_tau_b"] = None if tau is None else round(tau, 4)
        info["reconstruction_exact"] = round(float((decoded == batch).all(-1).double().mean()), 4)
        info["hamming_distance"] = round(hamming_distance(decoded, batch), 4)
        found, info["last_eta"] = generate(epd, codec, space, tokens[: settings.top_k], seen, settings)
        new = [codec.from_tokens(seq) for seq in found]
    except NasreproError as error:
        info["failure"] = f"EPD training failed: {error}"
    info["generated"] = len(new)
    seen |= {space.key(a) for a in new}
    rng = np.random.default_rng(seed)
    for _ in range(settings.random_new * 1000):
        if info["random"] == settings.random_new:
            break
        arch = space.sample(rng)
        if space.key(arch) not in seen:
            seen.add(space.key(arch))
            new.append(arch)
            info["random"] += 1
    return new, info
