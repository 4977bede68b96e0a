"""Tests of rlhf_lab.equations.beyond_losses (DPO, GRPO, PPO-ptx): exact values, properties, bad input."""
import doctest
import math

import pytest
import torch

from rlhf_lab.equations import beyond_losses
from rlhf_lab.equations.beyond_losses import (
    dpo_loss,
    group_advantages,
    grpo_loss,
    implicit_reward,
    ppo_ptx_loss,
    pretraining_nll,
)
from rlhf_lab.equations.rl_losses import ppo_clip_loss


def test_doctests():
    assert doctest.testmod(beyond_losses).failed == 0


# --- DPO -------------------------------------------------------------------------------------

def test_dpo_loss_is_log2_when_policy_equals_reference():
    logp = torch.tensor([-3.0, -7.5, -0.2])
    loss, stats = dpo_loss(logp, logp.flip(0), logp, logp.flip(0), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert stats["margin"] == 0.0 and stats["accuracy"] == 0.0


def test_dpo_loss_exact_value():
    # implicit rewards 0.5 * (−1 − (−2)) = 0.5 and 0.5 * (−4 − (−3)) = −0.5: margin 1
    loss, stats = dpo_loss(torch.tensor([-1.0]), torch.tensor([-4.0]), torch.tensor([-2.0]),
                           torch.tensor([-3.0]), beta=0.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    assert stats["reward_chosen"] == pytest.approx(0.5) and stats["reward_rejected"] == pytest.approx(-0.5)
    assert stats["accuracy"] == 1.0


def test_dpo_loss_ignores_a_per_prompt_shift_of_the_reference():
    # log pi_ref + c(x) for both replies to the same prompt: the loss cannot change
    args = [torch.randn(5, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    c = torch.linspace(-3, 3, 5)
    a, _ = dpo_loss(*args, beta=0.2)
    b, _ = dpo_loss(args[0], args[1], args[2] + c, args[3] + c, beta=0.2)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_dpo_loss_is_stable_and_has_the_bt_gradient():
    lc = torch.tensor([0.0, 1e4], requires_grad=True)
    loss, _ = dpo_loss(lc, torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=1.0)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(math.log(2) / 2, abs=1e-6)
    # d/d logp_chosen of -log σ(β m)/B = -β σ(-β m)/B
    assert torch.allclose(lc.grad, torch.tensor([-0.25, 0.0]), atol=1e-7)
    huge, _ = dpo_loss(torch.tensor([-1e4]), torch.zeros(1), torch.zeros(1), torch.zeros(1), 1.0)
    assert huge.item() == pytest.approx(1e4)


def test_implicit_reward_and_bad_input():
    assert implicit_reward(torch.tensor([-1.0]), torch.tensor([-1.5]), 2.0).item() == 1.0
    with pytest.raises(ValueError, match="beta"):
        implicit_reward(torch.zeros(1), torch.zeros(1), 0.0)
    with pytest.raises(ValueError, match="logp_rejected"):
        dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), 0.1)
    with pytest.raises(ValueError, match="1-D"):
        dpo_loss(*[torch.zeros(2, 2)] * 4, beta=0.1)


# --- GRPO ------------------------------------------------------------------------------------

def test_group_advantages_exact_and_zero_sum():
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    adv = group_advantages(scores, group_size=3)
    s = math.sqrt(2 / 3)
    assert torch.allclose(adv, torch.tensor([-1 / s, 0.0, 1 / s, 0.0, 0.0, 0.0]), atol=1e-5)
    scores = torch.randn(32, generator=torch.Generator().manual_seed(0))
    adv = group_advantages(scores, group_size=8).reshape(4, 8)
    assert torch.allclose(adv.sum(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(adv.pow(2).mean(1), torch.ones(4), atol=1e-4)       # unit variance


def test_group_advantages_are_per_group_shift_and_scale_invariant():
    scores = torch.randn(12, generator=torch.Generator().manual_seed(1))
    shifted = scores * 3.0 + torch.arange(3).repeat_interleave(4) * 100.0
    assert torch.allclose(group_advantages(scores, 4), group_advantages(shifted, 4), atol=1e-4)


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(6), 1)
    with pytest.raises(ValueError, match="scores"):
        group_advantages(torch.zeros(2, 3), 3)


def test_grpo_loss_is_clip_loss_plus_k3():
    g = torch.Generator().manual_seed(2)
    logp, logp_old, logp_ref = (torch.randn(4, 5, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]).bool()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    loss, stats = grpo_loss(logp, logp_old, logp_ref, adv, mask, 0.2, beta=0.0)
    ref, _ = ppo_clip_loss(logp, logp_old, adv[:, None].expand(4, 5), mask, 0.2)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    loss1, stats1 = grpo_loss(logp, logp_old, logp_ref, adv, mask, 0.2, beta=0.5)
    rho = torch.exp(logp_ref - logp)[mask]
    assert stats1["kl"] == pytest.approx(((rho - 1) - torch.log(rho)).mean().item(), abs=1e-6)
    assert loss1.item() == pytest.approx(ref.item() + 0.5 * stats1["kl"], abs=1e-6)
    with pytest.raises(ValueError, match="adv"):
        grpo_loss(logp, logp_old, logp_ref, adv[:2], mask, 0.2, 0.1)


# --- PPO-ptx ---------------------------------------------------------------------------------

def test_pretraining_nll_uniform_and_masked():
    ids = torch.tensor([[1, 2, 3, 0], [3, 2, 0, 0]])
    am = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert pretraining_nll(torch.zeros(2, 4, 7), ids, am).item() == pytest.approx(math.log(7))
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(3))
    poisoned = logits.clone()
    poisoned[0, 2:] = 1e6                       # position 2 predicts padding: must not count
    poisoned[1, 1:] = -1e6
    a, b = pretraining_nll(logits, ids, am), pretraining_nll(poisoned, ids, am)
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
    lp = torch.log_softmax(logits, -1)
    by_hand = -(lp[0, 0, 2] + lp[0, 1, 3] + lp[1, 0, 2]) / 3
    assert a.item() == pytest.approx(by_hand.item(), abs=1e-6)


def test_ppo_ptx_loss_mixes_with_the_coefficient():
    ids, am = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long)
    pg = torch.tensor(0.25)
    loss, stats = ppo_ptx_loss(pg, torch.zeros(1, 3, 5), ids, am, ptx_coef=2.0)
    assert loss.item() == pytest.approx(0.25 + 2 * math.log(5), abs=1e-6)
    assert stats["ptx_nll"] == pytest.approx(math.log(5), abs=1e-6)
    zero, _ = ppo_ptx_loss(pg, torch.zeros(1, 3, 5), ids, am, ptx_coef=0.0)
    assert zero.item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="ptx_coef"):
        ppo_ptx_loss(pg, torch.zeros(1, 3, 5), ids, am, ptx_coef=-1.0)
    with pytest.raises(ValueError, match="attention_mask"):
        pretraining_nll(torch.zeros(1, 3, 5), ids, torch.zeros(1, 3))
