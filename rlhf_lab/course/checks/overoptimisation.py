"""Checks of notebook 06: the best-of-n KL, the Gao fits and the ensemble aggregates."""
from __future__ import annotations

import math

import numpy as np
import torch

from rlhf_lab.course.checks.harness import _call, _expect, _Fail, _fmt, _run, _tensor
from rlhf_lab.equations import overopt_math

__all__ = ['check_kl_best_of_n', 'check_gao_fit', 'check_ensemble']


def check_kl_best_of_n(fn) -> bool:
    """Check ``kl_best_of_n(n) -> log n - (n - 1)/n`` for a number or an array of n."""
    def values():
        for n, want in ((1, 0.0), (2, math.log(2) - 0.5), (1024, math.log(1024) - 1023 / 1024)):
            got = _call(fn, n)
            try:
                got = float(got)
            except (TypeError, ValueError):
                raise _Fail(f"kl_best_of_n({n}) should be a number, got {type(got).__name__}") \
                    from None
            wrong = [(math.log2(n) - (n - 1) / n, "use the natural log (nats), not log2"),
                     (math.log(n) - 1 / n, "the correction is (n - 1)/n, not 1/n"),
                     (math.log(n), "you left out the correction -(n - 1)/n")]
            _expect(got, want, f"for n = {n}", [(w, m) for w, m in wrong if w != want])

    def arrays():
        ns = np.array([1, 4, 16, 256])
        try:
            got = _call(fn, ns)
        except _Fail as failure:
            raise _Fail(f"{failure}; it must also accept a numpy array of n: use np.log, not "
                        f"math.log") from None
        if isinstance(got, torch.Tensor):
            got = got.numpy()
        got = np.asarray(got, dtype=np.float64)
        if got.shape != ns.shape:
            raise _Fail(f"for an array of n = {ns.tolist()} you returned shape {got.shape}; use "
                        f"np.log (math.log takes one number only)")
        _expect(got, overopt_math.kl_best_of_n(ns), f"for n = {ns.tolist()}")

    def bound_and_growth():
        ns = np.array([1, 2, 8, 64, 4096])
        got = np.asarray(_call(fn, ns), dtype=np.float64)
        if np.any(np.diff(got) <= 0) or np.any(got > np.log(ns) + 1e-12):
            raise _Fail(f"KL_bon must grow with n and stay below log n; got {_fmt(got)}")

    return _run("kl_best_of_n", [values, arrays, bound_and_growth], fn)


def _alpha_beta(out, what):
    if hasattr(out, "alpha") and hasattr(out, "beta"):
        return float(out.alpha), float(out.beta)
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        try:
            return float(out[0]), float(out[1])
        except (TypeError, ValueError):
            pass
    raise _Fail(f"{what} should return a GaoFit or a pair (alpha, beta), got {type(out).__name__}")


def check_gao_fit(fn, form: str = "bon") -> bool:
    """Check a least-squares fit of Gao et al.'s curve: ``fit_bon(d, gain)`` (form "bon",
    ``d(α - βd)``) or ``fit_rl(d, gain)`` (form "rl", ``d(α - β log d)``)."""
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    reference = overopt_math.fit_bon if form == "bon" else overopt_math.fit_rl
    curve = (lambda d, a, b: d * (a - b * d)) if form == "bon" else \
        (lambda d, a, b: d * (a - b * np.log(d)))
    d = np.array([0.3, 0.6, 1.0, 1.4, 1.8, 2.2, 2.6]) if form == "rl" else \
        np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    noise = np.array([0.03, -0.05, 0.02, 0.04, -0.03, 0.01, -0.02])
    name = f"fit_{form}"

    def exact():
        a, b = (2.0, 0.5) if form == "bon" else (1.0, 0.5)
        got = _alpha_beta(_call(fn, d, curve(d, a, b)), f"your {name}")
        _expect(got, [a, b], f"on a noiseless curve with α = {a}, β = {b}",
                [([a, -b], f"your β has the wrong sign: the curve is "
                  f"{'d(α - βd)' if form == 'bon' else 'd(α - β log d)'}, so β > 0 when the "
                  f"gain turns down")], atol=1e-6)

    def noisy():
        gain = curve(d, 1.5, 0.4) + noise
        got = _alpha_beta(_call(fn, d, gain), f"your {name}")
        want = reference(d, gain)
        X = np.stack([np.ones_like(d), d, -d ** 2 if form == "bon" else -d * np.log(d)], 1)
        with_intercept = np.linalg.lstsq(X, gain, rcond=None)[0][1:]
        _expect(got, [want.alpha, want.beta], "on a noisy curve (least squares)",
                [(with_intercept, "your fit has an intercept: the gain is 0 at d = 0 by "
                  "definition, so the model has no constant term")], atol=1e-6)

    return _run(name, [exact, noisy], fn)


def check_ensemble(fn) -> bool:
    """Check ``aggregate_ensemble(scores, how, k=1.0)`` over dim 0 for "mean", "min",
    "mean_minus_std"."""
    scores = torch.tensor([[1.0, 3.0, 0.0], [3.0, 3.0, 2.0], [2.0, 3.0, -2.0]],
                          dtype=torch.float64)                                      # (M=3, 3)

    def example():
        two = torch.tensor([[1.0, 3.0], [3.0, 3.0]])
        expected = {"mean": [2.0, 3.0], "min": [1.0, 3.0], "mean_minus_std": [1.0, 3.0]}
        for how, want in expected.items():
            out = _call(fn, two, how)
            if isinstance(out, tuple):
                raise _Fail(f"how={how!r} returned a tuple: torch.min(x, dim) gives (values, "
                            f"indices); take .values")
            out = _tensor(out, f"with how={how!r} your result", (2,))
            _expect(out, want, f"with how={how!r} for scores [[1, 3], [3, 3]] (2 models)")

    def three_models():
        for how in ("mean", "min", "mean_minus_std"):
            out = _tensor(_call(fn, scores, how), f"with how={how!r} your result", (3,))
            want = overopt_math.aggregate_ensemble(scores, how)
            wrong = [(overopt_math.aggregate_ensemble(scores.T, how), "reduce over dim 0 (the "
                      "models), not over the responses")]
            if how == "mean_minus_std":
                wrong.append((scores.mean(0) - scores.std(0), "use the population std "
                              "(unbiased=False), so that one model gives std 0"))
                wrong.append((scores.mean(0) + scores.std(0, unbiased=False), "it is mean MINUS "
                              "k·std: disagreement must lower the reward"))
            _expect(out, want, f"with how={how!r} for 3 models x 3 responses", wrong)

    def k_and_one_model():
        out = _tensor(_call(fn, scores, "mean_minus_std", 2.0), "with k=2 your result", (3,))
        _expect(out, overopt_math.aggregate_ensemble(scores, "mean_minus_std", 2.0),
                "with how='mean_minus_std', k=2")
        one = _tensor(_call(fn, scores[:1], "mean_minus_std"), "for one model your result", (3,))
        _expect(one, scores[0], "for a single model (std 0, not NaN)")

    return _run("aggregate_ensemble", [example, three_models, k_and_one_model], fn)
