"""Hidden tests of notebook 06: ``kl_best_of_n``, ``fit_bon``, ``fit_rl``, ``aggregate_ensemble``.

KL_bon(n) = log n − (n−1)/n in nats, for an integer or a numpy array of them (same shape). The
fits are least squares without intercept of gain = d(α − βd) and gain = d(α − β log d); they
may return a GaoFit or a pair (α, β). The ensemble combines M reward models over dim 0: "mean",
"min", "mean_minus_std" = mean − k·std with the population std; any other ``how`` raises
ValueError; float64 scores give a float64 result.
"""
import math

import numpy as np
import torch
from _helpers import (alpha_beta, as_tensor, case, check_float64, expect, raises_value_error,
                      result, rng)

KL, BON, RL, ENS = "kl_best_of_n", "fit_bon", "fit_rl", "aggregate_ensemble"

# ============================================================================ kl_best_of_n


def _kl(n):
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) - (n - 1) / n


def _kl_mistakes(n):
    n = np.asarray(n, dtype=np.float64)
    return [(np.log2(n) - (n - 1) / n, "use the natural log (nats), not log2"),
            (np.log10(n) - (n - 1) / n, "use the natural log (nats), not log10"),
            (np.log(n), "you left out the correction -(n - 1)/n (or computed (n - 1)/n with "
             "integer division //, which gives 0)"),
            (np.log(n) - 1 / n, "the correction is (n - 1)/n, not 1/n"),
            ((n - 1) / n - np.log(n), "the sign is flipped: KL = log n - (n - 1)/n >= 0"),
            (np.log(n) - (n + 1) / n, "the correction is (n - 1)/n, not (n + 1)/n")]


def _kl_value(out, what):
    return as_tensor(out, what)


def test_kl_best_of_n__exact_for_numbers(student):
    """Python integers 3, 7, 100, 10**6 give floats in nats."""
    for n in (3, 7, 100, 10 ** 6):
        out = _kl_value(student.call(KL, n), f"kl_best_of_n({n})")
        if out.numel() != 1:
            raise AssertionError(f"kl_best_of_n({n}) returned shape {tuple(out.shape)}; for a "
                                 f"number return one number")
        expect(out.reshape(()), float(_kl(n)), f"for n = {int(n)}",
               [(float(w), m) for w, m in _kl_mistakes(n)], atol=1e-9, rtol=1e-6)


def test_kl_best_of_n__array_keeps_its_shape(student):
    """A (2, 3) numpy array of n gives a (2, 3) result."""
    ns = np.array([[1, 2, 5], [16, 333, 4096]])
    try:
        out = student.call(KL, ns)
    except Exception as error:
        if getattr(error, "kind", None) != "exception":
            raise                              # not written, missing, time-out: as it is
        raise AssertionError(f"kl_best_of_n failed on a numpy array of n ({error}); use np.log, "
                             f"which works elementwise (math.log takes one number)") from None
    out = result(out, "for a (2, 3) array of n your result", (2, 3))
    expect(out, _kl(ns), "for n = [[1, 2, 5], [16, 333, 4096]]",
           [(torch.from_numpy(w), m) for w, m in _kl_mistakes(ns)], atol=1e-9, rtol=1e-6)


def test_kl_best_of_n__one_sample_and_huge_n(student):
    """n = 1 is π_ref itself (KL 0, exactly); n = 2**40 is about 26.7 nats."""
    out = _kl_value(student.call(KL, 1), "kl_best_of_n(1)").reshape(-1)
    expect(out[0], 0.0, "for n = 1 (best-of-1 is π_ref: KL = 0)", atol=1e-12)
    out = _kl_value(student.call(KL, np.array([1, 1, 1])), "kl_best_of_n([1, 1, 1])")
    expect(out, [0.0, 0.0, 0.0], "for n = [1, 1, 1]", atol=1e-12)
    n = 2 ** 40
    out = _kl_value(student.call(KL, n), "kl_best_of_n(2**40)").reshape(-1)
    expect(out[0], float(_kl(n)), "for n = 2**40",
           [(float(w), m) for w, m in _kl_mistakes(n)], atol=1e-9, rtol=1e-6)


def test_kl_best_of_n__grows_between_log_n_minus_one_and_log_n(student):
    """Over n = 1..512 the KL increases, stays below log n and above log n - 1."""
    ns = np.arange(1, 513)
    out = result(student.call(KL, ns), "for n = 1..512 your result", (512,)).numpy()
    if np.any(np.diff(out) <= 0):
        raise AssertionError("your KL_bon does not increase with n over n = 1..512")
    if np.any(out > np.log(ns) + 1e-12) or np.any(out < np.log(ns) - 1 - 1e-12):
        raise AssertionError("your KL_bon leaves the band log n - 1 <= KL <= log n for some n "
                             "in 1..512")
    expect(out, _kl(ns), "for n = 1..512", atol=1e-9, rtol=1e-6)

def test_kl_best_of_n__array_of_one(student):
    """An array holding one n gives an array of shape (1,), not a bare number."""
    with case("for a numpy array holding one n, np.array([7])"):
        out = result(student.call(KL, np.array([7])), "your result", (1,))
        expect(out, _kl(np.array([7])), "wrong value", atol=1e-9, rtol=1e-6)


# ============================================================================ the Gao fits


def _lstsq(features, gain):
    """Least-squares coefficients of the given features (no intercept unless one is given)."""
    return np.linalg.lstsq(np.stack(features, axis=1), gain, rcond=None)[0]


def _bon_curve(d, a, b):
    return d * (a - b * d)


def _rl_curve(d, a, b):
    return d * (a - b * np.log(d))


def _fit_mistakes(d, gain, form):
    f2 = -d ** 2 if form == "bon" else -d * np.log(d)
    right = _lstsq([d, f2], gain)
    out = [(np.array([right[0], -right[1]]), "your β has the wrong sign: the curve is "
            + ("d(α - βd)" if form == "bon" else "d(α - β log d)") + ", so β > 0 when the gain "
            "turns down"),
           (np.array([right[1], right[0]]), "you returned (β, α): return (α, β)"),
           (_lstsq([np.ones_like(d), d, f2], gain)[1:], "your fit has an intercept: the gain is "
            "0 at d = 0 by definition, so the model has no constant term")]
    if form == "rl":
        out += [(_lstsq([d, -d * np.log2(d)], gain), "use the natural log: d(α - β ln d)"),
                (_lstsq([d, -d * np.log10(d)], gain), "use the natural log: d(α - β ln d)"),
                (_lstsq([d, -d * np.log(d ** 2)], gain), "the curve uses log d, not log KL = "
                 "log d²")]
    return out


def _check_fit(student, name, d, gain, want, case, form, atol=1e-7):
    got = alpha_beta(student.call(name, d, gain), f"your {name}")
    expect(np.array(got), np.asarray(want, dtype=np.float64), case,
           [(torch.as_tensor(w), m) for w, m in _fit_mistakes(d, gain, form)], atol=atol,
           rtol=1e-6)


def test_fit_bon__noiseless_curve_on_uneven_grid(student):
    """gain = d(1.3 - 0.35 d) on an uneven grid that starts at d = 0: α, β exactly."""
    d = np.array([0.0, 0.1, 0.45, 0.5, 1.7, 2.2, 3.9, 4.0])
    _check_fit(student, BON, d, _bon_curve(d, 1.3, 0.35), [1.3, 0.35], "on a noiseless curve "
               "with α = 1.3, β = 0.35 (d from 0 to 4, unevenly spaced)", "bon")


def test_fit_bon__noisy_least_squares(student):
    """A noisy curve of 40 points: the least-squares α, β of d(α - βd), no intercept."""
    g = np.random.default_rng(90)
    d = np.sort(g.uniform(0.0, 3.5, 40))
    gain = _bon_curve(d, 0.9, 0.2) + g.normal(0, 0.15, 40)
    _check_fit(student, BON, d, gain, _lstsq([d, -d ** 2], gain), "on a noisy curve of 40 points "
               "(least squares of d(α - βd), no intercept)", "bon")


def test_fit_bon__rising_curve_has_negative_beta(student):
    """gain = d(0.5 + 0.25 d) never turns down: β = -0.25 (not clipped to 0)."""
    d = np.array([0.2, 0.7, 1.0, 1.6, 2.5])
    _check_fit(student, BON, d, _bon_curve(d, 0.5, -0.25), [0.5, -0.25], "on a noiseless rising "
               "curve d(0.5 + 0.25 d), so β = -0.25", "bon")


def test_fit_bon__linear_in_the_gain(student):
    """Least squares is linear in the data: fit(2·g1 − 3·g2) = 2·fit(g1) − 3·fit(g2); two
    points determine α, β."""
    g = np.random.default_rng(91)
    d = np.linspace(0.3, 3.0, 9)
    g1, g2 = g.normal(size=9), g.normal(size=9)
    a1 = np.array(alpha_beta(student.call(BON, d, g1), "your fit_bon"))
    a2 = np.array(alpha_beta(student.call(BON, d, g2), "your fit_bon"))
    a12 = np.array(alpha_beta(student.call(BON, d, 2 * g1 - 3 * g2), "your fit_bon"))
    expect(a12, 2 * a1 - 3 * a2, "fitting 2·g1 − 3·g2 should give 2·fit(g1) − 3·fit(g2) (least "
           "squares is linear in the gain; no intercept, no transform of the gain)", atol=1e-7)
    d2 = np.array([1.0, 2.0])
    _check_fit(student, BON, d2, np.array([0.6, 0.4]), [1.0, 0.4], "on the two points (1, 0.6), "
               "(2, 0.4), which the curve passes through exactly", "bon")


def test_fit_rl__noiseless_curve_across_d_equals_one(student):
    """gain = d(0.8 - 0.3 log d) for d from 0.05 to 5 (log d changes sign): α, β exactly."""
    d = np.array([0.05, 0.3, 0.9, 1.0, 1.2, 2.0, 3.3, 5.0])
    _check_fit(student, RL, d, _rl_curve(d, 0.8, 0.3), [0.8, 0.3], "on a noiseless curve with "
               "α = 0.8, β = 0.3 (d from 0.05 to 5)", "rl")


def test_fit_rl__noisy_least_squares(student):
    """A noisy curve of 40 points: the least-squares α, β of d(α − β log d), no intercept."""
    g = np.random.default_rng(92)
    d = np.sort(g.uniform(0.1, 4.0, 40))
    gain = _rl_curve(d, 1.1, 0.45) + g.normal(0, 0.1, 40)
    _check_fit(student, RL, d, gain, _lstsq([d, -d * np.log(d)], gain), "on a noisy curve of 40 "
               "points (least squares of d(α − β log d), no intercept)", "rl")


def test_fit_rl__rising_curve_has_negative_beta(student):
    """gain = d(0.5 + 0.1 log d): β = −0.1 (not clipped to 0)."""
    d = np.array([0.4, 0.8, 1.5, 2.5, 4.0])
    _check_fit(student, RL, d, _rl_curve(d, 0.5, -0.1), [0.5, -0.1], "on a noiseless curve "
               "d(0.5 + 0.1 log d), so β = −0.1", "rl")


def test_fit_rl__linear_in_the_gain(student):
    """fit(2·g1 − 3·g2) = 2·fit(g1) − 3·fit(g2); two points determine α, β."""
    g = np.random.default_rng(93)
    d = np.linspace(0.2, 3.0, 8)
    g1, g2 = g.normal(size=8), g.normal(size=8)
    a1 = np.array(alpha_beta(student.call(RL, d, g1), "your fit_rl"))
    a2 = np.array(alpha_beta(student.call(RL, d, g2), "your fit_rl"))
    a12 = np.array(alpha_beta(student.call(RL, d, 2 * g1 - 3 * g2), "your fit_rl"))
    expect(a12, 2 * a1 - 3 * a2, "fitting 2·g1 − 3·g2 should give 2·fit(g1) − 3·fit(g2) (least "
           "squares is linear in the gain; no intercept, no transform of the gain)", atol=1e-7)
    d2 = np.array([1.0, math.e])
    gain = _rl_curve(d2, 0.7, 0.4)
    _check_fit(student, RL, d2, gain, [0.7, 0.4], "on the two points d = 1 and d = e of the curve "
               "d(0.7 − 0.4 log d)", "rl")

# ============================================================================ aggregate_ensemble


def _agg(scores, how, k=1.0):
    s = scores.double()
    if how == "mean":
        return s.mean(0)
    if how == "min":
        return s.min(0).values
    return s.mean(0) - k * s.std(0, unbiased=False)


def _ens_mistakes(scores, how, k=1.0):
    s = scores.double()
    mean, std = s.mean(0), s.std(0, unbiased=False)
    out = [(s.max(0).values, "you took the max: the conservative aggregate is the min"),
           (s.median(0).values, "you took the median")]
    if how == "mean_minus_std":
        if s.shape[0] > 1:
            out.append((mean - k * s.std(0, unbiased=True), "use the population std "
                        "(unbiased=False), so that one model gives std 0"))
        out += [(mean + k * std, "it is mean MINUS k·std: disagreement must lower the reward"),
                (mean - k * std ** 2, "you subtracted k·variance: subtract k·std (the square "
                 "root)"),
                (mean - std, "you ignored k: subtract k·std")]
    return out


def _ens(student, scores, how, shape, k=None):
    args = (scores, how) if k is None else (scores, how, k)
    return result(student.call(ENS, *args), f"with how={how!r} your result", shape)


def test_aggregate_ensemble__three_dim_scores(student):
    """(M=4, B=2, N=3) scores: each aggregate over the models gives (2, 3)."""
    scores = torch.randn(4, 2, 3, generator=rng(94), dtype=torch.float64) * 2
    for how in ("mean", "min", "mean_minus_std"):
        out = _ens(student, scores, how, (2, 3))
        expect(out, _agg(scores, how), f"with how={how!r} on scores of 4 models x (2, 3) replies",
               _ens_mistakes(scores, how), atol=1e-9)


def test_aggregate_ensemble__one_model(student):
    """M = 1: every aggregate is that model's scores (std 0, not NaN)."""
    scores = torch.tensor([[0.5, -2.0, 3.0, 1e3]], dtype=torch.float64)
    for how in ("mean", "min", "mean_minus_std"):
        out = _ens(student, scores, how, (4,), k=3.0)
        expect(out, scores[0], f"with how={how!r} for a single model (k = 3)", atol=1e-9)


def test_aggregate_ensemble__k_weights_the_std(student):
    """k = 0 gives the mean, k = 2.5 subtracts 2.5 std, no k means k = 1."""
    scores = torch.randn(5, 6, generator=rng(95), dtype=torch.float64)
    for k in (0.0, 2.5):
        out = _ens(student, scores, "mean_minus_std", (6,), k=k)
        expect(out, _agg(scores, "mean_minus_std", k), f"with how='mean_minus_std', k = {k}",
               _ens_mistakes(scores, "mean_minus_std", k), atol=1e-9)
    out = _ens(student, scores, "mean_minus_std", (6,))
    expect(out, _agg(scores, "mean_minus_std", 1.0), "with how='mean_minus_std' and no k "
           "(default k = 1)", _ens_mistakes(scores, "mean_minus_std", 1.0), atol=1e-9)


def test_aggregate_ensemble__two_models_float32(student):
    """Two float32 models: mean, min, and std = |a − b|/2."""
    a = torch.tensor([1.0, -3.0, 2.5, 0.0, 7.0])
    b = torch.tensor([2.0, 1.0, 2.5, -4.0, -1.0])
    scores = torch.stack([a, b])                                      # (2, 5) float32
    want = {"mean": (a + b) / 2, "min": torch.minimum(a, b),
            "mean_minus_std": (a + b) / 2 - 1.5 * (a - b).abs() / 2}
    for how, w in want.items():
        out = _ens(student, scores, how, (5,), k=1.5)
        expect(out, w.double(), f"with how={how!r} for two float32 models (k = 1.5)",
               _ens_mistakes(scores, how, 1.5), atol=1e-5)


def test_aggregate_ensemble__models_on_dim_zero(student):
    """A (3, 3) table is reduced over dim 0 (the models), not over the replies."""
    scores = torch.tensor([[0.0, 5.0, 1.0], [4.0, -1.0, 1.0], [2.0, 2.0, 10.0]],
                          dtype=torch.float64)
    for how in ("mean", "min", "mean_minus_std"):
        out = _ens(student, scores, how, (3,))
        expect(out, _agg(scores, how), f"with how={how!r} for 3 models x 3 replies",
               [(_agg(scores.T, how), "reduce over dim 0 (the models), not over the replies")]
               + _ens_mistakes(scores, how), atol=1e-9)


def test_aggregate_ensemble__unknown_how_raises(student):
    """An unknown ``how`` ("max", "Mean", "mean-std", "") raises ValueError, whatever k."""
    scores = torch.randn(3, 4, generator=rng(96), dtype=torch.float64)
    for how in ("max", "Mean", "mean-std", ""):
        raises_value_error(student, ENS, (scores, how), f"with how={how!r} (not one of 'mean', "
                           f"'min', 'mean_minus_std')")
    raises_value_error(student, ENS, (scores, "median", 2.0), "with how='median' and k = 2")


def test_aggregate_ensemble__float64_stays_float64(student):
    """float64 scores give a float64 aggregate, exact to float64 precision, for every how."""
    scores = torch.randn(4, 2, 3, generator=rng(97), dtype=torch.float64)
    for how in ("mean", "min", "mean_minus_std"):
        check_float64(student, ENS, (scores, how, 0.7), f"with how={how!r} on float64 scores",
                      _agg(scores, how, 0.7), atol=1e-12)
