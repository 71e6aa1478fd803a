"""NASBOT's GP: kernel PSD after projection, EI against its closed form, hallucinated pending points,
hyper-parameter sampling, and the distance cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasrepro.methods.nasbot.distances import DistanceCache
from nasrepro.methods.nasbot.gp import (
    GP,
    Hypers,
    HyperSampler,
    expected_improvement,
    kernel,
    log_marginal_likelihood,
    num_samples,
    project_psd,
    sample_hypers,
)
from nasrepro.methods.nasbot.graph import LayerGraph
from nasrepro.methods.nasbot.otmann import OTMANN

D = torch.float64


def _mlp(units: list[int], labels: list[str] | None = None) -> LayerGraph:
    labels = labels or ["relu"] * len(units)
    n = len(units)
    return LayerGraph.build(
        "mlp-reg",
        ["ip", *labels, "linear", "op"],
        [None, *units, None, None],
        [(i, i + 1) for i in range(n + 2)],
    )


def _one(noise=0.01, a1=1.0, a2=0.5, lp=1e-4, emd=2.0, k=4) -> Hypers:
    return Hypers(
        torch.tensor([noise], dtype=D),
        torch.tensor([a1], dtype=D),
        torch.tensor([a2], dtype=D),
        torch.full((1, k), lp, dtype=D),
        torch.full((1, k), emd, dtype=D),
    )


@pytest.fixture(scope="module")
def graphs_and_dist() -> tuple[list[LayerGraph], torch.Tensor]:
    rng = np.random.default_rng(0)
    graphs = [
        _mlp(
            [int(u) for u in rng.integers(8, 200, size=rng.integers(2, 6))],
        )
        for _ in range(14)
    ]
    dist = torch.as_tensor(OTMANN("mlp-reg").matrix(graphs), dtype=D)
    return graphs, dist


def test_kernel_is_psd_after_projection(graphs_and_dist) -> None:
    _, dist = graphs_and_dist
    hp = sample_hypers(torch.Generator().manual_seed(0), 64, 4, 1.0)
    gram = kernel(dist, hp)
    projected = project_psd(gram)
    eig = torch.linalg.eigvalsh(projected)
    assert float(eig.min()) >= -1e-10 * float(eig.abs().max())
    # projecting a PSD matrix changes nothing; projecting an indefinite one removes its negative part
    assert torch.allclose(project_psd(projected), projected, atol=1e-9)
    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=D)  # eigenvalues 3 and -1
    fixed = project_psd(bad)
    assert torch.allclose(fixed, torch.full((2, 2), 1.5, dtype=D))


def test_kernel_formula_on_one_pair() -> None:
    dist = torch.tensor([0.3, 0.1, 0.5, 0.2, 0.7, 0.3, 0.9, 0.4], dtype=D).reshape(8, 1, 1)
    hp = _one(a1=2.0, a2=3.0, lp=0.5, emd=1.5)
    expected = 2.0 * math.exp(-0.5 * (0.3 + 0.5 + 0.7 + 0.9)) + 3.0 * math.exp(
        -1.5 * (0.1**2 + 0.2**2 + 0.3**2 + 0.4**2)
    )
    assert float(kernel(dist, hp)[0, 0, 0]) == pytest.approx(expected, rel=1e-12)


def test_gp_posterior_matches_dense_formulas_and_ei_closed_form() -> None:
    """A toy GP on 1-D points with d = |x - x'| in every slot: mean, std and EI by hand."""
    x = torch.tensor([0.0, 1.0, 2.5, 4.0], dtype=D)
    y = torch.tensor([0.2, 1.0, -0.3, 0.5], dtype=D)
    xs = torch.tensor([0.5, 3.0], dtype=D)
    dist = (x[:, None] - x[None, :]).abs().expand(8, 4, 4)
    cross = (xs[:, None] - x[None, :]).abs().expand(8, 2, 4)
    hp = _one(noise=0.05, a1=1.0, a2=0.7, lp=0.3, emd=0.2)
    gp = GP(dist, y, hp)
    K = 1.0 * torch.exp(-4 * 0.3 * dist[0]) + 0.7 * torch.exp(-4 * 0.2 * dist[0] ** 2)
    Ks = 1.0 * torch.exp(-4 * 0.3 * cross[0]) + 0.7 * torch.exp(-4 * 0.2 * cross[0] ** 2)
    A = project_psd(K) + 0.05 * torch.eye(4, dtype=D)
    m = float(torch.median(y))
    mu_ref = m + Ks @ torch.linalg.solve(A, y - m)
    var_ref = 1.7 - (Ks @ torch.linalg.solve(A, Ks.T)).diagonal()
    mu, sd = gp.predict(cross)
    assert torch.allclose(mu, mu_ref, atol=1e-10)
    assert torch.allclose(sd, var_ref.clamp_min(0.0025).sqrt(), atol=1e-10)
    best = float(y.max())
    ei = expected_improvement(mu, sd, best)
    for i in range(2):
        z = (float(mu[i]) - best) / float(sd[i])
        cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
        pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        assert float(ei[i]) == pytest.approx((float(mu[i]) - best) * cdf + float(sd[i]) * pdf, rel=1e-10)
    # EI grows with the mean and with the uncertainty (a flipped sign fails here)
    assert float(expected_improvement(mu + 0.1, sd, best)[0]) > float(ei[0])
    assert float(expected_improvement(mu, sd * 2, best)[0]) > float(ei[0])
    assert float(expected_improvement(torch.tensor([5.0], dtype=D), torch.tensor([1e-6], dtype=D), 1.0)) == (
        pytest.approx(4.0)
    )


def test_hallucinated_pending_point_keeps_mean_and_shrinks_variance() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=D)  # the last point is pending
    y = torch.tensor([0.0, 1.0, 0.5], dtype=D)
    dist = (x[:, None] - x[None, :]).abs().expand(8, 4, 4)
    hp = _one(noise=1e-3, a1=1.0, a2=0.0, lp=0.2, emd=0.0)
    gp = GP(dist[:, :3, :3], y, hp)
    probe = torch.tensor([4.8], dtype=D)
    cross_before = (probe[:, None] - x[None, :3]).abs().expand(8, 1, 3)
    cross_after = (probe[:, None] - x[None, :]).abs().expand(8, 1, 4)
    mu0, sd0 = gp.predict(cross_before)
    halluc = gp.hallucinate(dist, pending=1)
    mu1, sd1 = halluc.predict(cross_after)
    assert float(mu1) == pytest.approx(float(mu0), abs=1e-3)
    assert float(sd1) < 0.6 * float(sd0)
    assert halluc.mean == gp.mean


def test_marginal_likelihood_prefers_the_generating_scale() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.linspace(0, 10, 30, dtype=D)
    dist = (x[:, None] - x[None, :]).abs().expand(8, 30, 30).contiguous()
    truth = _one(noise=1e-2, a1=1.0, a2=0.0, lp=0.25 / 4, emd=0.0)
    K = kernel(dist, truth)[0] + 1e-2 * torch.eye(30, dtype=D)
    y = torch.linalg.cholesky(K) @ torch.randn(30, generator=gen, dtype=D)
    lml_true = log_marginal_likelihood(dist, y, float(torch.median(y)), truth)
    wrong = _one(noise=1e-2, a1=1.0, a2=0.0, lp=25.0 / 4, emd=0.0)
    assert float(lml_true) > float(log_marginal_likelihood(dist, y, float(torch.median(y)), wrong))


def test_hyper_sampler_bounds_counts_and_refresh(graphs_and_dist) -> None:
    _, dist = graphs_and_dist
    assert num_samples(11) == 4400
    y = torch.linspace(-1, 1, dist.shape[1], dtype=D)
    pool = sample_hypers(torch.Generator().manual_seed(1), 2000, 4, 2.0)
    assert float(pool.noise.min()) >= 0.01 and float(pool.noise.max()) <= 0.4
    assert float(pool.beta_lp.min()) >= 1e-9 and float(pool.beta_lp.max()) <= 1e-3
    assert float(pool.beta_emd.min()) >= 0.1 and float(pool.beta_emd.max()) <= 100
    sampler = HyperSampler(4, seed=0, samples=300, refresh_every=3)
    draws = [sampler.draw(dist, y, float(torch.median(y))) for _ in range(4)]
    pools = []
    sampler2 = HyperSampler(4, seed=0, samples=300, refresh_every=3)
    for _ in range(4):
        sampler2.draw(dist, y, 0.0)
        pools.append(sampler2._pool)
    assert pools[0] is pools[2] and pools[3] is not pools[2]  # refreshed after 3 builds
    again = HyperSampler(4, seed=0, samples=300, refresh_every=3)
    assert draws[0].to_dict() == again.draw(dist, y, float(torch.median(y))).to_dict()


def test_distance_cache_solves_each_pair_once(graphs_and_dist) -> None:
    graphs, dist = graphs_and_dist
    cache = DistanceCache(OTMANN("mlp-reg"), shared=False)
    first = cache.matrix(graphs[:5], graphs)
    assert np.allclose(first, dist.numpy()[:, :5, :], atol=1e-9)
    solved = cache.solved
    again = cache.matrix(graphs, graphs[:5])
    assert np.allclose(again, dist.numpy()[:, :, :5], atol=1e-9)
    assert cache.solved == solved  # all by symmetry from the cache


def test_a_cached_distance_does_not_depend_on_what_was_asked_first(graphs_and_dist) -> None:
    """Bit for bit: a pair solved as (g, h), as (h, g) or between relabelled isomorphic copies gives
    the same value, so a seed's search never depends on the searches before it in the process."""
    graphs, _ = graphs_and_dist
    rng = np.random.default_rng(0)
    relabelled = [g.renumbered(list(rng.permutation(g.num_layers))) for g in graphs]
    forward = DistanceCache(OTMANN("mlp-reg"), shared=False).matrix(graphs[:4], graphs[4:8])
    backward = DistanceCache(OTMANN("mlp-reg"), shared=False).matrix(relabelled[4:8], relabelled[:4])
    assert np.array_equal(forward, backward.transpose(0, 2, 1))
