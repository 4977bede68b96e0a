"""Tests of rlhf_lab.equations.rl_losses: exact values first, then properties, then bad input."""
import doctest
import math

import pytest
import torch

from rlhf_lab.equations import rl_losses
from rlhf_lab.equations.rl_losses import (
    gae,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
    ppo_clip_loss,
    sequence_kl,
    shaped_rewards,
    value_loss,
)

T, F = True, False


def prefix_mask(lengths, R):
    """Right-padded mask: row b keeps its first lengths[b] tokens."""
    return torch.arange(R).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def with_garbage(x, mask):
    """Copy of ``x`` whose masked entries cycle through NaN, inf, -inf and 1e30."""
    junk = torch.tensor([math.nan, math.inf, -math.inf, 1e30], dtype=x.dtype)
    junk = junk.repeat(x.numel() // 4 + 1)[: x.numel()].reshape(x.shape)
    return torch.where(mask, x, junk)


def gae_reference_loop(rewards, values, response_mask, gamma, lam):
    """GAE as a plain double loop; a masked position is terminal (no value, no advantage)."""
    B, R = rewards.shape
    adv = torch.zeros(B, R, dtype=torch.float64)
    for b in range(B):
        for t in reversed(range(R)):
            if not response_mask[b, t]:
                continue
            kept_next = t + 1 < R and bool(response_mask[b, t + 1])
            next_value = float(values[b, t + 1]) if kept_next else 0.0
            next_adv = float(adv[b, t + 1]) if kept_next else 0.0
            delta = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            adv[b, t] = delta + gamma * lam * next_adv
    returns = torch.where(response_mask, adv + values.double(), torch.zeros(()))
    return adv, returns


def test_docstring_examples_are_correct():
    """Every worked example in the module's docstrings gives the value it shows."""
    result = doctest.testmod(rl_losses)
    assert result.attempted >= 10 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# KL estimators
# ---------------------------------------------------------------------------------------------

def test_kl_estimators_exact_values():
    """k1, k2, k3 on hand-computed tokens; kl_estimate dispatches by name."""
    logp, logp_ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-2.0, -1.0, -0.5])
    assert torch.allclose(kl_k1(logp, logp_ref), torch.tensor([1.0, -1.0, 0.0]))
    assert torch.allclose(kl_k2(logp, logp_ref), torch.tensor([0.5, 0.5, 0.0]))
    # rho = pi_ref / pi = exp(logp_ref - logp): exp(-1) - 1 + 1, exp(1) - 1 - 1, 0
    expected_k3 = torch.tensor([math.exp(-1.0), math.e - 2.0, 0.0])
    assert torch.allclose(kl_k3(logp, logp_ref), expected_k3)
    for kind, fn in [("k1", kl_k1), ("k2", kl_k2), ("k3", kl_k3)]:
        assert torch.equal(kl_estimate(logp, logp_ref, kind=kind), fn(logp, logp_ref))
    assert torch.equal(kl_estimate(logp, logp_ref), kl_k1(logp, logp_ref))


def _sample_categorical(logits_p, logits_ref, n, seed):
    """Sample n tokens from pi = softmax(logits_p); return per-sample logp, logp_ref, exact KL."""
    log_p = torch.log_softmax(logits_p.double(), -1)
    log_ref = torch.log_softmax(logits_ref.double(), -1)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.multinomial(log_p.exp(), n, replacement=True, generator=gen)
    exact_kl = (log_p.exp() * (log_p - log_ref)).sum()
    return log_p[tokens], log_ref[tokens], exact_kl, log_p, log_ref


def _mean_and_stderr(x):
    return x.mean(), x.std() / math.sqrt(x.numel())


def test_k1_and_k3_average_to_the_exact_categorical_kl():
    """Both estimators are unbiased: their sample means match KL(pi || pi_ref) within 4 s.e."""
    gen = torch.Generator().manual_seed(1)
    logits_p = torch.randn(12, generator=gen)
    logits_ref = logits_p + torch.randn(12, generator=gen)
    logp, logp_ref, exact_kl, _, _ = _sample_categorical(logits_p, logits_ref, 200_000, seed=2)
    assert 0.2 < exact_kl < 2.0                      # a KL far from 0, so the test has teeth
    for estimator in (kl_k1, kl_k3):
        mean, stderr = _mean_and_stderr(estimator(logp, logp_ref))
        assert stderr < 0.01 * exact_kl
        assert abs(mean - exact_kl) < 4 * stderr, (estimator.__name__, mean, exact_kl)
    # The minChatGPT bug (rho the wrong way up, pi / pi_ref) is far off: the test can tell.
    wrong_k3 = kl_k3(logp_ref, logp)
    assert abs(wrong_k3.mean() - exact_kl) > 20 * _mean_and_stderr(wrong_k3)[1]


def test_k2_average_matches_its_second_order_value():
    """E_pi[k2] = 0.5 E_pi[(log pi/pi_ref)^2], which is the KL to second order for close pi."""
    gen = torch.Generator().manual_seed(3)
    logits_p = torch.randn(12, generator=gen)
    logits_ref = logits_p + 0.1 * torch.randn(12, generator=gen)
    logp, logp_ref, exact_kl, log_p, log_ref = _sample_categorical(logits_p, logits_ref,
                                                                   200_000, seed=4)
    exact_k2_mean = 0.5 * (log_p.exp() * (log_p - log_ref) ** 2).sum()
    mean, stderr = _mean_and_stderr(kl_k2(logp, logp_ref))
    assert abs(mean - exact_k2_mean) < 4 * stderr
    assert abs(mean - exact_kl) < 0.1 * exact_kl     # second-order agreement


def test_k3_is_nonnegative_on_every_token():
    gen = torch.Generator().manual_seed(5)
    logp = -5 * torch.rand(10_000, generator=gen)
    for scale in (10.0, 1.0, 1e-3, 1e-6, 0.0):
        logp_ref = logp + scale * torch.randn(10_000, generator=gen)
        assert (kl_k3(logp, logp_ref) >= 0).all(), scale


# ---------------------------------------------------------------------------------------------
# Sequence KL and shaped rewards
# ---------------------------------------------------------------------------------------------

def test_sequence_kl_sums_k1_over_kept_tokens():
    logp = torch.tensor([[-1.0, -1.0, 5.0], [-0.5, -3.0, -2.0]])
    logp_ref = torch.tensor([[-2.0, -1.5, 0.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[T, T, F], [T, T, T]])
    assert torch.allclose(sequence_kl(logp, logp_ref, mask), torch.tensor([1.5, -2.5]))


def test_shaped_rewards_exact_values():
    logp = torch.tensor([[-1.0, -1.0, 0.0], [-0.5, -3.0, -2.0]])
    logp_ref = torch.tensor([[-2.0, -1.5, 0.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[T, T, F], [T, T, T]])
    rewards = shaped_rewards(torch.tensor([2.0, -1.0]), logp, logp_ref, mask, beta=0.1)
    expected = torch.tensor([[-0.1, -0.05 + 2.0, 0.0], [-0.05, 0.2, 0.1 - 1.0]])
    assert torch.allclose(rewards, expected)


def test_shaped_rewards_place_the_score_at_the_last_kept_token_and_sum_correctly():
    gen = torch.Generator().manual_seed(6)
    B, R, beta = 6, 7, 0.3
    mask = prefix_mask([1, 3, 7, 5, 2, 6], R)
    logp, logp_ref = -torch.rand(B, R, generator=gen), -torch.rand(B, R, generator=gen)
    scores = torch.randn(B, generator=gen)
    rewards = shaped_rewards(scores, logp, logp_ref, mask, beta)
    assert torch.allclose(rewards.sum(-1), scores - beta * sequence_kl(logp, logp_ref, mask))
    assert (rewards[~mask] == 0).all()
    without_score = shaped_rewards(torch.zeros(B), logp, logp_ref, mask, beta)
    last = mask.sum(-1) - 1
    placed = rewards - without_score
    assert torch.allclose(placed[torch.arange(B), last], scores)
    placed[torch.arange(B), last] = 0
    assert torch.allclose(placed, torch.zeros(B, R))
    # with beta = 0 the reward is the score alone, on the last kept token
    assert torch.allclose(shaped_rewards(scores, logp, logp_ref, mask, 0.0).sum(-1), scores)


# ---------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------

def test_gae_with_gamma_lam_one_is_reward_to_go_minus_values():
    gen = torch.Generator().manual_seed(7)
    B, R = 5, 6
    mask = prefix_mask([6, 1, 4, 3, 5], R)
    rewards = torch.where(mask, torch.randn(B, R, generator=gen), torch.zeros(()))
    values = torch.where(mask, torch.randn(B, R, generator=gen), torch.zeros(()))
    reward_to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    adv, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.where(mask, reward_to_go - values, torch.zeros(())),
                          atol=1e-6)
    assert torch.allclose(returns, torch.where(mask, reward_to_go, torch.zeros(())), atol=1e-6)


def test_gae_hand_example():
    """One row, gamma = 0.5, lam = 0.5: deltas and the backward recursion by hand."""
    rewards, values = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[1.0, 2.0, 1.0]])
    adv, returns = gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), 0.5, 0.5)
    # delta = [1 + 0.5*2 - 1, 0 + 0.5*1 - 2, 2 + 0 - 1] = [1, -1.5, 1]
    # A_2 = 1, A_1 = -1.5 + 0.25 * 1 = -1.25, A_0 = 1 + 0.25 * -1.25 = 0.6875
    assert torch.allclose(adv, torch.tensor([[0.6875, -1.25, 1.0]]))
    assert torch.allclose(returns, torch.tensor([[1.6875, 0.75, 2.0]]))


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 0.0), (0.0, 0.7),
                                        (0.99, 1.0)])
@pytest.mark.parametrize("holes", [False, True])
def test_vectorised_gae_equals_the_plain_loop(gamma, lam, holes):
    gen = torch.Generator().manual_seed(8)
    B, R = 8, 9
    if holes:      # masked positions inside a row are terminal too
        mask = torch.rand(B, R, generator=gen) < 0.7
    else:          # right-padded responses of random lengths, one of them empty
        mask = prefix_mask(torch.randint(0, R + 1, (B,), generator=gen).tolist(), R)
        mask[0] = False
    rewards = torch.randn(B, R, generator=gen, dtype=torch.float64)
    values = torch.randn(B, R, generator=gen, dtype=torch.float64)
    adv, returns = gae(rewards, values, mask, gamma, lam)
    adv_loop, returns_loop = gae_reference_loop(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, adv_loop) and torch.allclose(returns, returns_loop)


def test_gae_does_not_bootstrap_past_the_end():
    """A huge value (or NaN) on a masked position after the end changes nothing."""
    rewards, values = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.5, 0.0]])
    mask = torch.tensor([[T, T, F]])
    adv, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    for junk in (1e6, math.nan, math.inf):
        values_junk = torch.tensor([[0.5, 0.5, junk]])
        adv_junk, returns_junk = gae(rewards, values_junk, mask, gamma=1.0, lam=0.95)
        assert torch.equal(adv, adv_junk) and torch.equal(returns, returns_junk)
    # last kept token: A = r - V = 0.5; first: delta = 0 + 0.5 - 0.5 = 0, A = 0.95 * 0.5
    assert torch.allclose(adv, torch.tensor([[0.475, 0.5, 0.0]]))


# ---------------------------------------------------------------------------------------------
# PPO clipped surrogate
# ---------------------------------------------------------------------------------------------

def test_ppo_clip_loss_at_ratio_one_is_minus_mean_advantage():
    gen = torch.Generator().manual_seed(9)
    mask = prefix_mask([3, 5, 1], 5)
    logp, adv = -torch.rand(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    loss, stats = ppo_clip_loss(logp, logp.clone(), adv, mask, clip_eps=0.2)
    assert torch.allclose(loss, -adv[mask].mean())
    assert stats == {"pg_loss": pytest.approx(loss.item()), "clipfrac": 0.0,
                     "approx_kl": 0.0, "ratio_mean": pytest.approx(1.0)}
    assert all(isinstance(v, float) for v in stats.values())


def test_ppo_clip_gradient_is_switched_off_exactly_where_it_should_be():
    ratio = torch.tensor([[1.5, 0.6, 1.5, 0.5, 1.1, 0.9]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, -1.0]])
    logp = torch.log(ratio).requires_grad_()
    loss, stats = ppo_clip_loss(logp, torch.zeros(1, 6), adv,
                                torch.ones(1, 6, dtype=torch.bool), clip_eps=0.2)
    loss.backward()
    # objective terms: min(r A, clip(r) A) = [1.2, 0.6, -1.5, -0.8, 1.1, -0.9]
    assert loss.item() == pytest.approx(-(1.2 + 0.6 - 1.5 - 0.8 + 1.1 - 0.9) / 6)
    # d loss / d logp = -r A / N on unclipped tokens, 0 where the clip binds:
    #   A > 0, r > 1 + eps -> 0;   A > 0, r < 1 - eps -> not 0 (the clip never helps a loss)
    #   A < 0, r < 1 - eps -> 0;   A < 0, r > 1 + eps -> not 0
    expected = torch.tensor([[0.0, -0.6, 1.5, 0.0, -1.1, 0.9]]) / 6
    assert torch.allclose(logp.grad, expected)
    assert stats["clipfrac"] == pytest.approx(4 / 6)
    assert stats["ratio_mean"] == pytest.approx(ratio.mean().item())
    assert stats["approx_kl"] == pytest.approx(((ratio - 1) - ratio.log()).mean().item())


# ---------------------------------------------------------------------------------------------
# Value loss
# ---------------------------------------------------------------------------------------------

def test_value_loss_clipping_on_a_hand_example():
    values = torch.tensor([[0.5, -0.1, 1.5]], requires_grad=True)
    values_old, returns = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss, stats = value_loss(values, values_old, returns, mask, clip_eps_value=0.2)
    loss.backward()
    # token 0: V moved +0.5 towards R: clipped V = 0.2 -> (0.2-1)^2 = 0.64 > 0.25, no gradient
    # token 1: the step -0.1 is within the clip: (-1.1)^2 = 1.21 either way
    # token 2: V moved +0.5 away from R: unclipped 2.25 > clipped 1.44, gradient flows
    assert loss.item() == pytest.approx(0.5 * (0.64 + 1.21 + 2.25) / 3)
    assert torch.allclose(values.grad, torch.tensor([[0.0, -1.1, 1.5]]) / 3)
    assert stats["vf_clipfrac"] == pytest.approx(1 / 3)
    assert stats["vf_loss"] == pytest.approx(loss.item())

    loss_plain, stats_plain = value_loss(values, values_old, returns, mask, clip_eps_value=None)
    assert loss_plain.item() == pytest.approx(0.5 * (0.25 + 1.21 + 2.25) / 3)
    assert stats_plain["vf_clipfrac"] == 0.0


def test_explained_variance_is_one_for_perfect_and_zero_for_the_mean():
    gen = torch.Generator().manual_seed(10)
    mask = prefix_mask([4, 2, 5], 5)
    returns = with_garbage(torch.randn(3, 5, generator=gen), mask)
    _, perfect = value_loss(returns, returns, returns, mask, 0.2)
    assert perfect["explained_variance"] == pytest.approx(1.0)
    mean_prediction = torch.full((3, 5), returns[mask].mean().item())
    _, constant = value_loss(mean_prediction, mean_prediction, returns, mask, 0.2)
    assert constant["explained_variance"] == pytest.approx(0.0, abs=1e-6)
    _, flat = value_loss(returns, returns, torch.ones(3, 5), mask, None)
    assert math.isnan(flat["explained_variance"])


# ---------------------------------------------------------------------------------------------
# Masked tokens change nothing, not even gradients (garbage includes NaN and inf)
# ---------------------------------------------------------------------------------------------

def _scalar(output):
    """Reduce any function output (tensor, tuple, (loss, stats)) to one differentiable scalar."""
    tensors = [o for o in (output if isinstance(output, tuple) else (output,))
               if isinstance(o, torch.Tensor)]
    return sum((o * torch.linspace(0.5, 1.5, o.numel()).reshape(o.shape)).sum() for o in tensors)


CASES = {
    "sequence_kl": (lambda x, m: sequence_kl(x["logp"], x["logp_ref"], m), ["logp", "logp_ref"]),
    "shaped_rewards": (lambda x, m: shaped_rewards(x["scores"], x["logp"], x["logp_ref"], m, 0.1),
                       ["logp", "logp_ref"]),
    "gae": (lambda x, m: gae(x["rewards"], x["values"], m, 0.9, 0.95), ["rewards", "values"]),
    "ppo_clip_loss": (lambda x, m: ppo_clip_loss(x["logp"], x["logp_old"], x["adv"], m, 0.2),
                      ["logp", "logp_old", "adv"]),
    "value_loss": (lambda x, m: value_loss(x["values"], x["values_old"], x["returns"], m, 0.2),
                   ["values", "values_old", "returns"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_masked_tokens_change_neither_result_nor_gradient(name):
    fn, per_token_args = CASES[name]
    gen = torch.Generator().manual_seed(11)
    mask = prefix_mask([2, 5, 3, 1], 5)
    clean = {k: torch.randn(4, 5, generator=gen) - (2.0 if k.startswith("logp") else 0.0)
             for k in ["logp", "logp_old", "logp_ref", "adv", "rewards", "values", "values_old",
                       "returns"]}
    clean["scores"] = torch.randn(4, generator=gen)
    dirty = {k: with_garbage(v, mask) if k in per_token_args else v.clone()
             for k, v in clean.items()}
    results = []
    for inputs in (clean, dirty):
        inputs = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        output = fn(inputs, mask)
        _scalar(output).backward()
        grads = {k: inputs[k].grad for k in per_token_args}
        results.append((output, grads))
    (out_clean, grads_clean), (out_dirty, grads_dirty) = results
    if isinstance(out_clean, tuple) and isinstance(out_clean[1], dict):   # (loss, stats)
        assert out_clean[1] == pytest.approx(out_dirty[1])
        out_clean, out_dirty = out_clean[0], out_dirty[0]
    for a, b in zip(out_clean if isinstance(out_clean, tuple) else (out_clean,),
                    out_dirty if isinstance(out_dirty, tuple) else (out_dirty,)):
        assert torch.equal(a, b)
    for k in per_token_args:
        assert torch.isfinite(grads_dirty[k]).all(), k
        assert torch.equal(grads_clean[k], grads_dirty[k]), k
        assert (grads_dirty[k][~mask] == 0).all(), k
    assert any(g.abs().sum() > 0 for g in grads_dirty.values())   # the check is not vacuous


# ---------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument
# ---------------------------------------------------------------------------------------------

_B, _R = 2, 3
_x = torch.zeros(_B, _R)
_m = torch.ones(_B, _R, dtype=torch.bool)
_s = torch.zeros(_B)

BAD_CALLS = [
    ("negative beta", lambda: shaped_rewards(_s, _x, _x, _m, beta=-0.1), r"^beta must be"),
    ("nan beta", lambda: shaped_rewards(_s, _x, _x, _m, beta=math.nan), r"^beta must be"),
    ("clip_eps 0", lambda: ppo_clip_loss(_x, _x, _x, _m, clip_eps=0.0), r"^clip_eps must be"),
    ("clip_eps 1", lambda: ppo_clip_loss(_x, _x, _x, _m, clip_eps=1.0), r"^clip_eps must be"),
    ("clip_eps < 0", lambda: ppo_clip_loss(_x, _x, _x, _m, clip_eps=-0.2), r"^clip_eps must"),
    ("clip_eps > 1", lambda: ppo_clip_loss(_x, _x, _x, _m, clip_eps=1.5), r"^clip_eps must"),
    ("gamma < 0", lambda: gae(_x, _x, _m, gamma=-0.1, lam=0.9), r"^gamma must be"),
    ("gamma > 1", lambda: gae(_x, _x, _m, gamma=1.01, lam=0.9), r"^gamma must be"),
    ("lam < 0", lambda: gae(_x, _x, _m, gamma=1.0, lam=-0.5), r"^lam must be"),
    ("lam > 1", lambda: gae(_x, _x, _m, gamma=1.0, lam=2.0), r"^lam must be"),
    ("clip_eps_value 0", lambda: value_loss(_x, _x, _x, _m, 0.0), r"^clip_eps_value must"),
    ("clip_eps_value < 0", lambda: value_loss(_x, _x, _x, _m, -1.0), r"^clip_eps_value must"),
    ("unknown kind", lambda: kl_estimate(_x, _x, kind="k4"), r"^kind must be one of"),
    ("empty row", lambda: shaped_rewards(_s, _x, _x, torch.tensor([[T, T, F], [F, F, F]]), 0.1),
     r"^response_mask has a row with no response token"),
    ("scores shape", lambda: shaped_rewards(torch.zeros(3), _x, _x, _m, 0.1), r"^scores must"),
    ("logp_ref shape k1", lambda: kl_k1(_x, torch.zeros(_B, 4)), r"^logp_ref has shape"),
    ("logp_ref shape k3", lambda: kl_k3(_x, torch.zeros(_B, 4)), r"^logp_ref has shape"),
    ("logp_ref shape seq", lambda: sequence_kl(_x, torch.zeros(3, _R), _m), r"^logp_ref has"),
    ("logp_old shape", lambda: ppo_clip_loss(_x, torch.zeros(_B, 4), _x, _m, 0.2),
     r"^logp_old has shape"),
    ("adv shape", lambda: ppo_clip_loss(_x, _x, torch.zeros(_B), _m, 0.2), r"^adv has shape"),
    ("values shape gae", lambda: gae(_x, torch.zeros(_B, 4), _m, 1.0, 0.9), r"^values has"),
    ("returns shape", lambda: value_loss(_x, _x, torch.zeros(_B, 4), _m, 0.2), r"^returns has"),
    ("values_old shape", lambda: value_loss(_x, torch.zeros(3, _R), _x, _m, 0.2),
     r"^values_old has"),
    ("integer logp", lambda: kl_k1(torch.zeros(3, dtype=torch.long), torch.zeros(3)),
     r"^logp must be a floating-point tensor"),
]
for _name, _call in [("sequence_kl", lambda m: sequence_kl(_x, _x, m)),
                     ("shaped_rewards", lambda m: shaped_rewards(_s, _x, _x, m, 0.1)),
                     ("gae", lambda m: gae(_x, _x, m, 1.0, 0.9)),
                     ("ppo_clip_loss", lambda m: ppo_clip_loss(_x, _x, _x, m, 0.2)),
                     ("value_loss", lambda m: value_loss(_x, _x, _x, m, 0.2))]:
    BAD_CALLS.append((f"{_name} float mask", lambda c=_call: c(_m.float()),
                      r"^response_mask must be a bool tensor"))
    BAD_CALLS.append((f"{_name} mask shape", lambda c=_call: c(torch.ones(_B, 4, dtype=bool)),
                      r"^response_mask has shape"))


@pytest.mark.parametrize("call, match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_valid_edge_values_are_accepted():
    """The ends of the closed ranges are legal: beta = 0, gamma = lam = 0 or 1."""
    shaped_rewards(_s, _x, _x, _m, beta=0.0)
    for gamma in (0.0, 1.0):
        for lam in (0.0, 1.0):
            adv, returns = gae(_x, _x, _m, gamma=gamma, lam=lam)
            assert adv.shape == returns.shape == (_B, _R)
