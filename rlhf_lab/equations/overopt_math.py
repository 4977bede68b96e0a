"""The math of reward-model overoptimisation: best-of-n, its KL, Gao et al.'s fits, RM ensembles.

Best-of-n (BoN) draws n responses from π_ref and keeps the one a (proxy) reward model scores
highest. Its KL from π_ref is at most ``log n − (n−1)/n`` (:func:`kl_best_of_n`). Gao, Schulman &
Hilton (2023), "Scaling Laws for Reward Model Overoptimization", plot the *gold* reward gain
against d = sqrt(KL) and fit

    R_bon(d) = d (α − β d)          (best-of-n)
    R_RL(d)  = d (α − β log d)      (RL, e.g. PPO)

The gold score rises, peaks and falls while the proxy keeps rising. An ensemble of reward models
aggregated conservatively (min, mean − k·std; Coste et al. 2024) delays the fall.

Conventions: order statistics and fits use numpy (float64); :func:`aggregate_ensemble` keeps
torch tensors as tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["kl_best_of_n", "best_of_n_exact", "kl_exact_best_of_n", "best_of_n_expected",
           "GaoFit", "fit_bon", "fit_rl", "aggregate_ensemble"]


# ----------------------------------------------------------------------------- best-of-n KL


def _check_n(n, name: str = "n") -> np.ndarray:
    """Integer-valued, finite, >= 1; returned as a float64 array (any shape)."""
    try:
        arr = np.asarray(n, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer >= 1 (or an array of them), "
                         f"got {n!r}") from None
    if np.asarray(n).dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) \
            or np.any(arr != np.floor(arr)) or np.any(arr < 1):
        raise ValueError(f"{name} must be an integer >= 1 (or an array of them), got {n!r}")
    return arr


def kl_best_of_n(n):
    """The analytic KL of best-of-n from the base policy: KL_bon(n) = log n − (n−1)/n.

    Stiennon et al. (2020, "Learning to summarize from human feedback") derived it for
    continuous reward distributions, where it is exact. Beirami et al. (2024, "Theoretical
    guarantees on the best-of-n alignment policy") show it is an **upper bound** on the true KL
    in general: for discrete responses it is strict as soon as one response has noticeable
    probability (ties and repeats make best-of-n closer to π_ref). Compare
    :func:`kl_exact_best_of_n`.

    Args:
        n: an integer >= 1, or an array / tensor of them.

    Returns:
        a float for a Python number, else an array (numpy) or tensor (float64) of n's shape.

    Example: kl_best_of_n(1) = 0; kl_best_of_n(2) = log 2 − 1/2 = 0.193; n = 1024 gives 5.93.
    """
    arr = _check_n(n)
    kl = np.log(arr) - (arr - 1.0) / arr
    if isinstance(n, torch.Tensor):
        return torch.as_tensor(kl, dtype=torch.float64)
    if isinstance(n, np.ndarray) or isinstance(n, (list, tuple)):
        return kl
    return float(kl)


def _check_distribution(p, scores):
    p = np.asarray(p, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) \
            or abs(p.sum() - 1.0) > 1e-6:
        raise ValueError("p must be a 1-D probability vector (>= 0, sums to 1)")
    if scores.shape != p.shape or not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be finite with the shape of p {p.shape}, got {scores.shape}")
    return p / p.sum(), scores


def best_of_n_exact(p, scores, n: int) -> np.ndarray:
    """Exact distribution of the best-of-n selection on a small discrete distribution.

    Draw n items i.i.d. from p and keep the highest-scoring one. With the distinct score levels
    s_1 < s_2 < … and F(s) = P(score ≤ s) under p, the best score is s with probability
    F(s)^n − F(s⁻)^n (F(s⁻) = P(score < s)). Ties between drawn items are broken uniformly at
    random (equivalently: the first drawn wins), so within a level the mass splits in proportion
    to p:

        q(k) = [F(s_k)^n − F(s_k⁻)^n] · p(k) / P(score = s_k).

    Args:
        p: (K,) probabilities; scores: (K,) scores; n: integer >= 1.

    Returns:
        (K,) probabilities q of the selected item.

    Example: p = [1/2, 1/2], scores = [0, 1], n = 2: q = [1/4, 3/4].
    """
    p, scores = _check_distribution(p, scores)
    n = int(_check_n(n))
    levels, level_of = np.unique(scores, return_inverse=True)            # ascending levels
    mass = np.bincount(level_of, weights=p, minlength=len(levels))       # P(score = s)
    cdf = np.clip(np.cumsum(mass), 0.0, 1.0)
    cdf[-1] = 1.0
    level_prob = cdf ** n - np.clip(cdf - mass, 0.0, 1.0) ** n           # P(best score = s)
    share = np.divide(p, mass[level_of], out=np.zeros_like(p), where=mass[level_of] > 0)
    return level_prob[level_of] * share


def kl_exact_best_of_n(p, scores, n: int) -> float:
    """KL(q_bon ‖ p) of the exact best-of-n distribution (:func:`best_of_n_exact`).

    Always ≤ :func:`kl_best_of_n` (n); nearly equal when no item has much mass (many distinct
    scores, n small relative to K). Example: p = [1/2, 1/2], scores = [0, 1], n = 2 gives
    (1/4) log(1/2) + (3/4) log(3/2) = 0.131 < log 2 − 1/2 = 0.193.
    """
    q = best_of_n_exact(p, scores, n)
    p, _ = _check_distribution(p, scores)
    on = q > 0
    return float(np.sum(q[on] * np.log(q[on] / p[on])))


# ----------------------------------------------------------------------------- order statistics


def _log_comb(a: np.ndarray, b: np.ndarray, log_fact: np.ndarray) -> np.ndarray:
    """log C(a, b) from a table of log factorials; -inf where b > a (C = 0)."""
    valid = (b >= 0) & (b <= a)
    a_, b_ = np.where(valid, a, 0), np.where(valid, b, 0)
    out = log_fact[a_] - log_fact[b_] - log_fact[a_ - b_]
    return np.where(valid, out, -np.inf)


def best_of_n_expected(proxy, gold, ns=None) -> dict[str, np.ndarray]:
    """Unbiased best-of-n curve from m samples per prompt (order statistics, no resampling).

    Sort a prompt's m samples by proxy score, ascending, rank i = 1..m. Among n of them drawn
    without replacement, the sample of rank i is the proxy-best with probability

        P(i is best of n) = C(i−1, n−1) / C(m, n)          (the other n−1 have lower ranks)

    so E[gold of best-of-n] = Σ_i gold_(i) C(i−1, n−1)/C(m, n) exactly, and the same for the
    proxy. This is the estimator used by Nakano et al. (2021, WebGPT) and Gao et al. (2023).
    The binomials are computed in log space (fine for m in the thousands). Ties in
    proxy are broken by sample order (stable sort); they do not matter when tied samples are the
    same response.

    Args:
        proxy: (P, m) proxy scores of m samples for each of P prompts (or (m,) for one prompt).
        gold:  (P, m) gold scores of the same samples.
        ns:    the n values, integers in 1..m (default: 1, 2, 4, … up to m).

    Returns:
        dict of numpy arrays: ``n`` (G,), ``gold`` (G,), ``proxy`` (G,), averaged over prompts.

    Example: proxy [[1, 2, 3]], gold [[10, 0, 5]], n = 2: ranks 2 and 3 win with probability
    1/3 and 2/3, so gold = 0/3 + 2·5/3 = 3.33.
    """
    proxy = np.atleast_2d(np.asarray(proxy, dtype=np.float64))
    gold = np.atleast_2d(np.asarray(gold, dtype=np.float64))
    if proxy.ndim != 2 or proxy.shape != gold.shape or proxy.shape[1] == 0:
        raise ValueError(f"proxy and gold must both be (P, m); got {proxy.shape}, {gold.shape}")
    if not (np.all(np.isfinite(proxy)) and np.all(np.isfinite(gold))):
        raise ValueError("proxy and gold must be finite")
    m = proxy.shape[1]
    if ns is None:
        ns = 2 ** np.arange(int(math.log2(m)) + 1)
    ns = _check_n(ns, "ns").reshape(-1).astype(np.int64)
    if np.any(ns > m):
        raise ValueError(f"ns must be <= m = {m} (samples per prompt), got max {ns.max()}")

    order = np.argsort(proxy, axis=1, kind="stable")                     # (P, m) ascending
    proxy_sorted = np.take_along_axis(proxy, order, axis=1)
    gold_sorted = np.take_along_axis(gold, order, axis=1)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, m + 1)))])
    ranks = np.arange(1, m + 1)[None, :]                                  # (1, m)
    log_w = _log_comb(ranks - 1, ns[:, None] - 1, log_fact) \
        - _log_comb(np.full_like(ns, m), ns, log_fact)[:, None]           # (G, m)
    weights = np.exp(log_w)                                               # rows sum to 1
    return {"n": ns,
            "gold": (gold_sorted @ weights.T).mean(axis=0),               # (G,)
            "proxy": (proxy_sorted @ weights.T).mean(axis=0)}


# ----------------------------------------------------------------------------- Gao et al. fits


@dataclass(frozen=True)
class GaoFit:
    """A fitted Gao et al. (2023) curve of gold-reward gain against d = sqrt(KL)."""

    alpha: float       # α: initial slope of the gain at d → 0 (bon) / scale of the rise (rl)
    beta: float        # β: strength of the overoptimisation penalty
    form: str          # "bon": d(α − βd);  "rl": d(α − β log d)
    d_peak: float      # d where the predicted gain peaks (inf if it never turns down)
    gain_peak: float   # predicted gain at d_peak

    @property
    def kl_peak(self) -> float:
        """KL at the peak, d_peak²."""
        return self.d_peak ** 2

    def predict(self, d) -> np.ndarray:
        """Predicted gain at d (array-like, d >= 0); the rl form is 0 at d = 0 (d log d → 0)."""
        d = np.asarray(d, dtype=np.float64)
        if self.form == "bon":
            return d * (self.alpha - self.beta * d)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d > 0, d * (self.alpha - self.beta * np.log(d)), 0.0)


def _check_curve(d, gain, positive: bool):
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    gain = np.asarray(gain, dtype=np.float64).reshape(-1)
    if d.shape != gain.shape or d.size < 2:
        raise ValueError(f"d and gain must be 1-D of one length >= 2, got {d.shape}, {gain.shape}")
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(gain))):
        raise ValueError("d and gain must be finite")
    if np.any(d <= 0) if positive else np.any(d < 0):
        raise ValueError(f"d = sqrt(KL) must be {'> 0' if positive else '>= 0'} for this fit")
    return d, gain


def _least_squares(features: np.ndarray, gain: np.ndarray) -> tuple[float, float]:
    """(α, β) minimising ||features @ [α, β] − gain||² (no intercept: the gain is 0 at d = 0)."""
    (alpha, beta), *_ = np.linalg.lstsq(features, gain, rcond=None)
    return float(alpha), float(beta)


def fit_bon(d, gain) -> GaoFit:
    """Least-squares fit of R_bon(d) = d(α − βd) = α·d + β·(−d²) (linear in α, β).

    Peak: R' = α − 2βd = 0 at d* = α/(2β), gain α²/(4β). β ≤ 0: no peak (d* = inf). A peak at
    d* < 0 (α < 0 < β) is reported at d = 0.

    Args:
        d: (G,) sqrt(KL) values, >= 0 (e.g. sqrt(kl_best_of_n(ns))).
        gain: (G,) gold score minus the gold score at d = 0 (n = 1).

    Example: d = [1, 2, 3], gain = [1.5, 2, 1.5] gives α = 2, β = 0.5, d* = 2, gain 2.
    """
    d, gain = _check_curve(d, gain, positive=False)
    alpha, beta = _least_squares(np.stack([d, -d ** 2], axis=1), gain)
    if beta > 0:
        d_peak = max(alpha / (2 * beta), 0.0)
    else:
        d_peak = math.inf if alpha > 0 or beta < 0 else 0.0
    gain_peak = math.inf if math.isinf(d_peak) else d_peak * (alpha - beta * d_peak)
    return GaoFit(alpha, beta, "bon", d_peak, gain_peak)


def fit_rl(d, gain) -> GaoFit:
    """Least-squares fit of R_RL(d) = d(α − β log d) = α·d + β·(−d log d), for d > 0.

    Peak: R' = α − β(log d + 1) = 0 at d* = exp(α/β − 1), where the gain is β·d*. β ≤ 0 (or β so
    small that d* overflows): no peak (d* = inf).

    Args:
        d: (G,) sqrt(KL) values, > 0 (drop the d = 0 point: log 0 is undefined).
        gain: (G,) gold score minus the gold score of the initial policy.

    Example: a curve generated with α = 1, β = 0.5 peaks at d* = e = 2.718 with gain 1.359.
    """
    d, gain = _check_curve(d, gain, positive=True)
    alpha, beta = _least_squares(np.stack([d, -d * np.log(d)], axis=1), gain)
    if beta > 0:
        log_peak = alpha / beta - 1.0
        d_peak = math.exp(log_peak) if log_peak < 700 else math.inf     # β ≈ 0: no peak in reach
        gain_peak = beta * d_peak
    else:
        d_peak = math.inf if alpha > 0 or beta < 0 else 0.0
        gain_peak = math.inf if math.isinf(d_peak) else 0.0
    return GaoFit(alpha, beta, "rl", d_peak, gain_peak)


# ----------------------------------------------------------------------------- RM ensembles


def aggregate_ensemble(scores, how: str, k: float = 1.0):
    """Combine the scores of M reward models into one (over dim 0).

        "mean":           (1/M) Σ_m r_m
        "min":            min_m r_m                         (worst-case optimisation)
        "mean_minus_std": mean − k · std,  std = sqrt((1/M) Σ_m (r_m − mean)²)

    The std is the population one (``unbiased=False``), so M = 1 gives std 0 rather than NaN.
    Conservative aggregates penalise responses on which the models disagree, which is where a
    policy exploits a proxy (Coste et al. 2024, "Reward Model Ensembles Help Mitigate
    Overoptimization"; their uncertainty-weighted form subtracts λ·variance, here k·std keeps
    the reward's units).

    Args:
        scores: (M, ...) tensor (or array) of M models' scores of the same responses.
        how: "mean", "min" or "mean_minus_std"; any other value raises ValueError.
        k: the std weight, >= 0 (only for "mean_minus_std").

    Returns:
        (...) aggregated scores; a tensor of the input's dtype for a tensor input, else a numpy
        array.

    Example: scores [[1, 3], [3, 3]] -> mean [2, 3], min [1, 3], mean_minus_std (k=1) [1, 3].
    """
    is_tensor = isinstance(scores, torch.Tensor)
    t = scores if is_tensor else torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if t.dim() == 0 or t.shape[0] == 0:
        raise ValueError(f"scores must be (M, ...) with M >= 1 models, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"k must be a finite number >= 0, got {k}")
    if how == "mean":
        out = t.mean(0)
    elif how == "min":
        out = t.min(0).values
    elif how == "mean_minus_std":
        out = t.mean(0) - k * t.std(0, unbiased=False)
    else:
        raise ValueError(f"how must be 'mean', 'min' or 'mean_minus_std', got {how!r}")
    return out if is_tensor else out.numpy()
