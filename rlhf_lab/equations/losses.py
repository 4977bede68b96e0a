"""Losses of the first two stages, as pure tensor functions.

* :func:`response_logprob` — log pi(y | x) of a whole response (notebook 00);
* :func:`sft_loss` — masked, response-only next-token loss (stage 1, notebook 01);
* :func:`bt_probability`, :func:`bradley_terry_loss` — the Bradley-Terry model (stage 2, notebook 02);
* :func:`fit_bradley_terry` — Bradley-Terry strengths of a league table by maximum likelihood
  (notebook 02: the model's original use, ranking sports teams).

The PPO-stage equations live in :mod:`rlhf_lab.equations.rl_losses`; the logits/labels shift lives in
:func:`rlhf_lab.equations.masking.gather_logprobs` and nowhere else.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_lab.equations.masking import check_mask, gather_logprobs, masked_mean, masked_sum

__all__ = ["response_logprob", "sft_loss", "bt_probability", "bradley_terry_loss",
           "fit_bradley_terry"]


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
