"""Tests of rlhf_lab.equations.overopt_math: best-of-n KL and order statistics, Gao fits, RM ensembles."""
import itertools
import math

import numpy as np
import pytest
import torch

from rlhf_lab.equations.overopt_math import (
    GaoFit,
    aggregate_ensemble,
    best_of_n_exact,
    best_of_n_expected,
    fit_bon,
    fit_rl,
    kl_best_of_n,
    kl_exact_best_of_n,
)

# ----------------------------------------------------------------------------- exact values


def test_kl_best_of_n_values_and_types():
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_best_of_n(1024) == pytest.approx(math.log(1024) - 1023 / 1024)
    arr = kl_best_of_n(np.array([1, 4, 16]))
    assert isinstance(arr, np.ndarray) and arr.shape == (3,)
    assert arr[1] == pytest.approx(math.log(4) - 0.75)
    ten = kl_best_of_n(torch.tensor([1, 2]))
    assert isinstance(ten, torch.Tensor) and ten.dtype == torch.float64
    assert np.all(np.diff(kl_best_of_n(np.arange(1, 200))) > 0)


@pytest.mark.parametrize("bad", [0, -3, 1.5, float("nan"), float("inf"), True, "4"])
def test_kl_best_of_n_rejects_bad_n(bad):
    with pytest.raises(ValueError, match="n must"):
        kl_best_of_n(bad)


def test_best_of_n_exact_two_point():
    q = best_of_n_exact([0.5, 0.5], [0.0, 1.0], 2)
    assert np.allclose(q, [0.25, 0.75])
    assert kl_exact_best_of_n([0.5, 0.5], [0.0, 1.0], 2) == pytest.approx(
        0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert np.allclose(best_of_n_exact([0.2, 0.3, 0.5], [1, 1, 0], 2), [0.3, 0.45, 0.25])


def _brute_force_bon(p, scores, n):
    """Enumerate all K^n draws; the first drawn of the top score wins."""
    q = np.zeros(len(p))
    for draw in itertools.product(range(len(p)), repeat=n):
        best = max(draw, key=lambda k: scores[k])          # max keeps the first maximal one
        q[best] += np.prod([p[k] for k in draw])
    return q


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_best_of_n_exact_matches_enumeration_with_ties(n):
    p = np.array([0.1, 0.25, 0.05, 0.35, 0.25])
    scores = np.array([2.0, 1.0, 2.0, 0.0, 1.0])                          # two tied pairs
    q = best_of_n_exact(p, scores, n)
    assert np.allclose(q, _brute_force_bon(p, scores, n), atol=1e-12)
    assert q.sum() == pytest.approx(1.0)
    if n == 1:
        assert np.allclose(q, p)


def test_best_of_n_expected_hand_example():
    out = best_of_n_expected([[1.0, 2.0, 3.0]], [[10.0, 0.0, 5.0]], [1, 2, 3])
    assert out["n"].tolist() == [1, 2, 3]
    assert np.allclose(out["gold"], [5.0, 10 / 3, 5.0])
    assert np.allclose(out["proxy"], [2.0, 8 / 3, 3.0])


def test_best_of_n_expected_matches_exhaustive_subsets():
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    out = best_of_n_expected(proxy, gold, ns=range(1, 8))
    for n in range(1, 8):
        per_prompt = []
        for row_p, row_g in zip(proxy, gold):
            subsets = list(itertools.combinations(range(7), n))
            per_prompt.append(np.mean([row_g[max(s, key=lambda i: row_p[i])] for s in subsets]))
        assert out["gold"][n - 1] == pytest.approx(np.mean(per_prompt), abs=1e-12)
    assert out["gold"][0] == pytest.approx(gold.mean())                 # n = 1: plain mean
    assert out["gold"][-1] == pytest.approx(np.mean(gold[np.arange(3), proxy.argmax(1)]))


def test_best_of_n_expected_is_stable_for_large_m():
    """Ranks 1..m as scores: E[max of n of m without replacement] = n(m+1)/(n+1)."""
    m = 4096
    ranks = np.arange(1, m + 1, dtype=np.float64)[None, :]
    shuffled = np.random.default_rng(1).permutation(ranks[0])[None, :]
    out = best_of_n_expected(shuffled, shuffled)                           # default ns
    assert out["n"].tolist() == [2 ** k for k in range(13)]
    expected = out["n"] * (m + 1) / (out["n"] + 1)
    assert np.all(np.isfinite(out["gold"]))
    assert np.allclose(out["proxy"], expected, rtol=1e-9)
    assert np.allclose(best_of_n_expected(ranks, ranks, [m - 1])["gold"], (m - 1) * (m + 1) / m)


def test_fit_bon_recovers_exact_curve():
    d = np.linspace(0.0, 3.0, 20)
    fit = fit_bon(d, d * (2.0 - 0.5 * d))
    assert isinstance(fit, GaoFit) and fit.form == "bon"
    assert fit.alpha == pytest.approx(2.0) and fit.beta == pytest.approx(0.5)
    assert fit.d_peak == pytest.approx(2.0) and fit.gain_peak == pytest.approx(2.0)
    assert fit.kl_peak == pytest.approx(4.0)
    assert np.allclose(fit.predict([1.0, 3.0]), [1.5, 1.5])


def test_fit_rl_recovers_exact_curve():
    d = np.linspace(0.1, 4.0, 30)
    fit = fit_rl(d, d * (1.0 - 0.5 * np.log(d)))
    assert fit.form == "rl"
    assert fit.alpha == pytest.approx(1.0) and fit.beta == pytest.approx(0.5)
    assert fit.d_peak == pytest.approx(math.e) and fit.gain_peak == pytest.approx(0.5 * math.e)
    grid = np.linspace(0.01, 10, 2000)
    assert grid[np.argmax(fit.predict(grid))] == pytest.approx(math.e, abs=0.01)
    assert fit.predict(0.0) == 0.0


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_fits_recover_parameters_under_noise(form):
    rng = np.random.default_rng(0)
    d = np.linspace(0.2, 3.0, 40)
    if form == "bon":
        clean, fitter = d * (1.2 - 0.4 * d), fit_bon
    else:
        clean, fitter = d * (0.8 - 0.6 * np.log(d)), fit_rl
    fit = fitter(d, clean + rng.normal(scale=0.02, size=d.shape))
    alpha, beta = (1.2, 0.4) if form == "bon" else (0.8, 0.6)
    assert fit.alpha == pytest.approx(alpha, abs=0.05)
    assert fit.beta == pytest.approx(beta, abs=0.05)


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_kl_is_below_the_analytic_bound(seed):
    rng = np.random.default_rng(seed)
    cases = [(rng.dirichlet(np.full(5, 0.3)), rng.normal(size=5)),          # skewed, K small
             (rng.dirichlet(np.ones(50)), rng.integers(0, 4, size=50)),    # many ties
             (np.full(8, 1 / 8), np.arange(8.0))]
    for p, scores in cases:
        for n in (1, 2, 3, 8, 64, 1000):
            assert kl_exact_best_of_n(p, scores, n) <= kl_best_of_n(n) + 1e-12


def test_exact_kl_approaches_the_bound_for_large_distinct_spaces():
    rng = np.random.default_rng(0)
    p, scores = rng.dirichlet(np.ones(10_000)), rng.normal(size=10_000)
    for n in (2, 4, 16):
        assert kl_exact_best_of_n(p, scores, n) == pytest.approx(kl_best_of_n(n), abs=1e-4)
    # a space with one heavy item is far below the bound
    assert kl_exact_best_of_n([0.9, 0.1], [1.0, 0.0], 16) < 0.5 * kl_best_of_n(16)


def test_best_of_n_gold_curve_rises_with_n_when_proxy_is_gold():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(10, 256))
    out = best_of_n_expected(scores, scores)
    assert np.all(np.diff(out["gold"]) > 0) and np.allclose(out["gold"], out["proxy"])


def test_fit_reports_no_peak_when_curve_never_turns_down():
    d = np.linspace(0.1, 3.0, 10)
    bon = fit_bon(d, d * (1.0 + 0.2 * d))                                  # β = −0.2
    assert bon.beta == pytest.approx(-0.2) and bon.d_peak == math.inf
    rl = fit_rl(d, d * (0.7 + 0.1 * np.log(d)))                            # β = −0.1
    assert rl.beta == pytest.approx(-0.1) and rl.d_peak == math.inf and rl.gain_peak == math.inf
    flat = fit_rl(d, 0.7 * d)                                              # β = 0 (up to rounding)
    assert flat.d_peak == math.inf and flat.gain_peak == math.inf


def test_aggregate_ensemble_values():
    scores = torch.tensor([[1.0, 3.0], [3.0, 3.0]])
    assert torch.equal(aggregate_ensemble(scores, "mean"), torch.tensor([2.0, 3.0]))
    assert torch.equal(aggregate_ensemble(scores, "min"), torch.tensor([1.0, 3.0]))
    assert torch.allclose(aggregate_ensemble(scores, "mean_minus_std"), torch.tensor([1.0, 3.0]))
    assert torch.allclose(aggregate_ensemble(scores, "mean_minus_std", k=0.5),
                          torch.tensor([1.5, 3.0]))
    out = aggregate_ensemble(np.array([[1.0, 3.0], [3.0, 3.0]]), "mean")
    assert isinstance(out, np.ndarray) and out.tolist() == [2.0, 3.0]
    one = torch.tensor([[0.5, -1.0]])                                      # M = 1: std 0, no NaN
    assert torch.equal(aggregate_ensemble(one, "mean_minus_std"), one[0])


def test_aggregate_ensemble_orders_and_shapes():
    scores = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0))
    mean = aggregate_ensemble(scores, "mean")
    assert mean.shape == (3, 4)
    assert (aggregate_ensemble(scores, "min") <= mean).all()
    assert (aggregate_ensemble(scores, "mean_minus_std", k=2.0) <= mean).all()


# ----------------------------------------------------------------------------- bad input


def test_value_errors_name_their_argument():
    with pytest.raises(ValueError, match="how"):
        aggregate_ensemble(torch.zeros(2, 3), "median")
    with pytest.raises(ValueError, match="k must"):
        aggregate_ensemble(torch.zeros(2, 3), "mean_minus_std", k=-1.0)
    with pytest.raises(ValueError, match="ns"):
        best_of_n_expected(np.zeros((2, 4)), np.zeros((2, 4)), [1, 8])
    with pytest.raises(ValueError, match="gold"):
        best_of_n_expected(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="d"):
        fit_rl([0.0, 1.0, 2.0], [0.0, 1.0, 1.5])
    with pytest.raises(ValueError, match="p must"):
        best_of_n_exact([0.5, 0.6], [0.0, 1.0], 2)
    with pytest.raises(ValueError, match="scores"):
        best_of_n_exact([0.5, 0.5], [0.0, 1.0, 2.0], 2)
    with pytest.raises(ValueError, match="n must"):
        best_of_n_exact([0.5, 0.5], [0.0, 1.0], 0)
