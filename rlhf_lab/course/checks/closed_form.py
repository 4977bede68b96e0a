"""Checks of notebook 03: the Boltzmann policy, the optimal objective and the KL of pi*."""
from __future__ import annotations

import math

import torch

from rlhf_lab.course.checks.harness import _LOG3, _call, _close, _expect, _Fail, _fmt, _run, _tensor
from rlhf_lab.equations import closed_form, enumerable_space

__all__ = ['check_boltzmann_policy', 'check_optimal_objective', 'check_kl_optimal']


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
