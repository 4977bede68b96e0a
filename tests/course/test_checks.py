"""The visible checks: the reference passes, a stub is 'not implemented yet', and each common
mistake fails with a message that names it."""
import dataclasses
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlhf_lab.course.checks import beyond as beyond_checks
from rlhf_lab.course.checks import closed_form as closed_form_checks
from rlhf_lab.course.checks import language_model as language_model_checks
from rlhf_lab.course.checks import overoptimisation as overoptimisation_checks
from rlhf_lab.course.checks import ppo as ppo_checks
from rlhf_lab.course.checks import reward_model as reward_model_checks
from rlhf_lab.equations import beyond_losses, closed_form, losses, overopt_math, rl_losses


def stub(*args, **kwargs):
    raise NotImplementedError


# (check, reference functions) for every check
CHECKS = {
    "response_logprob": (language_model_checks.check_response_logprob, [losses.response_logprob]),
    "sft_loss": (language_model_checks.check_sft_loss, [losses.sft_loss]),
    "bt_probability": (reward_model_checks.check_bt_probability, [losses.bt_probability]),
    "bradley_terry_loss": (reward_model_checks.check_bt_loss, [losses.bradley_terry_loss]),
    "plackett_luce_loss": (reward_model_checks.check_plackett_luce_loss, [losses.plackett_luce_loss]),
    "fit_bradley_terry": (reward_model_checks.check_bt_fit, [losses.fit_bradley_terry]),
    "boltzmann_policy": (closed_form_checks.check_boltzmann_policy, [closed_form.boltzmann_policy]),
    "optimal_objective": (closed_form_checks.check_optimal_objective, [closed_form.optimal_objective]),
    "kl_optimal": (closed_form_checks.check_kl_optimal, [closed_form.kl_optimal]),
    "importance_estimates": (closed_form_checks.check_importance_estimates,
                             [closed_form.importance_estimates]),
    "kl_estimators": (ppo_checks.check_kl_estimators, [rl_losses.kl_k1, rl_losses.kl_k3]),
    "shaped_rewards": (ppo_checks.check_shaped_rewards, [rl_losses.shaped_rewards]),
    "gae": (ppo_checks.check_gae, [rl_losses.gae]),
    "ppo_clip_loss": (ppo_checks.check_ppo_clip_loss, [rl_losses.ppo_clip_loss]),
    "value_loss": (ppo_checks.check_value_loss, [rl_losses.value_loss]),
    "kl_best_of_n": (overoptimisation_checks.check_kl_best_of_n, [overopt_math.kl_best_of_n]),
    "fit_bon": (overoptimisation_checks.check_gao_fit, [overopt_math.fit_bon]),
    "aggregate_ensemble": (overoptimisation_checks.check_ensemble, [overopt_math.aggregate_ensemble]),
    "dpo_loss": (beyond_checks.check_dpo_loss, [beyond_losses.dpo_loss]),
    "group_advantages": (beyond_checks.check_group_advantages, [beyond_losses.group_advantages]),
    "ppo_ptx_loss": (beyond_checks.check_ppo_ptx_loss, [beyond_losses.ppo_ptx_loss]),
}


def run(check, *fns, **kwargs):
    return check(*fns, **kwargs)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_reference_passes_with_one_stable_line(name, capsys):
    check, refs = CHECKS[name]
    assert check(*refs) is True
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"✓ {name}: all ") and "checks passed" in out
    assert check(*refs) is True
    assert capsys.readouterr().out == out                      # stable: same line every time


def test_rl_form_of_the_gao_fit_passes(capsys):
    assert overoptimisation_checks.check_gao_fit(overopt_math.fit_rl, form="rl") is True
    assert capsys.readouterr().out.startswith("✓ fit_rl: all ")


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_stub_is_not_implemented_yet(name, capsys):
    check, refs = CHECKS[name]
    assert check(*[stub] * len(refs)) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {name}: not implemented yet") and out.count("\n") == 1


def test_other_failures_are_reported_not_raised(capsys):
    def crashes(*args):
        raise KeyError("oops")

    assert language_model_checks.check_sft_loss(crashes) is False
    assert "raised KeyError" in capsys.readouterr().out
    assert reward_model_checks.check_bt_probability(lambda a, b: (a - b).tolist()) is False
    assert "should be a torch tensor, got list" in capsys.readouterr().out
    assert reward_model_checks.check_bt_probability(lambda a, b: torch.sigmoid(a - b).sum()) is False
    assert "has shape ()" in capsys.readouterr().out
    assert reward_model_checks.check_bt_probability(lambda a, b: a * float("nan")) is False
    assert "NaN" in capsys.readouterr().out
    assert language_model_checks.check_sft_loss(lambda logits, ids, mask: logits.mean(-1)) is False
    assert "a single number" in capsys.readouterr().out
    assert language_model_checks.check_sft_loss("not a function") is False
    assert "expected a function" in capsys.readouterr().out


def test_in_place_changes_to_an_argument_are_reported(capsys):
    def in_place(r_chosen, r_rejected):
        r_chosen -= r_rejected
        return torch.sigmoid(r_chosen)

    assert reward_model_checks.check_bt_probability(in_place) is False
    assert "changed its argument `r_chosen` in place" in capsys.readouterr().out


# ------------------------------------------------------------------ realistic wrong answers

def _lsm_gather(logits, ids):
    return F.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def logprob_no_shift(logits, input_ids, response_mask):
    return (_lsm_gather(logits, input_ids) * response_mask).sum(-1)


def logprob_no_mask(logits, input_ids, response_mask):
    return _lsm_gather(logits[:, :-1], input_ids[:, 1:]).sum(-1)


def logprob_mean(logits, input_ids, response_mask):
    m = response_mask[:, 1:]
    return (_lsm_gather(logits[:, :-1], input_ids[:, 1:]) * m).sum(-1) / m.sum(-1)


def logprob_log_of_softmax(logits, input_ids, response_mask):
    p = torch.softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (torch.log(p) * response_mask[:, 1:]).sum(-1)


def sft_no_shift(logits, input_ids, response_mask):
    return -(_lsm_gather(logits, input_ids) * response_mask).sum() / response_mask.sum()


def sft_mask_not_shifted(logits, input_ids, response_mask):
    m = response_mask[:, :-1]
    return -(_lsm_gather(logits[:, :-1], input_ids[:, 1:]) * m).sum() / m.sum()


def sft_sum(logits, input_ids, response_mask):
    m = response_mask[:, 1:]
    return -(_lsm_gather(logits[:, :-1], input_ids[:, 1:]) * m).sum()


def sft_positive(logits, input_ids, response_mask):
    return -losses.sft_loss(logits, input_ids, response_mask)[0]


def bt_prob_swapped(r_chosen, r_rejected):
    return torch.sigmoid(r_rejected - r_chosen)


def bt_prob_exp(r_chosen, r_rejected):
    return torch.exp(r_chosen) / (torch.exp(r_chosen) + torch.exp(r_rejected))


def bt_loss_log_sigmoid(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()


def bt_loss_sum(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).sum()


def bt_loss_swapped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()


def bt_fit_transposed(wins):
    return losses.fit_bradley_terry(torch.as_tensor(wins).T)


def bt_fit_not_centred(wins):
    return losses.fit_bradley_terry(wins) + 1.0


def bt_fit_too_few_steps(wins, steps=3, lr=0.5):
    wins = torch.as_tensor(wins, dtype=torch.float64)
    games, won = wins + wins.T, wins.sum(1)
    s = torch.zeros(len(wins), dtype=torch.float64)
    for _ in range(steps):
        s = s + lr * (won - (games * torch.sigmoid(s[:, None] - s[None, :])).sum(1)) / games.sum(1)
    return s - s.mean()


def boltzmann_times_beta(logp_ref, rewards, beta):
    s = logp_ref + rewards * beta
    return s - torch.logsumexp(s, -1, keepdim=True)


def boltzmann_unnormalised(logp_ref, rewards, beta):
    return logp_ref + rewards / beta


def boltzmann_naive_exp(logp_ref, rewards, beta):
    w = logp_ref.exp() * torch.exp(rewards / beta)
    return torch.log(w / w.sum(-1, keepdim=True))


def objective_log_z(logp_ref, rewards, beta):
    return torch.logsumexp(logp_ref + rewards / beta, -1)


def kl_optimal_no_beta(logp_ref, rewards, beta):
    logp = closed_form.boltzmann_policy(logp_ref, rewards, beta)
    return (logp.exp() * rewards).sum(-1) - torch.logsumexp(logp_ref + rewards / beta, -1)


def k1_reversed(logp, logp_ref):
    return logp_ref - logp


def k3_reversed_ratio(logp, logp_ref):
    log_rho = logp - logp_ref
    return torch.expm1(log_rho) - log_rho


def shaped_last_column(scores, logp, logp_ref, response_mask, beta):
    r = -beta * (logp - logp_ref) * response_mask
    r[:, -1] += scores
    return r


def shaped_wrong_sign(scores, logp, logp_ref, response_mask, beta):
    return rl_losses.shaped_rewards(scores, logp, logp_ref, response_mask, beta) \
        + 2 * beta * (logp - logp_ref) * response_mask


def gae_past_the_end(rewards, values, response_mask, gamma, lam):
    """CleanRL-style loop without 'dones': bootstraps from the padding after the last token."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    R = rewards.shape[1]
    for t in reversed(range(R)):
        next_v = values[:, t + 1] if t + 1 < R else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    adv = adv * response_mask
    return adv, (adv + values) * response_mask


def gae_lambda_only(rewards, values, response_mask, gamma, lam):
    adv = torch.zeros_like(rewards)
    next_v = last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = response_mask[:, t]
        delta = rewards[:, t] * m + gamma * next_v - values[:, t] * m
        last = (delta + lam * last) * m
        next_v = values[:, t] * m
        adv[:, t] = last
    return adv, (adv + values) * response_mask


def ppo_max(logp, logp_old, adv, response_mask, clip_eps):
    ratio = torch.exp(logp - logp_old)
    obj = torch.maximum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -(obj * response_mask).sum() / response_mask.sum()


def ppo_no_mask(logp, logp_old, adv, response_mask, clip_eps):
    ratio = torch.exp(logp - logp_old)
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv).mean()


def value_no_half(values, values_old, returns, response_mask, clip_eps_value):
    return 2 * rl_losses.value_loss(values, values_old, returns, response_mask, clip_eps_value)[0]


def value_min(values, values_old, returns, response_mask, clip_eps_value):
    clipped = values_old + (values - values_old).clamp(-clip_eps_value, clip_eps_value)
    err = torch.minimum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * (err * response_mask).sum() / response_mask.sum()


def kl_bon_log2(n):
    return np.log2(n) - (n - 1) / n


def kl_bon_math_log(n):
    return math.log(n) - (n - 1) / n


def fit_bon_intercept(d, gain):
    d, gain = np.asarray(d, float), np.asarray(gain, float)
    X = np.stack([np.ones_like(d), d, -d ** 2], 1)
    _, alpha, beta = np.linalg.lstsq(X, gain, rcond=None)[0]
    return alpha, beta


def fit_rl_plus_log(d, gain):
    """Fits d(α + β log d): the sign of β flipped."""
    d, gain = np.asarray(d, float), np.asarray(gain, float)
    alpha, beta = np.linalg.lstsq(np.stack([d, d * np.log(d)], 1), gain, rcond=None)[0]
    return alpha, beta


def ensemble_sample_std(scores, how, k=1.0):
    if how == "mean_minus_std":
        return scores.mean(0) - k * scores.std(0)
    return overopt_math.aggregate_ensemble(scores, how, k)


def pl_forward_cumsum(rewards, ranking_mask=None):
    mask = torch.ones_like(rewards, dtype=torch.bool) if ranking_mask is None else ranking_mask
    s = torch.where(mask, rewards, -math.inf)
    return -torch.where(mask, s - torch.logcumsumexp(s, -1), 0.0).sum(-1).mean()


def pl_multiplied_by_the_mask(rewards, ranking_mask=None):
    mask = torch.ones_like(rewards) if ranking_mask is None else ranking_mask.to(rewards.dtype)
    r = rewards * mask
    return -((r - torch.logcumsumexp(r.flip(-1), -1).flip(-1)) * mask).sum(-1).mean()


def is_sum_not_mean(rewards, beta):
    est = closed_form.importance_estimates(rewards, beta)
    log_z = torch.logsumexp(rewards / beta, -1)
    return log_z, est.weights, est.expected_reward, est.expected_reward / beta - log_z, est.ess


def is_ess_of_a_mean(rewards, beta):
    est = closed_form.importance_estimates(rewards, beta)
    return est[:4] + (1 / (est.weights ** 2).mean(-1),)


def ensemble_min_tuple(scores, how, k=1.0):
    if how == "min":
        return scores.min(0)
    return overopt_math.aggregate_ensemble(scores, how, k)


def dpo_no_beta(lc, lr, rc, rr, beta):
    return -F.logsigmoid((lc - rc) - (lr - rr)).mean()


def dpo_log_of_sigmoid(lc, lr, rc, rr, beta):
    return -torch.log(torch.sigmoid(beta * ((lc - rc) - (lr - rr)))).mean()


def group_sample_std(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).reshape(-1)


def group_strided(scores, group_size, eps=1e-6):
    g = scores.reshape(group_size, -1).T
    c = g - g.mean(1, keepdim=True)
    return (c / (c.pow(2).mean(1, keepdim=True).sqrt() + eps)).T.reshape(-1)


def ptx_no_shift(pg, logits, ids, am, coef):
    lp = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    return pg - coef * (lp * am).sum() / am.sum()


def ptx_coef_on_ppo(pg, logits, ids, am, coef):
    return coef * pg + beyond_losses.pretraining_nll(logits, ids, am)


WRONG = [
    (language_model_checks.check_response_logprob, [logprob_no_shift], "off by one"),
    (language_model_checks.check_response_logprob, [logprob_no_mask], "you counted every token"),
    (language_model_checks.check_response_logprob, [logprob_mean], "log π(y|x) is their sum"),
    (language_model_checks.check_response_logprob, [logprob_log_of_softmax], "use F.log_softmax"),
    (language_model_checks.check_sft_loss, [sft_no_shift], "off by one"),
    (language_model_checks.check_sft_loss, [sft_mask_not_shifted], "your mask is one step off"),
    (language_model_checks.check_sft_loss, [sft_sum], "you summed over tokens"),
    (language_model_checks.check_sft_loss, [sft_positive], "NEGATIVE log-likelihood"),
    (reward_model_checks.check_bt_probability, [bt_prob_swapped], "you swapped the two rewards"),
    (reward_model_checks.check_bt_probability, [bt_prob_exp], "exp overflows"),
    (reward_model_checks.check_bt_loss, [bt_loss_log_sigmoid], "log(sigmoid(x)) underflows"),
    (reward_model_checks.check_bt_loss, [bt_loss_sum], "you summed over pairs"),
    (reward_model_checks.check_bt_loss, [bt_loss_swapped], "you swapped chosen and rejected"),
    (reward_model_checks.check_plackett_luce_loss, [pl_forward_cumsum], "replies not yet chosen"),
    (reward_model_checks.check_plackett_luce_loss, [pl_multiplied_by_the_mask], "rather than multiplying"),
    (reward_model_checks.check_bt_fit, [bt_fit_transposed], "wrong sign"),
    (reward_model_checks.check_bt_fit, [bt_fit_not_centred], "not centred"),
    (reward_model_checks.check_bt_fit, [bt_fit_too_few_steps], "not at the maximum of the likelihood"),
    (closed_form_checks.check_boltzmann_policy, [boltzmann_times_beta], "multiplied the rewards by β"),
    (closed_form_checks.check_boltzmann_policy, [boltzmann_unnormalised], "not normalised"),
    (closed_form_checks.check_boltzmann_policy, [boltzmann_naive_exp], "exp(r/β) overflows"),
    (closed_form_checks.check_optimal_objective, [objective_log_z], "you returned log Z"),
    (closed_form_checks.check_kl_optimal, [kl_optimal_no_beta], "forgot to divide E_π*[r] by β"),
    (closed_form_checks.check_importance_estimates, [is_sum_not_mean], "you forgot the - log N"),
    (closed_form_checks.check_importance_estimates, [is_ess_of_a_mean], "N times too large"),
    (ppo_checks.check_kl_estimators, [k1_reversed, rl_losses.kl_k3], "k1 has the wrong sign"),
    (ppo_checks.check_kl_estimators, [rl_losses.kl_k1, k3_reversed_ratio], "ρ = π_ref/π"),
    (ppo_checks.check_shaped_rewards, [shaped_last_column], "the score went to the last column"),
    (ppo_checks.check_shaped_rewards, [shaped_wrong_sign], "KL penalty has the wrong sign"),
    (ppo_checks.check_gae, [gae_past_the_end], "bootstrapped past the end"),
    (ppo_checks.check_gae, [gae_lambda_only], "λ alone"),
    (ppo_checks.check_ppo_clip_loss, [ppo_max], "max of the two surrogates"),
    (ppo_checks.check_ppo_clip_loss, [ppo_no_mask], "masked tokens changed your loss"),
    (ppo_checks.check_value_loss, [value_no_half], "factor 1/2"),
    (ppo_checks.check_value_loss, [value_min], "min of the two squared errors"),
    (overoptimisation_checks.check_kl_best_of_n, [kl_bon_log2], "natural log"),
    (overoptimisation_checks.check_kl_best_of_n, [kl_bon_math_log], "np.log"),
    (overoptimisation_checks.check_gao_fit, [fit_bon_intercept], "intercept"),
    (functools.partial(overoptimisation_checks.check_gao_fit, form="rl"), [fit_rl_plus_log], "wrong sign"),
    (overoptimisation_checks.check_ensemble, [ensemble_sample_std], "population std"),
    (overoptimisation_checks.check_ensemble, [ensemble_min_tuple], ".values"),
    (beyond_checks.check_dpo_loss, [dpo_no_beta], "you left out β"),
    (beyond_checks.check_dpo_loss, [dpo_log_of_sigmoid], "F.logsigmoid"),
    (beyond_checks.check_group_advantages, [group_sample_std], "population std"),
    (beyond_checks.check_group_advantages, [group_strided], "ADJACENT rows"),
    (beyond_checks.check_ppo_ptx_loss, [ptx_no_shift], "off by one"),
    (beyond_checks.check_ppo_ptx_loss, [ptx_coef_on_ppo], "not the PPO loss"),
]


@pytest.mark.parametrize("check, fns, phrase", WRONG,
                         ids=[f"{fns[-1].__name__}" if fns[-1].__module__ == __name__
                              else fns[0].__name__ for _, fns, _ in WRONG])
def test_a_realistic_mistake_fails_with_a_message_naming_it(check, fns, phrase, capsys):
    assert check(*fns) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ ") and out.count("\n") == 1
    assert phrase in out, out


def _scaled(fn, factor: float):
    """The reference's answer times ``factor`` (a wrong answer no check knows as a mistake)."""
    def scale(out):
        if isinstance(out, tuple):
            return tuple(scale(o) for o in out)
        if isinstance(out, dict):                                  # a loss's stats
            return out
        if isinstance(out, overopt_math.GaoFit):
            return dataclasses.replace(out, alpha=factor * out.alpha, beta=factor * out.beta)
        return out * factor

    @functools.wraps(fn)
    def wrong(*args, **kwargs):
        return scale(fn(*args, **kwargs))
    return wrong


@pytest.mark.parametrize("factor", [3.0, 0.7])
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_an_unrecognised_wrong_answer_is_a_wrong_value_not_a_made_up_cause(name, factor, capsys):
    """#26: the reference's answer scaled (times 3, times 0.7) is wrong in no way the checks know;
    the message must say 'wrong value', never name a cause that was not established."""
    check, refs = CHECKS[name]
    fns = [_scaled(refs[0], factor)] + list(refs[1:])
    assert check(*fns) is False
    line = capsys.readouterr().out
    assert line.startswith(f"✗ {name}: wrong value"), line


def logprob_mean_over_all_positions(logits, input_ids, response_mask):
    """#26's example: `.mean(-1)` over every position instead of the sum over the response."""
    lp = F.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (lp * response_mask[:, 1:]).mean(-1)


@pytest.mark.parametrize("wrong", [logprob_mean_over_all_positions,
                                   _scaled(losses.response_logprob, 2.0)],
                         ids=["mean over positions", "twice the answer"])
def test_response_logprob_wrong_answers_from_the_issue_are_wrong_values(wrong, capsys):
    """#26: both were reported as 'changing the prompt/padding tokens ... changed your result',
    although neither depends on those tokens."""
    assert language_model_checks.check_response_logprob(wrong) is False
    line = capsys.readouterr().out
    assert line.startswith("✗ response_logprob: wrong value") and "padding" not in line, line
