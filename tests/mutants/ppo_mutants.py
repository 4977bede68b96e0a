"""Realistic wrong answers to the PPO exercises of notebook 04: ``kl_k1``, ``kl_k3``,
``shaped_rewards``, ``gae``, ``ppo_clip_loss``, ``value_loss``."""
import torch

# ---------------------------------------------------------------------------- kl_k1 / kl_k3


def kl_k1__sign_flipped(logp, logp_ref):
    return logp_ref - logp


def kl_k1__absolute(logp, logp_ref):
    return (logp - logp_ref).abs()


def kl_k1__probabilities(logp, logp_ref):
    return logp.exp() - logp_ref.exp()


def kl_k1__k2_instead(logp, logp_ref):
    return 0.5 * (logp - logp_ref) ** 2


def kl_k1__summed_over_last_dim(logp, logp_ref):
    return (logp - logp_ref).sum(-1)


def kl_k1__ratio_not_log(logp, logp_ref):
    return torch.exp(logp - logp_ref) - 1


def kl_k3__ratio_inverted(logp, logp_ref):
    log_rho = logp - logp_ref
    return torch.expm1(log_rho) - log_rho


def kl_k3__log_term_sign(logp, logp_ref):
    log_rho = logp_ref - logp
    return torch.expm1(log_rho) + log_rho


def kl_k3__forgot_minus_one(logp, logp_ref):
    log_rho = logp_ref - logp
    return torch.exp(log_rho) - log_rho


def kl_k3__k2_instead(logp, logp_ref):
    return 0.5 * (logp_ref - logp) ** 2


def kl_k3__ratio_of_log_probs(logp, logp_ref):
    rho = logp_ref / logp
    return (rho - 1) - torch.log(rho)


def kl_k3__float32_inside(logp, logp_ref):
    """Casts to half "for speed": wrong on nearly equal log-probabilities."""
    log_rho = (logp_ref - logp).half()
    return (torch.exp(log_rho.float()) - 1 - log_rho.float()).to(logp.dtype)


def kl_k3__clamped_ratio(logp, logp_ref):
    log_rho = (logp_ref - logp).clamp(-10, 10)
    return torch.expm1(log_rho) - log_rho

# ---------------------------------------------------------------------------- shaped_rewards


def _last_index(response_mask):
    return response_mask.sum(1) - 1


def shaped_rewards__score_on_last_column(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    out = -beta * kl
    out[:, -1] = out[:, -1] + scores
    return out


def shaped_rewards__score_on_first_token(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    out = -beta * kl
    out[:, 0] = out[:, 0] + scores
    return out


def shaped_rewards__score_on_every_token(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    return -beta * kl + response_mask * scores[:, None]


def shaped_rewards__kl_sign_flipped(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp_ref - logp, 0.0)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -beta * kl + at_last * scores[:, None]


def shaped_rewards__mask_by_multiplying(scores, logp, logp_ref, response_mask, beta):
    """Correct arithmetic, but 0 · (-inf) = NaN on the padding."""
    kl = (logp - logp_ref) * response_mask
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -beta * kl + at_last * scores[:, None]


def shaped_rewards__off_by_one_last(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    last = response_mask.sum(1).clamp(max=logp.shape[1] - 1)
    at_last = torch.arange(logp.shape[1]) == last[:, None]
    return -beta * kl + at_last * scores[:, None]


def shaped_rewards__penalty_not_masked(scores, logp, logp_ref, response_mask, beta):
    kl = torch.nan_to_num(logp - logp_ref, nan=0.0, posinf=0.0, neginf=0.0)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -beta * kl + at_last * scores[:, None]


def shaped_rewards__beta_missing(scores, logp, logp_ref, response_mask, beta):
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -kl + at_last * scores[:, None]


def shaped_rewards__k3_penalty(scores, logp, logp_ref, response_mask, beta):
    log_rho = torch.where(response_mask, logp_ref - logp, 0.0)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -beta * (torch.expm1(log_rho) - log_rho) + at_last * scores[:, None]


def shaped_rewards__sequence_kl_on_last(scores, logp, logp_ref, response_mask, beta):
    """Puts the whole penalty -β·KL on the last token instead of spreading it per token."""
    kl = torch.where(response_mask, logp - logp_ref, 0.0).sum(1)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return at_last * (scores - beta * kl)[:, None]

# ---------------------------------------------------------------------------- gae


def _gae_loop(rewards, values, response_mask, gamma, lam, *, mask_values=True, decay=None,
              reset=True, out_mask=True):
    keep = response_mask.to(rewards.dtype)
    rewards = torch.where(response_mask, rewards, 0.0)
    values = torch.where(response_mask, values, 0.0) if mask_values else values
    decay = gamma * lam if decay is None else decay
    next_v = torch.zeros_like(values[:, 0])
    next_a = torch.zeros_like(values[:, 0])
    adv = torch.zeros_like(values)
    for t in reversed(range(rewards.shape[1])):
        a = rewards[:, t] + gamma * next_v - values[:, t] + decay * next_a
        adv[:, t] = a * keep[:, t] if reset else a
        next_v, next_a = values[:, t], adv[:, t]
    if out_mask:
        adv = adv * keep
    return adv, (adv + values) * keep


def gae__bootstrap_past_end(rewards, values, response_mask, gamma, lam):
    return _gae_loop(rewards, values, response_mask, gamma, lam, mask_values=False)


def gae__gamma_lambda_swapped(rewards, values, response_mask, gamma, lam):
    return _gae_loop(rewards, values, response_mask, lam, gamma)


def gae__lambda_only_decay(rewards, values, response_mask, gamma, lam):
    return _gae_loop(rewards, values, response_mask, gamma, lam, decay=lam)


def gae__gamma_only_decay(rewards, values, response_mask, gamma, lam):
    return _gae_loop(rewards, values, response_mask, gamma, lam, decay=gamma)


def gae__no_reset_unmasked_inputs(rewards, values, response_mask, gamma, lam):
    """Runs the recursion through the padding's junk, masks only the output."""
    next_v = torch.zeros_like(values[:, 0])
    next_a = torch.zeros_like(values[:, 0])
    adv = torch.zeros_like(values)
    for t in reversed(range(rewards.shape[1])):
        adv[:, t] = rewards[:, t] + gamma * next_v - values[:, t] + gamma * lam * next_a
        next_v, next_a = values[:, t], adv[:, t]
    keep = response_mask.to(values.dtype)
    return adv * keep, (adv + values) * keep


def gae__next_value_at_end_is_own(rewards, values, response_mask, gamma, lam):
    """Uses values[t+1] and, at the last column, values[t] itself."""
    keep = response_mask.to(rewards.dtype)
    r = rewards * keep
    v = torch.where(response_mask, values, 0.0)
    next_values = torch.cat([v[:, 1:], v[:, -1:]], dim=1)
    delta = r + gamma * next_values - v
    adv = torch.zeros_like(v)
    running = torch.zeros_like(v[:, 0])
    for t in reversed(range(r.shape[1])):
        running = delta[:, t] + gamma * lam * running
        adv[:, t] = running
    return adv * keep, (adv + v) * keep


def gae__returns_minus_values(rewards, values, response_mask, gamma, lam):
    adv, _ = _gae_loop(rewards, values, response_mask, gamma, lam)
    keep = response_mask.to(values.dtype)
    return adv, (adv - torch.where(response_mask, values, 0.0)) * keep


def gae__returns_are_reward_to_go(rewards, values, response_mask, gamma, lam):
    adv, _ = _gae_loop(rewards, values, response_mask, gamma, lam)
    r = torch.where(response_mask, rewards, 0.0)
    ret = torch.zeros_like(r)
    running = torch.zeros_like(r[:, 0])
    for t in reversed(range(r.shape[1])):
        running = r[:, t] + gamma * running
        ret[:, t] = running
    return adv, ret * response_mask


def gae__whitened(rewards, values, response_mask, gamma, lam):
    adv, ret = _gae_loop(rewards, values, response_mask, gamma, lam)
    kept = adv[response_mask]
    white = (adv - kept.mean()) / (kept.std() + 1e-8)
    return torch.where(response_mask, white, 0.0), ret


def gae__forward_loop(rewards, values, response_mask, gamma, lam):
    """Accumulates forwards in time instead of backwards."""
    keep = response_mask.to(rewards.dtype)
    r, v = rewards * keep, torch.where(response_mask, values, 0.0)
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    delta = r + gamma * next_v - v
    adv = torch.zeros_like(v)
    running = torch.zeros_like(v[:, 0])
    for t in range(r.shape[1]):
        running = delta[:, t] + gamma * lam * running
        adv[:, t] = running
    return adv * keep, (adv + v) * keep


def gae__padding_not_zeroed(rewards, values, response_mask, gamma, lam):
    adv, _ = _gae_loop(rewards, values, response_mask, gamma, lam)
    return adv, adv + values

# ---------------------------------------------------------------------------- ppo_clip_loss


def _ratio(logp, logp_old, response_mask):
    return torch.exp(torch.where(response_mask, logp - logp_old, 0.0))


def _kept_mean(x, response_mask):
    return torch.where(response_mask, x, 0.0).sum() / response_mask.sum()


def ppo_clip_loss__max_not_min(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.maximum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__clip_advantage(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio * adv.clamp(1 - clip_eps, 1 + clip_eps))
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__ratio_not_exponentiated(logp, logp_old, adv, response_mask, clip_eps):
    ratio = torch.where(response_mask, logp - logp_old, 0.0)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__ratio_inverted(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp_old, logp, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__sign_flipped(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return _kept_mean(s, response_mask)


def ppo_clip_loss__sum(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -torch.where(response_mask, s, 0.0).sum()


def ppo_clip_loss__mean_over_padding(logp, logp_old, adv, response_mask, clip_eps):
    ratio = torch.exp(logp - logp_old)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -(s * response_mask).mean()


def ppo_clip_loss__row_mean_then_mean(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    rows = torch.where(response_mask, s, 0.0).sum(1) / response_mask.sum(1).clamp(min=1)
    return -rows[response_mask.any(1)].mean()


def ppo_clip_loss__clip_product(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, (ratio * adv).clamp(1 - clip_eps, 1 + clip_eps))
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__unclipped(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    return -_kept_mean(ratio * adv, response_mask)


def ppo_clip_loss__clip_log_ratio_by_eps(logp, logp_old, adv, response_mask, clip_eps):
    log_ratio = torch.where(response_mask, logp - logp_old, 0.0)
    ratio = log_ratio.exp()
    s = torch.minimum(ratio * adv, log_ratio.clamp(-clip_eps, clip_eps).exp() * adv)
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__detached_clipped_branch(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.detach().clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__detached_ratio(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask).detach()
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -_kept_mean(s, response_mask)


def ppo_clip_loss__item_inside(logp, logp_old, adv, response_mask, clip_eps):
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return torch.tensor(-_kept_mean(s, response_mask).item())


def ppo_clip_loss__clip_eps_doubled(logp, logp_old, adv, response_mask, clip_eps):
    """Clips the ratio to [1 - 2ε, 1 + 2ε] (ε read as the full width of the band)."""
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps / 2, 1 + clip_eps / 2) * adv)
    return -_kept_mean(s, response_mask)

# ---------------------------------------------------------------------------- value_loss


def _vmean(x, response_mask):
    return torch.where(response_mask, x, 0.0).sum() / response_mask.sum()


def _clipped_values(values, values_old, eps):
    return values_old + (values - values_old).clamp(-eps, eps)


def value_loss__min_not_max(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.minimum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    return 0.5 * _vmean(error, response_mask)


def value_loss__ignores_clip(values, values_old, returns, response_mask, clip_eps_value):
    return 0.5 * _vmean((values - returns) ** 2, response_mask)


def value_loss__no_half(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    return _vmean(error, response_mask)


def value_loss__clip_around_zero(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (values.clamp(-clip_eps_value, clip_eps_value)
                                      - returns) ** 2)
    return 0.5 * _vmean(error, response_mask)


def value_loss__clip_around_returns(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, returns, clip_eps_value)
                                      - returns) ** 2)
    return 0.5 * _vmean(error, response_mask)


def value_loss__mean_over_padding(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    return 0.5 * (error * response_mask).mean()


def value_loss__sum(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    return 0.5 * torch.where(response_mask, error, 0.0).sum()


def value_loss__crashes_on_none(values, values_old, returns, response_mask, clip_eps_value):
    clipped = _clipped_values(values, values_old, clip_eps_value)
    error = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * _vmean(error, response_mask)


def value_loss__only_clipped(values, values_old, returns, response_mask, clip_eps_value):
    if clip_eps_value is None:
        return 0.5 * _vmean((values - returns) ** 2, response_mask)
    clipped = _clipped_values(values, values_old, clip_eps_value)
    return 0.5 * _vmean((clipped - returns) ** 2, response_mask)


def value_loss__absolute_error(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns).abs()
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns).abs())
    return 0.5 * _vmean(error, response_mask)


def value_loss__old_values_unclipped(values, values_old, returns, response_mask, clip_eps_value):
    """Uses V_old in the unclipped term."""
    error = (values_old - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    else:
        error = (values - returns) ** 2
    return 0.5 * _vmean(error, response_mask)


def value_loss__row_mean_then_mean(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    rows = torch.where(response_mask, error, 0.0).sum(1) / response_mask.sum(1).clamp(min=1)
    return 0.5 * rows[response_mask.any(1)].mean()


def shaped_rewards__scores_not_unsqueezed(scores, logp, logp_ref, response_mask, beta):
    """`at_last * scores` broadcasts the scores along R (works silently when B == R)."""
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -beta * kl + at_last * scores


def shaped_rewards__inplace_twice_subtracted(scores, logp, logp_ref, response_mask, beta):
    logp -= logp_ref                                    # in place: logp now holds k1
    kl = torch.where(response_mask, logp - logp_ref, 0.0)
    at_last = torch.arange(logp.shape[1]) == _last_index(response_mask)[:, None]
    return -beta * kl + at_last * scores[:, None]


def value_loss__item_inside(values, values_old, returns, response_mask, clip_eps_value):
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (_clipped_values(values, values_old, clip_eps_value)
                                      - returns) ** 2)
    return torch.tensor(0.5 * _vmean(error, response_mask).item())


def gae__next_mask_not_checked(rewards, values, response_mask, gamma, lam):
    """Masks V(s_{t+1}) with response_mask[:, t] instead of [:, t+1]: bootstraps from junk."""
    B, R = rewards.shape
    keep = response_mask.to(rewards.dtype)
    adv = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(R)):
        next_v = values[:, t + 1] * keep[:, t] if t + 1 < R else torch.zeros(B, dtype=rewards.dtype)
        delta = rewards[:, t] * keep[:, t] + gamma * next_v - values[:, t] * keep[:, t]
        running = (delta + gamma * lam * running) * keep[:, t]
        adv[:, t] = running
    return adv, (adv + values) * keep


def ppo_clip_loss__whitened_advantages(logp, logp_old, adv, response_mask, clip_eps):
    kept = adv[response_mask]
    adv = (adv - kept.mean()) / (kept.std() + 1e-8)
    ratio = _ratio(logp, logp_old, response_mask)
    s = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -_kept_mean(s, response_mask)


# ---------------------------------------------------------------------------- issue #25 edge cases


def kl_k3__float32_result(logp, logp_ref):
    """Was honest before issue #25: float32 results for float64 inputs."""
    log_rho = logp_ref - logp
    return (torch.expm1(log_rho) - log_rho).float()


def shaped_rewards__float32_scatter(scores, logp, logp_ref, response_mask, beta):
    """Was honest before issue #25: float32 results for float64 inputs."""
    kl = torch.where(response_mask, logp - logp_ref, torch.zeros_like(logp)).float()
    out = -beta * kl
    last = (response_mask.long().cumsum(1) == response_mask.sum(1, keepdim=True)) & response_mask
    return out + last.float() * scores.float()[:, None]


def shaped_rewards__float32_buffer(scores, logp, logp_ref, response_mask, beta):
    """Was honest before issue #25: float32 results for float64 inputs."""
    B, R = logp.shape
    out = torch.zeros(B, R)
    lengths = response_mask.sum(1)
    for b in range(B):
        n = int(lengths[b])
        out[b, :n] = -beta * (logp[b, :n] - logp_ref[b, :n])
        out[b, n - 1] += scores[b]
    return out


def gae__cleanrl_style(rewards, values, response_mask, gamma, lam):
    """Was honest before issue #25. CleanRL's loop with 'next non-terminal' flags; masks at the
    end, so a NaN on the padding meets a 0 flag: 0 · NaN is NaN."""
    B, R = rewards.shape
    adv = torch.zeros_like(rewards)
    last_gae = torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(R)):
        if t == R - 1:
            next_nonterminal = torch.zeros(B, dtype=rewards.dtype)
            next_values = torch.zeros(B, dtype=rewards.dtype)
        else:
            next_nonterminal = response_mask[:, t + 1].to(rewards.dtype)
            next_values = values[:, t + 1]
        delta = rewards[:, t] + gamma * next_values * next_nonterminal - values[:, t]
        last_gae = delta + gamma * lam * next_nonterminal * last_gae
        adv[:, t] = last_gae
    keep = response_mask.to(rewards.dtype)
    return adv * keep, (adv + values) * keep


def gae__float32_buffer(rewards, values, response_mask, gamma, lam):
    """Was honest before issue #25. The common `torch.zeros(B, R)` buffer: float32 results for
    float64 inputs."""
    B, R = rewards.shape
    adv, returns = torch.zeros(B, R), torch.zeros(B, R)
    next_v, next_a = torch.zeros(B, dtype=rewards.dtype), torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(R)):
        keep = response_mask[:, t]
        v = torch.where(keep, values[:, t], torch.zeros_like(values[:, t]))
        r = torch.where(keep, rewards[:, t], torch.zeros_like(rewards[:, t]))
        a = torch.where(keep, r + gamma * next_v - v + gamma * lam * next_a, torch.zeros_like(v))
        adv[:, t], returns[:, t] = a, torch.where(keep, a + v, torch.zeros_like(v))
        next_v, next_a = v, a
    return adv, returns


def ppo_clip_loss__where_form(logp, logp_old, adv, response_mask, clip_eps):
    """Was honest before issue #25: the padding is multiplied by 0, and 0 · NaN is NaN."""
    ratio = torch.exp(logp - logp_old)
    capped = torch.where(adv >= 0, torch.clamp(ratio, max=1 + clip_eps),
                         torch.clamp(ratio, min=1 - clip_eps))
    per_token = capped * adv
    return -(per_token * response_mask).sum() / response_mask.sum()


def value_loss__float_mask_with_stats(values, values_old, returns, response_mask,
                                      clip_eps_value):
    """Was honest before issue #25: the padding is multiplied by 0, and 0 · NaN is NaN."""
    keep = response_mask.float().to(values.dtype)
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        clipped = torch.clamp(values, values_old - clip_eps_value, values_old + clip_eps_value)
        error = torch.max(error, (clipped - returns) ** 2)
    loss = 0.5 * (error * keep).sum() / keep.sum()
    return loss, {"vf_loss": loss.item()}


def kl_k1__log_of_probability_ratio(logp, logp_ref):
    return torch.log(torch.exp(logp) / torch.exp(logp_ref))


def kl_k1__float32(logp, logp_ref):
    return (logp - logp_ref).float()


def kl_k3__ratio_of_probabilities(logp, logp_ref):
    """exp(logp) underflows to 0 near -200 (float32) or -1000 (float64): 0/0."""
    rho = torch.exp(logp_ref) / torch.exp(logp)
    return rho - 1 - torch.log(rho)


def shaped_rewards__multiplies_by_the_mask(scores, logp, logp_ref, response_mask, beta):
    keep = response_mask.to(logp.dtype)
    last = response_mask.sum(1) - 1
    at_last = torch.arange(logp.shape[1]) == last[:, None]
    return -beta * (logp - logp_ref) * keep + at_last * scores[:, None]


def gae__multiplies_rewards_by_the_mask(rewards, values, response_mask, gamma, lam):
    """The notebook's solution before issue #25: ``rewards * keep`` lets a NaN through."""
    keep = response_mask.to(rewards.dtype)
    rewards, values = rewards * keep, torch.where(response_mask, values, 0.0)
    next_value, next_adv = torch.zeros_like(values[:, 0]), torch.zeros_like(values[:, 0])
    adv = torch.zeros_like(values)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv) * keep[:, t]
        next_value, next_adv = values[:, t], adv[:, t]
    return adv, (adv + values) * keep


def ppo_clip_loss__ratio_of_probabilities(logp, logp_old, adv, response_mask, clip_eps):
    """exp(logp) underflows to 0 near -200 (float32) or -1000 (float64): 0/0."""
    ratio = torch.where(response_mask, torch.exp(logp) / torch.exp(logp_old), 1.0)
    adv = torch.where(response_mask, adv, 0.0)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -torch.where(response_mask, surrogate, 0.0).sum() / response_mask.sum()


def ppo_clip_loss__float32_loss(logp, logp_old, adv, response_mask, clip_eps):
    ratio = torch.exp(torch.where(response_mask, logp - logp_old, 0.0)).float()
    adv = torch.where(response_mask, adv, 0.0).float()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -torch.where(response_mask, surrogate, 0.0).sum() / response_mask.sum()


def value_loss__masks_after_squaring(values, values_old, returns, response_mask, clip_eps_value):
    """The notebook's solution before issue #25: the right value, but the square of a NaN on the
    padding has a NaN derivative, and torch.where only zeroes the value."""
    error = (values - returns) ** 2
    if clip_eps_value is not None:
        clipped = values_old + torch.clamp(values - values_old, -clip_eps_value, clip_eps_value)
        error = torch.maximum(error, (clipped - returns) ** 2)
    return 0.5 * torch.where(response_mask, error, 0.0).sum() / response_mask.sum()


def value_loss__float32_loss(values, values_old, returns, response_mask, clip_eps_value):
    v, vo, r = (torch.where(response_mask, x, 0.0).float() for x in (values, values_old, returns))
    error = (v - r) ** 2
    if clip_eps_value is not None:
        error = torch.maximum(error, (vo + (v - vo).clamp(-clip_eps_value, clip_eps_value) - r) ** 2)
    return 0.5 * torch.where(response_mask, error, 0.0).sum() / response_mask.sum()
