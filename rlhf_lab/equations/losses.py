"""Losses of the first two stages, as pure tensor functions.

* :func:`response_logprob` — log pi(y | x) of a whole response (notebook 00);
* :func:`sft_loss` — masked, response-only next-token loss (stage 1, notebook 01);
* :func:`bt_probability`, :func:`bradley_terry_loss` — the Bradley-Terry model (stage 2, notebook 02);
* :func:`plackett_luce_loss` — its K-wise extension, for replies ranked best first (notebook 02);
* :func:`fit_bradley_terry` — Bradley-Terry strengths of a league table by maximum likelihood
  (notebook 02: the model's original use, ranking sports teams).

The PPO-stage equations live in :mod:`rlhf_lab.equations.rl_losses`; the logits/labels shift lives in
:func:`rlhf_lab.equations.masking.gather_logprobs` and nowhere else.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rlhf_lab.equations.masking import check_mask, gather_logprobs, masked_mean, masked_sum

__all__ = ["response_logprob", "sft_loss", "bt_probability", "bradley_terry_loss",
           "plackett_luce_loss", "fit_bradley_terry"]


def response_logprob(logits: torch.Tensor, input_ids: torch.Tensor,
                     response_mask: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x) = sum_t log pi(y_t | x, y_<t)`` over the response tokens of each row.

    Args: logits (B, T, V) of the model on ``input_ids`` (B, T); response_mask (B, T) bool over
    ``input_ids``, True on response tokens. Returns (B,), float64 for float64 logits. Logits that
    score no response token (prompt, padding) may hold anything, even NaN or inf: they change
    neither the result nor its gradient on the logits that do.

    Example: uniform logits over V = 4 and a 3-token response give ``3 log(1/4) = -4.159``.
    """
    check_mask(response_mask, input_ids)
    logp = gather_logprobs(logits, input_ids)                  # (B, T-1): token t+1 given <= t
    return masked_sum(logp, response_mask[:, 1:], dim=-1)      # mask aligned with the labels


def sft_loss(logits: torch.Tensor, input_ids: torch.Tensor,
             response_mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Response-only negative log-likelihood, ``L_SFT = -mean_t log pi(y_t | x, y_<t)``.

    The mean runs over every response token of the batch (prompt and padding are masked out, so
    changing them changes nothing, even to NaN or inf logits). Returns ``(loss, stats)`` with
    ``stats["nll"]`` and ``stats["tokens"]``; the loss is float64 for float64 logits.

    Example: uniform logits over V = 4 give ``loss = log 4 = 1.386`` whatever the mask.
    """
    check_mask(response_mask, input_ids)
    mask = response_mask[:, 1:]                                # (B, T-1), lines up with labels
    if not bool(mask.any()):
        raise ValueError("response_mask selects no token: the SFT loss would be empty")
    loss = -masked_mean(gather_logprobs(logits, input_ids), mask)
    return loss, {"nll": loss.item(), "tokens": int(mask.sum())}


def bt_probability(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry: ``P(y_w > y_l | x) = sigmoid(r(x, y_w) - r(x, y_l))``, elementwise.

    Only the difference counts, so adding any c(x) to both rewards changes nothing. The result
    has the rewards' dtype. Example: r_chosen = [1.0], r_rejected = [0.0] -> [0.7311].
    """
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected "
                         f"{tuple(r_rejected.shape)} must have the same shape")
    return torch.sigmoid(r_chosen - r_rejected)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Reward-model loss ``L_RM = -mean log sigmoid(r_chosen - r_rejected)``.

    ``logsigmoid`` stays finite and exact for huge gaps, where ``log(sigmoid(.))`` gives -inf at
    a gap of -1e4 (sigmoid underflows to 0). Returns ``(loss, stats)`` with the pairwise accuracy
    and the mean reward margin; the loss has the rewards' dtype.

    Example: equal rewards give ``log 2 = 0.6931``; a gap of -1e4 gives 1e4.
    """
    if r_chosen.shape != r_rejected.shape or r_chosen.dim() != 1:
        raise ValueError(f"r_chosen and r_rejected must be 1-D of the same shape, got "
                         f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}")
    margin = r_chosen - r_rejected
    loss = -F.logsigmoid(margin).mean()
    with torch.no_grad():
        stats = {"loss": loss.item(), "accuracy": (margin > 0).float().mean().item(),
                 "margin": margin.mean().item()}
    return loss, stats


def plackett_luce_loss(rewards: torch.Tensor,
                       ranking_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """K-wise reward-model loss: minus the mean Plackett-Luce log-likelihood of B rankings.

    Row b of ``rewards`` scores the replies to prompt b **listed best first**. Plackett-Luce
    reads a ranking as K - 1 choices, each of the best among the replies not yet chosen:

        P(y_1 > y_2 > ... > y_K | x) = prod_i exp(r_i) / sum_{j >= i} exp(r_j)
        L_PL = -mean_b sum_i [r_i - log sum_{j >= i} exp(r_j)]

    The denominators are a log-cum-sum-exp taken from the right (``logcumsumexp`` of the
    flipped row), stable for any reward size. K = 2 is Bradley-Terry: ``-log sigmoid(r_1 - r_2)``.
    A constant added to a row changes nothing (each choice is a softmax).

    Args: rewards (B, K), K >= 2; ranking_mask (B, K) bool, True on the replies of each ranking
    (a prompt with fewer than K replies has padding at the end, which may hold anything, even
    NaN or inf: it changes neither the loss nor its gradient); None: every entry counts. Each
    row must rank at least two replies. Returns ``(loss, stats)``: the loss has the rewards'
    dtype; ``stats["accuracy"]`` is the share of the rankings' pairs that the rewards order
    correctly, ``stats["top1"]`` the share of rankings whose first reply scores highest.

    Example: rewards [[2, 1, 0]] give 0.4076 + 0.3133 = 0.7209 (the last choice is certain);
    rewards [[1, 0]] give -log sigmoid(1) = 0.3133.
    """
    if not isinstance(rewards, torch.Tensor) or not rewards.is_floating_point() \
            or rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be a float (B, K) tensor with K >= 2, got "
                         f"{getattr(rewards, 'shape', type(rewards).__name__)}")
    if ranking_mask is None:
        ranking_mask = torch.ones_like(rewards, dtype=torch.bool)
    check_mask(ranking_mask, rewards, "ranking_mask")
    if (ranking_mask.sum(-1) < 2).any():
        raise ValueError("ranking_mask must keep at least two replies in every row: a ranking "
                         "of one reply says nothing")
    neg_inf = torch.full_like(rewards, -math.inf)
    scores = torch.where(ranking_mask, rewards, neg_inf)                      # (B, K)
    log_rest = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)          # log sum_{j>=i}
    log_choice = torch.where(ranking_mask, scores - log_rest, torch.zeros_like(rewards))
    loss = -log_choice.sum(-1).mean()
    with torch.no_grad():
        k = rewards.shape[1]
        later = torch.ones(k, k, dtype=torch.bool, device=rewards.device).triu(1)   # i < j
        pairs = later & ranking_mask[:, :, None] & ranking_mask[:, None, :]         # (B, K, K)
        right = pairs & (scores[:, :, None] > scores[:, None, :])
        top1 = (scores[:, :1] > scores[:, 1:]).all(-1)
        stats = {"loss": loss.item(), "accuracy": (right.sum() / pairs.sum()).item(),
                 "top1": top1.float().mean().item()}
    return loss, stats


def fit_bradley_terry(wins: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """Maximum-likelihood Bradley-Terry strengths from a table of win counts (Newton's method).

    ``wins[i, j]`` counts the games team i won against team j (the diagonal is ignored). The
    model is ``P(i beats j) = sigmoid(s_i - s_j)`` and the log-likelihood

        L(s) = sum_ij wins[i, j] * log sigmoid(s_i - s_j)

    has gradient ``dL/ds_i = W_i - sum_j n_ij sigmoid(s_i - s_j)``: the wins of team i minus the
    wins the model expects, with ``n_ij = wins[i, j] + wins[j, i]`` games played. L does not
    change when a constant is added to every strength, so the result is centred (mean 0). The
    maximum exists when no group of teams beat every team outside it.

    Args: wins (K, K) non-negative counts; steps: Newton iterations from s = 0 (one step is
    not yet the maximum; 50 are plenty). Returns (K,) float64 strengths, mean 0.

    Example: wins [[0, 3], [1, 0]] gives s = [0.549, -0.549] (s_0 - s_1 = log 3).
    """
    wins = torch.as_tensor(wins, dtype=torch.float64)
    if wins.dim() != 2 or wins.shape[0] != wins.shape[1] or wins.shape[0] < 2:
        raise ValueError(f"wins must be a square (K, K) table with K >= 2, got {tuple(wins.shape)}")
    if not (torch.isfinite(wins).all() and (wins >= 0).all()):
        raise ValueError("wins must hold finite counts >= 0")
    wins = wins * (1 - torch.eye(len(wins), dtype=wins.dtype))          # ignore the diagonal
    games, won = wins + wins.T, wins.sum(1)                               # (K, K), (K,)
    s = torch.zeros(len(wins), dtype=torch.float64)
    for _ in range(steps):
        p = torch.sigmoid(s[:, None] - s[None, :])                        # (K, K) P(i beats j)
        grad = won - (games * p).sum(1)                                   # observed - expected
        curvature = games * p * (1 - p)                                   # (K, K)
        hessian = curvature - torch.diag(curvature.sum(1))                # negative semi-definite
        s = s - torch.linalg.pinv(hessian) @ grad                         # Newton step
        s = s - s.mean()
    return s
