"""The closed form of KL-regularised reward maximisation: the Boltzmann policy.

For one prompt x the RLHF objective is

    J(π) = E_{y~π}[r(y)] − β KL(π ‖ π_ref).

Over all distributions it is maximised by the *Boltzmann* (Gibbs) policy

    π*(y) = π_ref(y) exp(r(y)/β) / Z,        Z = Σ_y π_ref(y) exp(r(y)/β),

(Korbak, Perez & Buckley 2022, "RL with KL penalties is better viewed as Bayesian inference";
Rafailov et al. 2023, "Direct Preference Optimization", eq. 4). Why: for any π,

    J(π) = β log Z − β KL(π ‖ π*),

so J(π) ≤ β log Z with equality only at π = π*. Hence J(π*) = β log Z and
KL(π* ‖ π_ref) = E_{π*}[r]/β − log Z. Limits: β → 0 gives the argmax of r on the support of
π_ref (:func:`beta_to_zero_policy`); β → ∞ gives π_ref itself.

Two ways to use it:

* **exact**, on an enumerable set of Y responses (:func:`rlhf_lab.equations.enumerable_space.enumerable_space`). Every function takes
  ``logp_ref`` and ``rewards`` of shape (..., Y): the last dim is the set of responses, leading
  dims are a batch (e.g. prompts).
* **estimated** from N samples of π_ref (:func:`boltzmann_estimate`, and
  :func:`importance_estimates`, the same numbers as a plain tuple: notebook 03's exercise), for a
  language model whose responses cannot be listed.

Everything is computed in log space (``logsumexp``), so β = 1e-3 with rewards of size ~10
(r/β ~ 1e4) neither overflows nor produces NaN. Results keep the inputs' dtype (float64 in,
float64 out); use float64 for comparisons to 1e-6.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rlhf_lab.core.config import number

__all__ = ["boltzmann_policy", "log_partition", "optimal_objective", "policy_stats",
           "kl_optimal", "frontier", "beta_to_zero_policy", "boltzmann_estimate",
           "importance_estimates", "estimated_frontier", "BoltzmannEstimate",
           "ImportanceEstimates", "LowESSWarning", "DEFAULT_MIN_ESS"]

DEFAULT_MIN_ESS = 100.0
"""Default effective sample size below which an importance-sampled estimate is not trusted.

The self-normalised estimator's relative error scales like 1/sqrt(ESS): ESS = 100 keeps it near
10 %. With 2048 samples the prototype's estimates broke down for β ≤ 0.02, where ESS ≤ 30."""


class LowESSWarning(UserWarning):
    """An importance-sampled Boltzmann estimate rests on too few effective samples."""


# ----------------------------------------------------------------------------- validation


def _as_float_tensor(x, name: str) -> torch.Tensor:
    """Return ``x`` as a floating tensor with at least one dim (lists/arrays become float64)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.dim() == 0:
        raise ValueError(f"{name} must have a last dim over responses, got a scalar")
    return t


def _check_beta(beta, name: str = "beta") -> float:
    """A finite number > 0, returned as a Python float."""
    if isinstance(beta, torch.Tensor) and beta.numel() == 1:
        beta = beta.item()
    return number(beta, name, 0, math.inf, open_low=True, open_high=True)


def _check_logp(logp: torch.Tensor, name: str) -> None:
    """Log-probabilities: no NaN, no +inf, each row normalised over the last dim."""
    if torch.isnan(logp).any() or (logp == math.inf).any():
        raise ValueError(f"{name} must hold log-probabilities (no NaN or +inf)")
    if not (logp > -math.inf).any(-1).all():
        raise ValueError(f"{name} gives probability 0 to every response of some row")
    total = torch.logsumexp(logp, dim=-1)
    if (total.abs() > 1e-3).any():
        raise ValueError(f"{name} must be normalised log-probabilities (logsumexp over the last "
                         f"dim = 0), got up to {total.abs().max().item():.3g}; "
                         f"did you pass logits? use log_softmax")


def _check_space(logp_ref, rewards, logp=None):
    """Validate (logp, logp_ref, rewards) of one shape (..., Y); return them as one dtype."""
    logp_ref = _as_float_tensor(logp_ref, "logp_ref")
    rewards = _as_float_tensor(rewards, "rewards")
    if rewards.shape != logp_ref.shape:
        raise ValueError(f"rewards has shape {tuple(rewards.shape)} but logp_ref has shape "
                         f"{tuple(logp_ref.shape)}; they must match (..., Y)")
    _check_logp(logp_ref, "logp_ref")
    if not torch.isfinite(rewards[logp_ref > -math.inf]).all():
        raise ValueError("rewards must be finite wherever logp_ref > -inf")
    dtype = torch.promote_types(logp_ref.dtype, rewards.dtype)
    if logp is None:
        return logp_ref.to(dtype), rewards.to(dtype)
    logp = _as_float_tensor(logp, "logp")
    if logp.shape != logp_ref.shape:
        raise ValueError(f"logp has shape {tuple(logp.shape)} but logp_ref has shape "
                         f"{tuple(logp_ref.shape)}; they must match (..., Y)")
    _check_logp(logp, "logp")
    dtype = torch.promote_types(dtype, logp.dtype)
    return logp.to(dtype), logp_ref.to(dtype), rewards.to(dtype)


def _expect(logp: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """E_p[values] = Σ_y p(y) values(y) over the last dim, with 0 · (anything) = 0."""
    p = logp.exp()
    return torch.where(p > 0, p * values, torch.zeros_like(p)).sum(-1)


def _log_scores(logp_ref, rewards, beta: float) -> torch.Tensor:
    """log π_ref(y) + r(y)/β on the support of π_ref, -inf outside it."""
    support = logp_ref > -math.inf
    return torch.where(support, logp_ref + rewards / beta, torch.full_like(logp_ref, -math.inf))


# ----------------------------------------------------------------------------- exact closed form


def boltzmann_policy(logp_ref, rewards, beta) -> torch.Tensor:
    """Log-probabilities of the optimal policy π* of the KL-regularised objective.

        log π*(y) = log π_ref(y) + r(y)/β − log Z,      Z = Σ_y π_ref(y) exp(r(y)/β)

    Args:
        logp_ref: (..., Y) log π_ref(y), normalised over the last dim; -inf = outside the support.
        rewards:  (..., Y) r(y), finite on the support of π_ref.
        beta:     β > 0, the weight of the KL penalty.

    Returns:
        (..., Y) log π*(y); it stays -inf where ``logp_ref`` is -inf.

    Example: π_ref = [1/2, 1/2], r = [0, log 3], β = 1 gives π* = [1/4, 3/4].
    """
    logp_ref, rewards = _check_space(logp_ref, rewards)
    scores = _log_scores(logp_ref, rewards, _check_beta(beta))         # (..., Y)
    return scores - torch.logsumexp(scores, dim=-1, keepdim=True)


def log_partition(logp_ref, rewards, beta) -> torch.Tensor:
    """log Z = log Σ_y π_ref(y) exp(r(y)/β) = logsumexp(log π_ref + r/β) over the last dim.

    Shapes: (..., Y) inputs -> (...). Example: π_ref = [1/2, 1/2], r = [0, log 3], β = 1 gives
    log Z = log 2.
    """
    logp_ref, rewards = _check_space(logp_ref, rewards)
    return torch.logsumexp(_log_scores(logp_ref, rewards, _check_beta(beta)), dim=-1)


def optimal_objective(logp_ref, rewards, beta) -> torch.Tensor:
    """The best value of the objective: max_π E_π[r] − β KL(π‖π_ref) = β log Z.

    Shapes: (..., Y) inputs -> (...). Example: π_ref = [1/2, 1/2], r = [0, log 3], β = 1 gives
    log 2 = 0.693 (E_{π*}[r] = 0.824, KL = 0.131).
    """
    return _check_beta(beta) * log_partition(logp_ref, rewards, beta)


def policy_stats(logp, logp_ref, rewards, beta) -> dict[str, torch.Tensor]:
    """Reward, KL and objective of ANY policy π over the enumerable responses.

        expected_reward = Σ_y π(y) r(y)
        kl              = Σ_y π(y) (log π(y) − log π_ref(y))     (terms with π(y) = 0 count 0)
        objective       = expected_reward − β kl                 (≤ β log Z, equality at π*)

    Args:
        logp: (..., Y) log π(y), normalised; logp_ref, rewards: (..., Y); beta > 0.

    Returns:
        dict of (...) tensors ``expected_reward``, ``kl``, ``objective``. The KL is +inf if π puts
        mass where π_ref has none.

    Example: π = π_ref gives kl = 0 and objective = E_{π_ref}[r].
    """
    logp, logp_ref, rewards = _check_space(logp_ref, rewards, logp=logp)
    beta = _check_beta(beta)
    expected_reward = _expect(logp, rewards)
    kl = _expect(logp, logp - logp_ref)
    return {"expected_reward": expected_reward, "kl": kl,
            "objective": expected_reward - beta * kl}


def kl_optimal(logp_ref, rewards, beta) -> torch.Tensor:
    """KL(π*‖π_ref) = E_{π*}[r]/β − log Z, from log π* = log π_ref + r/β − log Z.

    Shapes: (..., Y) inputs -> (...). Example: π_ref = [1/2, 1/2], r = [0, log 3], β = 1 gives
    (3/4) log 3 − log 2 = 0.131. For β → 0 the two terms are large and nearly equal: use float64.
    """
    logp_ref, rewards = _check_space(logp_ref, rewards)
    beta = _check_beta(beta)
    scores = _log_scores(logp_ref, rewards, beta)                        # (..., Y)
    log_z = torch.logsumexp(scores, dim=-1)                              # (...)
    logp_star = scores - log_z.unsqueeze(-1)
    return _expect(logp_star, rewards) / beta - log_z


def _check_betas(betas) -> torch.Tensor:
    """A 1-D float64 tensor of finite values > 0."""
    betas = torch.as_tensor(betas, dtype=torch.float64).reshape(-1)
    if betas.numel() == 0 or not (torch.isfinite(betas) & (betas > 0)).all():
        raise ValueError(f"betas must be a non-empty list of finite numbers > 0, got {betas}")
    return betas


def frontier(logp_ref, rewards, betas) -> dict[str, torch.Tensor]:
    """The reward–KL frontier: (E_{π*}[r], KL(π*‖π_ref)) of the optimal policy for each β.

    No policy gets more expected reward at the same KL (the frontier is the upper-left boundary
    of the set of reachable (KL, reward) pairs). As β grows, both E_{π*}[r] and the KL decrease:
    dE_{π*}[r]/d(1/β) = Var_{π*}(r) ≥ 0.

    Args:
        logp_ref, rewards: (..., Y).
        betas: G values > 0 (list or tensor).

    Returns:
        dict with ``beta`` (G,) and ``expected_reward``, ``kl``, ``objective`` (G, ...).

    Example: ``frontier(lp, r, [0.1, 1, 10])["kl"]`` is decreasing.
    """
    betas = _check_betas(betas)
    rows = [policy_stats(boltzmann_policy(logp_ref, rewards, b), logp_ref, rewards, b)
            for b in betas.tolist()]
    out = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
    return {"beta": betas, **out}


def beta_to_zero_policy(logp_ref, rewards) -> torch.Tensor:
    """The β → 0 limit of π*: uniform over the argmax of r on the support of π_ref.

    Responses outside the support (logp_ref = -inf) never win, however high their reward. Exact
    ties split the mass evenly. (The other limit, β → ∞, is π_ref itself: exp(r/β) → 1.)

    Shapes: (..., Y) -> (..., Y) log-probabilities.
    Example: π_ref = [0, 1/2, 1/2], r = [9, 1, 1] gives π = [0, 1/2, 1/2].
    """
    logp_ref, rewards = _check_space(logp_ref, rewards)
    support = logp_ref > -math.inf
    masked = torch.where(support, rewards, torch.full_like(rewards, -math.inf))
    winners = masked == masked.max(dim=-1, keepdim=True).values         # (..., Y) bool
    count = winners.sum(dim=-1, keepdim=True).to(rewards.dtype)
    return torch.where(winners, -count.log(), torch.full_like(rewards, -math.inf))


# ----------------------------------------------------------------------------- from samples


@dataclass(frozen=True)
class BoltzmannEstimate:
    """Importance-sampled estimates of the closed form, one value per row of ``rewards``."""

    beta: float                      # β used
    n_samples: int                   # N samples of π_ref per row
    expected_reward: torch.Tensor    # (...) Σ_i w_i r_i ≈ E_{π*}[r]
    log_z: torch.Tensor              # (...) log Ẑ = logsumexp(r/β) − log N ≈ log Z
    kl: torch.Tensor                 # (...) E_w[r]/β − log Ẑ ≈ KL(π*‖π_ref), at most log N
    objective: torch.Tensor          # (...) β log Ẑ ≈ max_π J(π)
    ess: torch.Tensor                # (...) effective sample size 1/Σ_i w_i², in [1, N]
    trustworthy: torch.Tensor        # (...) bool, ess >= min_ess
    weights: torch.Tensor            # (..., N) w_i; E_{π*}[g] ≈ (weights * g).sum(-1) for any g


def boltzmann_estimate(rewards, beta, min_ess: float = DEFAULT_MIN_ESS,
                       warn: bool = True) -> BoltzmannEstimate:
    """Estimate π*'s reward, log Z and KL from N samples y_1..y_N ~ π_ref (self-normalised IS).

        w_i = exp(r_i/β) / Σ_j exp(r_j/β)                  (so π*(y_i) ∝ π_ref(y_i) w_i)
        E_{π*}[r] ≈ Σ_i w_i r_i
        log Z     ≈ log Ẑ = logsumexp_i(r_i/β) − log N      (Z = E_{π_ref}[exp(r/β)])
        KL        ≈ Σ_i w_i r_i/β − log Ẑ = log N − H(w)    (H = entropy of the weights)
        J(π*)     ≈ β log Ẑ
        ESS       = 1 / Σ_i w_i²

    The KL estimate can never exceed log N: it is log N minus an entropy, and since
    log ESS ≤ H(w) it is even at most log(N / ESS). When π* lies far from π_ref (small β) a few
    samples carry all the weight, the ESS collapses and the estimates are biased (KL too low).
    Such rows are flagged ``trustworthy = False`` and a :class:`LowESSWarning` is emitted.

    Args:
        rewards: (..., N) rewards of N samples of π_ref (one row per prompt).
        beta: β > 0.
        min_ess: ESS below which a row is not trusted (default 100: ~10 % relative error).
        warn: emit a LowESSWarning if any row is not trusted.

    Returns:
        a :class:`BoltzmannEstimate` (fields of shape (...), ``weights`` of shape (..., N)).

    Example: rewards [0, 0, 0, 0] give w = 1/4 each, log Ẑ = 0, KL = 0, ESS = 4.
    """
    rewards = _as_float_tensor(rewards, "rewards")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite")
    beta = _check_beta(beta)
    n = rewards.shape[-1]
    log_sum = torch.logsumexp(rewards / beta, dim=-1, keepdim=True)       # (..., 1)
    log_w = rewards / beta - log_sum                                      # (..., N)
    w = log_w.exp()
    log_z = log_sum.squeeze(-1) - math.log(n)
    expected_reward = (w * rewards).sum(-1)
    kl = math.log(n) + _expect(log_w, log_w)                              # log N − H(w)
    ess = 1.0 / (w * w).sum(-1)
    trustworthy = ess >= min_ess
    if warn and not trustworthy.all():
        warnings.warn(f"importance-sampled Boltzmann estimate at beta={beta:g}: effective "
                      f"sample size {ess.min().item():.1f} < min_ess={min_ess:g} (N={n}); the "
                      f"KL is underestimated (it cannot exceed log N = {math.log(n):.2f})",
                      LowESSWarning, stacklevel=2)
    return BoltzmannEstimate(beta, n, expected_reward, log_z, kl, beta * log_z, ess,
                             trustworthy, w)


class ImportanceEstimates(NamedTuple):
    """:func:`importance_estimates`' result: a tuple, in this order, whose fields have names."""

    log_z: torch.Tensor              # (...) log Ẑ = logsumexp_i(r_i/β) − log N
    weights: torch.Tensor            # (..., N) w_i = softmax_i(r_i/β)
    expected_reward: torch.Tensor    # (...) Σ_i w_i r_i ≈ E_{π*}[r]
    kl: torch.Tensor                 # (...) Σ_i w_i log(N w_i) = Σ_i w_i r_i/β − log Ẑ
    ess: torch.Tensor                # (...) 1/Σ_i w_i²


def importance_estimates(rewards, beta) -> ImportanceEstimates:
    """Self-normalised importance sampling of the closed form from N samples y_i ~ π_ref.

    The numbers of :func:`boltzmann_estimate` as one tuple ``(log_z, weights, expected_reward,
    kl, ess)`` of tensors (no ESS threshold, no warning): what notebook 03's exercise returns.

        log Ẑ = logsumexp_i(r_i/β) − log N        w_i = exp(r_i/β) / Σ_j exp(r_j/β)
        E_{π*}[r] ≈ Σ_i w_i r_i                   KL ≈ Σ_i w_i log(N w_i) = Σ_i w_i r_i/β − log Ẑ
        ESS = 1 / Σ_i w_i²

    Shapes: rewards (..., N) -> log_z, expected_reward, kl, ess (...), weights (..., N); the
    results keep the rewards' dtype, and log_z is differentiable (d log Ẑ / d r_i = w_i/β).

    Example: rewards [0, log 3], β = 1 (two samples) give log Ẑ = log 2, w = [1/4, 3/4],
    E_w[r] = 0.824, KL = 0.131 and ESS = 1.6: for π_ref = [1/2, 1/2] these samples are the
    space itself, and the estimates are the exact closed form.
    """
    est = boltzmann_estimate(rewards, beta, warn=False)
    return ImportanceEstimates(est.log_z, est.weights, est.expected_reward, est.kl, est.ess)


def estimated_frontier(rewards, betas, min_ess: float = DEFAULT_MIN_ESS,
                       gold=None) -> dict[str, torch.Tensor]:
    """:func:`boltzmann_estimate` over a grid of β: the reward–KL frontier from samples.

    Args:
        rewards: (..., N) rewards of N samples of π_ref; betas: G values > 0.
        min_ess: as in :func:`boltzmann_estimate`. One LowESSWarning lists every β not trusted.
        gold: optional (..., N) second score of the same samples (e.g. the gold utility when
            ``rewards`` is a proxy RM); its π*-average is returned as ``expected_gold``.

    Returns:
        dict with ``beta`` (G,) and ``expected_reward``, ``kl``, ``objective``, ``log_z``,
        ``ess``, ``trustworthy`` (and ``expected_gold``) of shape (G, ...).
    """
    betas = _check_betas(betas)
    if gold is not None:
        gold = _as_float_tensor(gold, "gold")
        if gold.shape != torch.as_tensor(rewards).shape:
            raise ValueError(f"gold has shape {tuple(gold.shape)}; it must match rewards")
    keys = ["expected_reward", "kl", "objective", "log_z", "ess", "trustworthy"]
    rows = [boltzmann_estimate(rewards, b, min_ess, warn=False) for b in betas.tolist()]
    out = {key: torch.stack([getattr(row, key) for row in rows]) for key in keys}
    if gold is not None:
        out["expected_gold"] = torch.stack([(row.weights * gold).sum(-1) for row in rows])
    bad = [row.beta for row in rows if not row.trustworthy.all()]
    if bad:
        warnings.warn(f"importance-sampled frontier: ESS < min_ess={min_ess:g} at {len(bad)} of "
                      f"{len(rows)} beta values (beta <= {max(bad):.3g}); those points are not "
                      f"trustworthy", LowESSWarning, stacklevel=2)
    return {"beta": betas, **out}
