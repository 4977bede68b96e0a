"""Hidden tests of notebook 03: ``boltzmann_policy``, ``optimal_objective``, ``kl_optimal``,
``importance_estimates``.

For (..., Y) inputs (the last dim lists the responses, leading dims are a batch) and β > 0:
log π* = log π_ref + r/β − log Z, Z = Σ_y π_ref(y) exp(r(y)/β); the optimum of the objective is
β log Z; KL(π*‖π_ref) = E_π*[r]/β − log Z. A response with π_ref(y) = 0 (log π_ref = −inf) keeps
π*(y) = 0 and contributes 0. From rewards (..., N) of N samples of π_ref, the importance
estimates are the tuple (log Ẑ = logsumexp(r/β) − log N, w = softmax(r/β), Σ w r,
Σ w log(N w), 1/Σ w²). float64 inputs give a float64 result.
"""
import math

import torch
from _helpers import case, check_float64, check_grad, close, expect, fmt, result, rng

from rlhf_lab.equations import closed_form

BP, OBJ, KL, IS = "boltzmann_policy", "optimal_objective", "kl_optimal", "importance_estimates"
NEG_INF = -math.inf


def _space(seed=30, shape=(2, 3, 7), holes=True, scale=2.0):
    """log π_ref and rewards of shape (..., Y); with ``holes`` every row has one or two responses
    outside the support, carrying the row's HIGHEST reward (a trap for code that ignores
    the support)."""
    g = rng(seed)
    logp_ref = torch.log_softmax(1.5 * torch.randn(shape, generator=g, dtype=torch.float64), -1)
    rewards = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    if holes:
        flat_lp, flat_r = logp_ref.reshape(-1, shape[-1]), rewards.reshape(-1, shape[-1])
        for i in range(len(flat_lp)):
            out = [i % shape[-1]] + ([(i + 3) % shape[-1]] if i % 2 else [])
            flat_lp[i, out] = NEG_INF
            flat_r[i, out] = flat_r[i].abs().max() + 5.0
        logp_ref = torch.log_softmax(flat_lp, -1).reshape(shape)
    return logp_ref, rewards


def _exact(logp_ref, rewards, beta):
    """(log π*, log Z, KL(π*‖π_ref), E_π*[r]) in float64, computed in log space."""
    logp_ref, rewards = logp_ref.double(), rewards.double()
    support = logp_ref > NEG_INF
    scores = torch.where(support, logp_ref + rewards / beta, torch.full_like(rewards, NEG_INF))
    log_z = torch.logsumexp(scores, -1)
    logp_star = scores - log_z.unsqueeze(-1)
    p = logp_star.exp()
    mean_r = torch.where(support, p * rewards, torch.zeros_like(p)).sum(-1)
    return logp_star, log_z, mean_r / beta - log_z, mean_r


def _norm(s, dim=-1):
    return s - torch.logsumexp(s, dim, keepdim=True)


def _prob_close(out, want, case, atol=1e-7):
    """Compare log-probabilities through their probabilities (so -inf vs -1e30 does not
    matter)."""
    expect(out.exp(), want.exp(), case, atol=atol, rtol=1e-5)

# ============================================================================ boltzmann_policy


def test_boltzmann_policy__batched_with_support_holes(student):
    """(2, 3, 7) inputs with responses outside the support: the exact log π* of every row."""
    logp_ref, rewards = _space()
    for beta in (0.3, 2.0):
        out = result(student.call(BP, logp_ref, rewards, beta), "your log π*", (2, 3, 7),
                     allow_nan=True)
        if bool(torch.isnan(out).any()):
            raise AssertionError("your log π* holds NaN on inputs whose log π_ref is -inf on some "
                                 "responses: -inf + r/β is -inf, keep it that way (no 0 · inf)")
        want = _exact(logp_ref, rewards, beta)[0]
        supported = torch.where(logp_ref > NEG_INF, logp_ref, torch.zeros_like(logp_ref))
        wrong = [(_norm(logp_ref + rewards * beta).exp(), "you multiplied the rewards by β: the "
                  "exponent is r/β"),
                 (_norm(logp_ref - rewards / beta).exp(), "your π* favours LOW rewards: the "
                  "weight is exp(+r/β)"),
                 (_norm(rewards / beta).exp(), "you forgot π_ref: π* ∝ π_ref(y) exp(r(y)/β)"),
                 (_norm(supported + rewards / beta).exp(), "responses outside the support of "
                  "π_ref got mass: π*(y) = 0 wherever π_ref(y) = 0"),
                 (_norm(logp_ref + rewards / beta, 0).exp(), "you normalised over the wrong "
                  "dim: Z sums over the responses, the LAST dim"),
                 (_norm(logp_ref + rewards / beta, 1).exp(), "you normalised over the wrong "
                  "dim: Z sums over the responses, the LAST dim"),
                 ((logp_ref + rewards / beta).exp(), "your π* is not normalised: subtract "
                  "log Z = logsumexp(log π_ref + r/β) over the last dim")]
        if close(out, want.exp(), atol=1e-6):
            raise AssertionError("you returned probabilities π*; return log-probabilities log π*")
        expect(out.exp(), want.exp(), f"on a (2, 3, 7) batch at β = {beta}", wrong, atol=1e-7)


def test_boltzmann_policy__tiny_beta_picks_best_supported(student):
    """β = 1e-4 (r/β ~ 1e5): no NaN or inf, all the mass on the best response IN the support
    (the holes carry even higher rewards)."""
    logp_ref, rewards = _space(seed=31)
    out = result(student.call(BP, logp_ref, rewards, 1e-4), "at β = 1e-4 your log π*",
                 (2, 3, 7), allow_nan=True)
    if bool(torch.isnan(out).any()) or bool((out == math.inf).any()):
        raise AssertionError("at β = 1e-4 your log π* holds NaN or +inf: exp(r/β) overflows; "
                             "stay in log space (log π_ref + r/β − logsumexp(...))")
    _prob_close(out, _exact(logp_ref, rewards, 1e-4)[0], "at β = 1e-4 (all the mass on the "
                "highest reward among the responses with π_ref > 0)")


def test_boltzmann_policy__huge_beta_is_the_reference(student):
    """β = 1e6: π* = π_ref, holes included."""
    logp_ref, rewards = _space(seed=32)
    out = result(student.call(BP, logp_ref, rewards, 1e6), "at β = 1e6 your log π*", (2, 3, 7),
                 allow_nan=True)
    _prob_close(out, logp_ref, "at β = 1e6 (π* is π_ref itself)", atol=1e-5)


def test_boltzmann_policy__shift_per_prompt_and_scale(student):
    """A different constant added to the rewards of each prompt changes nothing; neither does
    multiplying r and β by the same factor."""
    logp_ref, rewards = _space(seed=33, holes=False, shape=(4, 6))
    base = result(student.call(BP, logp_ref, rewards, 0.7), "your log π*", (4, 6))
    shift = torch.tensor([[-40.0], [0.5], [3.0], [200.0]], dtype=torch.float64)
    shifted = result(student.call(BP, logp_ref, rewards + shift, 0.7), "your log π*", (4, 6))
    expect(shifted, base, "adding a different constant to the rewards of each prompt changed "
           "your π*: a constant cancels against that prompt's Z (normalise each row over the "
           "last dim)", atol=1e-6)
    scaled = result(student.call(BP, logp_ref, 3 * rewards, 2.1), "your log π*", (4, 6))
    expect(scaled, base, "multiplying the rewards and β by 3 changed your π*: only r/β counts",
           atol=1e-6)


def test_boltzmann_policy__single_response_and_one_prompt(student):
    """Y = 1: π* = 1 (log 0); one prompt as a 1-D input."""
    out = result(student.call(BP, torch.zeros(3, 1, dtype=torch.float64),
                              torch.tensor([[5.0], [-2.0], [0.0]], dtype=torch.float64), 0.1),
                 "with a single response per prompt your log π*", (3, 1))
    expect(out, torch.zeros(3, 1), "with a single response per prompt (π* = 1, log π* = 0)",
           atol=1e-9)
    lp = torch.log(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
    r = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    out = result(student.call(BP, lp, r, 0.5), "your log π*", (3,))
    expect(out, _exact(lp, r, 0.5)[0], "for π_ref = [0.2, 0.3, 0.5], r = [1, 0, -1], β = 0.5",
           atol=1e-9)


def test_boltzmann_policy__float32(student):
    """float32 inputs give the float64 answer to float32 precision."""
    logp_ref, rewards = _space(seed=34, holes=False, shape=(3, 9))
    out = result(student.call(BP, logp_ref.float(), rewards.float(), 0.5), "your log π*", (3, 9))
    expect(out, _exact(logp_ref.float(), rewards.float(), 0.5)[0], "on float32 inputs at β = 0.5",
           atol=1e-4, rtol=1e-4)

def test_boltzmann_policy__float64_stays_float64(student):
    """float64 inputs give a float64 log π*, exact to float64 precision (float32: float32)."""
    logp_ref, rewards = _space(seed=46, holes=False, shape=(2, 3, 5))
    check_float64(student, BP, (logp_ref, rewards, 0.3), "with float64 log π_ref and rewards",
                  _exact(logp_ref, rewards, 0.3)[0])


# ============================================================================ optimal_objective


def _obj_mistakes(logp_ref, rewards, beta):
    _, log_z, kl, mean_r = _exact(logp_ref, rewards, beta)
    support = logp_ref > NEG_INF
    mean_ref = torch.where(support, logp_ref.exp() * rewards, torch.zeros_like(rewards)).sum(-1)
    return [(log_z, "you returned log Z: the optimum is β log Z"),
            (log_z / beta, "you divided by β: the optimum is β log Z"),
            (torch.logsumexp(torch.where(support, logp_ref + rewards, logp_ref), -1),
             "you forgot to divide the rewards by β inside Z: Z = Σ π_ref exp(r/β)"),
            (beta * (torch.logsumexp(rewards / beta, -1) - math.log(rewards.shape[-1])),
             "you weighted the responses uniformly: Z weights each one by π_ref(y)"),
            (mean_ref, "you returned E_ref[r], the objective of π_ref: the optimum is β log Z"),
            (mean_r, "you returned E_π*[r] alone: subtract β KL(π*‖π_ref), which gives β log Z")]


def test_optimal_objective__batched_with_support_holes(student):
    """(2, 3, 7) inputs with responses outside the support: β log Z of every row."""
    logp_ref, rewards = _space(seed=35)
    for beta in (0.25, 3.0):
        out = result(student.call(OBJ, logp_ref, rewards, beta), "your objective", (2, 3))
        expect(out, beta * _exact(logp_ref, rewards, beta)[1], f"on a (2, 3, 7) batch at "
               f"β = {beta}", _obj_mistakes(logp_ref, rewards, beta), atol=1e-8)


def test_optimal_objective__is_the_best_objective(student):
    """β log Z equals E_π*[r] − β KL(π*‖π_ref) and beats every other policy."""
    logp_ref, rewards = _space(seed=36, holes=False, shape=(5, 8))
    beta = 0.6
    out = result(student.call(OBJ, logp_ref, rewards, beta), "your objective", (5,))
    _, _, kl, mean_r = _exact(logp_ref, rewards, beta)
    expect(out, mean_r - beta * kl, "compared with E_π*[r] − β KL(π*‖π_ref) on 5 prompts",
           _obj_mistakes(logp_ref, rewards, beta), atol=1e-8)
    g = rng(37)
    for _ in range(5):
        logp = torch.log_softmax(2 * torch.randn(5, 8, generator=g, dtype=torch.float64), -1)
        value = (logp.exp() * (rewards - beta * (logp - logp_ref))).sum(-1)
        if bool((value > out + 1e-9).any()):
            raise AssertionError("a random policy reached a higher objective E_π[r] − "
                                 "β KL(π‖π_ref) than your optimum: the optimum is β log Z")


def test_optimal_objective__tiny_beta_and_huge_rewards(student):
    """β = 1e-3 → max of r on the support (exactly β log Z); rewards ~1e3 at β = 0.5: no
    overflow."""
    logp_ref, rewards = _space(seed=38)
    out = result(student.call(OBJ, logp_ref, rewards, 1e-3), "at β = 1e-3 your objective",
                 (2, 3))
    if not bool(torch.isfinite(out).all()):
        raise AssertionError("at β = 1e-3 your objective is not finite: exp(r/β) overflows; "
                             "compute log Z with torch.logsumexp")
    expect(out, 1e-3 * _exact(logp_ref, rewards, 1e-3)[1], "at β = 1e-3 (about the highest "
           "reward among responses with π_ref > 0, not the holes')", atol=1e-8)
    big = 400 * rewards
    out = result(student.call(OBJ, logp_ref, big, 0.5), "with rewards ~1e3 your objective",
                 (2, 3))
    if not bool(torch.isfinite(out).all()):
        raise AssertionError("with rewards ~1e3 at β = 0.5 your objective is not finite: "
                             "exp(r/β) overflows; use torch.logsumexp")
    expect(out, 0.5 * _exact(logp_ref, big, 0.5)[1], "with rewards ~1e3 at β = 0.5", atol=1e-6)


def test_optimal_objective__constant_rewards_and_single_response(student):
    """r ≡ c on each row gives exactly c (for any β); one response gives its reward."""
    logp_ref, _ = _space(seed=39, holes=False, shape=(3, 5))
    c = torch.tensor([[2.0], [-1.0], [0.25]], dtype=torch.float64).expand(3, 5).clone()
    for beta in (0.01, 1.0, 50.0):
        out = result(student.call(OBJ, logp_ref, c, beta), "your objective", (3,))
        expect(out, c[:, 0], f"for constant rewards 2, -1, 0.25 at β = {beta} (π* = π_ref, "
               f"KL = 0, the optimum is the constant)", atol=1e-9)
    out = result(student.call(OBJ, torch.zeros(2, 1, dtype=torch.float64),
                              torch.tensor([[3.0], [-4.0]], dtype=torch.float64), 0.2),
                 "with a single response your objective", (2,))
    expect(out, [3.0, -4.0], "with a single response per prompt (its reward)", atol=1e-9)


def test_optimal_objective__float32(student):
    """float32 inputs give the float64 answer to float32 precision."""
    logp_ref, rewards = _space(seed=40, holes=False, shape=(4, 6))
    lp, r = logp_ref.float(), rewards.float()
    out = result(student.call(OBJ, lp, r, 0.4), "your objective", (4,))
    expect(out, 0.4 * _exact(lp, r, 0.4)[1], "on float32 inputs at β = 0.4",
           _obj_mistakes(lp.double(), r.double(), 0.4), atol=1e-5, rtol=1e-5)

def test_optimal_objective__float64_stays_float64(student):
    """float64 inputs give a float64 objective, exact to float64 precision (float32: float32)."""
    logp_ref, rewards = _space(seed=47, holes=False, shape=(2, 3, 5))
    check_float64(student, OBJ, (logp_ref, rewards, 0.3), "with float64 log π_ref and rewards",
                  0.3 * _exact(logp_ref, rewards, 0.3)[1])


# ============================================================================ kl_optimal


def _kl_mistakes(logp_ref, rewards, beta):
    logp_star, log_z, kl, mean_r = _exact(logp_ref, rewards, beta)
    support = logp_ref > NEG_INF
    p_ref = logp_ref.exp()
    reverse = torch.where(support, p_ref * (logp_ref - logp_star), torch.zeros_like(p_ref)).sum(-1)
    mean_ref = torch.where(support, p_ref * rewards, torch.zeros_like(p_ref)).sum(-1)
    return [(mean_r - log_z, "you forgot to divide E_π*[r] by β: KL = E_π*[r]/β − log Z"),
            (-kl, "your KL has the wrong sign: KL = E_π*[r]/β − log Z >= 0"),
            (reverse, "you computed KL(π_ref‖π*), the other direction: KL(π*‖π_ref) averages "
             "over π*"),
            (mean_ref / beta - log_z, "you averaged the rewards over π_ref: KL = E_π*[r]/β − "
             "log Z uses π*")]


def test_kl_optimal__batched_with_support_holes(student):
    """(2, 3, 7) inputs with responses outside the support: exact KL(π*‖π_ref), no NaN."""
    logp_ref, rewards = _space(seed=41)
    for beta in (0.4, 2.5):
        out = result(student.call(KL, logp_ref, rewards, beta), "your KL", (2, 3), allow_nan=True)
        if bool(torch.isnan(out).any()):
            raise AssertionError("your KL is NaN when some responses have π_ref(y) = 0: such a "
                                 "response has π*(y) = 0 and must contribute 0 (0 · (−inf) is NaN; "
                                 "use E_π*[r]/β − log Z, or torch.where)")
        expect(out, _exact(logp_ref, rewards, beta)[2], f"on a (2, 3, 7) batch at β = {beta}",
               _kl_mistakes(logp_ref, rewards, beta), atol=1e-8)


def test_kl_optimal__matches_the_definition(student):
    """Equal to Σ_y π*(y) (log π*(y) − log π_ref(y)) for several β; non-negative."""
    logp_ref, rewards = _space(seed=42, holes=False, shape=(3, 10))
    for beta in (0.05, 0.5, 5.0):
        out = result(student.call(KL, logp_ref, rewards, beta), "your KL", (3,))
        logp_star = _exact(logp_ref, rewards, beta)[0]
        direct = (logp_star.exp() * (logp_star - logp_ref)).sum(-1)
        if bool((out < -1e-9).any()):
            raise AssertionError(f"your KL is negative at β = {beta}: a KL is >= 0")
        expect(out, direct, f"compared with Σ π*(log π* − log π_ref) at β = {beta}",
               _kl_mistakes(logp_ref, rewards, beta), atol=1e-7)


def test_kl_optimal__tiny_beta(student):
    """β = 1e-3: finite, and → −log π_ref(best supported response)."""
    logp_ref, rewards = _space(seed=43)
    out = result(student.call(KL, logp_ref, rewards, 1e-3), "at β = 1e-3 your KL", (2, 3),
                 allow_nan=True)
    if not bool(torch.isfinite(out).all()):
        raise AssertionError("at β = 1e-3 your KL is not finite: exp(r/β) overflows; stay in log "
                             "space (logsumexp) and ignore responses outside the support")
    expect(out, _exact(logp_ref, rewards, 1e-3)[2], "at β = 1e-3 (about −log π_ref of the best "
           "response in the support)", atol=1e-6)


def test_kl_optimal__zero_without_reward_differences(student):
    """Rewards constant on each row (a different constant per row), or one response: KL = 0."""
    logp_ref, _ = _space(seed=44, holes=False, shape=(3, 5))
    c = torch.tensor([[7.0], [-3.0], [0.0]], dtype=torch.float64).expand(3, 5).clone()
    for beta in (0.05, 1.0):
        out = result(student.call(KL, logp_ref, c, beta), "your KL", (3,))
        expect(out, torch.zeros(3), f"for rewards constant on each row at β = {beta} (π* = π_ref)",
               atol=1e-8)
    out = result(student.call(KL, torch.zeros(2, 1, dtype=torch.float64),
                              torch.tensor([[3.0], [-4.0]], dtype=torch.float64), 0.3),
                 "with a single response your KL", (2,))
    expect(out, [0.0, 0.0], "with a single response per prompt", atol=1e-9)


def test_kl_optimal__float32(student):
    """float32 inputs give the float64 answer to float32 precision."""
    logp_ref, rewards = _space(seed=45, holes=False, shape=(4, 6))
    lp, r = logp_ref.float(), rewards.float()
    out = result(student.call(KL, lp, r, 0.8), "your KL", (4,))
    expect(out, _exact(lp, r, 0.8)[2], "on float32 inputs at β = 0.8",
           _kl_mistakes(lp.double(), r.double(), 0.8), atol=1e-5, rtol=1e-4)


def test_kl_optimal__float64_stays_float64(student):
    """float64 inputs give a float64 KL, exact to float64 precision (float32: float32)."""
    logp_ref, rewards = _space(seed=48, holes=False, shape=(2, 3, 5))
    check_float64(student, KL, (logp_ref, rewards, 0.3), "with float64 log π_ref and rewards",
                  _exact(logp_ref, rewards, 0.3)[2])


# ============================================================================ importance_estimates

FIELDS = ("log_z", "weights", "expected_reward", "kl", "ess")


def _estimates(out, batch, n) -> dict:
    """The student's (log_z, weights, expected_reward, kl, ess) as float64 tensors, by name."""
    if isinstance(out, dict) and all(k in out for k in FIELDS):
        out = tuple(out[k] for k in FIELDS)
    if not isinstance(out, (tuple, list)) or len(out) != 5:
        raise AssertionError(f"your function should return a tuple of five tensors (log_z, "
                             f"weights, expected_reward, kl, ess), got a "
                             f"{type(out).__name__}" + (f" of {len(out)}" if isinstance(
                                 out, (tuple, list)) else ""))
    shapes = {"weights": (*batch, n)}
    return {k: result(v, f"your {k}", shapes.get(k, batch)) for k, v in zip(FIELDS, out)}


def _is_exact(rewards, beta) -> dict:
    """The five estimates in float64, computed in log space (the KL as log N − H(w), which
    stays exact when weights underflow to 0)."""
    r = rewards.double()
    n = r.shape[-1]
    log_sum = torch.logsumexp(r / beta, -1, keepdim=True)
    log_w = r / beta - log_sum
    w = log_w.exp()
    mean_r = (w * r).sum(-1)
    neg_entropy = torch.where(w > 0, w * log_w, torch.zeros_like(w)).sum(-1)
    return {"log_z": log_sum.squeeze(-1) - math.log(n), "weights": w, "expected_reward": mean_r,
            "kl": math.log(n) + neg_entropy, "ess": 1 / (w * w).sum(-1)}


def _is_mistakes(rewards, beta) -> dict:
    """{field: [(a wrong value, what it looks like)]}."""
    r = rewards.double()
    n = r.shape[-1]
    e = _is_exact(r, beta)
    w = e["weights"]
    lse = torch.logsumexp(r / beta, -1)
    plain = torch.softmax(r, -1)
    return {
        "log_z": [(lse, "you forgot the − log N: Ẑ is the MEAN of exp(r_i/β) over the samples, "
                   "not their sum"),
                  (beta * e["log_z"], "you returned β log Ẑ (the optimum of the objective): "
                   "return log Ẑ"),
                  (torch.logsumexp(r, -1) - math.log(n), "you forgot β: Ẑ averages exp(r_i/β)")],
        "weights": [((r / beta).exp(), "your weights are not normalised: w_i = exp(r_i/β) / "
                     "Σ_j exp(r_j/β), so they sum to 1 over the samples"),
                    (plain, "you forgot β: w_i ∝ exp(r_i/β)"),
                    (torch.full_like(w, 1 / n), "your weights are uniform: w_i ∝ exp(r_i/β)"),
                    (torch.softmax(r / beta, 0), "you normalised over the wrong dim: the "
                     "samples are the LAST dim")],
        "expected_reward": [(r.mean(-1), "you averaged the rewards uniformly, which estimates "
                             "E_ref[r]: weight them by w"),
                            ((plain * r).sum(-1), "you forgot β in the weights")],
        "kl": [(-e["kl"], "your KL has the wrong sign: Σ w_i log(N w_i) >= 0"),
               (e["kl"] - math.log(n), "you forgot log N: the KL is Σ_i w_i log(N w_i) "
                "(π*/π_ref at sample i is N w_i), or Σ w_i r_i/β − log Ẑ"),
               (e["expected_reward"] - e["log_z"], "you forgot to divide Σ w_i r_i by β"),
               (e["expected_reward"] / beta - lse, "you subtracted logsumexp(r/β) instead of "
                "log Ẑ = logsumexp(r/β) − log N")],
        "ess": [(n * e["ess"], "your ESS is N times too large: it is 1 / Σ_i w_i² (a sum, not a "
                 "mean)"),
                ((w * w).sum(-1), "you returned Σ w_i²: the ESS is its reciprocal"),
                (1 / (w * w).mean(-1) / n ** 2, "your ESS is off by a factor N"),
                (torch.full_like(e["ess"], float(n)), "your ESS is N whatever the weights: it "
                 "is 1 / Σ_i w_i²")]}


def _check_is(got: dict, rewards, beta, words: str, atol=1e-9, rtol=1e-7, wrong=True) -> None:
    want, mistakes = _is_exact(rewards, beta), _is_mistakes(rewards, beta)
    for k in FIELDS:
        expect(got[k], want[k], f"{words}: your {k}", mistakes[k] if wrong else (), atol=atol,
               rtol=rtol)


def _draws(seed, shape, scale=1.0):
    g = rng(seed)
    return scale * torch.randn(shape, generator=g, dtype=torch.float64)


def test_importance_estimates__exact_on_a_batch(student):
    """(2, 3, 16) rewards at β = 0.5 and 2: each of the five estimates, exactly."""
    r = _draws(70, (2, 3, 16))
    for beta in (0.5, 2.0):
        got = _estimates(student.call(IS, r, beta), (2, 3), 16)
        _check_is(got, r, beta, f"on a (2, 3, 16) batch of rewards at β = {beta}")


def test_importance_estimates__a_sample_in_proportion_to_pi_ref_is_exact(student):
    """π_ref = [1/8, 1/8, 1/4, 1/2] and a sample holding each reply 1, 1, 2 and 4 times: log Ẑ,
    Σ w r and the KL are the exact log Z, E_π*[r] and KL(π*‖π_ref)."""
    logp_ref = torch.log(torch.tensor([1 / 8, 1 / 8, 1 / 4, 1 / 2], dtype=torch.float64))
    rewards = torch.tensor([[2.0, -1.0, 0.5, 0.0], [-0.3, 1.2, 0.7, -2.0]], dtype=torch.float64)
    sample = rewards[:, [0, 1, 2, 2, 3, 3, 3, 3]]                               # (2, 8)
    beta = 0.7
    lp = logp_ref.expand(2, 4)
    got = _estimates(student.call(IS, sample, beta), (2,), 8)
    words = ("for a sample of 8 replies that holds each reply in proportion to π_ref (so the "
             "estimates are exact)")
    _check_is(got, sample, beta, words)
    p_star = closed_form.boltzmann_policy(lp, rewards, beta).exp()
    expect(got["log_z"], closed_form.log_partition(lp, rewards, beta), f"{words}: your log Ẑ "
           f"is not the exact log Z", atol=1e-9)
    expect(got["expected_reward"], (p_star * rewards).sum(-1), f"{words}: your Σ w r is not "
           f"the exact E_π*[r]", atol=1e-9)
    expect(got["kl"], closed_form.kl_optimal(lp, rewards, beta), f"{words}: your KL is not the "
           f"exact KL(π*‖π_ref)", atol=1e-9)


def test_importance_estimates__repeating_the_sample_changes_only_the_ess(student):
    """The same 12 samples twice over: log Ẑ, Σ w r and the KL stay, each weight halves, the
    ESS doubles."""
    r = _draws(71, (3, 12), scale=1.5)
    beta = 0.8
    with case("for the same 12 samples repeated twice (N = 24)"):
        once = _estimates(student.call(IS, r, beta), (3,), 12)
        twice = _estimates(student.call(IS, torch.cat([r, r], -1), beta), (3,), 24)
        for k, why in (("log_z", "Ẑ is a mean over the samples: subtract log N"),
                       ("expected_reward", "Σ w r is a weighted mean"),
                       ("kl", "the KL is Σ_i w_i log(N w_i): N w_i does not change")):
            expect(twice[k], once[k], f"your {k} changed ({why})", atol=1e-9)
        expect(twice["weights"], torch.cat([once["weights"], once["weights"]], -1) / 2,
               "each weight should halve (they sum to 1)", atol=1e-9)
        expect(twice["ess"], 2 * once["ess"], "the ESS should double", atol=1e-9)


def test_importance_estimates__shift_per_prompt(student):
    """A constant c added to each row's rewards: log Ẑ moves by c/β, Σ w r by c; the
    weights, the KL and the ESS stay."""
    r = _draws(72, (4, 10))
    shift = torch.tensor([[-30.0], [2.0], [0.0], [45.0]], dtype=torch.float64)
    beta = 0.6
    with case("adding a different constant to the rewards of each row"):
        base = _estimates(student.call(IS, r, beta), (4,), 10)
        moved = _estimates(student.call(IS, r + shift, beta), (4,), 10)
        expect(moved["log_z"], base["log_z"] + shift[:, 0] / beta, "your log Ẑ should move by "
               "c/β", atol=1e-8)
        expect(moved["expected_reward"], base["expected_reward"] + shift[:, 0], "your Σ w r "
               "should move by c", atol=1e-8)
        for k in ("weights", "kl", "ess"):
            expect(moved[k], base[k], f"your {k} changed: a constant cancels in the weights "
                   f"(normalise each row over the last dim)", atol=1e-8)


def test_importance_estimates__tiny_beta_and_huge_rewards(student):
    """β = 1e-3 (r/β ~ 1e3, exp overflows, most weights underflow to exactly 0) and rewards
    ~1e3 at β = 1: finite and exact; ESS → 1 and KL → log N."""
    r = _draws(73, (2, 3, 20))
    for rewards, beta, label in ((r, 1e-3, "at β = 1e-3"),
                                 (400 * r, 1.0, "for rewards of size ~1e3 at β = 1")):
        with case(label):
            out = student.call(IS, rewards, beta)
            got = _estimates(out, (2, 3), 20)
            for k in FIELDS:
                if not bool(torch.isfinite(got[k]).all()):
                    raise AssertionError(f"your {k} is not finite: exp(r/β) overflows, or a "
                                         f"weight of 0 meets log 0 (0 · log 0 is NaN): stay in "
                                         f"log space, and write the KL as Σ w r/β − log Ẑ")
            _check_is(got, rewards, beta, label, atol=1e-6, rtol=1e-9)
            if bool((got["kl"] > math.log(20) + 1e-6).any()) or bool((got["ess"] < 1 - 1e-6).any()):
                raise AssertionError(f"your KL exceeds log N or your ESS is below 1 "
                                     f"(KL {fmt(got['kl'])}, ESS {fmt(got['ess'])})")


def test_importance_estimates__constant_rewards_and_one_sample(student):
    """Rewards constant on each row: uniform weights, KL 0, ESS N, log Ẑ = c/β. One sample:
    w = 1, KL 0, ESS 1, log Ẑ = r/β."""
    c = torch.tensor([[2.0], [-1.0], [0.0]], dtype=torch.float64).expand(3, 5).clone()
    with case("for rewards constant on each row (2, -1, 0) at β = 0.25"):
        got = _estimates(student.call(IS, c, 0.25), (3,), 5)
        _check_is(got, c, 0.25, "π* = π_ref, so every weight is 1/N")
    one = torch.tensor([[3.0], [-0.5]], dtype=torch.float64)
    with case("for a single sample per row (N = 1) at β = 0.5"):
        got = _estimates(student.call(IS, one, 0.5), (2,), 1)
        _check_is(got, one, 0.5, "one sample carries all the weight")


def test_importance_estimates__gradient_of_log_z_is_w_over_beta(student):
    """d log Ẑ / d r_i = w_i / β: the gradient of the first result, log Ẑ."""
    r = _draws(74, (3, 7))
    beta = 0.4
    want = _is_exact(r, beta)["weights"] / beta
    with case("for the gradient of log Ẑ (the first of the five results)"):
        check_grad(student, IS, (r, beta), 0, want, "d log Ẑ / d r_i should be w_i / β",
                   atol=1e-9)


def test_importance_estimates__float64_stays_float64(student):
    """float64 rewards give five float64 results, exact to float64 precision."""
    r = _draws(75, (2, 9))
    want = _is_exact(r, 0.3)
    check_float64(student, IS, (r, 0.3), "with float64 rewards",
                  tuple(want[k] for k in FIELDS), atol=1e-12, rtol=1e-12)
