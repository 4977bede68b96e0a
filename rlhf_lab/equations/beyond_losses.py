"""The equations beyond vanilla RLHF (notebook 07), each as one pure tensor function.

* :func:`dpo_loss` — Direct Preference Optimisation (Rafailov et al., 2023): the Bradley-Terry
  loss with the closed form's implicit reward ``r = beta log pi/pi_ref`` in place of a reward model;
* :func:`group_advantages` — GRPO (Shao et al., 2024): each reply's score against the other
  replies to the same prompt, so no critic is needed;
* :func:`grpo_loss` — the PPO clip loss on those advantages plus a k3 KL penalty in the loss;
* :func:`ppo_ptx_loss` — PPO-ptx (Ouyang et al., 2022): the PPO loss plus a pretraining
  next-token loss, the InstructGPT fix for the alignment tax.

Notation as in :mod:`rlhf_lab.equations.rl_losses` (DESIGN section 3). Sequence log-probabilities such as
``logp_chosen`` are sums over a response's tokens, shape (B,). Results keep the inputs' dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_lab.equations.masking import check_mask, gather_logprobs, masked_mean
from rlhf_lab.equations.rl_losses import _check_range, _check_tensors, _zero_masked, kl_k3, ppo_clip_loss

__all__ = ["implicit_reward", "dpo_loss", "group_advantages", "grpo_loss", "pretraining_nll",
           "ppo_ptx_loss"]


# ---------------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------------

def implicit_reward(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward of a response, ``beta * (log pi(y|x) - log pi_ref(y|x))``.

    The closed form ``pi* = pi_ref exp(r / beta) / Z`` solved for r gives
    ``r = beta log pi*/pi_ref + beta log Z(x)``; the ``beta log Z(x)`` part is the same for every
    reply to x, so it cancels in a Bradley-Terry difference and can be dropped.

    >>> implicit_reward(torch.tensor([-1.0]), torch.tensor([-3.0]), beta=0.5)
    tensor([1.])
    """
    _check_tensors(logp=logp, logp_ref=logp_ref)
    beta = _check_range("beta", beta, 0.0, float("inf"), open_low=True, open_high=True)
    return beta * (logp - logp_ref)


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor,
             logp_ref_chosen: torch.Tensor, logp_ref_rejected: torch.Tensor, beta: float
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO loss: ``-mean log sigmoid(r_chosen - r_rejected)`` with implicit rewards
    ``r = beta (logp - logp_ref)``.

    It is the reward-model loss of stage 2 with the policy itself as the reward model, so one
    stage replaces the RM and PPO. When the policy equals the reference every implicit reward
    is 0 and the loss is ``log 2``. ``logsigmoid`` keeps it finite for huge margins.

    Args:
        logp_chosen, logp_rejected: (B,) ``log pi_theta(y|x)`` of the preferred and the
            dispreferred reply, summed over response tokens (with gradient).
        logp_ref_chosen, logp_ref_rejected: (B,) the same under the frozen reference.
        beta: > 0, the KL coefficient of the objective DPO solves (typical 0.1).
    Returns: ``(loss, stats)``: python floats ``loss``, ``accuracy`` (fraction of pairs whose
        implicit reward ranks the chosen reply first), ``margin`` (mean reward gap),
        ``reward_chosen`` and ``reward_rejected`` (mean implicit rewards).

    >>> loss, stats = dpo_loss(torch.tensor([-2.0]), torch.tensor([-2.0]),
    ...                        torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    >>> round(loss.item(), 4)                     # log 2
    0.6931
    """
    _check_tensors(logp_chosen=logp_chosen, logp_rejected=logp_rejected,
                   logp_ref_chosen=logp_ref_chosen, logp_ref_rejected=logp_ref_rejected)
    if logp_chosen.dim() != 1:
        raise ValueError(f"logp_chosen must be 1-D (one log-probability per pair), got shape "
                         f"{tuple(logp_chosen.shape)}")
    r_chosen = implicit_reward(logp_chosen, logp_ref_chosen, beta)
    r_rejected = implicit_reward(logp_rejected, logp_ref_rejected, beta)
    margin = r_chosen - r_rejected
    loss = -F.logsigmoid(margin).mean()
    with torch.no_grad():
        stats = {"loss": loss.item(), "accuracy": (margin > 0).float().mean().item(),
                 "margin": margin.mean().item(), "reward_chosen": r_chosen.mean().item(),
                 "reward_rejected": r_rejected.mean().item()}
    return loss, stats


# ---------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------

def group_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's group-relative advantages: ``A_i = (r_i - mean_g r) / (std_g r + eps)``.

    The batch holds ``B / group_size`` prompts, each answered ``group_size`` times in a row:
    rows ``[g*G, (g+1)*G)`` are one group. The group mean plays the critic's role of a baseline,
    so no value network is trained; dividing by the group's (population) standard deviation
    puts every prompt on the same scale. Each group's advantages sum to 0; a group whose
    replies all scored the same gets zeros (nothing to learn from it).

    Args: scores (B,) one reward per reply; group_size G >= 2 dividing B; eps > 0.
    Returns: (B,), one advantage per reply (the same for all its tokens).

    >>> group_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), group_size=2)
    tensor([-1.0000,  1.0000,  0.0000,  0.0000])
    """
    _check_tensors(scores=scores)
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (one score per reply), got shape {tuple(scores.shape)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an integer >= 2, got {group_size!r}")
    if scores.shape[0] % group_size:
        raise ValueError(f"group_size ({group_size}) must divide the number of scores "
                         f"({scores.shape[0]})")
    eps = _check_range("eps", eps, 0.0, float("inf"), open_low=True, open_high=True)
    groups = scores.reshape(-1, group_size)                                   # (B/G, G)
    centred = groups - groups.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    return (centred / (std + eps)).reshape(-1)


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor,
              adv: torch.Tensor, response_mask: torch.Tensor, clip_eps: float, beta: float
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's policy loss: the PPO clip loss with each reply's group advantage on all its tokens,
    plus ``beta`` times the mean per-token k3 estimate of KL(pi_theta || pi_ref).

    In PPO for RLHF the KL penalty sits in the reward and the critic must learn it; GRPO has no
    critic, so it moves the penalty into the loss, where its gradient is exact.

    Args: logp (B, R) with gradient; logp_old, logp_ref (B, R); adv (B,) from
        :func:`group_advantages`; response_mask bool (B, R); clip_eps in (0, 1); beta >= 0.
    Returns: ``(loss, stats)`` with the stats of :func:`~rlhf_lab.equations.rl_losses.ppo_clip_loss` and
        ``kl`` (the mean per-token k3 term).
    """
    _check_tensors(logp=logp, logp_old=logp_old, logp_ref=logp_ref)
    check_mask(response_mask, logp)
    if not isinstance(adv, torch.Tensor) or adv.shape != logp.shape[:1]:
        raise ValueError(f"adv must have shape ({logp.shape[0]},), one advantage per reply, got "
                         f"{tuple(adv.shape) if isinstance(adv, torch.Tensor) else type(adv).__name__}")
    beta = _check_range("beta", beta, 0.0, float("inf"), open_high=True)
    pg_loss, stats = ppo_clip_loss(logp, logp_old, adv[:, None].expand_as(logp).to(logp.dtype),
                                   response_mask, clip_eps)
    kl = masked_mean(kl_k3(_zero_masked(logp, response_mask),
                           _zero_masked(logp_ref, response_mask)), response_mask)
    loss = pg_loss + beta * kl
    stats.update(kl=kl.item(), loss=loss.item())
    return loss, stats


# ---------------------------------------------------------------------------------------------
# PPO-ptx
# ---------------------------------------------------------------------------------------------

def pretraining_nll(logits: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood of pretraining text: ``-log pi(x_{t+1} | x_<=t)``
    averaged over the positions where both x_t and x_{t+1} are real tokens (``attention_mask``
    is 1), so padding on either side never counts, even when its logits hold NaN or inf.

    Args: logits (B, T, V) of the policy on ``input_ids`` (B, T); attention_mask (B, T) of 0/1.
    Returns: a scalar. Uniform logits over V give ``log V``.
    """
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}")
    real = attention_mask.bool()
    mask = real[:, 1:] & real[:, :-1]                        # token t+1 is scored at position t
    if not bool(mask.any()):
        raise ValueError("attention_mask selects no token to predict: the pretraining batch is empty")
    return -masked_mean(gather_logprobs(logits, input_ids), mask)


def ppo_ptx_loss(pg_loss: torch.Tensor, logits_ptx: torch.Tensor, input_ids_ptx: torch.Tensor,
                 attention_mask_ptx: torch.Tensor, ptx_coef: float
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-ptx: ``L = L_PPO + ptx_coef * NLL_pretrain``.

    InstructGPT (Ouyang et al., 2022, eq. 2) adds ``gamma E_{x ~ D_pretrain}[log pi(x)]`` to the
    RLHF objective; as a loss to minimise that is the PPO loss plus ``ptx_coef`` times the
    next-token NLL of a batch of pretraining text. The extra term pulls the policy back towards
    what it knew before RLHF and so lowers the alignment tax.

    Args: pg_loss: scalar PPO policy loss; logits_ptx (B, T, V) of the policy on the pretraining
        batch ``input_ids_ptx`` (B, T) with ``attention_mask_ptx`` (B, T); ptx_coef >= 0.
    Returns: ``(loss, stats)`` with python floats ``ptx_nll`` and ``loss``.
    """
    if not isinstance(pg_loss, torch.Tensor) or pg_loss.dim() != 0:
        raise ValueError("pg_loss must be a scalar tensor")
    ptx_coef = _check_range("ptx_coef", ptx_coef, 0.0, float("inf"), open_high=True)
    nll = pretraining_nll(logits_ptx, input_ids_ptx, attention_mask_ptx)
    loss = pg_loss + ptx_coef * nll
    return loss, {"ptx_nll": nll.item(), "loss": loss.item()}
