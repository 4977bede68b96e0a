"""Realistic wrong answers to ``boltzmann_policy``, ``optimal_objective``, ``kl_optimal`` and
``importance_estimates``."""
import math

import torch

# ---------------------------------------------------------------------------- boltzmann_policy


def boltzmann_policy__beta_multiplies(logp_ref, rewards, beta):
    s = logp_ref + rewards * beta
    return s - torch.logsumexp(s, -1, keepdim=True)


def boltzmann_policy__reward_sign(logp_ref, rewards, beta):
    s = logp_ref - rewards / beta
    return s - torch.logsumexp(s, -1, keepdim=True)


def boltzmann_policy__forgot_reference(logp_ref, rewards, beta):
    s = rewards / beta
    return s - torch.logsumexp(s, -1, keepdim=True)


def boltzmann_policy__not_normalised(logp_ref, rewards, beta):
    return logp_ref + rewards / beta


def boltzmann_policy__wrong_dim(logp_ref, rewards, beta):
    s = logp_ref + rewards / beta
    return s - torch.logsumexp(s, 0, keepdim=True)


def boltzmann_policy__naive_exp(logp_ref, rewards, beta):
    w = torch.exp(logp_ref) * torch.exp(rewards / beta)
    return torch.log(w / w.sum(-1, keepdim=True))


def boltzmann_policy__returns_probabilities(logp_ref, rewards, beta):
    return torch.softmax(logp_ref + rewards / beta, -1)


def boltzmann_policy__support_ignored(logp_ref, rewards, beta):
    """Clamps -inf to a finite floor 'for stability': holes get mass when rewards are high."""
    s = logp_ref.clamp(min=-30.0) + rewards / beta
    return s - torch.logsumexp(s, -1, keepdim=True)


def boltzmann_policy__max_subtracted_wrong(logp_ref, rewards, beta):
    """Subtracts the max of r/β (fine) but then normalises with the sum of exp(r/β) only."""
    z = rewards / beta
    z = z - z.max(-1, keepdim=True).values
    return logp_ref + z - torch.log(torch.exp(z).sum(-1, keepdim=True))

# ---------------------------------------------------------------------------- optimal_objective


def optimal_objective__log_z_only(logp_ref, rewards, beta):
    return torch.logsumexp(logp_ref + rewards / beta, -1)


def optimal_objective__beta_outside_only(logp_ref, rewards, beta):
    return beta * torch.logsumexp(logp_ref + rewards, -1)


def optimal_objective__uniform_weights(logp_ref, rewards, beta):
    return beta * (torch.logsumexp(rewards / beta, -1) - math.log(rewards.shape[-1]))


def optimal_objective__naive_exp(logp_ref, rewards, beta):
    return beta * torch.log((torch.exp(logp_ref) * torch.exp(rewards / beta)).sum(-1))


def optimal_objective__expected_reward_of_ref(logp_ref, rewards, beta):
    return (torch.exp(logp_ref) * rewards).sum(-1)


def optimal_objective__expected_reward_of_optimum(logp_ref, rewards, beta):
    p = torch.softmax(logp_ref + rewards / beta, -1)
    return (p * rewards).sum(-1)


def optimal_objective__divides_by_beta(logp_ref, rewards, beta):
    return torch.logsumexp(logp_ref + rewards / beta, -1) / beta


def optimal_objective__wrong_dim(logp_ref, rewards, beta):
    return beta * torch.logsumexp(logp_ref + rewards / beta, 0)


def optimal_objective__max_reward(logp_ref, rewards, beta):
    return torch.where(logp_ref > -math.inf, rewards, -math.inf).max(-1).values

# ---------------------------------------------------------------------------- kl_optimal


def _parts(logp_ref, rewards, beta):
    s = logp_ref + rewards / beta
    log_z = torch.logsumexp(s, -1)
    return s - log_z.unsqueeze(-1), log_z


def kl_optimal__forgot_beta(logp_ref, rewards, beta):
    logp, log_z = _parts(logp_ref, rewards, beta)
    return (logp.exp() * rewards).sum(-1) - log_z


def kl_optimal__reverse_direction(logp_ref, rewards, beta):
    logp, _ = _parts(logp_ref, rewards, beta)
    return (logp_ref.exp() * (logp_ref - logp)).sum(-1)


def kl_optimal__sign_flipped(logp_ref, rewards, beta):
    logp, log_z = _parts(logp_ref, rewards, beta)
    return log_z - (logp.exp() * rewards).sum(-1) / beta


def kl_optimal__reference_expectation(logp_ref, rewards, beta):
    _, log_z = _parts(logp_ref, rewards, beta)
    return (logp_ref.exp() * rewards).sum(-1) / beta - log_z


def kl_optimal__definition_nan_outside_support(logp_ref, rewards, beta):
    """Σ π* (log π* − log π_ref): 0 · (−inf − (−inf)) = NaN on the holes."""
    logp, _ = _parts(logp_ref, rewards, beta)
    return (logp.exp() * (logp - logp_ref)).sum(-1)


def kl_optimal__naive_exp(logp_ref, rewards, beta):
    w = torch.exp(logp_ref) * torch.exp(rewards / beta)
    z = w.sum(-1)
    return (w / z.unsqueeze(-1) * rewards).sum(-1) / beta - torch.log(z)


def kl_optimal__wrong_dim(logp_ref, rewards, beta):
    s = logp_ref + rewards / beta
    log_z = torch.logsumexp(s, 0, keepdim=True)
    return ((s - log_z).exp() * rewards).sum(-1) / beta - log_z.squeeze(0).mean(-1)


def kl_optimal__nan_rewards_product(logp_ref, rewards, beta):
    """Uses log π* · r with the holes' log π* = −inf: −inf · r, then multiplies by π* = 0."""
    logp, log_z = _parts(logp_ref, rewards, beta)
    return (logp.exp() * (logp + 0 * rewards) / 1.0 - logp.exp() * logp_ref).sum(-1)


# ---------------------------------------------------------------------------- issue #25 edge cases


def boltzmann_policy__float32_result(logp_ref, rewards, beta):
    return torch.log_softmax((logp_ref + rewards / beta).float(), -1)


def optimal_objective__float32_arithmetic(logp_ref, rewards, beta):
    scores = logp_ref.float() + rewards.float() / beta
    return (beta * torch.logsumexp(scores, -1)).to(rewards.dtype)


def kl_optimal__float32_buffer(logp_ref, rewards, beta):
    """Fills a ``torch.zeros(...)`` buffer row by row: float32 whatever the inputs."""
    flat_lp, flat_r = logp_ref.reshape(-1, logp_ref.shape[-1]), rewards.reshape(-1, rewards.shape[-1])
    out = torch.zeros(len(flat_lp))
    for i in range(len(flat_lp)):
        scores = flat_lp[i] + flat_r[i] / beta
        log_z = torch.logsumexp(scores, -1)
        p = torch.exp(scores - log_z)
        out[i] = (p * flat_r[i]).sum() / beta - log_z
    return out.reshape(logp_ref.shape[:-1])


# ---------------------------------------------------------------------------- importance_estimates


def _estimates(rewards, beta, log_z=None, w=None, mean_r=None, kl=None, ess=None):
    """The right five estimates, with any of them replaced."""
    n = rewards.shape[-1]
    lse = torch.logsumexp(rewards / beta, -1)
    right_w = torch.softmax(rewards / beta, -1)
    right_log_z = lse - math.log(n)
    right_mean = (right_w * rewards).sum(-1)
    return (right_log_z if log_z is None else log_z, right_w if w is None else w,
            right_mean if mean_r is None else mean_r,
            right_mean / beta - right_log_z if kl is None else kl,
            1 / (right_w ** 2).sum(-1) if ess is None else ess)


def importance_estimates__missing_log_n(rewards, beta):
    """log Ẑ = logsumexp(r/β): the sum of exp(r_i/β), not their mean (and so the KL too)."""
    log_z = torch.logsumexp(rewards / beta, -1)
    w = torch.softmax(rewards / beta, -1)
    mean_r = (w * rewards).sum(-1)
    return log_z, w, mean_r, mean_r / beta - log_z, 1 / (w ** 2).sum(-1)


def importance_estimates__unnormalised_weights(rewards, beta):
    u = torch.exp(rewards / beta - torch.logsumexp(rewards / beta, -1, keepdim=True)
                  + math.log(rewards.shape[-1]))                     # N w_i: they sum to N
    mean_r = (u * rewards).sum(-1)
    log_z = torch.logsumexp(rewards / beta, -1) - math.log(rewards.shape[-1])
    return log_z, u, mean_r, mean_r / beta - log_z, 1 / (u ** 2).sum(-1)


def importance_estimates__forgot_beta(rewards, beta):
    w = torch.softmax(rewards, -1)
    log_z = torch.logsumexp(rewards / beta, -1) - math.log(rewards.shape[-1])
    mean_r = (w * rewards).sum(-1)
    return log_z, w, mean_r, mean_r / beta - log_z, 1 / (w ** 2).sum(-1)


def importance_estimates__ess_of_a_mean(rewards, beta):
    w = torch.softmax(rewards / beta, -1)
    return _estimates(rewards, beta, ess=1 / (w ** 2).mean(-1))


def importance_estimates__ess_unnormalised(rewards, beta):
    """1 / Σ exp(r_i/β)² with the max subtracted 'for stability', but never normalised."""
    u = torch.exp(rewards / beta - (rewards / beta).max(-1, keepdim=True).values)
    return _estimates(rewards, beta, ess=1 / (u ** 2).sum(-1))


def importance_estimates__kl_without_log_n(rewards, beta):
    """Σ w log w (minus the entropy of the weights), which is the KL minus log N."""
    log_w = torch.log_softmax(rewards / beta, -1)
    return _estimates(rewards, beta, kl=(log_w.exp() * log_w).sum(-1))


def importance_estimates__kl_sign_flipped(rewards, beta):
    est = _estimates(rewards, beta)
    return _estimates(rewards, beta, kl=est[0] - est[2] / beta)


def importance_estimates__kl_forgot_beta(rewards, beta):
    est = _estimates(rewards, beta)
    return _estimates(rewards, beta, kl=est[2] - est[0])


def importance_estimates__kl_nan_at_zero_weights(rewards, beta):
    """Σ w log(N w) as written: a weight that underflows to 0 gives 0 · log 0 = NaN."""
    w = torch.softmax(rewards / beta, -1)
    return _estimates(rewards, beta, kl=(w * torch.log(rewards.shape[-1] * w)).sum(-1))


def importance_estimates__naive_exp(rewards, beta):
    u = torch.exp(rewards / beta)
    w = u / u.sum(-1, keepdim=True)
    log_z = torch.log(u.mean(-1))
    mean_r = (w * rewards).sum(-1)
    return log_z, w, mean_r, mean_r / beta - log_z, 1 / (w ** 2).sum(-1)


def importance_estimates__wrong_dim(rewards, beta):
    """Normalises the weights over the first dim (the prompts) instead of the samples."""
    w = torch.softmax(rewards / beta, 0)
    mean_r = (w * rewards).sum(-1)
    return _estimates(rewards, beta, w=w, mean_r=mean_r, ess=1 / (w ** 2).sum(-1))


def importance_estimates__n_from_the_first_dim(rewards, beta):
    """N taken as len(rewards): right for one row of samples, wrong for a batch."""
    log_z = torch.logsumexp(rewards / beta, -1) - math.log(len(rewards))
    w = torch.softmax(rewards / beta, -1)
    mean_r = (w * rewards).sum(-1)
    return log_z, w, mean_r, mean_r / beta - log_z, 1 / (w ** 2).sum(-1)


def importance_estimates__reference_mean_reward(rewards, beta):
    """Σ w r replaced by the plain mean of the rewards (what π_ref gets)."""
    return _estimates(rewards, beta, mean_r=rewards.mean(-1))


def importance_estimates__log_z_times_beta(rewards, beta):
    est = _estimates(rewards, beta)
    return _estimates(rewards, beta, log_z=beta * est[0])


def importance_estimates__detached_log_z(rewards, beta):
    """log Ẑ through .item(): right numbers, but nothing can differentiate it."""
    est = _estimates(rewards, beta)
    log_z = torch.tensor(est[0].tolist(), dtype=rewards.dtype)
    return (log_z,) + est[1:]


def importance_estimates__float32_weights(rewards, beta):
    w = torch.softmax((rewards / beta).float(), -1)
    return _estimates(rewards, beta, w=w, ess=1 / (w ** 2).sum(-1))
