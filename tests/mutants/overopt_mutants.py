"""Realistic wrong answers to ``kl_best_of_n``, ``fit_bon``, ``fit_rl`` and
``aggregate_ensemble``."""
import math

import numpy as np
import torch

# ---------------------------------------------------------------------------- kl_best_of_n


def kl_best_of_n__log2(n):
    n = np.asarray(n, dtype=np.float64)
    return np.log2(n) - (n - 1) / n


def kl_best_of_n__no_correction(n):
    return np.log(np.asarray(n, dtype=np.float64))


def kl_best_of_n__one_over_n(n):
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) - 1 / n


def kl_best_of_n__integer_division(n):
    n = np.asarray(n)
    return np.log(n) - (n - 1) // n


def kl_best_of_n__math_log(n):
    return math.log(n) - (n - 1) / n


def kl_best_of_n__sign_flipped(n):
    n = np.asarray(n, dtype=np.float64)
    return (n - 1) / n - np.log(n)


def kl_best_of_n__log_n_minus_one(n):
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) - 1.0


def kl_best_of_n__mean_of_array(n):
    n = np.asarray(n, dtype=np.float64)
    return float(np.mean(np.log(n) - (n - 1) / n))


def kl_best_of_n__float16(n):
    n = np.asarray(n, dtype=np.float16)
    return np.log(n) - (n - 1) / n

# ---------------------------------------------------------------------------- fit_bon / fit_rl


def _ls(features, gain):
    return np.linalg.lstsq(np.stack(features, axis=1), np.asarray(gain, dtype=np.float64),
                           rcond=None)[0]


def fit_bon__with_intercept(d, gain):
    d = np.asarray(d, dtype=np.float64)
    _, a, b = _ls([np.ones_like(d), d, -d ** 2], gain)
    return float(a), float(b)


def fit_bon__beta_sign(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, d ** 2], gain)
    return float(a), float(b)


def fit_bon__polyfit(d, gain):
    c2, c1, _ = np.polyfit(d, gain, 2)
    return float(c1), float(-c2)


def fit_bon__divide_by_d(d, gain):
    """Fits gain/d = α − βd as a line (weights the points differently; NaN at d = 0)."""
    d = np.asarray(d, dtype=np.float64)
    keep = d > 0
    slope, intercept = np.polyfit(d[keep], np.asarray(gain)[keep] / d[keep], 1)
    return float(intercept), float(-slope)


def fit_bon__swapped_output(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -d ** 2], gain)
    return float(b), float(a)


def fit_bon__fits_kl_not_d(d, gain):
    """Uses KL = d² as the variable."""
    kl = np.asarray(d, dtype=np.float64) ** 2
    a, b = _ls([kl, -kl ** 2], gain)
    return float(a), float(b)


def fit_bon__beta_clipped(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -d ** 2], gain)
    return float(a), max(float(b), 0.0)


def fit_bon__rl_form(d, gain):
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(d > 0, -d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    a, b = _ls([d, f], gain)
    return float(a), float(b)


def fit_rl__with_intercept(d, gain):
    d = np.asarray(d, dtype=np.float64)
    _, a, b = _ls([np.ones_like(d), d, -d * np.log(d)], gain)
    return float(a), float(b)


def fit_rl__log10(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -d * np.log10(d)], gain)
    return float(a), float(b)


def fit_rl__log2(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -d * np.log2(d)], gain)
    return float(a), float(b)


def fit_rl__log_of_kl(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -d * np.log(d ** 2)], gain)
    return float(a), float(b)


def fit_rl__beta_sign(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, d * np.log(d)], gain)
    return float(a), float(b)


def fit_rl__forgot_d_factor(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -np.log(d)], gain)
    return float(a), float(b)


def fit_rl__divide_by_d(d, gain):
    d = np.asarray(d, dtype=np.float64)
    slope, intercept = np.polyfit(np.log(d), np.asarray(gain) / d, 1)
    return float(intercept), float(-slope)


def fit_rl__bon_form(d, gain):
    d = np.asarray(d, dtype=np.float64)
    a, b = _ls([d, -d ** 2], gain)
    return float(a), float(b)

# ---------------------------------------------------------------------------- aggregate_ensemble


def _std_pop(scores):
    return scores.std(0, unbiased=False)


def aggregate_ensemble__unbiased_std(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    return scores.mean(0) - k * scores.std(0)


def aggregate_ensemble__wrong_dim(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(-1)
    if how == "min":
        return scores.min(-1).values
    return scores.mean(-1) - k * scores.std(-1, unbiased=False)


def aggregate_ensemble__plus_std(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    return scores.mean(0) + k * _std_pop(scores)


def aggregate_ensemble__variance(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    return scores.mean(0) - k * scores.var(0, unbiased=False)


def aggregate_ensemble__ignores_k(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    return scores.mean(0) - _std_pop(scores)


def aggregate_ensemble__min_tuple(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0)
    return scores.mean(0) - k * _std_pop(scores)


def aggregate_ensemble__max_for_min(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.max(0).values
    return scores.mean(0) - k * _std_pop(scores)


def aggregate_ensemble__global_std(scores, how, k=1.0):
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    return scores.mean(0) - k * scores.std(unbiased=False)


def aggregate_ensemble__flattened(scores, how, k=1.0):
    """Treats the scores as (M, N) and flattens everything after the models."""
    flat = scores.reshape(scores.shape[0], -1)
    if how == "mean":
        return flat.mean(0)
    if how == "min":
        return flat.min(0).values
    return flat.mean(0) - k * flat.std(0, unbiased=False)


def aggregate_ensemble__std_of_mean_centred_wrong(scores, how, k=1.0):
    """Population std with the mean over the wrong dim."""
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    centred = scores - scores.mean(-1, keepdim=True)
    return scores.mean(0) - k * (centred ** 2).mean(0).sqrt()


# ---------------------------------------------------------------------------- issue #25 edge cases


def kl_best_of_n__squeezed(n):
    """Squeezes to handle numbers and arrays alike, and so turns an array of one into a number."""
    n = np.asarray(n, dtype=np.float64).squeeze()
    return np.log(n) - (n - 1) / n


def aggregate_ensemble__unknown_how_falls_through(scores, how, k=1.0):
    """Was honest before issue #25: anything that is not 'mean' or 'min' is mean_minus_std."""
    M = scores.shape[0]
    mean = sum(scores[m] for m in range(M)) / M
    if how == "mean":
        return mean
    if how == "min":
        return scores.min(0).values
    var = sum((scores[m] - mean) ** 2 for m in range(M)) / M
    return mean - k * var.sqrt()


def aggregate_ensemble__dict_lookup_key_error(scores, how, k=1.0):
    """Was honest before issue #25: an unknown how raises KeyError, not ValueError."""
    table = {"mean": lambda: scores.mean(dim=0),
             "min": lambda: torch.amin(scores, dim=0),
             "mean_minus_std": lambda: scores.mean(0) - k * scores.var(0, unbiased=False).sqrt()}
    return table[how]()


def aggregate_ensemble__unknown_how_gives_the_mean(scores, how, k=1.0):
    if how == "min":
        return scores.min(0).values
    if how == "mean_minus_std":
        return scores.mean(0) - k * scores.std(0, unbiased=False)
    return scores.mean(0)


def aggregate_ensemble__float32_result(scores, how, k=1.0):
    if how not in ("mean", "min", "mean_minus_std"):
        raise ValueError(f"unknown how {how!r}")
    s = scores.float()
    if how == "mean":
        return s.mean(0)
    if how == "min":
        return s.min(0).values
    return s.mean(0) - k * s.std(0, unbiased=False)

