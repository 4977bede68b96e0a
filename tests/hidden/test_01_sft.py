"""Hidden tests of notebook 01: ``sft_loss(logits, input_ids, response_mask) -> loss or (loss,
stats)``.

L_SFT = -mean over every response token of the batch of log π(y_t | x, y_<t): one token mean
(rows with more tokens weigh more), prompt and padding masked out, labels ``input_ids[:, 1:]``.
Logits that score no response token may hold anything, NaN and ±inf included; float64 logits give
a float64 loss.
"""
import math

import torch
import torch.nn.functional as F
from _helpers import case, check_float64, check_grad, expect, loss_of, poison, rng

NAME = "sft_loss"


def _case(seed=0, dtype=torch.float64, lengths=((2, 7), (5, 1), (1, 4)), T=9, V=13):
    """Rows of T tokens with a response of ``length`` tokens starting at ``start``."""
    g = rng(seed)
    logits = 2.5 * torch.randn(len(lengths), T, V, generator=g, dtype=torch.float64)
    ids = torch.randint(V, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    for row, (start, length) in enumerate(lengths):
        mask[row, start:start + length] = True
    return logits.to(dtype), ids, mask


def _token_logp(logits, ids):
    return F.log_softmax(logits.double()[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]


def _want(logits, ids, mask):
    """-mean of the response tokens' log-probabilities, written as a loop."""
    total, count = 0.0, 0
    logits = logits.double()
    for b in range(len(ids)):
        for t in range(1, ids.shape[1]):
            if mask[b, t]:
                total -= float(F.log_softmax(logits[b, t - 1], -1)[ids[b, t]])
                count += 1
    return torch.tensor(total / count, dtype=torch.float64)


def _mistakes(logits, ids, mask):
    lp, m = _token_logp(logits, ids), mask[:, 1:].double()
    nll = -(lp * m).sum()
    rows = m.sum(-1)
    row_means = -(lp * m).sum(-1) / rows.clamp(min=1)
    return [
        (nll, "you summed over tokens: average over the response tokens (a sum grows with the "
         "batch and the reply lengths)"),
        (nll / len(m), "you divided by the batch size: average over the response tokens"),
        (row_means[rows > 0].mean(), "you averaged each row, then the rows: take one mean over "
         "every response token of the batch (rows with more tokens weigh more)"),
        (row_means.mean(), "you averaged each row, then the rows: take one mean over every "
         "response token of the batch (rows with more tokens weigh more)"),
        (nll / m.numel(), "you averaged over every position, padding and prompt included: divide "
         "by the number of response tokens"),
        (-(lp * mask[:, :-1]).sum() / mask[:, :-1].sum(), "your mask is one step off: the mask "
         "that lines up with the labels input_ids[:, 1:] is response_mask[:, 1:]"),
        (-nll / m.sum(), "your loss is negative: it is the NEGATIVE log-likelihood"),
    ]


def test_sft_loss__token_mean_over_ragged_batch(student):
    """One mean over all response tokens of rows with 7, 1 and 4 tokens."""
    logits, ids, mask = _case()
    loss = loss_of(student.call(NAME, logits, ids, mask))
    expect(loss, _want(logits, ids, mask), "on rows whose responses have 7, 1 and 4 tokens",
           _mistakes(logits, ids, mask), atol=1e-5)


def test_sft_loss__empty_row_changes_nothing(student):
    """Adding a row with no response token (all masked) leaves the loss as it was."""
    logits, ids, mask = _case(seed=1, lengths=((2, 6), (3, 2), (0, 0)))
    loss = loss_of(student.call(NAME, logits, ids, mask))
    if not math.isfinite(float(loss)):
        raise AssertionError("with a row whose response_mask is all False your loss is not "
                             "finite: a row without response tokens must simply not count")
    expect(loss, _want(logits, ids, mask), "with a third row that has no response token "
           "(it must not count at all)", _mistakes(logits, ids, mask), atol=1e-5)
    alone = loss_of(student.call(NAME, logits[:2], ids[:2], mask[:2]))
    expect(loss, alone, "adding a row without response tokens changed your loss", atol=1e-6)


def test_sft_loss__one_token_batch_of_one(student):
    """A batch of one whose response is a single token: the loss is that token's -log p."""
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [5.0, -5.0, 0.0, 0.0],
                            [1.0, 1.0, 1.0, 1.0]]], dtype=torch.float64)
    ids = torch.tensor([[3, 1, 0]])
    mask = torch.tensor([[False, True, False]])
    loss = loss_of(student.call(NAME, logits, ids, mask))
    expect(loss, -F.log_softmax(logits[0, 0], -1)[1], "for one row whose only response token "
           "(token 1, at position 1) is scored by the logits at position 0",
           [(-F.log_softmax(logits[0, 1], -1)[1], "off by one: the logits at t predict the token "
             "at t+1")], atol=1e-6)


def test_sft_loss__gradient(student):
    """The gradient with respect to the logits equals autograd of the reference, and is exactly 0
    on every position that predicts no response token."""
    logits, ids, mask = _case(seed=2)
    x = logits.clone().requires_grad_(True)
    lp = F.log_softmax(x[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    (-(lp * mask[:, 1:]).sum() / mask[:, 1:].sum()).backward()
    grad = check_grad(student, NAME, (logits, ids, mask), 0, x.grad,
                      "for the gradient of your loss with respect to the logits", atol=1e-7)
    predicts_response = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
    assert float(grad[~predicts_response].abs().max()) == 0.0, \
        "logits that predict no response token received a gradient"


def test_sft_loss__padding_content_is_ignored(student):
    """Prompt and padding tokens replaced, the logits that predict them set to ±1e4: the loss
    stays the same."""
    logits, ids, mask = _case(seed=3, dtype=torch.float32)
    want = loss_of(student.call(NAME, logits, ids, mask))
    g = rng(13)
    predicts_response = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
    wild = 1e4 * torch.randn(logits.shape, generator=g)
    logits2 = torch.where(predicts_response.unsqueeze(-1), logits, wild)
    ids2 = torch.where(mask, ids, torch.zeros_like(ids))
    got = loss_of(student.call(NAME, logits2, ids2, mask))
    if not math.isfinite(float(got)):
        raise AssertionError("with padding logits of size 1e4 your loss is not finite: masked "
                             "positions must not reach the result (and use F.log_softmax)")
    expect(got, want, "changing the prompt/padding tokens and the logits that predict them "
           "changed your loss; only response tokens count", atol=1e-5)


def test_sft_loss__huge_logits_and_float32(student):
    """float32 logits of size 1e3 and 1e4: finite and exact (no log(softmax) underflow)."""
    logits, ids, mask = _case(seed=4, dtype=torch.float32)
    for scale in (1.0, 1e3, 1e4):
        big = logits * scale
        loss = loss_of(student.call(NAME, big, ids, mask))
        if not math.isfinite(float(loss)):
            raise AssertionError(f"with float32 logits of size ~{scale:g} your loss is not "
                                 f"finite: log(softmax(x)) underflows to log(0); use "
                                 f"F.log_softmax or F.cross_entropy")
        expect(loss, _want(big, ids, mask), f"with float32 logits of size ~{scale:g}",
               _mistakes(big, ids, mask), rtol=1e-4, atol=1e-4 * scale)


def test_sft_loss__repeating_the_batch(student):
    """The batch twice over is the same mean; a batch of short and long replies weighs tokens,
    not rows."""
    logits, ids, mask = _case(seed=5, lengths=((1, 8), (6, 2)))
    once = loss_of(student.call(NAME, logits, ids, mask))
    twice = loss_of(student.call(NAME, torch.cat([logits, logits]), torch.cat([ids, ids]),
                                 torch.cat([mask, mask])))
    expect(twice, once, "the same batch repeated twice gave a different loss: a mean over tokens "
           "does not grow with the batch", atol=1e-6)
    expect(once, _want(logits, ids, mask), "on rows whose responses have 8 and 2 tokens",
           _mistakes(logits, ids, mask), atol=1e-5)


def test_sft_loss__response_from_the_first_position(student):
    """A row whose response starts at position 0 (no prompt): that first token has no logits
    before it, so it is not scored and not counted; the mean runs over the tokens that are."""
    logits, ids, mask = _case(seed=6, lengths=((0, 4), (3, 3)), T=6)
    loss = loss_of(student.call(NAME, logits, ids, mask))
    lp, m = _token_logp(logits, ids), mask[:, 1:].double()
    expect(loss, _want(logits, ids, mask), "for a row whose response starts at position 0 (only "
           "tokens 1.. can be scored: use response_mask[:, 1:] both to select and to count)",
           [(-(lp * m).sum() / mask.sum(), "you counted the tokens with response_mask instead "
             "of response_mask[:, 1:]: the first position has no prediction and must not count")]
           + _mistakes(logits, ids, mask), atol=1e-6)


def _reference_grad(logits, ids, mask):
    x = logits.clone().requires_grad_(True)
    lp = F.log_softmax(x[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    (-(lp * mask[:, 1:]).sum() / mask[:, 1:].sum()).backward()
    return x.grad


def test_sft_loss__padding_holding_nan_and_inf(student):
    """Logits of NaN, +inf and -inf on the padding (after each response, and a left pad): the
    loss is finite and exact, and so is its gradient on the logits that score the response."""
    logits, ids, mask = _case(seed=7, lengths=((2, 5), (4, 2), (1, 4)))
    last = torch.where(mask, torch.arange(9), -1).amax(1, keepdim=True)         # (B, 1)
    padding = torch.arange(9) > last                                            # (B, T)
    padding[1, 0] = True                                  # row 1: a left pad, then its prompt
    bad = poison(logits, ~padding.unsqueeze(-1))
    with case("with padded positions whose logits hold NaN, +inf and -inf"):
        loss = loss_of(student.call(NAME, bad, ids, mask))
        if not math.isfinite(float(loss)):
            raise AssertionError(f"your loss is {float(loss)}: a padded position reached it "
                                 f"(0 · NaN is NaN: pick the response tokens with torch.where "
                                 f"or ignore_index, rather than multiplying by the mask)")
        expect(loss, _want(logits, ids, mask), "your loss changed", atol=1e-6)
        _, grads = student.grad(NAME, (bad, ids, mask), (0,))
        if grads[0] is None:
            raise AssertionError("your loss does not depend on the logits")
        scoring = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
        grad = grads[0].double()[scoring]
        if not bool(torch.isfinite(grad).all()):
            raise AssertionError("the gradient on the logits that score response tokens holds "
                                 "NaN or inf: the padding leaked into it")
        expect(grad, _reference_grad(logits, ids, mask)[scoring], "the gradient on the logits "
               "that score response tokens is wrong", atol=1e-7)


def test_sft_loss__float64_stays_float64(student):
    """float64 logits give a float64 loss, exact to float64 precision (float32: float32)."""
    logits, ids, mask = _case(seed=8)
    check_float64(student, NAME, (logits, ids, mask), "with float64 logits",
                  _want(logits, ids, mask))
