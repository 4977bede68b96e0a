"""Checks of notebook 04: the KL estimators, shaped rewards, GAE, the PPO clip and the value loss."""
from __future__ import annotations

import math

import torch

from rlhf_lab.course.checks.harness import (
    _call,
    _call_live,
    _close,
    _expect,
    _Fail,
    _fmt,
    _loss,
    _needs_grad,
    _run,
    _tensor,
)
from rlhf_lab.equations import rl_losses

__all__ = ['check_kl_estimators', 'check_shaped_rewards', 'check_gae', 'check_ppo_clip_loss', 'check_value_loss']


def check_kl_estimators(k1, k3) -> bool:
    """Check ``kl_k1(logp, logp_ref)`` and ``kl_k3(logp, logp_ref)`` (per token, same shape)."""
    lp, lr = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
    g = torch.Generator().manual_seed(5)
    pi = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)       # (6,)
    ref = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)
    exact_kl = (pi.exp() * (pi - ref)).sum()

    def examples():
        _expect(_tensor(_call(k1, lp, lr), "your k1", (2,)), [1.0, -1.0],
                "of k1 for logp = [-1, -2], logp_ref = [-2, -1]",
                [([-1.0, 1.0], "your k1 has the wrong sign: k1 = logp - logp_ref")])
        _expect(_tensor(_call(k3, lp, lr), "your k3", (2,)), [math.exp(-1), math.e - 2],
                "of k3 for logp = [-1, -2], logp_ref = [-2, -1]",
                [([math.e - 2, math.exp(-1)], "your k3 uses ρ = π/π_ref; it must be "
                  "ρ = π_ref/π = exp(logp_ref - logp)")])

    def unbiased():
        for name, fn in (("k1", k1), ("k3", k3)):
            values = _tensor(_call(fn, pi, ref), f"your {name}", (6,))
            mean = (pi.exp() * values).sum()
            if not _close(mean, exact_kl):
                hint = (" (check the direction of the ratio: ρ = π_ref/π)" if name == "k3"
                        else " (k1 = logp - logp_ref)")
                raise _Fail(f"averaged over y ~ π, your {name} gives {mean.item():.4f} but "
                            f"KL(π‖π_ref) = {exact_kl.item():.4f}{hint}", against_reference=True)

    def k3_non_negative():
        values = torch.as_tensor(_call(k3, pi, ref))
        if (values < -1e-6).any():
            raise _Fail(f"your k3 is negative on some token ({_fmt(values.min().item())}): "
                        f"(ρ - 1) - log ρ >= 0 for every ρ > 0")

    def shapes():
        x = torch.randn(2, 3, generator=g)
        for name, fn in (("k1", k1), ("k3", k3)):
            _tensor(_call(fn, x, x - 0.1), f"your {name} on (2, 3) inputs", (2, 3))

    return _run("kl_estimators", [examples, unbiased, k3_non_negative, shapes], k1, k3)


def _rl_case(seed: int = 6):
    """(B=3, R=5) rollout tensors with responses of 5, 3 and 1 tokens; masked entries hold
    garbage (which must change nothing)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    rand = lambda scale=1.0: scale * torch.randn(3, 5, generator=g, dtype=torch.float64)
    garbage = lambda x: torch.where(mask, x, torch.full_like(x, 7.0))
    return g, mask, rand, garbage


def check_shaped_rewards(fn) -> bool:
    """Check ``shaped_rewards(scores, logp, logp_ref, response_mask, beta) -> (B, R)``."""
    g, mask, rand, garbage = _rl_case()
    scores = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    logp, logp_ref = garbage(-rand().abs()), garbage(-rand().abs())
    beta = 0.1
    want = rl_losses.shaped_rewards(scores, logp, logp_ref, mask, beta)

    def example():
        out = _tensor(_call(fn, torch.tensor([2.0]), torch.tensor([[-1.0, -1.0, 0.0]]),
                            torch.tensor([[-2.0, -1.5, 0.0]]), torch.tensor([[True, True, False]]),
                            0.1), "your rewards", (1, 3))
        _expect(out, [[-0.1, 1.95, 0.0]], "for score 2, logp [-1, -1, pad], logp_ref "
                "[-2, -1.5, pad], β = 0.1")

    def ragged():
        out = _tensor(_call(fn, scores, logp, logp_ref, mask, beta), "your rewards", (3, 5))
        penalty = -beta * (logp - logp_ref) * mask
        last_col = torch.zeros_like(want)
        last_col[:, -1] = scores
        first = torch.zeros_like(want)
        first[:, 0] = scores
        wrong = [((penalty + last_col) * mask, "the score went to the last column; it belongs "
                  "on the last RESPONSE token of each row (rows end at different places: use "
                  "the mask)"),
                 (penalty + first, "the score belongs on the last response token T, not the first"),
                 (want - 2 * penalty, "your KL penalty has the wrong sign: where logp > logp_ref "
                  "the token reward is -β(logp - logp_ref) < 0")]
        _expect(out * mask, want, "on responses of 5, 3 and 1 tokens at β = 0.1", wrong)
        if (out[~mask] != 0).any():
            raise _Fail(f"masked positions should hold 0, got {_fmt(out[~mask])}")

    def sums():
        out = torch.as_tensor(_call(fn, scores, logp, logp_ref, mask, beta))
        kl = ((logp - logp_ref) * mask).sum(-1)
        _expect((out * mask).sum(-1), scores - beta * kl,
                "of each row's sum (score - β·KL)")

    def beta_zero():
        out = torch.as_tensor(_call(fn, scores, logp, logp_ref, mask, 0.0))
        _expect((out * mask).sum(-1), scores, "at β = 0 (each row sums to its score)")

    return _run("shaped_rewards", [example, ragged, sums, beta_zero], fn)


def _pair(out, what, shape):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _Fail(f"{what} should return a pair (adv, returns), got {type(out).__name__}")
    return _tensor(out[0], "your adv", shape), _tensor(out[1], "your returns", shape)


def _gae_variant(rewards, values, mask, gamma, decay, stop_at_end=True):
    """A plain GAE loop with a knob per common mistake: ``decay`` replaces γλ; with
    ``stop_at_end=False`` the last response token bootstraps from the (masked) next position."""
    rewards, adv = rewards * mask, torch.zeros_like(rewards)
    next_v = next_a = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        a = rewards[:, t] + gamma * next_v - values[:, t] + decay * next_a
        keep = mask[:, t] if stop_at_end else torch.ones_like(mask[:, t])
        next_v, next_a = values[:, t] * keep, a * keep
        adv[:, t] = a
    return adv * mask


_PAST_END = ("you bootstrapped past the end: after the last response token V(s_{T+1}) = 0, "
             "whatever the (masked) next position holds")


def check_gae(fn) -> bool:
    """Check ``gae(rewards, values, response_mask, gamma, lam) -> (adv, returns)``, (B, R) each."""
    g, mask, rand, garbage = _rl_case(seed=7)
    rewards, values = garbage(rand()), garbage(rand())

    def example():
        adv, ret = _pair(_call(fn, torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 9.0]]),
                               torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 9.0]]),
                               torch.tensor([[True, True, True], [True, True, False]]), 1.0, 0.5),
                         "your gae", (2, 3))
        keep = torch.tensor([[True, True, True], [True, True, False]])
        want = torch.tensor([[0.125, 0.25, 0.5], [0.25, 0.5, 0.0]])
        r = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 9.0]])
        v = torch.tensor([[0.5] * 3, [0.5, 0.5, 9.0]])
        _expect(adv * keep, want, "for rewards [[0, 0, 1], [0, 1, pad]], values [[.5, .5, .5], "
                "[.5, .5, pad]] with pad = 9, γ = 1, λ = 0.5",
                [(_gae_variant(r, v, keep, 1.0, 0.5, stop_at_end=False), _PAST_END),
                 (_gae_variant(r * 1.0, v, torch.ones_like(keep), 1.0, 0.5) * keep, _PAST_END)])
        _expect(ret * keep, (want + torch.tensor([[0.5] * 3, [0.5, 0.5, 0.0]])),
                "of the returns (adv + values)")

    def reward_to_go():
        adv, _ = _pair(_call(fn, rewards, values, mask, 1.0, 1.0), "your gae", (3, 5))
        togo = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1])
        _expect(adv * mask, (togo - values) * mask, "at γ = λ = 1 (reward-to-go minus V)")

    def one_step():
        adv, _ = _pair(_call(fn, rewards, values, mask, 0.9, 0.0), "your gae", (3, 5))
        next_v = torch.cat([values[:, 1:] * mask[:, 1:], torch.zeros(3, 1, dtype=values.dtype)], 1)
        _expect(adv * mask, (rewards + 0.9 * next_v - values) * mask,
                "at λ = 0 (the one-step TD error δ_t = r_t + γV(s_{t+1}) - V(s_t))")

    def general():
        gamma, lam = 0.9, 0.8
        adv, ret = _pair(_call(fn, rewards, values, mask, gamma, lam), "your gae", (3, 5))
        want_adv, want_ret = rl_losses.gae(rewards, values, mask, gamma, lam)
        wrong = [(_gae_variant(rewards, values, mask, gamma, gamma * lam, False), _PAST_END),
                 (_gae_variant(rewards, values, mask, 1.0, lam),
                  "you left γ out: δ_t = r_t + γV(s_{t+1}) - V(s_t), A_t = δ_t + γλ A_{t+1}"),
                 (_gae_variant(rewards, values, mask, gamma, lam),
                  "you discounted with λ alone: A_t = δ_t + γλ A_{t+1}"),
                 (_gae_variant(rewards, values, mask, gamma, gamma),
                  "you discounted with γ alone: A_t = δ_t + γλ A_{t+1}")]
        _expect(adv * mask, want_adv, "at γ = 0.9, λ = 0.8 on responses of 5, 3 and 1 tokens",
                wrong)
        _expect(ret * mask, want_ret, "of the returns (they are adv + values)",
                [((adv - values) * mask, "returns are adv + values, not adv - values")])
        if (adv[~mask] != 0).any() or (ret[~mask] != 0).any():
            raise _Fail("masked positions should hold 0 in adv and returns")

    return _run("gae", [example, reward_to_go, one_step, general], fn)


def check_ppo_clip_loss(fn) -> bool:
    """Check ``ppo_clip_loss(logp, logp_old, adv, response_mask, clip_eps) -> loss or (loss,
    stats)``."""
    g, mask, rand, garbage = _rl_case(seed=8)
    logp_old = garbage(-rand().abs())
    logp, adv = garbage(logp_old + rand(0.4)), garbage(rand())
    eps = 0.2
    want, _ = rl_losses.ppo_clip_loss(logp, logp_old, adv, mask, eps)

    def example():
        loss = _loss(_call(fn, torch.log(torch.tensor([[1.5, 0.5, 1.0]])), torch.zeros(1, 3),
                           torch.tensor([[1.0, 1.0, -2.0]]), torch.ones(1, 3, dtype=torch.bool),
                           0.2))
        _expect(loss, 0.1, "for ratios [1.5, 0.5, 1], adv [1, 1, -2], ε = 0.2",
                [(-(1.5 + 0.8 - 2) / 3, "you took the max of the two surrogates: PPO takes the "
                  "min, the pessimistic one"),
                 (-(1.2 + 0.8 - 2) / 3, "you kept only the clipped term: PPO takes the min of "
                  "ratio·A and clip(ratio)·A"),
                 (-0.1, "your loss has the wrong sign: minimising it must increase ratio·A")])

    def ragged():
        loss = _loss(_call(fn, logp, logp_old, adv, mask, eps))
        ratio = torch.exp(logp - logp_old)
        clipped = ratio.clamp(1 - eps, 1 + eps)
        mean = lambda x: (x * mask).sum() / mask.sum()
        wrong = [(-mean(torch.maximum(ratio * adv, clipped * adv)), "you took the max of the two "
                  "surrogates: PPO takes the min, the pessimistic one"),
                 (-mean(torch.minimum(adv / ratio, adv / ratio.clamp(1 - eps, 1 + eps))),
                  "your ratio is upside down: ratio = exp(logp - logp_old)"),
                 (-(torch.minimum(ratio * adv, clipped * adv) * mask).sum(),
                  "you summed over tokens: average over the response tokens"),
                 (-torch.minimum(ratio * adv, clipped * adv).mean(),
                  "masked tokens changed your loss: average over response_mask only")]
        _expect(loss, want, "on random rollouts with responses of 5, 3 and 1 tokens", wrong)

    def gradients():
        lp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]], dtype=torch.float64))
        lp.requires_grad_(True)
        a = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
        loss = _loss(_call_live(fn, lp, torch.zeros(1, 4, dtype=torch.float64), a,
                                torch.ones(1, 4, dtype=torch.bool), 0.2))
        grad = _needs_grad(loss, lp, "your loss")[0]
        if grad[0] != 0 or grad[3] != 0:
            raise _Fail("a token that already moved past the clip in the direction its advantage "
                        "wants (ratio 1.5 with A > 0, or 0.5 with A < 0) must get zero gradient")
        if grad[1] == 0 or grad[2] == 0:
            raise _Fail("a token whose ratio moved the wrong way (1.5 with A < 0, or 0.5 with "
                        "A > 0) must still get a gradient: only helpful moves are clipped")

    return _run("ppo_clip_loss", [ragged, example, gradients], fn)


def check_value_loss(fn) -> bool:
    """Check ``value_loss(values, values_old, returns, response_mask, clip_eps_value) -> loss or
    (loss, stats)``."""
    g, mask, rand, garbage = _rl_case(seed=9)
    values_old, returns = garbage(rand()), garbage(rand())
    values = garbage(values_old + rand(0.3))
    want, _ = rl_losses.value_loss(values, values_old, returns, mask, 0.2)

    def example():
        loss = _loss(_call(fn, torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2), torch.ones(1, 2),
                           torch.ones(1, 2, dtype=torch.bool), 0.2))
        _expect(loss, 0.4625, "for V = [0.5, -0.1], V_old = 0, R = 1, ε = 0.2",
                [(0.925, "you forgot the factor 1/2: L_V = 0.5 · mean max(...)"),
                 (0.365, "you took the min of the two squared errors: the value clip takes the "
                  "max, the pessimistic one")])

    def unclipped():
        loss = _loss(_call(fn, values, values_old, returns, mask, None))
        want_plain, _ = rl_losses.value_loss(values, values_old, returns, mask, None)
        _expect(loss, want_plain, "with clip_eps_value=None (plain 0.5·mean (V - R)²)")

    def ragged():
        loss = _loss(_call(fn, values, values_old, returns, mask, 0.2))
        clipped = values_old + (values - values_old).clamp(-0.2, 0.2)
        err = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
        wrong = [(0.5 * err.mean(), "masked tokens changed your loss: average over response_mask "
                  "only"),
                 (0.5 * (torch.maximum((values - returns) ** 2, (values.clamp(-0.2, 0.2)
                                                                 - returns) ** 2) * mask).sum()
                  / mask.sum(), "clip the CHANGE of the value around V_old: V_old + clip(V - "
                  "V_old, -ε, ε)")]
        _expect(loss, want, "on random values with responses of 5, 3 and 1 tokens, ε = 0.2", wrong)

    def gradient():
        v = values.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, v, values_old, returns, mask, 0.2)), v,
                           "your loss")
        if grad[~mask].abs().max() > 0:
            raise _Fail("masked tokens get a gradient: only response tokens train the critic")

    return _run("value_loss", [example, unclipped, ragged, gradient], fn)
