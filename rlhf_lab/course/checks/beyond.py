"""Checks of notebook 07: the DPO loss, GRPO's group advantages and the PPO-ptx loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rlhf_lab.course.checks.harness import (
    _call,
    _call_live,
    _expect,
    _Fail,
    _loss,
    _needs_grad,
    _run,
    _tensor,
)
from rlhf_lab.equations import beyond_losses

__all__ = ['check_dpo_loss', 'check_group_advantages', 'check_ppo_ptx_loss']


def check_dpo_loss(fn) -> bool:
    """Check ``dpo_loss(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected, beta)
    -> loss or (loss, stats)``."""
    g = torch.Generator().manual_seed(21)
    lc, lr, rc, rr = (-6 + 2 * torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4))

    def equal_to_reference():
        loss = _loss(_call(fn, lc, lr, lc.clone(), lr.clone(), 0.1))
        _expect(loss, math.log(2), "with the policy equal to the reference (every implicit "
                "reward is 0)", [(0.0, "with π_θ = π_ref the margin is 0 and -log σ(0) = log 2")])

    def value():
        want, _ = beyond_losses.dpo_loss(lc, lr, rc, rr, 0.5)
        wrong = [(-F.logsigmoid((lc - rc) - (lr - rr)).mean(), "you left out β: the implicit "
                  "reward is β·(logp - logp_ref)"),
                 (-F.logsigmoid(0.5 * (lc - lr)).mean(), "you left out the reference: the "
                  "implicit reward is β·(logp - logp_ref)"),
                 (-F.logsigmoid(0.5 * ((lr - rr) - (lc - rc))).mean(), "chosen and rejected "
                  "are swapped"),
                 (-F.logsigmoid(0.5 * ((lc - rc) - (lr - rr))).sum(), "average over the pairs, "
                  "do not sum")]
        _expect(_loss(_call(fn, lc, lr, rc, rr, 0.5)), want, "for 5 random pairs at β = 0.5",
                wrong)

    def stable():
        big = torch.tensor([-3000.0, -1.0])
        loss = _loss(_call(fn, big, big.flip(0), torch.zeros(2), torch.zeros(2), 1.0))
        if not torch.isfinite(loss):
            raise _Fail("a margin of ±3000 gives an infinite loss: use F.logsigmoid(x), not "
                        "torch.log(torch.sigmoid(x))")
        _expect(loss, 1499.5 + 0.5 * math.log1p(math.exp(-2999.0)), "at margins -2999 and +2999")

    def gradient():
        x = lc.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, x, lr, rc, rr, 0.5)), x, "your loss")
        m = 0.5 * ((lc - rc) - (lr - rr))
        _expect(grad, -0.5 * torch.sigmoid(-m) / 5, "for the gradient with respect to logp_chosen")

    return _run("dpo_loss", [equal_to_reference, value, stable, gradient], fn)


def check_group_advantages(fn) -> bool:
    """Check ``group_advantages(scores, group_size, eps=1e-6) -> (B,)``."""
    def example():
        out = _tensor(_call(fn, torch.tensor([1.0, 3.0, 5.0, 5.0]), 2), "your advantages", (4,))
        _expect(out, [-1.0, 1.0, 0.0, 0.0], "for scores [1, 3, 5, 5] in groups of 2",
                [([1.0, -1.0, 0.0, 0.0], "the sign is flipped: a reply better than its group "
                  "gets a positive advantage")])

    def groups():
        scores = torch.tensor([1.0, 2.0, 6.0, -1.0, 0.0, 4.0], dtype=torch.float64)
        want = beyond_losses.group_advantages(scores, 3)
        g = scores.reshape(2, 3)
        c = g - g.mean(1, keepdim=True)
        strided = scores.reshape(3, 2).T
        cs = strided - strided.mean(1, keepdim=True)
        wrong = [(c.reshape(-1), "divide by the group's standard deviation (+ eps)"),
                 ((c / (g.std(1, keepdim=True) + 1e-6)).reshape(-1), "use the population std "
                  "(unbiased=False), not the sample std"),
                 ((cs / (cs.pow(2).mean(1, keepdim=True).sqrt() + 1e-6)).T.reshape(-1),
                  "a group is group_size ADJACENT rows: rows [g·G, (g+1)·G)")]
        out = _tensor(_call(fn, scores, 3), "your advantages", (6,))
        _expect(out, want, "for [1, 2, 6, -1, 0, 4] in groups of 3", wrong)
        _expect(out.reshape(2, 3).sum(1), [0.0, 0.0], "for the sum of each group's advantages")

    def constant():
        out = _tensor(_call(fn, torch.tensor([2.0, 2.0, 2.0, 0.0, 1.0, 2.0]), 3),
                      "with a constant group your advantages", (6,))
        _expect(out[:3], [0.0, 0.0, 0.0], "for a group whose replies all scored 2 (add eps "
                "to the std so that 0/0 does not happen)")

    return _run("group_advantages", [example, groups, constant], fn)


def check_ppo_ptx_loss(fn) -> bool:
    """Check ``ppo_ptx_loss(pg_loss, logits_ptx, input_ids_ptx, attention_mask_ptx, ptx_coef)
    -> loss or (loss, stats)``."""
    g = torch.Generator().manual_seed(22)
    logits = 2 * torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    ids = torch.randint(1, 6, (2, 5), generator=g)
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pg = torch.tensor(0.3, dtype=torch.float64)

    def uniform():
        loss = _loss(_call(fn, pg, torch.zeros(2, 5, 6, dtype=torch.float64), ids, am, 2.0))
        _expect(loss, 0.3 + 2 * math.log(6), "for uniform logits over 6 words, ptx_coef = 2 "
                "(pg_loss + 2·log 6)", [(2 * 0.3 + math.log(6), "ptx_coef multiplies the "
                                          "pretraining NLL, not the PPO loss"),
                                         (0.3 - 2 * math.log(6), "the NLL is ADDED")])

    def value():
        want, _ = beyond_losses.ppo_ptx_loss(pg, logits, ids, am, 0.5)
        lp_all = F.log_softmax(logits, -1)
        noshift = lp_all.gather(-1, ids[..., None])[..., 0]
        shifted = lp_all[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        wrong = [(pg - 0.5 * (noshift * am).sum() / am.sum(), "off by one: the logits at t "
                  "predict the token at t+1 (pair logits[:, :-1] with input_ids[:, 1:])"),
                 (pg - 0.5 * shifted.mean(), "padding counted: average only over real tokens "
                  "(attention_mask)")]
        _expect(_loss(_call(fn, pg, logits, ids, am, 0.5)), want,
                "for 2 rows (one padded) at ptx_coef = 0.5", wrong)

    def zero():
        _expect(_loss(_call(fn, pg, logits, ids, am, 0.0)), 0.3, "with ptx_coef = 0 (plain PPO)")

    return _run("ppo_ptx_loss", [uniform, value, zero], fn)
