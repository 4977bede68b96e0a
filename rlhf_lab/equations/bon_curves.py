"""Best-of-n curves from a scored pool: the unbiased order-statistics estimate of E[gold of the
best of n], its KL, seed means, Gao's summary, and choosing n without gold. Pure numpy: no model,
no I/O; the fits themselves are in :mod:`rlhf_lab.equations.overopt_math`.
"""
from __future__ import annotations

import math

import numpy as np

from rlhf_lab.core.config import require
from rlhf_lab.equations.overopt_math import best_of_n_expected, fit_bon, kl_best_of_n

__all__ = ['n_grid', 'plugin_kl_best_of_n', 'best_of_n_curve', 'mean_curve', 'gao_summary', 'choose_n', 'choose_n_by_labels']


def n_grid(n_max: int, points_per_octave: int = 2) -> list[int]:
    """n = round(2^(k / points_per_octave)) for k = 0, 1, ..., up to n_max, without repeats.

    Example: n_grid(16, 2) = [1, 2, 3, 4, 6, 8, 11, 16].
    """
    octaves = math.log2(n_max)
    raw = np.round(2.0 ** (np.arange(0, octaves * points_per_octave + 1e-9) / points_per_octave))
    return sorted({int(n) for n in raw} | {1, n_max})


def plugin_kl_best_of_n(proxy, ns) -> np.ndarray:
    """A plug-in estimate of the true KL(π_bon ‖ π_ref), to set beside the bound KL_bon(n).

    Per prompt, p̂ is the empirical distribution of the m samples over their distinct proxy
    scores s_1 < s_2 < ... (tied replies merge; BoN splits a tie in proportion to p̂, so the KL is
    unchanged). BoN with n i.i.d. draws from p̂ lands on level l with probability
    q_l = F_l^n − F_{l−1}^n, F_l = Σ_{k≤l} p̂_k, and KL_plugin(n) = Σ_l q_l log(q_l / p̂_l).
    Exact for p̂ (and below the bound when replies repeat), but it cannot exceed log m, so it
    underestimates the true KL once n nears the number of distinct replies.

    Args: proxy (P, m); ns (G,) integers >= 1. Returns: (G,) the mean over prompts.
    Example: proxy [[0, 1]] (p̂ = [½, ½]), n = 2: q = [¼, ¾], KL = 0.131 < KL_bon(2) = 0.193.
    """
    proxy = np.atleast_2d(np.asarray(proxy, dtype=np.float64))
    ns = np.asarray(ns, dtype=np.float64)[:, None]                        # (G, 1)
    kls = []
    for row in proxy:
        _, counts = np.unique(row, return_counts=True)                     # ascending levels
        cdf = np.cumsum(counts) / counts.sum()                             # F_l, ends at exactly 1
        below = np.concatenate(([0.0], cdf[:-1]))                           # F_{l-1}
        mass = cdf - below                                                 # p̂_l, (L,)
        q = cdf ** ns - below ** ns                                        # (G, L); = mass at n = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            kls.append(np.where(q > 0, q * np.log(q / mass), 0.0).sum(axis=1))
    return np.mean(kls, axis=0)


def best_of_n_curve(proxy, gold, ns) -> dict:
    """Expected gold and proxy score of the proxy's best-of-n choice, for each n in ``ns``.

    By unbiased order statistics (overopt_math.best_of_n_expected), with E[·(y)] the mean over
    all samples (the n = 1 value):
        kl_bon = log n − (n−1)/n (an upper bound on the KL), d = sqrt(kl_bon),
        gold_gain = E[r*(y_bon)] − E[r*(y)],  proxy_gain = E[r_φ(y_bon)] − E[r_φ(y)],
    and kl_plugin (:func:`plugin_kl_best_of_n`), an estimate of the true KL.

    Args: proxy, gold (P, m) scores of the same samples; ns integers in 1..m.
    Returns: a dict of lists (G,): n, kl_bon, d, kl_plugin, gold, proxy, gold_gain, proxy_gain.
    Example: proxy [[1, 2, 3]], gold [[10, 0, 5]], n = 2: gold 3.33, gold_gain 3.33 − 5 = −1.67,
    proxy_gain 2.67 − 2 = 0.67.
    """
    proxy, gold = np.atleast_2d(proxy), np.atleast_2d(gold)
    bon = best_of_n_expected(proxy, gold, ns)
    kl = kl_best_of_n(bon["n"])
    return {"n": [int(n) for n in bon["n"]], "kl_bon": kl.tolist(), "d": np.sqrt(kl).tolist(),
            "kl_plugin": plugin_kl_best_of_n(proxy, bon["n"]).tolist(),
            "gold": bon["gold"].tolist(), "proxy": bon["proxy"].tolist(),
            "gold_gain": (bon["gold"] - gold.mean()).tolist(),
            "proxy_gain": (bon["proxy"] - proxy.mean()).tolist()}


def mean_curve(curves: list[dict]) -> dict:
    """The pointwise mean of best-of-n curves on one grid of n (:func:`best_of_n_curve`): n, KL_bon
    and d are shared; the plug-in KL, the scores and the gains are averaged.
    Example: gold_gain [0, 0.2] and [0, 0.4] give [0, 0.3]."""
    require(len(curves) > 0 and all(c["n"] == curves[0]["n"] for c in curves), "curves",
            "must be a non-empty list of curves on the same grid of n")
    averaged = ("kl_plugin", "gold", "proxy", "gold_gain", "proxy_gain")
    return {**curves[0], **{k: np.mean([c[k] for c in curves], axis=0).tolist() for k in averaged}}


def gao_summary(curve: dict) -> dict:
    """Fit R_bon(d) = d(α − βd) to a curve's gold gain (Gao et al. 2023) and find its peaks.

    Returns the curve itself, the fit (alpha, beta, d_peak = α/(2β), kl_peak, gain_peak; None
    where the fit never turns down), the observed peak (n, d, gold_gain at the best n of the
    grid) and the fall from there to the largest n: ``fall = gold_gain(n_max) − gold_gain(n_peak)``.
    """
    fit = fit_bon(curve["d"], curve["gold_gain"])
    finite = lambda x: float(x) if math.isfinite(x) else None             # JSON: no peak -> null
    i = int(np.argmax(curve["gold_gain"]))
    return {"curve": curve, "fit": {"alpha": fit.alpha, "beta": fit.beta, "d_peak": finite(fit.d_peak),
                                    "kl_peak": finite(fit.kl_peak), "gain_peak": finite(fit.gain_peak)},
            "peak": {"n": curve["n"][i], "d": curve["d"][i], "gold_gain": curve["gold_gain"][i]},
            "fall": curve["gold_gain"][-1] - curve["gold_gain"][i]}


def _against_gold_peak(proxy, gold, ns, i: int) -> dict:
    """The choice ``ns[i]`` next to the true peak of the proxy's best-of-n gold gain:
    ``regret = gold_gain(n_peak) − gold_gain(n*)`` (>= 0), ``octaves = log2(n* / n_peak)``."""
    gain = best_of_n_expected(proxy, gold, ns)["gold"] - np.mean(gold)
    j = int(np.argmax(gain))
    return {"n_chosen": int(ns[i]), "gold_gain_chosen": float(gain[i]),
            "n_peak": int(ns[j]), "gold_gain_peak": float(gain[j]),
            "regret": float(gain[j] - gain[i]), "octaves": float(math.log2(ns[i] / ns[j]))}


def choose_n(proxy, judge, gold, ns) -> dict:
    """Pick n without gold: n* = argmax_n E[judge(y_bon(n))], y_bon chosen by ``proxy``.

    ``judge`` is any score that the proxy was not trained to please: a held-out reward model, or
    the other ensemble members' mean − k·std. Reports n* and the gold gain there next to the true
    peak of the gold gain: ``regret = gold_gain(n_peak) − gold_gain(n*)`` (>= 0) and
    ``octaves = log2(n* / n_peak)``.
    """
    judged = best_of_n_expected(proxy, judge, ns)["gold"]                # "gold" = the 2nd score
    return {"judge_gain": (judged - np.mean(judge)).tolist(),
            **_against_gold_peak(proxy, gold, ns, int(np.argmax(judged)))}


def choose_n_by_labels(proxy, gold, ns, labels_per_n: int, seed: int) -> dict:
    """Pick n without reading the gold utility: a small human evaluation of best-of-n.

    For each n of ``ns``, ``labels_per_n`` times: a random prompt; the proxy's best of n replies
    drawn (without replacement) from that prompt's pool, against one more reply drawn at random;
    the simulated annotator (Bradley-Terry on r*, as :func:`rlhf_lab.world.annotate`) says which
    it prefers. The detector sees only these labels. Win rates are noisy (±0.03 at 300 labels),
    so rather than take the best n it fits Gao's form to the win-rate excess,
    2·win − 1 ≈ d(a − b d) with d = sqrt(KL_bon(n)), and picks the n nearest the fitted peak
    (the largest n when the fit never turns down).

    Args: proxy, gold (P, m); ns increasing integers in 1..m. Returns win rates, the fit, the
    chosen n, and (from the exact curve, for reporting only) the gold gain there and at the
    true peak, ``regret`` and ``octaves`` as :func:`choose_n`, and the number of labels used.
    """
    proxy, gold = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    P, m = proxy.shape
    rng = np.random.default_rng(seed)
    wins = []
    for n in ns:
        prompts = rng.integers(P, size=labels_per_n)
        best = np.array([rng.choice(m, size=n, replace=False) for _ in range(labels_per_n)])
        best = best[np.arange(labels_per_n), np.argmax(proxy[prompts[:, None], best], axis=1)]
        other = rng.integers(m, size=labels_per_n)
        p_best = 1.0 / (1.0 + np.exp(-(gold[prompts, best] - gold[prompts, other])))
        wins.append(float(np.mean(rng.random(labels_per_n) < p_best)))   # the annotator's labels
    wins = np.array(wins)
    d = np.sqrt(kl_best_of_n(np.asarray(ns)))
    fit = fit_bon(d, 2 * wins - 1)
    i = int(np.argmin(np.abs(d - fit.d_peak))) if math.isfinite(fit.d_peak) else len(ns) - 1
    return {"ns": [int(n) for n in ns], "win_rate": wins.tolist(),
            "win_rate_se": np.sqrt(wins * (1 - wins) / labels_per_n).tolist(),
            "fit": {"alpha": fit.alpha, "beta": fit.beta},
            **_against_gold_peak(proxy, gold, ns, i), "labels": labels_per_n * len(ns)}
