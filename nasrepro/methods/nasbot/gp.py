"""NASBOT's Gaussian-process surrogate over OTMANN distances, in torch (Kandasamy et al. 2018,
Sec. 4; reference code: dragonfly `nn/nn_gp.py`, `gp/gp_core.py`, `gp/kernel.py`).

Kernel (Sec. 4, Eq. 5; code ``kernel_type='lpemd_sum'``): with the 2k OTMANN distances of a pair
ordered [d(c1), dbar(c1), ..., d(ck), dbar(ck)] (raw "lp" and normalised "emd", `otmann.OTMANN`),

    kappa(x, x') = alpha1 * exp(-sum_i beta_i d_i) + alpha2 * exp(-sum_i betabar_i dbar_i^2).

OTMANN is a pseudo-distance, not a Hilbertian metric, so kappa need not be positive
semi-definite: as the code's ``handle_non_psd_kernels='project_first'``, the Gram matrix is
projected onto the PSD cone (negative eigenvalues clipped to 0) before the noise is added and the
Cholesky factorisation is taken.

Hyper-parameters (code `nn_gp`, `gp_core`): mean = the median of Y; noise, alpha1, alpha2 and
the 2k betas are drawn log-uniformly within the code's bounds (noise in [0.005, 0.2] Var(Y),
alphas in [0.01, 100] Var(Y), lp betas in [1e-9, 1e-3], emd betas in [0.1, 100]);
``rand_exp_sampling`` draws min(1e5, max(500, 400 * #hps)) vectors, weights each by its marginal
likelihood, and every GP build of the next ``build_new_model_every`` steps uses one vector sampled
with those weights (`HyperSampler`).

Acquisition: expected improvement (Sec. 4 / code ``acq='ei'``) in closed form; with pending
evaluations the public ``nasbot()`` API's ``'hei'`` adds them to the GP with their posterior mean
as hallucinated observations, which leaves the mean unchanged and shrinks the variance near them
(`GP.hallucinate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64
NOISE_BOUNDS = (0.005, 0.2)  # x Var(Y)
ALPHA_BOUNDS = (0.01, 100.0)  # x Var(Y)
BETA_LP_BOUNDS = (1e-9, 1e-3)
BETA_EMD_BOUNDS = (0.1, 100.0)
LP_POWER, EMD_POWER = 1, 2
#: code `gp_core`: the posterior covariance is projected with eps = 0.05 x noise
POSTERIOR_EPS_FRACTION = 0.05


def num_samples(num_hypers: int) -> int:
    """``rand_exp_sampling``'s sample count: min(1e5, max(500, 400 x #hyper-parameters))."""
    return int(min(100_000, max(500, 400 * num_hypers)))


@dataclass(frozen=True)
class Hypers:
    """A batch of B hyper-parameter vectors (B = 1 for one GP): noise, alpha1, alpha2 (B,),
    beta_lp, beta_emd (B, k)."""

    noise: torch.Tensor
    alpha1: torch.Tensor
    alpha2: torch.Tensor
    beta_lp: torch.Tensor
    beta_emd: torch.Tensor

    def __len__(self) -> int:
        return int(self.noise.shape[0])

    def take(self, index: int) -> Hypers:
        sl = slice(index, index + 1)
        return Hypers(self.noise[sl], self.alpha1[sl], self.alpha2[sl], self.beta_lp[sl], self.beta_emd[sl])

    def to_dict(self) -> dict[str, list[float]]:
        return {
            name: [float(v) for v in getattr(self, name).flatten()]
            for name in ("noise", "alpha1", "alpha2", "beta_lp", "beta_emd")
        }


def _log_uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, dtype=DTYPE)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def sample_hypers(gen: torch.Generator, count: int, k: int, var_y: float) -> Hypers:
    """`count` vectors drawn log-uniformly within the code's bounds (module docstring)."""
    scale = max(float(var_y), 1e-12)
    return Hypers(
        noise=_log_uniform(gen, (count,), NOISE_BOUNDS[0] * scale, NOISE_BOUNDS[1] * scale),
        alpha1=_log_uniform(gen, (count,), ALPHA_BOUNDS[0] * scale, ALPHA_BOUNDS[1] * scale),
        alpha2=_log_uniform(gen, (count,), ALPHA_BOUNDS[0] * scale, ALPHA_BOUNDS[1] * scale),
        beta_lp=_log_uniform(gen, (count, k), *BETA_LP_BOUNDS),
        beta_emd=_log_uniform(gen, (count, k), *BETA_EMD_BOUNDS),
    )


def kernel(dist: torch.Tensor, hp: Hypers) -> torch.Tensor:
    """kappa for every hyper-parameter vector: (B, n, m) from distances (2k, n, m) (Eq. 5)."""
    lp, emd = dist[0::2], dist[1::2]
    lp_term = torch.einsum("bk,knm->bnm", hp.beta_lp, lp**LP_POWER)
    emd_term = torch.einsum("bk,knm->bnm", hp.beta_emd, emd**EMD_POWER)
    return hp.alpha1[:, None, None] * torch.exp(-lp_term) + hp.alpha2[:, None, None] * torch.exp(-emd_term)


def project_psd(matrix: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """The nearest (Frobenius) symmetric matrix with eigenvalues >= `floor` (``project_first``)."""
    sym = (matrix + matrix.transpose(-1, -2)) / 2
    values, vectors = torch.linalg.eigh(sym)
    values = values.clamp_min(floor)
    return (vectors * values[..., None, :]) @ vectors.transpose(-1, -2)


def _factor(gram: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Cholesky of proj(K) + noise I (batched); a tiny jitter rescues round-off."""
    n = gram.shape[-1]
    eye = torch.eye(n, dtype=DTYPE)
    matrix = project_psd(gram) + noise[:, None, None] * eye
    factor, info = torch.linalg.cholesky_ex(matrix)
    if bool((info > 0).any()):
        factor = torch.linalg.cholesky(matrix + 1e-9 * matrix.diagonal(dim1=-2, dim2=-1).mean() * eye)
    return factor


def log_marginal_likelihood(dist: torch.Tensor, y: torch.Tensor, mean: float, hp: Hypers) -> torch.Tensor:
    """log p(y | hp) for every vector of the batch: (B,)."""
    n = y.shape[0]
    factor = _factor(kernel(dist, hp), hp.noise)
    resid = (y - mean).expand(len(hp), n)[..., None]
    alpha = torch.cholesky_solve(resid, factor)
    fit = (resid * alpha).sum(dim=(-1, -2))
    logdet = 2 * torch.log(factor.diagonal(dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * fit - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)


class HyperSampler:
    """``rand_exp_sampling``: weight many random vectors by exp(log marginal likelihood), then
    hand out one weighted draw per GP build until the next refresh (every `refresh_every` builds)."""

    def __init__(self, k: int, seed: int, samples: int | None = None, refresh_every: int = 7) -> None:
        self.k = k
        self.samples = samples if samples is not None else num_samples(3 + 2 * k)
        self.refresh_every = refresh_every
        self.gen = torch.Generator().manual_seed(seed)
        self._pool: Hypers | None = None
        self._probs: torch.Tensor | None = None
        self._uses = 0
        self._chunk = 256

    def draw(self, dist: torch.Tensor, y: torch.Tensor, mean: float) -> Hypers:
        """The hyper-parameters of this step's GP (re-weighting the pool when it is due)."""
        if self._pool is None or self._uses >= self.refresh_every:
            var_y = float(y.var()) if y.numel() > 1 else 1.0
            pool = sample_hypers(self.gen, self.samples, self.k, var_y)
            lml = torch.cat(
                [
                    log_marginal_likelihood(dist, y, mean, _slice(pool, i, i + self._chunk))
                    for i in range(0, self.samples, self._chunk)
                ]
            )
            lml = torch.nan_to_num(lml, nan=-math.inf)
            self._pool, self._probs, self._uses = pool, torch.softmax(lml, dim=0), 0
        assert self._probs is not None
        index = int(torch.multinomial(self._probs, 1, generator=self.gen))
        self._uses += 1
        return self._pool.take(index)


def _slice(hp: Hypers, lo: int, hi: int) -> Hypers:
    return Hypers(hp.noise[lo:hi], hp.alpha1[lo:hi], hp.alpha2[lo:hi], hp.beta_lp[lo:hi], hp.beta_emd[lo:hi])


class GP:
    """A GP posterior for one hyper-parameter vector on precomputed distances.

    `dist` (2k, n, n) between the n training points, `y` their values (larger is better).
    """

    def __init__(self, dist: torch.Tensor, y: torch.Tensor, hp: Hypers, mean: float | None = None) -> None:
        if len(hp) != 1:
            raise ValueError("a GP takes one hyper-parameter vector")
        self.dist, self.y, self.hp = dist, y, hp
        self.mean = float(torch.median(y)) if mean is None else float(mean)
        self.prior_var = float(hp.alpha1[0] + hp.alpha2[0])  # kappa(x, x): every distance is 0
        self._factor = _factor(kernel(dist, hp), hp.noise)[0]
        self._alpha = torch.cholesky_solve((y - self.mean)[:, None], self._factor)[:, 0]

    def predict(self, cross: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation at m points from their distances (2k, m, n) to
        the training points. The variance is floored at eps = 0.05 x noise (code `gp_core`)."""
        k_star = kernel(cross, self.hp)[0]  # (m, n)
        mu = self.mean + k_star @ self._alpha
        v = torch.linalg.solve_triangular(self._factor, k_star.T, upper=False)
        var = self.prior_var - (v * v).sum(0)
        floor = POSTERIOR_EPS_FRACTION * float(self.hp.noise[0])
        return mu, torch.sqrt(var.clamp_min(floor))

    def hallucinate(self, dist: torch.Tensor, pending: int) -> GP:
        """The GP after adding the last `pending` points of `dist` (2k, n + p, n + p) as
        observations equal to their posterior mean (``'hei'``); the median stays that of the
        real observations."""
        if pending == 0:
            return self
        n = self.y.shape[0]
        mu, _ = self.predict(dist[:, n : n + pending, :n])
        return GP(dist, torch.cat([self.y, mu]), self.hp, mean=self.mean)


def expected_improvement(mu: torch.Tensor, sigma: torch.Tensor, best: float) -> torch.Tensor:
    """EI for maximisation: (mu - best) Phi(z) + sigma phi(z), z = (mu - best) / sigma."""
    z = (mu - best) / sigma
    normal = torch.distributions.Normal(torch.zeros((), dtype=mu.dtype), torch.ones((), dtype=mu.dtype))
    return (mu - best) * normal.cdf(z) + sigma * torch.exp(normal.log_prob(z))


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=DTYPE)
