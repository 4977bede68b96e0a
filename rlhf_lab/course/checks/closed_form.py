"""Checks of notebook 03: the Boltzmann policy, the optimal objective, the KL of pi*, and their
importance-sampled estimates from samples of pi_ref."""
from __future__ import annotations

import math

import torch

from rlhf_lab.course.checks.harness import _LOG3, _call, _close, _expect, _Fail, _fmt, _run, _tensor
from rlhf_lab.equations import closed_form, enumerable_space

__all__ = ['check_boltzmann_policy', 'check_optimal_objective', 'check_kl_optimal',
           'check_importance_estimates']


def _space():
    space = enumerable_space.enumerable_space(vocab_size=3, max_len=3, seed=4, n_prompts=2)
    return space.logp_ref, 2.0 * space.rewards          # (2, 39) each


_HALF = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))


def check_boltzmann_policy(fn) -> bool:
    """Check ``boltzmann_policy(logp_ref, rewards, beta) -> log π*`` of shape (..., Y)."""
    logp_ref, rewards = _space()

    def example():
        out = _tensor(_call(fn, _HALF, _LOG3, 1.0), "your log π*", (2,))
        want = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
        if _close(out, want.exp()):
            raise _Fail("you returned probabilities; return log-probabilities log π*(y)")
        _expect(out, want, "for π_ref = [1/2, 1/2], r = [0, log 3], β = 1 (π* = [1/4, 3/4])",
                [(torch.log(torch.tensor([0.5, 1.5], dtype=torch.float64)),
                  "your π* is not normalised: subtract log Z = logsumexp(log π_ref + r/β)")])

    def batch():
        beta = 0.5
        out = _tensor(_call(fn, logp_ref, rewards, beta), "your log π*", tuple(logp_ref.shape))
        want = closed_form.boltzmann_policy(logp_ref, rewards, beta)
        norm = lambda s: s - torch.logsumexp(s, -1, keepdim=True)
        wrong = [(norm(logp_ref + rewards * beta), "you multiplied the rewards by β: the exponent "
                  "is r/β (a small β means a weak KL penalty)"),
                 (norm(logp_ref - rewards / beta), "your π* favours LOW rewards: the weight is "
                  "exp(+r/β)"),
                 (norm(rewards / beta), "you forgot π_ref: π* ∝ π_ref(y) exp(r(y)/β)"),
                 (logp_ref + rewards / beta - torch.logsumexp(logp_ref + rewards / beta, 0),
                  "you normalised over the wrong dim: Z sums over the responses (the last dim)")]
        _expect(out, want, "on 2 prompts x 39 responses at β = 0.5", wrong)

    def shift():
        a = _call(fn, logp_ref, rewards, 0.5)
        b = _call(fn, logp_ref, rewards + 3.0, 0.5)
        if not _close(a, b):
            raise _Fail("adding 3 to every reward changed your π*: a constant in r cancels "
                        "against Z, so π* must stay the same")

    def small_beta():
        out = _call(fn, logp_ref, rewards, 1e-3)
        out = torch.as_tensor(out)
        if out.isnan().any() or (out == math.inf).any():
            raise _Fail("at β = 1e-3 your π* holds NaN or inf: exp(r/β) overflows; stay in log "
                        "space (log π_ref + r/β - logsumexp(...))")
        want = closed_form.beta_to_zero_policy(logp_ref, rewards)
        if not _close(out.exp(), want.exp(), atol=1e-3):
            raise _Fail("at β = 1e-3 your π* should put (almost) all its mass on the best "
                        "response in the support of π_ref", against_reference=True)

    def large_beta():
        out = torch.as_tensor(_call(fn, logp_ref, rewards, 1e4))
        if not _close(out.exp(), logp_ref.exp(), atol=1e-3):
            raise _Fail("at β = 1e4 your π* should be (almost) π_ref: the KL penalty dominates",
                        against_reference=True)

    def outside_support():
        lp = torch.log(torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64))
        out = _tensor(_call(fn, lp, torch.tensor([9.0, 1.0, 0.0], dtype=torch.float64), 1.0),
                      "with π_ref = [0, 1/2, 1/2] your log π*", (3,))
        if out[0] != -math.inf:
            raise _Fail("a response with π_ref(y) = 0 must keep π*(y) = 0 (log π* = -inf), "
                        "however high its reward")

    return _run("boltzmann_policy", [example, batch, shift, small_beta, large_beta,
                                     outside_support], fn)


def check_optimal_objective(fn) -> bool:
    """Check ``optimal_objective(logp_ref, rewards, beta) -> β log Z`` of shape (...)."""
    logp_ref, rewards = _space()

    def example():
        out = _tensor(_call(fn, _HALF, _LOG3, 1.0), "your objective", ())
        _expect(out, math.log(2), "for π_ref = [1/2, 1/2], r = [0, log 3], β = 1 (log 2)")

    def batch():
        beta = 0.5
        out = _tensor(_call(fn, logp_ref, rewards, beta), "your objective", (2,))
        log_z = closed_form.log_partition(logp_ref, rewards, beta)
        wrong = [(log_z, "you returned log Z: the optimum of the objective is β log Z"),
                 (beta * (torch.logsumexp(rewards / beta, -1) - math.log(rewards.shape[-1])),
                  "you averaged exp(r/β) uniformly: Z weights each response by π_ref(y)")]
        _expect(out, beta * log_z, "on 2 prompts x 39 responses at β = 0.5", wrong)

    def upper_bound():
        beta = 0.5
        best = torch.as_tensor(_call(fn, logp_ref, rewards, beta))
        mean_ref = (logp_ref.exp() * rewards).sum(-1)
        if (best < mean_ref - 1e-9).any():
            raise _Fail(f"your optimum {_fmt(best)} is below the objective of π_ref itself "
                        f"(E_ref[r] - β·0 = {_fmt(mean_ref)}): it can only be higher",
                        against_reference=True)

    def limits():
        small = torch.as_tensor(_call(fn, logp_ref, rewards, 1e-3))
        if not torch.isfinite(small).all():
            raise _Fail("at β = 1e-3 your objective is not finite: compute log Z with logsumexp")
        _expect(small, rewards.max(-1).values, "at β = 1e-3 (β log Z tends to max r)", atol=1e-2)
        large = torch.as_tensor(_call(fn, logp_ref, rewards, 1e4))
        _expect(large, (logp_ref.exp() * rewards).sum(-1),
                "at β = 1e4 (β log Z tends to E_ref[r])", atol=1e-2)

    return _run("optimal_objective", [example, batch, upper_bound, limits], fn)


def check_kl_optimal(fn) -> bool:
    """Check ``kl_optimal(logp_ref, rewards, beta) -> KL(π*‖π_ref)`` of shape (...)."""
    logp_ref, rewards = _space()

    def example():
        out = _tensor(_call(fn, _HALF, _LOG3, 1.0), "your KL", ())
        _expect(out, 0.75 * math.log(3) - math.log(2),
                "for π_ref = [1/2, 1/2], r = [0, log 3], β = 1 ((3/4) log 3 - log 2)")

    def batch():
        beta = 0.5
        out = _tensor(_call(fn, logp_ref, rewards, beta), "your KL", (2,))
        want = closed_form.kl_optimal(logp_ref, rewards, beta)
        p_star = closed_form.boltzmann_policy(logp_ref, rewards, beta).exp()
        wrong = [((p_star * rewards).sum(-1) - closed_form.log_partition(logp_ref, rewards, beta),
                  "you forgot to divide E_π*[r] by β: KL = E_π*[r]/β - log Z"),
                 ((logp_ref.exp() * (logp_ref - p_star.log())).sum(-1),
                  "you computed KL(π_ref‖π*), the other direction: KL(π*‖π_ref) averages "
                  "over π*")]
        _expect(out, want, "on 2 prompts x 39 responses at β = 0.5", wrong)

    def non_negative_and_monotone():
        kls = [torch.as_tensor(_call(fn, logp_ref, rewards, b)) for b in (0.2, 1.0, 5.0)]
        if any((k < -1e-9).any() for k in kls):
            raise _Fail(f"your KL is negative somewhere: {_fmt(kls)}; a KL is >= 0")
        if not ((kls[0] >= kls[1]) & (kls[1] >= kls[2])).all():
            raise _Fail(f"your KL should shrink as β grows (β = 0.2, 1, 5 gave {_fmt(kls)})")

    def small_beta():
        out = torch.as_tensor(_call(fn, logp_ref, rewards, 1e-3))
        if not torch.isfinite(out).all():
            raise _Fail("at β = 1e-3 your KL is not finite: stay in log space (logsumexp)")
        best = closed_form.beta_to_zero_policy(logp_ref, rewards)
        _expect(out, -(best.exp() * logp_ref).sum(-1), "at β = 1e-3 (→ -log π_ref(argmax r))",
                atol=1e-2)

    return _run("kl_optimal", [example, batch, non_negative_and_monotone, small_beta], fn)


_FIELDS = ("log_z", "weights", "expected_reward", "kl", "ess")


def _estimates(out, batch: tuple, n: int) -> dict:
    """The five results ``(log_z, weights, expected_reward, kl, ess)``, validated, by name."""
    if not isinstance(out, (tuple, list)) or len(out) != 5:
        got = type(out).__name__ + (f" of {len(out)}" if isinstance(out, (tuple, list)) else "")
        raise _Fail(f"return a tuple of five tensors (log_z, weights, expected_reward, kl, ess), "
                    f"got a {got}")
    return {k: _tensor(v, f"your {k}", (*batch, n) if k == "weights" else batch)
            for k, v in zip(_FIELDS, out)}


def _is_wrong(rewards, beta) -> dict:
    """{field: [(a known wrong value, what it looks like)]} for rewards (..., N)."""
    est = closed_form.importance_estimates(rewards, beta)
    n = rewards.shape[-1]
    lse = torch.logsumexp(rewards / beta, -1)
    return {"log_z": [(lse, "you forgot the - log N: Ẑ is the MEAN of exp(r_i/β) over the N "
                       "samples, not their sum"),
                      (beta * est.log_z, "you returned β log Ẑ (the objective): return log Ẑ")],
            "weights": [(torch.exp(rewards / beta), "your weights are not normalised: divide by "
                         "Σ_j exp(r_j/β), so that they sum to 1"),
                        (n * est.weights, "your weights sum to N: N w_i is π*/π_ref at sample i, "
                         "the weights themselves sum to 1"),
                        (torch.softmax(rewards, -1), "you forgot β: w_i ∝ exp(r_i/β)"),
                        (torch.softmax(rewards / beta, 0), "you normalised over the wrong dim: "
                         "the samples are the LAST dim")],
            "expected_reward": [(rewards.mean(-1), "you averaged the rewards uniformly (that "
                                 "estimates E_ref[r]): weight them by w")],
            "kl": [(est.kl - math.log(n), "you forgot log N: the KL is Σ_i w_i log(N w_i), "
                    "or Σ_i w_i r_i/β - log Ẑ"),
                   (-est.kl, "your KL has the wrong sign: it is >= 0"),
                   (est.expected_reward - est.log_z, "you forgot to divide Σ w_i r_i by β")],
            "ess": [(n * est.ess, "your ESS is N times too large: it is 1 / Σ_i w_i² (a sum, "
                     "not a mean)"),
                    (1 / est.ess, "you returned Σ_i w_i²: the ESS is its reciprocal")]}


def _compare(got: dict, rewards, beta, example: str, atol=1e-5, rtol=1e-4) -> None:
    want = closed_form.importance_estimates(rewards, beta)._asdict()
    wrong = _is_wrong(rewards, beta)
    for k in _FIELDS:
        _expect(got[k], want[k], f"{example}: {k}", wrong[k], atol=atol, rtol=rtol)


def _samples(logp_ref, rewards, n: int, seed: int) -> torch.Tensor:
    """Rewards of n samples of π_ref per prompt: (prompts, n)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(logp_ref.exp(), n, replacement=True, generator=g)   # (prompts, n)
    return rewards.gather(-1, idx)


def check_importance_estimates(fn) -> bool:
    """Check ``importance_estimates(rewards, beta) -> (log_z, weights, expected_reward, kl,
    ess)`` for rewards (..., N) of N samples of π_ref."""
    logp_ref, rewards = _space()                                         # (2, 39) each

    def example():
        got = _estimates(_call(fn, _LOG3, 1.0), (), 2)
        _compare(got, _LOG3, 1.0, "for rewards [0, log 3] at β = 1")

    def proportional():
        lp = torch.log(torch.tensor([1 / 8, 1 / 8, 1 / 4, 1 / 2], dtype=torch.float64))
        r = torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=torch.float64)
        sample, beta = r[[0, 1, 2, 2, 3, 3, 3, 3]], 0.6
        got = _estimates(_call(fn, sample, beta), (), 8)
        example = ("for a sample that holds each reply in proportion to π_ref = [1/8, 1/8, 1/4, "
                   "1/2] at β = 0.6 (the estimates are then exact)")
        _expect(got["log_z"], closed_form.log_partition(lp, r, beta), f"{example}: log_z",
                _is_wrong(sample, beta)["log_z"])
        _expect(got["kl"], closed_form.kl_optimal(lp, r, beta), f"{example}: kl",
                _is_wrong(sample, beta)["kl"])

    def batch():
        sample = _samples(logp_ref, rewards, 64, seed=1)
        got = _estimates(_call(fn, sample, 0.5), (2,), 64)
        _compare(got, sample, 0.5, "on 2 prompts x 64 samples of π_ref at β = 0.5")

    def repeated():
        sample = _samples(logp_ref, rewards, 30, seed=2)
        once = _estimates(_call(fn, sample, 0.5), (2,), 30)
        twice = _estimates(_call(fn, torch.cat([sample, sample], -1), 0.5), (2,), 60)
        for k in ("log_z", "expected_reward", "kl"):
            if not _close(once[k], twice[k]):
                raise _Fail(f"the same 30 samples twice over changed your {k} "
                            f"({_fmt(once[k])} vs {_fmt(twice[k])}): the estimates are averages "
                            f"over the samples (log Ẑ subtracts log N)")
        if not _close(twice["ess"], 2 * once["ess"]):
            raise _Fail(f"the same 30 samples twice over should double the ESS "
                        f"({_fmt(once['ess'])} -> {_fmt(twice['ess'])})")

    def small_beta():
        sample = _samples(logp_ref, rewards, 64, seed=3)
        out = _call(fn, sample, 1e-3)
        values = [torch.as_tensor(v) for v in out] if isinstance(out, (tuple, list)) else []
        if any(not bool(torch.isfinite(v).all()) for v in values):
            raise _Fail("at β = 1e-3 some of your estimates are NaN or inf: exp(r/β) overflows, "
                        "or a weight of 0 meets log 0; stay in log space and write the KL as "
                        "Σ w_i r_i/β - log Ẑ")
        got = _estimates(out, (2,), 64)
        if (got["kl"] > math.log(64) + 1e-6).any() or (got["ess"] < 1 - 1e-6).any():
            raise _Fail(f"at β = 1e-3 your KL {_fmt(got['kl'])} exceeds log N = "
                        f"{_fmt(math.log(64))} or your ESS {_fmt(got['ess'])} is below 1")
        _compare(got, sample, 1e-3, "at β = 1e-3")

    def converges():
        sample = _samples(logp_ref, rewards, 20000, seed=4)
        got = _estimates(_call(fn, sample, 1.0), (2,), 20000)
        for k, want in (("log_z", closed_form.log_partition(logp_ref, rewards, 1.0)),
                        ("kl", closed_form.kl_optimal(logp_ref, rewards, 1.0))):
            if not _close(got[k], want, atol=0.05, rtol=0):
                raise _Fail(f"with 20000 samples of π_ref at β = 1 your {k} {_fmt(got[k])} is "
                            f"far from the exact {_fmt(want)}", against_reference=True)

    return _run("importance_estimates", [example, proportional, batch, repeated, small_beta,
                                         converges], fn)
