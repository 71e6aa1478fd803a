"""NAO's encoder-predictor-decoder: paper settings, valid decoding, learning, the gradient step."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasrepro.errors import NasreproError, UsageError
from nasrepro.methods.nao.encoding import SOS, get_codec
from nasrepro.methods.nao.epd import (
    EPD,
    ArchDataset,
    hamming_distance,
    kendall_tau_b,
    normalise_scores,
    pairwise_accuracy,
)

NB201 = get_codec("nasbench201")
#: a planted score per (edge, token): convolutions good, `none` bad (as on NB201), plus per-edge noise;
#: token t is NB201 op t - 1 (none, skip, conv 1x1, conv 3x3, avg pool); column 0 is <sos>
PLANTED = np.array([0.0, -1.0, 0.0, 0.5, 1.0, 0.2]) + 0.1 * np.random.default_rng(42).normal(size=(6, 6))


def planted(tokens) -> float:
    return float(sum(PLANTED[e, t] for e, t in enumerate(tokens)))


def _trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def _fit(codec: str, tokens, targets, steps: int, seed: int, hidden: int = 32, augment: bool = False) -> EPD:
    L.seed_everything(seed, verbose=False)
    model = EPD(codec, hidden_size=hidden, mlp_hidden_size=hidden)
    data = ArchDataset(get_codec(codec), tokens, targets, augment=augment, seed=seed)
    loader = torch.utils.data.DataLoader(data, batch_size=50, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's "no workers" / "few batches" advice
        _trainer(steps).fit(model, loader)
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny sequential LSTM steps: extra threads only add synchronisation on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pool() -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = torch.tensor([NB201.grammar.sample(rng) for _ in range(300)])
    return tokens, normalise_scores([planted(t) for t in tokens.tolist()])


@pytest.fixture(scope="module")
def trained(pool) -> EPD:
    """An EPD fitted on 150 NB201 cells with the planted score (hidden 32, 200 Adam steps)."""
    tokens, targets = pool
    return _fit("nasbench201", tokens[:150].tolist(), targets[:150], steps=200, seed=0)


def test_paper_settings_and_shapes() -> None:
    model = EPD("nao-ws")
    assert (model.hparams.hidden_size, model.ratio, model.encoder_embedding.embedding_dim) == (96, 2, 48)
    assert model.encoder_rnn.input_size == 96 and model.hparams.trade_off == 0.8
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 1e-4
    assert sum(isinstance(m, torch.nn.Linear) for m in model.predictor) == 4  # 3 x 200 + regressor
    tokens = torch.tensor([get_codec("nao-ws").grammar.sample(np.random.default_rng(i)) for i in range(4)])
    memory, emb = model.encode(tokens)
    assert memory.shape == (4, 20, 96) and emb.shape == (4, 96)
    torch.testing.assert_close(memory.norm(dim=-1), torch.ones(4, 20))  # every step normalised
    torch.testing.assert_close(emb, F.normalize(memory.mean(1), dim=-1))
    scores, logits = model(tokens)
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()
    assert logits.shape == (4, 40, 12)


def test_joint_loss_weighs_mse_by_trade_off() -> None:
    model = EPD("nasbench201", hidden_size=16, mlp_hidden_size=16, trade_off=0.8)
    tokens = torch.tensor([NB201.grammar.sample(np.random.default_rng(i)) for i in range(8)])
    targets = torch.rand(8)
    loss, mse, nll, scores = model._losses((tokens, targets))
    logits = model(tokens)[1]
    expected_nll = -torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).mean()
    torch.testing.assert_close(mse, ((scores - targets) ** 2).mean())
    torch.testing.assert_close(nll, expected_nll)
    torch.testing.assert_close(loss, 0.8 * mse + 0.2 * nll)


def test_gradient_clip_is_the_modules_own() -> None:
    model = EPD("nasbench201", hidden_size=16, mlp_hidden_size=16)
    model.trainer = _trainer(1)
    opt = model.configure_optimizers()
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    model.configure_gradient_clipping(opt, gradient_clip_val=None)
    total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert total == pytest.approx(5.0, rel=1e-4)


@pytest.mark.parametrize("codec", ["nao-ws", "naonet", "ptb", "nasbench201"])
def test_decoding_is_valid_for_random_and_adversarial_embeddings(codec: str) -> None:
    c = get_codec(codec)
    torch.manual_seed(0)
    model = EPD(codec, hidden_size=16, mlp_hidden_size=16).eval()
    steps = c.grammar.length // model.ratio

    def decode(memory: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.generate(memory, model.pool(torch.nan_to_num(memory)))

    def assert_valid(rows: torch.Tensor) -> None:
        for row in rows.tolist():
            c.from_tokens(row)

    random_memory = F.normalize(torch.randn(32, steps, 16), dim=-1)
    assert_valid(decode(random_memory))
    assert_valid(decode(1e6 * torch.randn(8, steps, 16)))  # far off the unit sphere
    mask = model.grammar_mask
    with torch.no_grad():  # huge logits on tokens forbidden somewhere; <sos> the largest
        model.decoder_out.weight.zero_()
        model.decoder_out.bias.copy_(torch.where(mask.all(0), -1e30, 1e30))
        model.decoder_out.bias[SOS] = float("inf")
    assert_valid(decode(random_memory))
    with torch.no_grad():
        model.decoder_out.weight.fill_(float("nan"))
    assert_valid(decode(random_memory))
    # control: the same adversary with the mask switched off does produce invalid sequences
    with torch.no_grad():
        model.decoder_out.weight.zero_()
    model.grammar_mask = torch.ones_like(mask)
    with pytest.raises(UsageError):
        assert_valid(decode(random_memory))


def test_predictor_learns_a_planted_ranking(trained: EPD, pool) -> None:
    tokens, targets = pool
    with torch.no_grad():
        predicted = trained.score(tokens[150:])
    accuracy = pairwise_accuracy(targets[150:], predicted)
    assert accuracy > 0.8, accuracy
    # the same numbers through Lightning's validation loop and `self.log`
    loader = torch.utils.data.DataLoader(
        ArchDataset(NB201, tokens[150:].tolist(), targets[150:]), batch_size=50
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (logged,) = _trainer(1).validate(trained, loader, verbose=False)
    assert logged["epd/pairwise_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert 0.0 <= logged["epd/reconstruction_exact"] <= 1.0 and logged["epd/hamming_distance"] >= 0.0
    with torch.no_grad():
        assert pairwise_accuracy(targets[150:], -predicted) < 0.3  # control: a flipped predictor fails


def test_gradient_step_raises_the_predicted_score(trained: EPD, pool) -> None:
    tokens, targets = pool
    seeds = tokens[150:][np.argsort(targets[150:])[:40]]  # the 40 worst held-out cells
    memory, moved, before = trained.step_embedding(seeds, eta=0.5)
    with torch.no_grad():
        after = trained.predict(trained.pool(moved))
        lowered = trained.predict(trained.pool(trained.step_embedding(seeds, eta=-0.5)[1]))
    assert (after > before).all() and (lowered < before).all()
    torch.testing.assert_close(moved.norm(dim=-1), torch.ones(moved.shape[:2]))
    new = trained.improve(seeds, eta=10.0)
    with torch.no_grad():
        assert trained.score(new).mean() > before.mean() + 0.1
    assert np.mean([planted(t) for t in new.tolist()]) > np.mean([planted(t) for t in seeds.tolist()]) + 1.0


def test_propose_returns_unseen_valid_sequences(trained: EPD, pool) -> None:
    tokens, _ = pool
    seen = {tuple(t) for t in tokens.tolist()}
    new = trained.propose(tokens[:20].tolist(), count=10, seen=seen, max_eta=30)
    assert len(new) == len(set(new)) == 10
    assert not seen & set(new)
    for row in new:
        NB201.from_tokens(row)
    with pytest.raises(UsageError, match="count must be >= 1"):
        trained.propose(tokens[:2].tolist(), count=0)


def test_training_is_deterministic_per_seed() -> None:
    c = get_codec("nao-ws")
    rng = np.random.default_rng(5)
    tokens = [c.grammar.sample(rng) for _ in range(50)]
    targets = rng.random(50)

    def weights(seed: int) -> torch.Tensor:
        model = _fit("nao-ws", tokens, targets, steps=5, seed=seed, hidden=16, augment=True)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    first = weights(3)
    assert torch.equal(first, weights(3))
    assert not torch.equal(first, weights(4))


def test_bad_targets_and_metrics_inputs() -> None:
    with pytest.raises(NasreproError, match="score 1 is nan"):
        normalise_scores([0.1, float("nan"), 0.3])
    np.testing.assert_allclose(normalise_scores([3.0, 1.0, 2.0], maximise=False), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(normalise_scores([2.0, 2.0]), [0.5, 0.5])
    model = EPD("nasbench201", hidden_size=8, mlp_hidden_size=8)
    model.trainer = _trainer(1)
    tokens = torch.tensor([NB201.grammar.sample(np.random.default_rng(0))])
    with pytest.raises(NasreproError, match="EPD loss is nan"):
        model.training_step((tokens, torch.tensor([float("nan")])), 0)
    with pytest.raises(UsageError, match="pairwise accuracy"):
        pairwise_accuracy([1.0], [1.0])


def test_metrics_follow_the_codes_conventions() -> None:
    truth, pred = [1.0, 1.0, 2.0, 3.0], [0.5, 0.4, 0.1, 0.9]

    def loop(la, lb):  # NAO_V1 utils.pairwise_accuracy, ties counted as ">="
        pairs = [(i, j) for i in range(len(la)) for j in range(i + 1, len(la))]
        good = sum((la[i] >= la[j] and lb[i] >= lb[j]) or (la[i] < la[j] and lb[i] < lb[j]) for i, j in pairs)
        return good / len(pairs)

    assert pairwise_accuracy(truth, pred) == pytest.approx(loop(truth, pred))
    assert hamming_distance(torch.tensor([[1, 2, 3], [1, 2, 3]]), torch.tensor([[1, 2, 3], [3, 2, 1]])) == 1.0


def test_a_constant_predictor_on_a_sorted_pool_is_perfect_by_the_codes_accuracy_but_not_by_tau_b():
    truth = [0.9, 0.7, 0.5, 0.2]  # NAO-WS's pool, best first
    assert pairwise_accuracy(truth, [0.3] * 4) == 1.0  # the code's ">=" counts every tie as agreeing
    assert kendall_tau_b(truth, [0.3] * 4) is None
    assert kendall_tau_b(truth, [0.8, 0.6, 0.4, 0.1]) == pytest.approx(1.0)
    assert kendall_tau_b(truth, [0.1, 0.4, 0.6, 0.8]) == pytest.approx(-1.0)
