"""Correct solutions written differently from the references: every hidden test must pass on
them (tests/test_hidden_strength.py). They guard against hidden tests that are stricter than the
notebooks' spec: bare loss instead of (loss, stats), float32 arithmetic, loops instead of
vectorised code, other but equivalent formulas, numpy results, (alpha, beta) pairs.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

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


def response_logprob__logsumexp_float32(logits, input_ids, response_mask):
    x = logits.float()
    picked = x[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    logp = picked - torch.logsumexp(x[:, :-1], -1)
    return (logp * response_mask[:, 1:].float()).sum(-1)

# ---------------------------------------------------------------------------- notebook 01


def sft_loss__cross_entropy_ignore_index(logits, input_ids, response_mask):
    labels = input_ids[:, 1:].masked_fill(~response_mask[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=-100)


def sft_loss__float32_with_stats(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = response_mask[:, 1:].float()
    loss = -(token * mask).sum() / mask.sum()
    return loss, {"nll": loss.item(), "tokens": int(mask.sum())}

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
