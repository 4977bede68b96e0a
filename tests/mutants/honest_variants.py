"""Correct solutions written differently from the references: every hidden test must pass on
them (tests/test_hidden_strength.py). They guard against hidden tests that are stricter than the
notebooks' spec: bare loss instead of (loss, stats), loops instead of vectorised code, other but
equivalent formulas, numpy results, (alpha, beta) pairs.

Since issue #25 the spec says more: a float64 input gives a float64 result, and padding that
holds NaN or ±inf reaches neither a result nor a gradient. The variants that returned float32 or
multiplied by the mask moved to the wrong answers (``*_mutants.py``, marked "was honest").
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import ppo_mutants as wrong        # the same code on unselected inputs is a wrong answer there

# ---------------------------------------------------------------------------- notebook 00


def response_logprob__row_loop(logits, input_ids, response_mask):
    rows = []
    for b in range(len(input_ids)):
        total = logits.new_zeros(())
        for t in range(1, input_ids.shape[1]):
            if response_mask[b, t]:
                total = total + torch.log_softmax(logits[b, t - 1], -1)[input_ids[b, t]]
        rows.append(total)
    return torch.stack(rows)


def response_logprob__logsumexp_masked_fill(logits, input_ids, response_mask):
    picked = logits[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    logp = picked - torch.logsumexp(logits[:, :-1], -1)
    return logp.masked_fill(~response_mask[:, 1:], 0.0).sum(-1)

# ---------------------------------------------------------------------------- notebook 01


def sft_loss__cross_entropy_ignore_index(logits, input_ids, response_mask):
    labels = input_ids[:, 1:].masked_fill(~response_mask[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=-100)


def sft_loss__boolean_index_with_stats(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1], -1)
    token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    kept = token[response_mask[:, 1:]]                       # (N,) the response tokens only
    loss = -kept.mean()
    return loss, {"nll": loss.item(), "tokens": kept.numel()}

# ---------------------------------------------------------------------------- notebook 02


def bt_probability__one_minus(r_chosen, r_rejected):
    return 1 - torch.sigmoid(r_rejected - r_chosen)


def bt_probability__softmax_pair(r_chosen, r_rejected):
    return torch.softmax(torch.stack([r_chosen, r_rejected], -1), -1)[..., 0]


def bt_probability__stable_exp(r_chosen, r_rejected):
    m = r_chosen - r_rejected
    e = torch.exp(-m.abs())
    return torch.where(m >= 0, 1 / (1 + e), e / (1 + e))


def bradley_terry_loss__softplus_bare(r_chosen, r_rejected):
    return F.softplus(r_rejected - r_chosen).mean()


def bradley_terry_loss__bce_with_logits(r_chosen, r_rejected):
    margin = r_chosen - r_rejected
    loss = F.binary_cross_entropy_with_logits(margin, torch.ones_like(margin))
    return loss, {"accuracy": float((margin > 0).float().mean())}


def plackett_luce_loss__loop_over_choices(rewards, ranking_mask=None):
    """One logsumexp per choice over the replies still left; the padding set to -inf first."""
    mask = torch.ones_like(rewards, dtype=torch.bool) if ranking_mask is None else ranking_mask
    s = rewards.masked_fill(~mask, -math.inf)
    total = torch.zeros(len(rewards), dtype=rewards.dtype)
    for i in range(rewards.shape[1]):
        term = s[:, i] - torch.logsumexp(s[:, i:], -1)
        total = total + torch.where(mask[:, i], term, torch.zeros_like(term))
    return -total.mean()


def plackett_luce_loss__row_slices_with_stats(rewards, ranking_mask=None):
    """Each ranking sliced to its own replies (padding at the end), then a reverse logcumsumexp."""
    lengths = [rewards.shape[1]] * len(rewards) if ranking_mask is None \
        else ranking_mask.sum(-1).tolist()
    rows = []
    for b, n in enumerate(lengths):
        r = rewards[b, :n]
        rows.append(-(r - torch.logcumsumexp(r.flip(0), 0).flip(0)).sum())
    loss = torch.stack(rows).mean()
    return loss, {"loss": float(loss)}


def fit_bradley_terry__newton_numpy(wins, steps=30, lr=1.0):
    w = np.asarray(wins, dtype=np.float64)
    games, won = w + w.T, w.sum(1)
    s = np.zeros(len(w))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
        grad = won - (games * p).sum(1)
        c = games * p * (1 - p)
        s = s - np.linalg.pinv(c - np.diag(c.sum(1))) @ grad
    return s - s.mean()


def fit_bradley_terry__zermelo_mm(wins, steps=3000, lr=1.0):
    """Zermelo's / Hunter's minorise-maximise iteration on gamma_i = exp(s_i)."""
    wins = torch.as_tensor(wins, dtype=torch.float64)
    games = wins + wins.T
    gamma = torch.ones(len(wins), dtype=torch.float64)
    for _ in range(steps):
        gamma = wins.sum(1) / (games / (gamma[:, None] + gamma[None, :])).sum(1)
        gamma = gamma / gamma.prod() ** (1 / len(gamma))
    s = gamma.log()
    return s - s.mean()

# ---------------------------------------------------------------------------- notebook 03


def boltzmann_policy__log_softmax(logp_ref, rewards, beta):
    return torch.log_softmax(logp_ref + rewards / beta, dim=-1)


def boltzmann_policy__manual_max_shift(logp_ref, rewards, beta):
    scores = logp_ref + rewards / beta
    top = scores.max(-1, keepdim=True).values
    return scores - top - torch.log(torch.exp(scores - top).sum(-1, keepdim=True))


def optimal_objective__reward_minus_kl(logp_ref, rewards, beta):
    logp = torch.log_softmax(logp_ref + rewards / beta, -1)
    p = logp.exp()
    terms = torch.where(p > 0, p * (rewards - beta * (logp - logp_ref)), torch.zeros_like(p))
    return terms.sum(-1)


def kl_optimal__definition_with_where(logp_ref, rewards, beta):
    logp = torch.log_softmax(logp_ref + rewards / beta, -1)
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logp_ref), torch.zeros_like(p)).sum(-1)

def importance_estimates__xlogy_and_max_shift(rewards, beta):
    """Weights from a max-shifted exp; the KL as Σ xlogy(w, N w) (0 where w = 0); a list."""
    n = rewards.shape[-1]
    s = rewards / beta
    top = s.max(-1, keepdim=True).values
    u = torch.exp(s - top)                                               # (..., N), max 1
    w = u / u.sum(-1, keepdim=True)
    log_z = top.squeeze(-1) + torch.log(u.mean(-1))
    ess = u.sum(-1) ** 2 / (u ** 2).sum(-1)
    return [log_z, w, (w * rewards).sum(-1), torch.xlogy(w, n * w).sum(-1), ess]


def importance_estimates__row_loop(rewards, beta):
    """One row of samples at a time, the KL as Σ w r/β − log Ẑ."""
    flat = rewards.reshape(-1, rewards.shape[-1])
    parts = [[], [], [], [], []]
    for row in flat:
        log_w = torch.log_softmax(row / beta, 0)
        log_z = torch.logsumexp(row / beta, 0) - math.log(len(row))
        w = log_w.exp()
        mean_r = (w * row).sum()
        for bucket, value in zip(parts, (log_z, w, mean_r, mean_r / beta - log_z,
                                         1 / (w * w).sum())):
            bucket.append(value)
    lead = rewards.shape[:-1]
    return (torch.stack(parts[0]).reshape(lead), torch.stack(parts[1]).reshape(rewards.shape),
            torch.stack(parts[2]).reshape(lead), torch.stack(parts[3]).reshape(lead),
            torch.stack(parts[4]).reshape(lead))


# ---------------------------------------------------------------------------- notebook 04


def kl_k1__negated_difference(logp, logp_ref):
    return -(logp_ref - logp)


def kl_k3__plain_exp(logp, logp_ref):
    log_rho = logp_ref - logp
    return torch.exp(log_rho) - 1 - log_rho


def shaped_rewards__row_loop(scores, logp, logp_ref, response_mask, beta):
    out = torch.zeros_like(logp)
    for b in range(logp.shape[0]):
        kept = torch.nonzero(response_mask[b]).flatten()
        out[b, kept] = -beta * (logp[b, kept] - logp_ref[b, kept])
        out[b, kept[-1]] = out[b, kept[-1]] + scores[b]
    return out


def shaped_rewards__cumsum_scatter(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp - logp_ref, torch.zeros_like(logp))
    last = (response_mask.long().cumsum(1) == response_mask.sum(1, keepdim=True)) & response_mask
    return -beta * kl + last.to(logp.dtype) * scores[:, None]


def gae__per_row_python(rewards, values, response_mask, gamma, lam):
    adv = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        n = int(response_mask[b].sum())
        running, next_v = 0.0, 0.0
        for t in reversed(range(n)):
            delta = float(rewards[b, t]) + gamma * next_v - float(values[b, t])
            running = delta + gamma * lam * running
            adv[b, t], next_v = running, float(values[b, t])
    returns = torch.where(response_mask, adv + values, torch.zeros_like(adv))
    return adv, returns


def gae__cleanrl_style_inputs_selected(rewards, values, response_mask, gamma, lam):
    """CleanRL's loop with 'next non-terminal' flags (``ppo_mutants.gae__cleanrl_style``), on
    inputs whose padding is selected out first, so junk, even NaN, never meets a 0 flag."""
    rewards = torch.where(response_mask, rewards, torch.zeros_like(rewards))
    values = torch.where(response_mask, values, torch.zeros_like(values))
    return wrong.gae__cleanrl_style(rewards, values, response_mask, gamma, lam)


def ppo_clip_loss__log_space_clip_with_stats(logp, logp_old, adv, response_mask, clip_eps):
    log_ratio = torch.where(response_mask, logp - logp_old, torch.zeros_like(logp))
    a = torch.where(response_mask, adv, torch.zeros_like(adv))
    clipped = torch.exp(log_ratio.clamp(math.log(1 - clip_eps), math.log(1 + clip_eps)))
    surrogate = torch.minimum(log_ratio.exp() * a, clipped * a)
    loss = -surrogate[response_mask].mean()
    return loss, {"clipfrac": float(((log_ratio.exp() - 1).abs() > clip_eps)[response_mask]
                                    .float().mean())}


def ppo_clip_loss__where_form_selected(logp, logp_old, adv, response_mask, clip_eps):
    log_ratio = torch.where(response_mask, logp - logp_old, torch.zeros_like(logp))
    adv = torch.where(response_mask, adv, torch.zeros_like(adv))
    ratio = torch.exp(log_ratio)
    capped = torch.where(adv >= 0, torch.clamp(ratio, max=1 + clip_eps),
                         torch.clamp(ratio, min=1 - clip_eps))
    return -(capped * adv).sum() / response_mask.sum()


def value_loss__kept_tokens_only(values, values_old, returns, response_mask, clip_eps_value):
    v, vo, r = values[response_mask], values_old[response_mask], returns[response_mask]
    error = (v - r).pow(2)
    if clip_eps_value:
        error = torch.maximum(error, (vo + (v - vo).clamp(-clip_eps_value, clip_eps_value)
                                      - r).pow(2))
    return error.mean() / 2


def value_loss__float_mask_on_selected_inputs(values, values_old, returns, response_mask,
                                              clip_eps_value):
    """``ppo_mutants.value_loss__float_mask_with_stats`` on inputs whose padding is selected
    out first."""
    values, values_old, returns = (x.masked_fill(~response_mask, 0.0)
                                   for x in (values, values_old, returns))
    return wrong.value_loss__float_mask_with_stats(values, values_old, returns, response_mask,
                                                   clip_eps_value)


def kl_best_of_n__vectorised_python(n):
    return np.vectorize(lambda m: math.log(m) - (m - 1) / m)(n)


def kl_best_of_n__torch_or_float(n):
    if np.ndim(n) == 0:
        return math.log(n) - (n - 1) / n
    t = torch.as_tensor(np.asarray(n), dtype=torch.float64)
    return torch.log(t) - (t - 1) / t


def fit_bon__normal_equations_array(d, gain):
    d, gain = np.asarray(d, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    X = np.stack([d, -d * d], axis=1)
    return np.linalg.solve(X.T @ X, X.T @ gain)


def fit_bon__gaofit(d, gain):
    from rlhf_lab.equations.overopt_math import GaoFit
    d, gain = np.asarray(d, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([d, -d ** 2], 1), gain, rcond=None)
    return GaoFit(float(alpha), float(beta), "bon", math.inf, math.inf)


def fit_rl__torch_lstsq(d, gain):
    d = torch.as_tensor(d, dtype=torch.float64)
    gain = torch.as_tensor(gain, dtype=torch.float64)
    X = torch.stack([d, -d * torch.log(d)], dim=1)
    coef = torch.linalg.lstsq(X, gain[:, None]).solution[:, 0]
    return coef[0], coef[1]


def fit_rl__dict(d, gain):
    d, gain = np.asarray(d, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([d, -d * np.log(d)], 1), gain, rcond=None)
    return {"alpha": alpha, "beta": beta}


def aggregate_ensemble__loop_over_models(scores, how, k=1.0):
    M = scores.shape[0]
    total = sum(scores[m] for m in range(M))
    mean = total / M
    if how == "mean":
        return mean
    if how == "min":
        out = scores[0]
        for m in range(1, M):
            out = torch.minimum(out, scores[m])
        return out
    if how != "mean_minus_std":
        raise ValueError(f"unknown how={how!r}: use 'mean', 'min' or 'mean_minus_std'")
    var = sum((scores[m] - mean) ** 2 for m in range(M)) / M
    return mean - k * var.sqrt()


def aggregate_ensemble__amin_and_var(scores, how, k=1.0):
    table = {"mean": lambda: scores.mean(dim=0),
             "min": lambda: torch.amin(scores, dim=0),
             "mean_minus_std": lambda: scores.mean(0) - k * scores.var(0, unbiased=False).sqrt()}
    if how not in table:
        raise ValueError(f"how must be one of {sorted(table)}, got {how!r}")
    return table[how]()


# ---------------------------------------------------------------------------- notebook 07


def dpo_loss__softplus_with_stats(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected,
                                  beta):
    margin = beta * ((logp_chosen - logp_ref_chosen) - (logp_rejected - logp_ref_rejected))
    loss = F.softplus(-margin).mean()
    return loss, {"accuracy": (margin > 0).float().mean().item()}


def group_advantages__loop_over_groups(scores, group_size, eps=1e-6):
    out = torch.empty_like(scores)
    for start in range(0, len(scores), group_size):
        g = scores[start:start + group_size]
        out[start:start + group_size] = (g - g.mean()) / (g.std(unbiased=False) + eps)
    return out


def group_advantages__view_and_var(scores, group_size, eps=1e-6):
    g = scores.view(-1, group_size)
    mean, var = g.mean(-1, keepdim=True), g.var(-1, keepdim=True, correction=0)
    return ((g - mean) / (var.sqrt() + eps)).flatten()


def ppo_ptx_loss__cross_entropy(pg_loss, logits_ptx, input_ids_ptx, attention_mask_ptx, ptx_coef):
    real = attention_mask_ptx.bool()
    labels = input_ids_ptx[:, 1:].masked_fill(~(real[:, 1:] & real[:, :-1]), -100)
    nll = F.cross_entropy(logits_ptx[:, :-1].reshape(-1, logits_ptx.shape[-1]),
                          labels.reshape(-1), ignore_index=-100)
    return pg_loss + ptx_coef * nll, {"ptx_nll": nll.item()}


def dpo_loss__bce_with_logits(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected,
                              beta):
    r_c = beta * (logp_chosen - logp_ref_chosen)
    r_r = beta * (logp_rejected - logp_ref_rejected)
    return F.binary_cross_entropy_with_logits(r_c - r_r, torch.ones_like(r_c))


def ppo_ptx_loss__float_mask_on_selected_logp(pg_loss, logits_ptx, input_ids_ptx,
                                              attention_mask_ptx, ptx_coef):
    m = (attention_mask_ptx[:, 1:] * attention_mask_ptx[:, :-1]).to(logits_ptx.dtype)
    lp = torch.log_softmax(logits_ptx[:, :-1], -1).gather(-1, input_ids_ptx[:, 1:, None])[..., 0]
    lp = lp.masked_fill(m == 0, 0.0)                 # select first: 0 * NaN would be NaN
    return pg_loss - ptx_coef * (lp * m).sum() / m.sum()
