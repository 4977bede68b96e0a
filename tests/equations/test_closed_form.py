"""Tests of rlhf_lab.equations.closed_form: the Boltzmann closed form, exact and importance-sampled."""
import math
import warnings

import pytest
import torch

from rlhf_lab.equations.closed_form import (
    LowESSWarning,
    beta_to_zero_policy,
    boltzmann_estimate,
    boltzmann_policy,
    estimated_frontier,
    frontier,
    importance_estimates,
    kl_optimal,
    log_partition,
    optimal_objective,
    policy_stats,
)
from rlhf_lab.equations.enumerable_space import enumerable_space

F64 = torch.float64


@pytest.fixture(scope="module")
def space():
    return enumerable_space(vocab_size=3, max_len=4, seed=0)


def two_point():
    """π_ref = [1/2, 1/2], r = [0, log 3]: at β = 1, π* = [1/4, 3/4] and Z = 2."""
    logp_ref = torch.log(torch.tensor([0.5, 0.5], dtype=F64))
    return logp_ref, torch.tensor([0.0, math.log(3)], dtype=F64)


# ----------------------------------------------------------------------------- exact values


def test_two_point_closed_form():
    """π*, log Z, β log Z and KL match a hand computation."""
    logp_ref, r = two_point()
    assert torch.allclose(boltzmann_policy(logp_ref, r, 1.0).exp(),
                          torch.tensor([0.25, 0.75], dtype=F64), atol=1e-12)
    assert log_partition(logp_ref, r, 1.0).item() == pytest.approx(math.log(2), abs=1e-12)
    assert optimal_objective(logp_ref, r, 2.0).item() == pytest.approx(
        2 * math.log(0.5 + 0.5 * math.sqrt(3)), abs=1e-12)
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_optimal(logp_ref, r, 1.0).item() == pytest.approx(kl, abs=1e-12)


def test_enumerable_space_is_exactly_normalised(space):
    """Σ_y π_ref(y) = 1 and the space lists every sequence of length 1..L once."""
    assert len(space.sequences) == 3 + 9 + 27 + 81 == len(set(space.sequences))
    assert space.logp_ref.shape == space.rewards.shape == (120,)
    assert torch.logsumexp(space.logp_ref, -1).item() == pytest.approx(0.0, abs=1e-12)
    assert enumerable_space(2, 2).sequences == [(0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)]
    batch = enumerable_space(n_prompts=4, seed=1)
    assert batch.logp_ref.shape == (4, 120)
    assert torch.allclose(torch.logsumexp(batch.logp_ref, -1), torch.zeros(4, dtype=F64))


def test_enumerable_space_is_deterministic_and_takes_a_reward_fn():
    a, b = enumerable_space(seed=3), enumerable_space(seed=3)
    assert torch.equal(a.logp_ref, b.logp_ref) and torch.equal(a.rewards, b.rewards)
    assert not torch.equal(a.rewards, enumerable_space(seed=4).rewards)
    c = enumerable_space(reward_fn=lambda seq: seq.count(0) - 0.5 * len(seq))
    assert c.rewards[c.sequences.index((0, 0, 1))].item() == pytest.approx(0.5)


@pytest.mark.parametrize("beta", [0.05, 0.3, 1.0, 5.0])
def test_optimum_sums_to_one_and_objective_is_beta_log_z(space, beta):
    logp_star = boltzmann_policy(space.logp_ref, space.rewards, beta)
    assert logp_star.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    stats = policy_stats(logp_star, space.logp_ref, space.rewards, beta)
    assert stats["objective"].item() == pytest.approx(
        optimal_objective(space.logp_ref, space.rewards, beta).item(), abs=1e-6)
    assert kl_optimal(space.logp_ref, space.rewards, beta).item() == pytest.approx(
        stats["kl"].item(), abs=1e-9)


def test_objective_gap_is_beta_kl_to_the_optimum(space):
    """J(π) = β log Z − β KL(π‖π*) for any π: the identity behind the closed form."""
    beta = 0.5
    gen = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(120, generator=gen, dtype=F64), -1)
    logp_star = boltzmann_policy(space.logp_ref, space.rewards, beta)
    j = policy_stats(logp, space.logp_ref, space.rewards, beta)["objective"]
    kl_to_star = (logp.exp() * (logp - logp_star)).sum()
    assert j.item() == pytest.approx(
        (optimal_objective(space.logp_ref, space.rewards, beta) - beta * kl_to_star).item(),
        abs=1e-10)


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_no_perturbation_beats_the_optimum(space, beta):
    """400 random perturbations of π*'s logits, small to large, never reach a higher objective."""
    gen = torch.Generator().manual_seed(1)
    logp_star = boltzmann_policy(space.logp_ref, space.rewards, beta)
    scales = torch.tensor([1e-3, 1e-2, 0.1, 1.0], dtype=F64).repeat_interleave(100)[:, None]
    noise = scales * torch.randn(400, 120, generator=gen, dtype=F64)
    logp = torch.log_softmax(logp_star + noise, dim=-1)                   # (400, 120)
    expand = lambda t: t.expand(400, -1)
    j = policy_stats(logp, expand(space.logp_ref), expand(space.rewards), beta)["objective"]
    best = optimal_objective(space.logp_ref, space.rewards, beta).item()
    assert (j < best).all()
    assert (best - j[:100]).max() < 1e-4          # tiny perturbations lose almost nothing


def test_batch_rows_are_independent():
    batch = enumerable_space(n_prompts=3, seed=2)
    full = boltzmann_policy(batch.logp_ref, batch.rewards, 0.2)
    for i in range(3):
        row = boltzmann_policy(batch.logp_ref[i], batch.rewards[i], 0.2)
        assert torch.allclose(full[i], row, atol=1e-12)


def test_beta_to_zero_is_the_argmax_without_overflow():
    sp = enumerable_space(seed=0, reward_scale=10.0)                     # rewards of size ~10
    top2 = sp.rewards.topk(2).values
    assert (top2[0] - top2[1]).item() > 0.05                              # distinct rewards
    logp = boltzmann_policy(sp.logp_ref, sp.rewards, 1e-3)
    assert torch.isfinite(logp).all()
    assert logp.exp()[sp.rewards.argmax()].item() > 0.999
    for value in (log_partition(sp.logp_ref, sp.rewards, 1e-3),
                  kl_optimal(sp.logp_ref, sp.rewards, 1e-3)):
        assert torch.isfinite(value).all()
    limit = beta_to_zero_policy(sp.logp_ref, sp.rewards).exp()
    assert limit[sp.rewards.argmax()].item() == 1.0 and limit.sum().item() == 1.0
    # KL of the argmax policy is -log π_ref(argmax)
    assert kl_optimal(sp.logp_ref, sp.rewards, 1e-3).item() == pytest.approx(
        -sp.logp_ref[sp.rewards.argmax()].item(), rel=1e-3)


def test_beta_to_zero_respects_support_and_splits_ties():
    logp_ref = torch.log(torch.tensor([0.0, 0.25, 0.25, 0.5], dtype=F64))
    rewards = torch.tensor([9.0, 1.0, 1.0, 0.0], dtype=F64)
    limit = beta_to_zero_policy(logp_ref, rewards).exp()
    assert torch.allclose(limit, torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=F64))
    logp = boltzmann_policy(logp_ref, rewards, 1e-3)
    assert logp[0].item() == -math.inf                                   # stays outside support
    assert torch.allclose(logp.exp(), limit, atol=1e-12)
    # 0 · log 0 = 0: zero-probability responses add nothing, even outside the support
    stats = policy_stats(limit.log(), logp_ref, rewards, 1.0)
    assert stats["kl"].item() == pytest.approx(math.log(2)) and stats["expected_reward"] == 1.0
    uniform = torch.full((4,), -math.log(4), dtype=F64)                  # mass outside support
    assert policy_stats(uniform, logp_ref, rewards, 1.0)["kl"].item() == math.inf


def test_beta_to_infinity_is_the_reference(space):
    logp = boltzmann_policy(space.logp_ref, space.rewards, 1e6)
    assert torch.allclose(logp.exp(), space.logp_ref.exp(), atol=1e-6)
    assert kl_optimal(space.logp_ref, space.rewards, 1e6).item() == pytest.approx(0.0, abs=1e-9)


def test_frontier_is_monotone(space):
    """As β grows, KL(π*‖π_ref) and E_{π*}[r] both decrease; the objective is β log Z."""
    betas = torch.logspace(-1.5, 1.5, 25, dtype=F64)
    fr = frontier(space.logp_ref, space.rewards, betas)
    assert fr["kl"].shape == fr["expected_reward"].shape == (25,)
    assert (fr["kl"].diff() < 0).all() and (fr["expected_reward"].diff() < 0).all()
    log_z = torch.stack([log_partition(space.logp_ref, space.rewards, b) for b in betas])
    assert torch.allclose(fr["objective"], betas * log_z, atol=1e-9)
    ref_reward = (space.logp_ref.exp() * space.rewards).sum()
    assert fr["expected_reward"][-1].item() > ref_reward.item()          # above π_ref's reward


# ----------------------------------------------------------------------------- from samples


def _sample_rewards(space, n, gen):
    idx = torch.multinomial(space.logp_ref.exp(), n, replacement=True, generator=gen)
    return space.rewards[idx]


def test_estimate_on_constant_rewards_is_exact():
    est = boltzmann_estimate(torch.zeros(4, dtype=F64), 1.0, min_ess=2)
    assert torch.allclose(est.weights, torch.full((4,), 0.25, dtype=F64))
    assert est.log_z.item() == 0.0 and est.kl.item() == pytest.approx(0.0, abs=1e-15)
    assert est.ess.item() == pytest.approx(4.0) and bool(est.trustworthy)


def test_estimate_kl_formulas_agree_and_are_bounded_by_log_n(space):
    rewards = _sample_rewards(space, 500, torch.Generator().manual_seed(0))
    for beta in (0.01, 0.1, 1.0):
        est = boltzmann_estimate(rewards, beta, warn=False)
        formula = est.expected_reward / beta - est.log_z
        assert est.kl.item() == pytest.approx(formula.item(), abs=1e-8)
        assert est.kl.item() <= math.log(500 / est.ess.item()) + 1e-9 <= math.log(500) + 1e-9
        assert est.objective.item() == pytest.approx(beta * est.log_z.item())


def test_importance_estimates_are_the_estimate_as_a_tuple_and_exact_on_a_proportional_sample():
    rewards = torch.tensor([[2.0, -1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
                            [-0.3, 1.2, 0.7, 0.7, -2.0, -2.0, -2.0, -2.0]], dtype=F64)
    est, ref = importance_estimates(rewards, 0.7), boltzmann_estimate(rewards, 0.7, warn=False)
    for name in ("log_z", "weights", "expected_reward", "kl", "ess"):
        assert torch.equal(getattr(est, name), getattr(ref, name))
    log_z, weights, *_ = est                                    # a plain tuple, in this order
    assert log_z is est.log_z and weights.shape == (2, 8)
    # each reply drawn in proportion to pi_ref = [1/8, 1/8, 1/4, 1/2]: the estimates are exact
    logp_ref = torch.log(torch.tensor([1 / 8, 1 / 8, 1 / 4, 1 / 2], dtype=F64)).expand(2, 4)
    listed = rewards[:, [0, 1, 2, 4]]
    assert torch.allclose(est.log_z, log_partition(logp_ref, listed, 0.7), atol=1e-12)
    assert torch.allclose(est.kl, kl_optimal(logp_ref, listed, 0.7), atol=1e-12)
    r = rewards.clone().requires_grad_(True)
    importance_estimates(r, 0.7).log_z.sum().backward()
    assert torch.allclose(r.grad, est.weights / 0.7)           # d log Z_hat / d r_i = w_i / beta


def test_estimate_converges_to_exact(space):
    """Self-normalised IS error shrinks with N and is small at N = 1e5."""
    beta, gen = 0.5, torch.Generator().manual_seed(0)
    exact = torch.stack([policy_stats(boltzmann_policy(space.logp_ref, space.rewards, beta),
                                      space.logp_ref, space.rewards, beta)["expected_reward"],
                         kl_optimal(space.logp_ref, space.rewards, beta),
                         log_partition(space.logp_ref, space.rewards, beta)])

    def error(rewards):
        est = boltzmann_estimate(rewards, beta, warn=False)
        return (torch.stack([est.expected_reward, est.kl, est.log_z], -1) - exact).abs()

    small = error(_sample_rewards(space, 100 * 20, gen).reshape(20, 100)).mean(0)
    large = error(_sample_rewards(space, 100_000, gen))
    assert (large < 0.03).all(), large
    assert (large < small / 5).all(), (large, small)


def test_low_ess_warning_and_flags(space):
    rewards = _sample_rewards(space, 2000, torch.Generator().manual_seed(0)).expand(2, -1)
    with pytest.warns(LowESSWarning, match="beta=0.001"):
        est = boltzmann_estimate(rewards, 1e-3)
    assert est.trustworthy.shape == (2,) and not est.trustworthy.any()
    assert torch.isfinite(est.kl).all() and est.kl.max().item() <= math.log(2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert boltzmann_estimate(rewards, 10.0).trustworthy.all()
    with pytest.warns(LowESSWarning):
        fr = estimated_frontier(rewards, [1e-3, 1.0, 10.0], gold=rewards)
    assert fr["trustworthy"].tolist() == [[False, False], [True, True], [True, True]]
    assert torch.allclose(fr["expected_gold"], fr["expected_reward"])


def test_estimated_frontier_matches_exact_frontier(space):
    rewards = _sample_rewards(space, 100_000, torch.Generator().manual_seed(1))
    betas = [0.3, 1.0, 3.0]
    est, exact = estimated_frontier(rewards, betas), frontier(space.logp_ref, space.rewards, betas)
    for key in ("expected_reward", "kl", "objective"):
        assert torch.allclose(est[key], exact[key], rtol=0.02, atol=0.02), key


# ----------------------------------------------------------------------------- bad input


def test_value_errors_name_their_argument(space):
    lp, r = space.logp_ref, space.rewards
    for bad in (0.0, -1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="beta"):
            boltzmann_policy(lp, r, bad)
    with pytest.raises(ValueError, match="rewards"):
        boltzmann_policy(lp, r[:-1], 1.0)
    with pytest.raises(ValueError, match="logp_ref"):
        boltzmann_policy(lp + 1.0, r, 1.0)                             # not normalised
    with pytest.raises(ValueError, match="logp"):
        policy_stats(lp[:-1], lp, r, 1.0)
    with pytest.raises(ValueError, match="betas"):
        frontier(lp, r, [1.0, 0.0])
    with pytest.raises(ValueError, match="rewards"):
        boltzmann_estimate(torch.tensor([1.0, float("nan")]), 1.0)
    with pytest.raises(ValueError, match="beta"):
        boltzmann_estimate(torch.zeros(3), -1.0)
