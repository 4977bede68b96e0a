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


# ---------------------------------------------------------------------------- issue #25 edge cases


def dpo_loss__bce_float32(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected, beta):
    """Was honest before issue #25: float32 results for float64 inputs."""
    r_c = beta * (logp_chosen.float() - logp_ref_chosen.float())
    r_r = beta * (logp_rejected.float() - logp_ref_rejected.float())
    return F.binary_cross_entropy_with_logits(r_c - r_r, torch.ones_like(r_c))


def ppo_ptx_loss__float_mask(pg_loss, logits_ptx, input_ids_ptx, attention_mask_ptx, ptx_coef):
    """Was honest before issue #25: the padding is multiplied by 0, and 0 · NaN is NaN."""
    m = (attention_mask_ptx[:, 1:] * attention_mask_ptx[:, :-1]).to(logits_ptx.dtype)
    lp = torch.log_softmax(logits_ptx[:, :-1], -1).gather(-1, input_ids_ptx[:, 1:, None])[..., 0]
    return pg_loss - ptx_coef * (lp * m).sum() / m.sum()


def dpo_loss__float32_margin(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected,
                             beta):
    margin = beta * ((logp_chosen - logp_ref_chosen) - (logp_rejected - logp_ref_rejected))
    return -F.logsigmoid(margin.float()).mean()


def group_advantages__ignores_eps(scores, group_size, eps=1e-6):
    """eps is documented, but a constant is used."""
    groups = scores.reshape(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    return (centred / (groups.std(dim=1, unbiased=False, keepdim=True) + 1e-6)).reshape(-1)


def group_advantages__float32_buffer(scores, group_size, eps=1e-6):
    out = torch.zeros(len(scores))
    for start in range(0, len(scores), group_size):
        g = scores[start:start + group_size]
        out[start:start + group_size] = (g - g.mean()) / (g.std(unbiased=False) + eps)
    return out


def ppo_ptx_loss__float32_and_mask_product(pg_loss, logits_ptx, input_ids_ptx,
                                           attention_mask_ptx, ptx_coef):
    """The notebook's solution before issue #25: ``.float()`` and a mask product."""
    logp = torch.log_softmax(logits_ptx[:, :-1].float(), dim=-1)
    logp = logp.gather(-1, input_ids_ptx[:, 1:].unsqueeze(-1)).squeeze(-1)
    real = attention_mask_ptx.bool()
    counted = real[:, 1:] & real[:, :-1]
    return pg_loss + ptx_coef * -(logp * counted).sum() / counted.sum()


def ppo_ptx_loss__mean_of_row_means(pg_loss, logits_ptx, input_ids_ptx, attention_mask_ptx,
                                    ptx_coef):
    """Averages each row, then the rows: a row that is all padding gives 0/0."""
    logp = torch.log_softmax(logits_ptx[:, :-1], -1).gather(-1, input_ids_ptx[:, 1:, None])[..., 0]
    real = attention_mask_ptx.bool()
    counted = real[:, 1:] & real[:, :-1]
    rows = torch.where(counted, logp, 0.0).sum(1) / counted.sum(1)
    return pg_loss - ptx_coef * rows.mean()

