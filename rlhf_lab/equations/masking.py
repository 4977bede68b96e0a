"""Masks, the logits/labels shift, and masked reductions.

One mask convention holds in the whole package: ``response_mask`` is a **bool** tensor that is
True where a token counts (a real response token) and False on the prompt, on padding and on
everything after the end-of-sequence token. Every token mean goes through :func:`masked_mean`.

The shift between logits and labels lives in exactly one place, :func:`gather_logprobs`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gather_logprobs", "response_logprobs", "response_logits", "masked_sum", "masked_mean",
           "masked_var", "masked_whiten", "entropy_from_logits", "check_mask"]


def check_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "response_mask") -> torch.Tensor:
    """Validate a bool mask against a tensor of the same shape; return it unchanged."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True where a token counts), "
                         f"got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)} but the values it masks have "
                         f"shape {tuple(like.shape)}")
    return mask


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token under a causal LM: the shift, drawn once.

    A causal LM reads position t and predicts the token at t+1::

        tokens   :  x0    x1    x2    x3          (B, T)
        logits   :  l0    l1    l2    l3          (B, T, V)  l_t scores the token at t+1
        returns  :  lp(x1|x0) lp(x2|x<2) lp(x3|x<3)   (B, T-1)

    so ``out[:, t] = log softmax(logits[:, t])[tokens[:, t+1]]``. A mask over ``tokens`` lines up
    with the result as ``mask[:, 1:]``. Half-precision logits are scored in float32; float32 and
    float64 logits keep their dtype.

    Example: with uniform logits over V = 4 words every entry is ``log(1/4) = -1.386``.
    """
    if logits.dim() != 3 or tokens.dim() != 2 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits must be (B, T, V) and tokens (B, T); got logits "
                         f"{tuple(logits.shape)} and tokens {tuple(tokens.shape)}")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()                                          # bf16 / fp16 -> fp32
    logp_all = F.log_softmax(logits[:, :-1], dim=-1)                     # (B, T-1, V)
    return logp_all.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)


def response_logprobs(logits: torch.Tensor, tokens: torch.Tensor, prompt_len: int,
                      temperature: float = 1.0) -> torch.Tensor:
    """``log π(y_t | s_t)`` of the response tokens (columns ``prompt_len:`` of ``tokens``) at a
    sampling temperature: (B, R). Response token j is scored by the logits at ``prompt_len - 1 + j``
    (:func:`gather_logprobs` does the shift)."""
    return gather_logprobs(logits / temperature, tokens)[:, prompt_len - 1:]


def response_logits(logits: torch.Tensor, prompt_len: int, temperature: float = 1.0) -> torch.Tensor:
    """The logits (B, P+R, V) that score the response tokens, at a sampling temperature:
    (B, R, V), position ``prompt_len - 1 + j`` for response token j."""
    return logits[:, prompt_len - 1:-1] / temperature


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is True (masked entries may hold NaN or inf)."""
    check_mask(mask, values, "mask")
    zeros = torch.zeros((), dtype=values.dtype, device=values.device)
    kept = torch.where(mask, values, zeros)
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is True.

    ``dim=None`` averages over every kept token of the batch (the token mean used by the losses);
    ``dim=-1`` gives one mean per row. A row (or batch) with no kept token gives 0, not NaN.

    Example: values [[1, 2, 9]], mask [[True, True, False]] -> 1.5.
    """
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1).to(values.dtype)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance of the kept entries (population variance, over the whole batch)."""
    mean = masked_mean(values, mask)
    return masked_mean((values - mean) ** 2, mask)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """Normalise the kept entries to mean 0 (if ``shift_mean``) and variance 1.

    Masked entries are returned as 0 so they cannot leak into a later sum.
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask, out, torch.zeros_like(out))


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy ``H = -sum_v p_v log p_v`` of the softmax of ``logits`` (..., V) -> (...).

    Example: uniform logits over V = 4 give ``log 4 = 1.386``.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
