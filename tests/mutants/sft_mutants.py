"""Realistic wrong answers to ``sft_loss(logits, input_ids, response_mask) -> loss``."""
import torch
import torch.nn.functional as F


def _token_logp(logits, input_ids):
    logp = F.log_softmax(logits[:, :-1], -1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)       # (B, T-1)


def sft_loss__sum_over_tokens(logits, input_ids, response_mask):
    return -(_token_logp(logits, input_ids) * response_mask[:, 1:]).sum()


def sft_loss__divide_by_batch_size(logits, input_ids, response_mask):
    return -(_token_logp(logits, input_ids) * response_mask[:, 1:]).sum() / len(input_ids)


def sft_loss__row_mean_then_mean(logits, input_ids, response_mask):
    m = response_mask[:, 1:]
    per_row = (_token_logp(logits, input_ids) * m).sum(-1) / m.sum(-1)
    return -per_row.mean()


def sft_loss__row_mean_then_mean_safe(logits, input_ids, response_mask):
    m = response_mask[:, 1:]
    per_row = (_token_logp(logits, input_ids) * m).sum(-1) / m.sum(-1).clamp(min=1)
    return -per_row[m.any(-1)].mean()


def sft_loss__mean_over_padding(logits, input_ids, response_mask):
    """The mask as a float, but the mean still runs over every position."""
    return -(_token_logp(logits, input_ids) * response_mask[:, 1:].float()).mean()


def sft_loss__no_shift(logits, input_ids, response_mask):
    logp = F.log_softmax(logits, -1).gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
    return -(logp * response_mask).sum() / response_mask.sum()


def sft_loss__mask_not_shifted(logits, input_ids, response_mask):
    m = response_mask[:, :-1]
    return -(_token_logp(logits, input_ids) * m).sum() / m.sum()


def sft_loss__no_mask(logits, input_ids, response_mask):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           input_ids[:, 1:].reshape(-1))


def sft_loss__sign_flipped(logits, input_ids, response_mask):
    m = response_mask[:, 1:]
    return (_token_logp(logits, input_ids) * m).sum() / m.sum()


def sft_loss__log_of_softmax(logits, input_ids, response_mask):
    logp = torch.log(torch.softmax(logits[:, :-1], -1))
    token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    m = response_mask[:, 1:]
    return -torch.where(m, token, 0.0).sum() / m.sum()


def sft_loss__item_inside(logits, input_ids, response_mask):
    m = response_mask[:, 1:]
    loss = -(_token_logp(logits, input_ids) * m).sum() / m.sum()
    return torch.tensor(loss.item()), {"nll": loss.item()}


def sft_loss__nan_padding_by_multiply(logits, input_ids, response_mask):
    """Masks by multiplying with the mask AFTER taking logs of a clamped softmax."""
    p = torch.softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    m = response_mask[:, 1:]
    return -(torch.log(p.clamp(min=1e-12)) * m).sum() / m.sum()


def sft_loss__cross_entropy_prompt_only_ignored(logits, input_ids, response_mask):
    """Ignores the prompt with -100 but forgets the padding after the response."""
    labels = input_ids[:, 1:].clone()
    first = response_mask.float().argmax(-1)                                  # response start
    positions = torch.arange(input_ids.shape[1] - 1)
    labels[positions[None, :] + 1 < first[:, None]] = -100
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=-100)


def sft_loss__count_with_unshifted_mask(logits, input_ids, response_mask):
    token = _token_logp(logits, input_ids)
    return -(token * response_mask[:, 1:]).sum() / response_mask.sum()


def sft_loss__softmax_over_time(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1], 1)
    token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    m = response_mask[:, 1:]
    return -(token * m).sum() / m.sum()


# ---------------------------------------------------------------------------- issue #25 edge cases


def sft_loss__multiplies_by_the_mask(logits, input_ids, response_mask):
    """0 · NaN = NaN: a NaN logit on the padding leaks into the loss."""
    logp = F.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None])[..., 0]
    mask = response_mask[:, 1:].to(logp.dtype)
    return -(logp * mask).sum() / mask.sum()


def sft_loss__float32_with_stats(logits, input_ids, response_mask):
    """Was honest before issue #25: float32 arithmetic, and the mask multiplied in."""
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = response_mask[:, 1:].float()
    loss = -(token * mask).sum() / mask.sum()
    return loss, {"nll": loss.item(), "tokens": int(mask.sum())}


def sft_loss__cross_entropy_float32(logits, input_ids, response_mask):
    labels = input_ids[:, 1:].masked_fill(~response_mask[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                           labels.reshape(-1), ignore_index=-100)

