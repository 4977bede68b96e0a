"""Checks of notebooks 00 and 01: the log-probability of a response (the shift) and the SFT loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rlhf_lab.course.checks.harness import (
    _call,
    _call_live,
    _close,
    _expect,
    _Fail,
    _fmt,
    _loss,
    _needs_grad,
    _run,
    _tensor,
)
from rlhf_lab.equations import losses

__all__ = ['check_response_logprob', 'check_sft_loss']


def _lm_case(seed: int = 0, scale: float = 2.0):
    """Random logits (3, 8, 7) and tokens; prompt = 3 tokens; responses of 4, 2 and 5 tokens."""
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(3, 8, 7, generator=g, dtype=torch.float64)
    input_ids = torch.randint(7, (3, 8), generator=g)
    response_mask = torch.zeros(3, 8, dtype=torch.bool)
    for row, length in enumerate((4, 2, 5)):
        response_mask[row, 3:3 + length] = True
    return logits, input_ids, response_mask


def _lm_variants(logits, ids, mask):
    """Token log-probs of the common mistakes, each with its mask: (logp (B, *), mask, message)."""
    lsm = F.log_softmax(logits, -1)
    gather = lambda lp, tok: lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)
    right = gather(lsm[:, :-1], ids[:, 1:])
    return [
        (gather(lsm, ids), mask,
         "off by one: you scored token t with the logits at position t, but the logits at t "
         "predict the NEXT token: pair logits[:, :-1] with input_ids[:, 1:]"),
        (gather(lsm[:, 1:], ids[:, :-1]), mask[:, :-1],
         "you shifted the wrong way: the logits at t predict token t+1, so pair logits[:, :-1] "
         "with input_ids[:, 1:]"),
        (right, mask[:, :-1],
         "your mask is one step off: after the shift the labels are input_ids[:, 1:], and the "
         "mask that lines up with them is response_mask[:, 1:]"),
        (right, torch.ones_like(mask[:, 1:]),
         "you counted every token: only the response tokens (response_mask) belong to y, not "
         "the prompt or the padding"),
        (gather(logits[:, :-1], ids[:, 1:]), mask[:, 1:],
         "you used the raw logits: take log_softmax over the vocabulary (last dim) first"),
    ]


def _perturb_outside(logits, ids, mask, seed=1):
    """Change the tokens outside the response and the logits that do not predict a response
    token: a correct function gives the same result."""
    g = torch.Generator().manual_seed(seed)
    predicts_response = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)  # (B, T)
    noise = 5 * torch.randn(logits.shape, generator=g, dtype=logits.dtype)
    logits2 = torch.where(predicts_response.unsqueeze(-1), logits, logits + noise)
    ids2 = torch.where(mask, ids, torch.randint(logits.shape[-1], ids.shape, generator=g))
    return logits2, ids2


def check_response_logprob(fn) -> bool:
    """Check ``response_logprob(logits, input_ids, response_mask) -> (B,)``: log π(y|x)."""
    logits, ids, mask = _lm_case()
    want = losses.response_logprob(logits, ids, mask)

    def wrong(logits, ids, mask):
        right = losses.response_logprob(logits, ids, mask)
        return [((lp * m).sum(-1), msg) for lp, m, msg in _lm_variants(logits, ids, mask)] + [
            (right / mask[:, 1:].sum(-1), "you averaged the token log-probabilities: "
             "log π(y|x) is their sum"),
            (-right, "the sign is flipped: log-probabilities are <= 0")]

    def uniform():
        case = (torch.zeros(1, 5, 4), torch.tensor([[1, 2, 3, 0, 2]]),
                torch.tensor([[False, False, True, True, True]]))
        out = _tensor(_call(fn, *case), "your result", (1,))
        _expect(out, [3 * math.log(0.25)], "with uniform logits over 4 words and a 3-token "
                "response (3·log(1/4))", wrong(*case))

    def random_case():
        out = _tensor(_call(fn, logits, ids, mask), "your result", (3,))
        _expect(out, want, "on random logits (3, 8, 7) with responses of 4, 2 and 5 tokens",
                wrong(logits, ids, mask))

    def outside_tokens():                         # against the student's own unchanged result
        logits2, ids2 = _perturb_outside(logits, ids, mask)
        mine, out = _call(fn, logits, ids, mask), _call(fn, logits2, ids2, mask)
        if not _close(out, mine):
            raise _Fail(f"changing the prompt/padding tokens (and the logits that do not predict "
                        f"a response token) changed your result: {_fmt(mine)} vs {_fmt(out)}")

    def large_logits():
        out = _call(fn, 1e3 * logits.float(), ids, mask)
        if not torch.isfinite(torch.as_tensor(out)).all():
            raise _Fail("with large logits (x1000) your result is not finite: log(softmax(x)) "
                        "underflows to log(0) = -inf; use F.log_softmax")

    def gradient():
        x = logits.clone().requires_grad_(True)
        _needs_grad(_call_live(fn, x, ids, mask), x, "your result")

    return _run("response_logprob", [uniform, random_case, outside_tokens, large_logits,
                                     gradient], fn)


def check_sft_loss(fn) -> bool:
    """Check ``sft_loss(logits, input_ids, response_mask) -> loss or (loss, stats)``."""
    logits, ids, mask = _lm_case(seed=2)
    want, _ = losses.sft_loss(logits, ids, mask)

    def uniform():
        loss = _loss(_call(fn, torch.zeros(2, 6, 5), torch.tensor([[1, 2, 3, 4, 0, 0]] * 2),
                           torch.tensor([[False, False, True, True, False, False],
                                         [False, True, True, True, True, True]])))
        _expect(loss, math.log(5), "with uniform logits over 5 words (log 5)",
                [(-math.log(5), "your loss is negative: it is the NEGATIVE log-likelihood")])

    def random_case():
        loss = _loss(_call(fn, logits, ids, mask))
        wrong = [(-(lp * m).sum() / m.sum(), msg) for lp, m, msg in _lm_variants(logits, ids, mask)]
        m = mask[:, 1:]
        wrong += [(want * m.sum(), "you summed over tokens: average over the response tokens "
                   "(a sum grows with the batch and the reply lengths)"),
                  (want * m.sum() / len(m), "you divided by the batch size: average over the "
                   "response tokens of the batch"),
                  (-want, "your loss is negative: it is the NEGATIVE log-likelihood"),
                  (-(losses.response_logprob(logits, ids, mask) / m.sum(-1)).mean(),
                   "you averaged each row, then the rows: average over every response token of "
                   "the batch at once (rows with more tokens weigh more)")]
        _expect(loss, want, "on random logits (3, 8, 7) with responses of 4, 2 and 5 tokens",
                wrong)

    def outside_tokens():                         # against the student's own unchanged loss
        logits2, ids2 = _perturb_outside(logits, ids, mask)
        mine, loss = _loss(_call(fn, logits, ids, mask)), _loss(_call(fn, logits2, ids2, mask))
        if not _close(loss, mine):
            raise _Fail(f"masked tokens changed your loss: changing the prompt and padding gave "
                        f"{_fmt(loss.item())} instead of {_fmt(mine.item())}")

    def gradient():
        x = logits.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, x, ids, mask)), x, "your loss")
        predicts_response = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
        leak = grad[~predicts_response].abs().max().item()
        if leak > 1e-9:
            raise _Fail(f"masked tokens get a gradient (up to {leak:.3g}): only the logits that "
                        f"predict a response token may influence training")

    def large_logits():
        loss = _loss(_call(fn, 1e3 * logits.float(), ids, mask))
        if not torch.isfinite(loss):
            raise _Fail("with large logits (x1000) your loss is not finite: log(softmax(x)) "
                        "underflows; use F.log_softmax")

    return _run("sft_loss", [uniform, random_case, outside_tokens, gradient, large_logits], fn)
