"""Realistic wrong answers to ``response_logprob(logits, input_ids, response_mask) -> (B,)``.

Each function is named ``<exercise>__<mistake>``; the hidden tests of that exercise must catch
every one (tests/test_hidden_strength.py).
"""
import torch
import torch.nn.functional as F


def _pick(logp, tokens):
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def response_logprob__no_shift(logits, input_ids, response_mask):
    logp = F.log_softmax(logits, -1)
    return (_pick(logp, input_ids) * response_mask).sum(-1)


def response_logprob__shift_wrong_way(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, 1:], -1)
    return (_pick(logp, input_ids[:, :-1]) * response_mask[:, :-1]).sum(-1)


def response_logprob__mask_not_shifted(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1], -1)
    return (_pick(logp, input_ids[:, 1:]) * response_mask[:, :-1]).sum(-1)


def response_logprob__no_mask(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1], -1)
    return _pick(logp, input_ids[:, 1:]).sum(-1)


def response_logprob__raw_logits(logits, input_ids, response_mask):
    return (_pick(logits[:, :-1], input_ids[:, 1:]) * response_mask[:, 1:]).sum(-1)


def response_logprob__log_of_softmax(logits, input_ids, response_mask):
    logp = torch.log(torch.softmax(logits[:, :-1], -1))
    return torch.where(response_mask[:, 1:], _pick(logp, input_ids[:, 1:]), 0.0).sum(-1)


def response_logprob__softmax_wrong_dim(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1], 1)
    return (_pick(logp, input_ids[:, 1:]) * response_mask[:, 1:]).sum(-1)


def response_logprob__mean_not_sum(logits, input_ids, response_mask):
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    m = response_mask[:, 1:]
    return (logp * m).sum(-1) / m.sum(-1).clamp(min=1)


def response_logprob__sign_flipped(logits, input_ids, response_mask):
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    return -(logp * response_mask[:, 1:]).sum(-1)


def response_logprob__both_ends_of_mask(logits, input_ids, response_mask):
    """Keeps a label only if it AND the token before it are response tokens: drops the first."""
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    m = response_mask[:, 1:] & response_mask[:, :-1]
    return (logp * m).sum(-1)


def response_logprob__per_token_not_summed(logits, input_ids, response_mask):
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    return logp * response_mask[:, 1:]


def response_logprob__detached_loop(logits, input_ids, response_mask):
    """Correct values, but built from Python floats: no gradient."""
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    return torch.tensor([float((logp[b] * response_mask[b, 1:]).sum().item())
                         for b in range(len(logp))], dtype=logits.dtype)


def response_logprob__nan_on_empty_row(logits, input_ids, response_mask):
    """Averages then multiplies back by the count: 0/0 on an empty row."""
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    m = response_mask[:, 1:]
    return (logp * m).sum(-1) / m.sum(-1) * m.sum(-1)


def response_logprob__float16_inside(logits, input_ids, response_mask):
    """Computes in half precision "to save memory"."""
    logp = _pick(F.log_softmax(logits[:, :-1].half().float(), -1), input_ids[:, 1:])
    return (logp.half().float() * response_mask[:, 1:]).sum(-1)


def response_logprob__inplace_on_logits(logits, input_ids, response_mask):
    """Zeroes the logits that predict no response token in place (breaks autograd on a leaf)."""
    predicts = torch.cat([response_mask[:, 1:], torch.zeros_like(response_mask[:, :1])], 1)
    logits[~predicts] = 0.0
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    return (logp * response_mask[:, 1:]).sum(-1)


# ---------------------------------------------------------------------------- issue #25 edge cases


def response_logprob__multiplies_by_the_mask(logits, input_ids, response_mask):
    """0 · NaN = NaN: a NaN logit on the padding leaks into the sum."""
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    return (logp * response_mask[:, 1:]).sum(-1)


def response_logprob__logsumexp_float32(logits, input_ids, response_mask):
    """Was honest before issue #25: float32 arithmetic, and the mask multiplied in."""
    x = logits.float()
    picked = x[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    logp = picked - torch.logsumexp(x[:, :-1], -1)
    return (logp * response_mask[:, 1:].float()).sum(-1)


def response_logprob__float32_cast(logits, input_ids, response_mask):
    """The package's old gather_logprobs: ``.float()`` first, so float64 logits lose precision."""
    logp = _pick(F.log_softmax(logits[:, :-1].float(), -1), input_ids[:, 1:])
    return torch.where(response_mask[:, 1:], logp, 0.0).sum(-1)


def response_logprob__float32_cast_back(logits, input_ids, response_mask):
    logp = _pick(F.log_softmax(logits[:, :-1].float(), -1), input_ids[:, 1:])
    return torch.where(response_mask[:, 1:], logp, 0.0).sum(-1).to(logits.dtype)


def response_logprob__nan_to_num_after_sum(logits, input_ids, response_mask):
    """Patches the NaN instead of keeping the padding out: the rows that saw it become 0."""
    logp = _pick(F.log_softmax(logits[:, :-1], -1), input_ids[:, 1:])
    return torch.nan_to_num((logp * response_mask[:, 1:]).sum(-1), nan=0.0)
