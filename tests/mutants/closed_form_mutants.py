"""Realistic wrong answers to ``boltzmann_policy``, ``optimal_objective`` and ``kl_optimal``."""
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
