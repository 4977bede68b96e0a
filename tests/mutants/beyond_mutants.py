"""Realistic wrong answers to ``dpo_loss``, ``group_advantages`` and ``ppo_ptx_loss``."""
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------- dpo_loss


def dpo_loss__no_beta(lc, lr, rc, rr, beta):
    return -F.logsigmoid((lc - rc) - (lr - rr)).mean()


def dpo_loss__swapped(lc, lr, rc, rr, beta):
    return -F.logsigmoid(beta * ((lr - rr) - (lc - rc))).mean()


def dpo_loss__adds_reference(lc, lr, rc, rr, beta):
    return -F.logsigmoid(beta * ((lc + rc) - (lr + rr))).mean()


def dpo_loss__no_reference(lc, lr, rc, rr, beta):
    return -F.logsigmoid(beta * (lc - lr)).mean()


def dpo_loss__log_of_sigmoid(lc, lr, rc, rr, beta):
    return -torch.log(torch.sigmoid(beta * ((lc - rc) - (lr - rr)))).mean()


def dpo_loss__sum(lc, lr, rc, rr, beta):
    return -F.logsigmoid(beta * ((lc - rc) - (lr - rr))).sum()


def dpo_loss__sign(lc, lr, rc, rr, beta):
    return F.logsigmoid(beta * ((lc - rc) - (lr - rr))).mean()


def dpo_loss__beta_divides(lc, lr, rc, rr, beta):
    return -F.logsigmoid(((lc - rc) - (lr - rr)) / beta).mean()


def dpo_loss__detached_reference_wrong(lc, lr, rc, rr, beta):
    # gradient only through the chosen reply
    return -F.logsigmoid(beta * ((lc - rc) - (lr - rr).detach())).mean()


def dpo_loss__ratio_not_log_ratio(lc, lr, rc, rr, beta):
    return -F.logsigmoid(beta * (lc / rc - lr / rr)).mean()

# ---------------------------------------------------------------------------- group_advantages


def group_advantages__no_std(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    return (g - g.mean(1, keepdim=True)).reshape(-1)


def group_advantages__sample_std(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).reshape(-1)


def group_advantages__batch_mean(scores, group_size, eps=1e-6):
    return (scores - scores.mean()) / (scores.std(correction=0) + eps)


def group_advantages__strided(scores, group_size, eps=1e-6):
    g = scores.reshape(group_size, -1).T
    c = g - g.mean(1, keepdim=True)
    return (c / (c.pow(2).mean(1, keepdim=True).sqrt() + eps)).T.reshape(-1)


def group_advantages__no_eps(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    c = g - g.mean(1, keepdim=True)
    return (c / c.pow(2).mean(1, keepdim=True).sqrt()).reshape(-1)


def group_advantages__sign(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    c = g.mean(1, keepdim=True) - g
    return (c / (c.pow(2).mean(1, keepdim=True).sqrt() + eps)).reshape(-1)


def group_advantages__grouped_shape(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    c = g - g.mean(1, keepdim=True)
    return c / (c.pow(2).mean(1, keepdim=True).sqrt() + eps)


def group_advantages__global_std(scores, group_size, eps=1e-6):
    g = scores.reshape(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (scores.std(correction=0) + eps)).reshape(-1)


def group_advantages__half_precision(scores, group_size, eps=1e-6):
    g = scores.half().reshape(-1, group_size)
    c = g - g.mean(1, keepdim=True)
    return (c / (c.pow(2).mean(1, keepdim=True).sqrt() + eps)).reshape(-1)

# ---------------------------------------------------------------------------- ppo_ptx_loss


def _lp(logits, ids):
    return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]


def _mask(am):
    real = am.bool()
    return real[:, 1:] & real[:, :-1]


def ppo_ptx_loss__no_shift(pg, logits, ids, am, coef):
    lp = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    real = am.bool()
    return pg - coef * (lp * real).sum() / real.sum()


def ppo_ptx_loss__padding_counts(pg, logits, ids, am, coef):
    return pg - coef * _lp(logits, ids).mean()


def ppo_ptx_loss__sum(pg, logits, ids, am, coef):
    return pg - coef * (_lp(logits, ids) * _mask(am)).sum()


def ppo_ptx_loss__coef_on_ppo(pg, logits, ids, am, coef):
    m = _mask(am)
    return coef * pg - (_lp(logits, ids) * m).sum() / m.sum()


def ppo_ptx_loss__minus(pg, logits, ids, am, coef):
    m = _mask(am)
    return pg + coef * (_lp(logits, ids) * m).sum() / m.sum()


def ppo_ptx_loss__pad_predicts(pg, logits, ids, am, coef):
    m = am.bool()[:, 1:]
    return pg - coef * (_lp(logits, ids) * m).sum() / m.sum()


def ppo_ptx_loss__multiply_mask_nan(pg, logits, ids, am, coef):
    m = _mask(am)
    return pg - coef * (_lp(logits, ids) * m).sum() / m.numel()


def ppo_ptx_loss__per_row_mean(pg, logits, ids, am, coef):
    m = _mask(am)
    return pg - coef * ((_lp(logits, ids) * m).sum(1) / m.sum(1).clamp(min=1)).mean()


def ppo_ptx_loss__detached_pg(pg, logits, ids, am, coef):
    m = _mask(am)
    return pg.detach() - coef * (_lp(logits, ids) * m).sum() / m.sum()
