"""The equations of KL-regularised PPO (RLHF), each as one pure tensor function.

Notation (DESIGN section 3). Every per-token tensor holds the response tokens only and has
shape (B, R): B responses in the batch, R response positions. ``response_mask`` (bool, (B, R))
is True where a token counts and False on padding and after the end-of-sequence token.

    logp      log pi_theta(y_t | s_t)        the policy being trained
    logp_old  log pi_theta_old(y_t | s_t)    the policy that sampled the rollout
    logp_ref  log pi_ref(y_t | s_t)          the frozen reference (the SFT model)
    ratio     pi_theta / pi_theta_old = exp(logp - logp_old)
    adv       advantages A_t                 returns  A_t + V(s_t), the critic's targets
    values    critic outputs V(s_t)          beta  KL coefficient, clip_eps  PPO clip range
    gamma     discount                       lam   GAE lambda

Masked positions may hold anything, even NaN or inf: every function first replaces them with
zeros through ``torch.where`` (see :func:`_zero_masked`), so they change neither a result nor a
gradient. Probability ratios come from log-ratios, ``exp(logp - logp_old)``, never from
``exp(logp) / exp(logp_old)``, which is 0/0 once exp underflows (log-probabilities near -200 in
float32, -1000 in float64). Results keep the inputs' dtype.

The order of the PPO loop that uses these functions::

    kl_k1 / sequence_kl -> shaped_rewards -> gae -> ppo_clip_loss + value_loss
"""
from __future__ import annotations

import math

import torch

from rlhf_lab.core.config import number
from rlhf_lab.equations.masking import check_mask, masked_mean, masked_sum, masked_var

__all__ = ["kl_k1", "kl_k2", "kl_k3", "kl_estimate", "KL_ESTIMATORS", "sequence_kl",
           "shaped_rewards", "gae", "ppo_clip_loss", "value_loss"]


# ---------------------------------------------------------------------------------------------
# Input checks (private): every message names the argument at fault.
# ---------------------------------------------------------------------------------------------

def _check_tensors(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless all arguments are floating tensors of the first one's shape."""
    (first_name, first), *_ = tensors.items()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must be a floating-point tensor, got {kind}")
        if tensor.shape != first.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but {first_name} has shape "
                             f"{tuple(first.shape)}; they must match")


def _check_range(name: str, value, low: float, high: float,
                 open_low: bool = False, open_high: bool = False) -> float:
    """Return ``float(value)``; raise ValueError naming ``name`` if it is outside the range."""
    return number(value, name, low, high, open_low, open_high)


def _zero_masked(values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``values`` with masked entries replaced by 0, before any arithmetic touches them.

    Masking only at the end is not enough for gradients: ``exp(NaN)`` on a masked token has a
    NaN derivative, and ``0 * NaN = NaN`` in the backward pass. Replacing the inputs first cuts
    the masked tokens out of the graph: ``torch.where`` sends them a gradient of exactly 0.
    """
    return torch.where(response_mask, values, torch.zeros((), dtype=values.dtype,
                                                          device=values.device))


# ---------------------------------------------------------------------------------------------
# KL estimators: J. Schulman, "Approximating KL Divergence" (2020),
# http://joschu.net/blog/kl-approx.html
# ---------------------------------------------------------------------------------------------

def kl_k1(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k1 estimator of KL(pi || pi_ref), per token: ``k1 = logp - logp_ref``.

    With y_t sampled from pi, ``E_pi[k1] = KL(pi || pi_ref)`` exactly (unbiased), but a single
    token can give a negative value and the variance is high. Its sum over a response is the
    sequence KL used in the shaped rewards.

    Args: logp, logp_ref: log-probabilities of the sampled tokens, any shape (e.g. (B, R)).
    Returns: a tensor of the same shape.

    >>> kl_k1(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    tensor([ 1., -1.])
    """
    _check_tensors(logp=logp, logp_ref=logp_ref)
    return logp - logp_ref


def kl_k2(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k2 estimator of KL(pi || pi_ref), per token: ``k2 = 0.5 * (logp - logp_ref)**2``.

    Always >= 0 and low-variance, but biased: ``E_pi[k2]`` matches KL(pi || pi_ref) only to
    second order, i.e. when pi and pi_ref are close.

    Args: logp, logp_ref: log-probabilities of the sampled tokens, any shape.
    Returns: a tensor of the same shape.

    >>> kl_k2(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    tensor([0.5000, 0.5000])
    """
    _check_tensors(logp=logp, logp_ref=logp_ref)
    return 0.5 * (logp - logp_ref) ** 2


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || pi_ref), per token: ``k3 = (rho - 1) - log rho``.

    Here ``rho = pi_ref / pi = exp(logp_ref - logp)``. Since ``E_pi[rho] = 1``, the term
    ``rho - 1`` has mean 0, so k3 is unbiased like k1; and since ``x - 1 >= log x``, every token
    gives k3 >= 0. (Mind the direction: rho is pi_ref over pi, not the other way round.)
    ``torch.expm1(x) = exp(x) - 1`` keeps the result accurate, and never negative, when
    logp and logp_ref are close.

    Args: logp, logp_ref: log-probabilities of the sampled tokens, any shape.
    Returns: a tensor of the same shape, >= 0.

    >>> kl_k3(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))   # e^-1 - 1 + 1, e - 1 - 1
    tensor([0.3679, 0.7183])
    """
    _check_tensors(logp=logp, logp_ref=logp_ref)
    log_rho = logp_ref - logp
    return torch.expm1(log_rho) - log_rho


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
"""The per-token KL estimators by name, as accepted by :func:`kl_estimate`."""


def kl_estimate(logp: torch.Tensor, logp_ref: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate by name: ``kind`` is "k1", "k2" or "k3".

    >>> kl_estimate(torch.tensor([-1.0]), torch.tensor([-2.0]), kind="k2")
    tensor([0.5000])
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"kind must be one of {sorted(KL_ESTIMATORS)}, got {kind!r}")
    return KL_ESTIMATORS[kind](logp, logp_ref)


def sequence_kl(logp: torch.Tensor, logp_ref: torch.Tensor,
                response_mask: torch.Tensor) -> torch.Tensor:
    """KL estimate of each response: ``KL_b = sum_t mask_bt * (logp_bt - logp_ref_bt)`` (k1).

    Args: logp, logp_ref: (B, R); response_mask: bool (B, R).
    Returns: (B,), one KL estimate per response (in nats).

    >>> sequence_kl(torch.tensor([[-1.0, -1.0, 5.0]]), torch.tensor([[-2.0, -1.5, 0.0]]),
    ...             torch.tensor([[True, True, False]]))
    tensor([1.5000])
    """
    _check_tensors(logp=logp, logp_ref=logp_ref)
    check_mask(response_mask, logp)
    return masked_sum(kl_k1(logp, logp_ref), response_mask, dim=-1)


# ---------------------------------------------------------------------------------------------
# Rewards and advantages
# ---------------------------------------------------------------------------------------------

def shaped_rewards(scores: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor,
                   response_mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards of KL-regularised RLHF.

        r_t = -beta * (logp_t - logp_ref_t) + 1[t = T] * score

    T is the last kept token of the row, score = r_phi(x, y) is the reward model's score of
    the whole response. Masked tokens get 0. Summed over a row: ``score - beta * KL``, with
    KL the row's :func:`sequence_kl`.

    Args:
        scores: (B,) reward-model score per response.
        logp, logp_ref: (B, R) log-probabilities under the policy and the reference.
        response_mask: bool (B, R); every row needs at least one True.
        beta: KL coefficient, >= 0 (typically 0.01-0.3).
    Returns: (B, R) rewards.

    >>> shaped_rewards(torch.tensor([2.0]), torch.tensor([[-1.0, -1.0, 0.0]]),
    ...                torch.tensor([[-2.0, -1.5, 0.0]]), torch.tensor([[True, True, False]]),
    ...                beta=0.1)
    tensor([[-0.1000,  1.9500,  0.0000]])
    """
    _check_tensors(logp=logp, logp_ref=logp_ref)
    check_mask(response_mask, logp)
    beta = _check_range("beta", beta, 0.0, math.inf)
    if logp.dim() != 2 or not isinstance(scores, torch.Tensor) or scores.shape != logp.shape[:1]:
        raise ValueError(f"scores must be a (B,) tensor and logp (B, R); got scores "
                         f"{getattr(scores, 'shape', type(scores).__name__)} and logp "
                         f"{tuple(logp.shape)}")
    positions = torch.arange(logp.shape[1], device=logp.device)           # (R,)
    last = torch.where(response_mask, positions, -1).amax(dim=1)           # (B,) last kept t
    if (last < 0).any():
        rows = torch.nonzero(last < 0).flatten().tolist()
        raise ValueError(f"response_mask has a row with no response token (rows {rows}); "
                         f"the reward-model score has no token to be placed on")
    kl_penalty = -beta * kl_k1(_zero_masked(logp, response_mask),
                               _zero_masked(logp_ref, response_mask))      # (B, R), 0 if masked
    at_last = positions == last.unsqueeze(1)                               # (B, R) one True a row
    return kl_penalty + at_last * scores.unsqueeze(1)


def gae(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation (Schulman et al., 2016).

        delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
        A_t     = sum_l (gamma * lam)^l * delta_{t+l}  =  delta_t + gamma * lam * A_{t+1}
        returns_t = A_t + V(s_t)                       (the critic's targets)

    The episode ends at the last kept token: there ``V(s_{T+1}) = 0`` and ``A_{T+1} = 0`` (no
    bootstrap past the end). More generally a masked position is treated as terminal, so a
    token followed by a masked one bootstraps from nothing. Masked tokens get adv = returns = 0.
    The loop runs backwards over R (short) and is vectorised over the batch. The results are
    targets: call it on detached tensors, or under ``torch.no_grad()``.

    Args:
        rewards, values: (B, R) per-token rewards r_t and critic values V(s_t).
        response_mask: bool (B, R).
        gamma: discount in [0, 1] (1 for RLHF); lam: GAE lambda in [0, 1] (typically 0.95).
    Returns: ``(adv, returns)``, both (B, R).

    >>> adv, returns = gae(torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 9.0]]),
    ...                    torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 9.0]]),
    ...                    torch.tensor([[True, True, True], [True, True, False]]),
    ...                    gamma=1.0, lam=0.5)
    >>> adv
    tensor([[0.1250, 0.2500, 0.5000],
            [0.2500, 0.5000, 0.0000]])
    >>> returns
    tensor([[0.6250, 0.7500, 1.0000],
            [0.7500, 1.0000, 0.0000]])
    """
    _check_tensors(rewards=rewards, values=values)
    check_mask(response_mask, rewards)
    gamma = _check_range("gamma", gamma, 0.0, 1.0)
    lam = _check_range("lam", lam, 0.0, 1.0)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (B, R), got {tuple(rewards.shape)}")
    rewards = _zero_masked(rewards, response_mask)
    values = _zero_masked(values, response_mask)    # also makes V = 0 on (after) the end
    next_value = torch.zeros_like(values[:, 0])     # (B,) V(s_{t+1}); 0 past the last token
    next_adv = torch.zeros_like(values[:, 0])       # (B,) A_{t+1}
    adv_reversed = []
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]            # (B,)
        adv_t = _zero_masked(delta + gamma * lam * next_adv, response_mask[:, t])
        adv_reversed.append(adv_t)
        next_value, next_adv = values[:, t], adv_t  # both 0 where t is masked: terminal
    adv = torch.stack(adv_reversed[::-1], dim=1)                             # (B, R)
    returns = _zero_masked(adv + values, response_mask)
    return adv, returns


# ---------------------------------------------------------------------------------------------
# PPO losses: both return (loss, stats), stats as python floats computed without gradients
# ---------------------------------------------------------------------------------------------

def ppo_clip_loss(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor,
                  response_mask: torch.Tensor, clip_eps: float
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate loss (Schulman et al., 2017), a token mean over kept tokens.

        ratio_t = pi_theta / pi_theta_old = exp(logp_t - logp_old_t)
        L = - mean_t min(ratio_t * A_t, clip(ratio_t, 1 - clip_eps, 1 + clip_eps) * A_t)

    The min makes the objective pessimistic: once the ratio has moved past 1 + clip_eps (for
    A > 0) or below 1 - clip_eps (for A < 0), the clipped term is the smaller one and is constant,
    so that token's gradient is exactly 0. A move in the other direction is never clipped.

    Args:
        logp: (B, R) log-probabilities under the current policy (with gradient).
        logp_old, adv: (B, R) log-probabilities at rollout time and advantages (no gradient).
        response_mask: bool (B, R).
        clip_eps: epsilon in (0, 1), typically 0.2.
    Returns: ``(loss, stats)``: a scalar loss and python floats ``pg_loss`` (the loss),
        ``clipfrac`` (fraction of kept tokens with |ratio - 1| > clip_eps), ``approx_kl`` (mean
        k3 estimate ``(ratio - 1) - log ratio`` of KL(pi_old || pi_theta)), ``ratio_mean``.

    >>> loss, stats = ppo_clip_loss(torch.log(torch.tensor([[1.5, 0.5, 1.0]])),
    ...                             torch.zeros(1, 3), torch.tensor([[1.0, 1.0, -2.0]]),
    ...                             torch.ones(1, 3, dtype=torch.bool), clip_eps=0.2)
    >>> round(loss.item(), 4), round(stats["clipfrac"], 4)   # -(1.2 + 0.5 - 2) / 3; 2 of 3
    (0.1, 0.6667)
    """
    _check_tensors(logp=logp, logp_old=logp_old, adv=adv)
    check_mask(response_mask, logp)
    clip_eps = _check_range("clip_eps", clip_eps, 0.0, 1.0, open_low=True, open_high=True)
    log_ratio = _zero_masked(logp, response_mask) - _zero_masked(logp_old, response_mask)
    adv = _zero_masked(adv, response_mask)
    ratio = torch.exp(log_ratio)                                              # (B, R)
    surrogate = ratio * adv
    surrogate_clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    loss = -masked_mean(torch.minimum(surrogate, surrogate_clipped), response_mask)
    with torch.no_grad():
        stats = {
            "pg_loss": loss.item(),
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_eps).to(ratio.dtype),
                                    response_mask).item(),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, response_mask).item(),
            "ratio_mean": masked_mean(ratio, response_mask).item(),
        }
    return loss, stats


def value_loss(values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor,
               response_mask: torch.Tensor, clip_eps_value: float | None
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value (critic) loss, a token mean over kept tokens.

        V_clip = V_old + clip(V - V_old, -clip_eps_value, clip_eps_value)
        L_V = 0.5 * mean_t max((V_t - R_t)^2, (V_clip_t - R_t)^2)

    R_t are the ``returns`` from :func:`gae`. Like the policy clip, the max is pessimistic: a
    value that moved more than clip_eps_value from V_old stops getting gradient only when the
    move was towards the target. ``clip_eps_value=None`` gives the plain ``0.5 * mean (V-R)^2``.

    Args:
        values: (B, R) current critic outputs V (with gradient).
        values_old, returns: (B, R) critic outputs at rollout time and the GAE returns.
        response_mask: bool (B, R).
        clip_eps_value: clip range > 0 in the units of the reward (e.g. 0.2), or None.
    Returns: ``(loss, stats)``: python floats ``vf_loss`` (the loss), ``vf_clipfrac`` (fraction
        of kept tokens where the clipped term is the larger one) and ``explained_variance``
        ``1 - Var[R - V] / Var[R]`` over kept tokens (1: perfect, 0: no better than the mean
        of R; NaN when Var[R] = 0).

    >>> loss, stats = value_loss(torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2),
    ...                          torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), 0.2)
    >>> round(loss.item(), 4), stats["vf_clipfrac"]   # 0.5 * ((0.2 - 1)^2 + (-0.1 - 1)^2) / 2
    (0.4625, 0.5)
    """
    _check_tensors(values=values, values_old=values_old, returns=returns)
    check_mask(response_mask, values)
    if clip_eps_value is not None:
        clip_eps_value = _check_range("clip_eps_value", clip_eps_value, 0.0, math.inf,
                                      open_low=True)
    values = _zero_masked(values, response_mask)
    returns = _zero_masked(returns, response_mask)
    loss_unclipped = (values - returns) ** 2                                  # (B, R)
    if clip_eps_value is None:
        loss_max = loss_unclipped
    else:
        values_old = _zero_masked(values_old, response_mask)
        step = torch.clamp(values - values_old, -clip_eps_value, clip_eps_value)
        values_clipped = values_old + step
        loss_max = torch.maximum(loss_unclipped, (values_clipped - returns) ** 2)
    loss = 0.5 * masked_mean(loss_max, response_mask)
    with torch.no_grad():
        var_returns = masked_var(returns, response_mask).item()
        var_error = masked_var(returns - values, response_mask).item()
        stats = {
            "vf_loss": loss.item(),
            "vf_clipfrac": masked_mean((loss_max > loss_unclipped).to(values.dtype),
                                       response_mask).item(),
            "explained_variance": 1.0 - var_error / var_returns if var_returns > 0 else math.nan,
        }
    return loss, stats
