"""Hidden tests of notebook 00: ``response_logprob(logits, input_ids, response_mask) -> (B,)``.

log π(y|x) = Σ_t log π(y_t | x, y_<t) over the response tokens; the logits at position t-1 score
the token at t, so the labels are ``input_ids[:, 1:]`` and their mask ``response_mask[:, 1:]``.
Logits that score no response token may hold anything, NaN and ±inf included; float64 logits give
a float64 result.
"""
import math

import torch
import torch.nn.functional as F
from _helpers import case, check_float64, check_grad, expect, poison, result, rng

NAME = "response_logprob"


def _case(seed=0, dtype=torch.float64, scale=3.0):
    """4 rows of 9 tokens, vocabulary 11: responses of 7 (to the end), 1, 4 and 4 tokens that
    start at different places; the rest is prompt or padding."""
    g = rng(seed)
    logits = scale * torch.randn(4, 9, 11, generator=g, dtype=torch.float64)
    ids = torch.randint(11, (4, 9), generator=g)
    mask = torch.zeros(4, 9, dtype=torch.bool)
    for row, (start, length) in enumerate(((2, 7), (5, 1), (1, 4), (3, 4))):
        mask[row, start:start + length] = True
    return logits.to(dtype), ids, mask


def _loop(logits, ids, mask):
    """log π(y|x) row by row, token by token (float64)."""
    logits = logits.double()
    out = torch.zeros(len(ids), dtype=torch.float64)
    for b in range(len(ids)):
        for t in range(1, ids.shape[1]):
            if mask[b, t]:
                out[b] += F.log_softmax(logits[b, t - 1], -1)[ids[b, t]]
    return out


def _mistakes(logits, ids, mask):
    lsm = F.log_softmax(logits.double(), -1)
    pick = lambda lp, tok: lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)
    right = pick(lsm[:, :-1], ids[:, 1:])
    m = mask[:, 1:].double()
    return [
        ((pick(lsm, ids) * mask).sum(-1), "off by one: the logits at position t predict the "
         "NEXT token, so pair logits[:, :-1] with input_ids[:, 1:]"),
        ((right * mask[:, :-1]).sum(-1), "your mask is one step off: after the shift the labels "
         "are input_ids[:, 1:] and the mask that lines up with them is response_mask[:, 1:]"),
        (right.sum(-1), "you summed every token: only the response tokens count"),
        ((pick(logits.double()[:, :-1], ids[:, 1:]) * m).sum(-1), "you used the raw logits: "
         "take log_softmax over the vocabulary first"),
        ((right * m).sum(-1) / m.sum(-1).clamp(min=1), "you averaged the token log-probabilities; "
         "log π(y|x) is their sum"),
        (-(right * m).sum(-1), "the sign is flipped: a log-probability is <= 0"),
    ]


def test_response_logprob__exact_values_ragged_batch(student):
    """Matches a token-by-token sum on responses that start and end at different places."""
    logits, ids, mask = _case()
    out = result(student.call(NAME, logits, ids, mask), "your result", (4,))
    expect(out, _loop(logits, ids, mask), "on 4 rows whose responses have 7, 1, 4 and 4 tokens "
           "and start at positions 2, 5, 1 and 3", _mistakes(logits, ids, mask), atol=1e-5)


def test_response_logprob__length_one_response_batch_of_one(student):
    """A batch of one: a 1-token prompt and a 1-token response (T = 2)."""
    logits = torch.tensor([[[2.0, -1.0, 0.5], [9.0, 9.0, 9.0]]], dtype=torch.float64)
    ids = torch.tensor([[0, 2]])
    mask = torch.tensor([[False, True]])
    out = result(student.call(NAME, logits, ids, mask), "your result", (1,))
    want = F.log_softmax(logits[0, 0], -1)[2].reshape(1)
    expect(out, want, "for one row with a 1-token prompt and a 1-token response (token 2 scored "
           "by the logits at position 0)",
           [(F.log_softmax(logits[0, 1], -1)[2].reshape(1), "off by one: the logits at position "
             "t predict the token at t+1"),
            (torch.zeros(1), "you found no response token: the label at position 1 is scored by "
             "logits[:, 0] and counted by response_mask[:, 1]")], atol=1e-5)


def test_response_logprob__empty_response_gives_zero(student):
    """A row without any response token has log π(y|x) = 0 (an empty sum), not NaN."""
    logits, ids, mask = _case(seed=1)
    mask[2] = False
    out = result(student.call(NAME, logits, ids, mask), "your result", (4,))
    if out[2] != out[2]:
        raise AssertionError("a row whose response_mask is all False gave NaN: an empty sum is 0")
    expect(out, _loop(logits, ids, mask), "when the third row has no response token (its "
           "log-probability is an empty sum, 0)", _mistakes(logits, ids, mask), atol=1e-5)


def test_response_logprob__prompt_and_padding_do_not_matter(student):
    """Changing everything outside the response (tokens and the logits that predict no response
    token, including the logits at the last response position) changes nothing."""
    logits, ids, mask = _case(seed=2)
    want = result(student.call(NAME, logits, ids, mask), "your result", (4,))
    g = rng(12)
    predicts_response = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)   # (B, T)
    logits2 = torch.where(predicts_response.unsqueeze(-1), logits,
                          20 * torch.randn(logits.shape, generator=g, dtype=logits.dtype))
    ids2 = torch.where(mask, ids, torch.randint(11, ids.shape, generator=g))
    got = result(student.call(NAME, logits2, ids2, mask), "your result", (4,))
    expect(got, want, "after changing the prompt tokens, the padding and every logit that does "
           "not predict a response token, your result changed; only logits[:, t-1] for response "
           "tokens t may matter", atol=1e-5)


def test_response_logprob__gradient(student):
    """d log π(y|x) / d logits equals autograd of the reference: onehot - softmax on the
    positions that predict a response token, exactly 0 elsewhere."""
    logits, ids, mask = _case(seed=3)
    x = logits.clone().requires_grad_(True)
    _loop(x, ids, mask).sum().backward()
    grad = check_grad(student, NAME, (logits, ids, mask), 0, x.grad,
                      "for the gradient of the sum of your results with respect to the logits",
                      atol=1e-5)
    predicts_response = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
    assert float(grad[~predicts_response].abs().max()) == 0.0, \
        "logits that predict no response token received a gradient"


def test_response_logprob__huge_logits_stay_finite_and_exact(student):
    """Logits of size 1e4 (float64 and float32) and a common offset of 1e4: no -inf, no NaN,
    the exact value."""
    logits, ids, mask = _case(seed=4, scale=1.0)
    for dtype, label in ((torch.float64, "float64"), (torch.float32, "float32")):
        big = (1e4 * logits).to(dtype)
        out = result(student.call(NAME, big, ids, mask), f"with {label} logits of size 1e4 your "
                     f"result", (4,))
        if not bool(torch.isfinite(out).all()):
            raise AssertionError(f"with {label} logits of size ~1e4 your result is not finite: "
                                 f"log(softmax(x)) underflows to log(0) = -inf; use "
                                 f"F.log_softmax (or logsumexp)")
        expect(out, _loop(big, ids, mask), f"with {label} logits of size ~1e4", rtol=1e-4,
               atol=1.0 if dtype == torch.float32 else 1e-6)
    shifted = logits + 1e4
    out = result(student.call(NAME, shifted, ids, mask), "your result", (4,))
    expect(out, _loop(logits, ids, mask), "when 1e4 is added to every logit (log_softmax does "
           "not change)", atol=2e-3)


def test_response_logprob__float32_and_larger_vocabulary(student):
    """float32 inputs, a vocabulary larger than the sequence: the softmax runs over the last
    dim."""
    g = rng(5)
    logits = torch.randn(2, 6, 50, generator=g)                       # float32
    ids = torch.randint(50, (2, 6), generator=g)
    mask = torch.tensor([[False, False, True, True, True, True],
                         [False, True, True, False, False, False]])
    out = result(student.call(NAME, logits, ids, mask), "with float32 inputs your result", (2,))
    lsm_wrong = F.log_softmax(logits.double(), 1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    expect(out, _loop(logits, ids, mask), "with float32 logits (2, 6, 50)",
           [((lsm_wrong * mask[:, 1:]).sum(-1), "you took the softmax over the wrong dim: it "
             "runs over the vocabulary, the last dim")], atol=1e-4, rtol=1e-5)


def test_response_logprob__uniform_logits_count_tokens(student):
    """Uniform logits over V words: each response token adds exactly log(1/V)."""
    V = 6
    logits = torch.zeros(3, 7, V, dtype=torch.float64)
    ids = torch.randint(V, (3, 7), generator=rng(6))
    lengths = (6, 1, 3)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    for row, n in enumerate(lengths):
        mask[row, 1:1 + n] = True
    out = result(student.call(NAME, logits, ids, mask), "your result", (3,))
    want = torch.tensor([n * math.log(1 / V) for n in lengths], dtype=torch.float64)
    expect(out, want, "with uniform logits over 6 words and responses of 6, 1 and 3 tokens "
           "(n·log(1/6))", [(torch.tensor([(n - 1) * math.log(1 / V) for n in lengths]),
                             "you dropped one response token per row: response_mask[:, 1:] "
                             "lines up with the labels input_ids[:, 1:]")], atol=1e-5)


def _scoring(mask):
    """(B, T) True at the positions whose logits score a response token."""
    return torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)


def test_response_logprob__padding_holding_nan_and_inf(student):
    """Logits of NaN, +inf and -inf on the padding (after each response, and a left pad): the
    result is finite and exact, and so is its gradient on the logits that score the response."""
    logits, ids, mask = _case(seed=8)
    last = torch.where(mask, torch.arange(9), -1).amax(1, keepdim=True)         # (B, 1)
    padding = torch.arange(9) > last                                            # (B, T)
    padding[3, 0] = True                                  # row 3: a left pad, then its prompt
    bad = poison(logits, ~padding.unsqueeze(-1))
    with case("with padded positions whose logits hold NaN, +inf and -inf"):
        out = result(student.call(NAME, bad, ids, mask), "your result", (4,), allow_nan=True)
        if not bool(torch.isfinite(out).all()):
            raise AssertionError("your result is not finite: a padded position reached it "
                                 "(0 · NaN is NaN: pick the response tokens with torch.where "
                                 "rather than multiplying by the mask)")
        expect(out, _loop(logits, ids, mask), "your result changed", atol=1e-5)
        x = logits.clone().requires_grad_(True)
        _loop(x, ids, mask).sum().backward()
        _, grads = student.grad(NAME, (bad, ids, mask), (0,))
        if grads[0] is None:
            raise AssertionError("your result does not depend on the logits")
        scoring = _scoring(mask)
        grad = grads[0].double()[scoring]
        if not bool(torch.isfinite(grad).all()):
            raise AssertionError("the gradient on the logits that score response tokens holds "
                                 "NaN or inf: the padding leaked into it")
        expect(grad, x.grad[scoring], "the gradient on the logits that score response tokens "
               "is wrong", atol=1e-5)


def test_response_logprob__float64_stays_float64(student):
    """float64 logits give a float64 result, exact to float64 precision (float32 logits: a
    float32 result)."""
    logits, ids, mask = _case(seed=9, scale=5.0)
    check_float64(student, NAME, (logits, ids, mask), "with float64 logits", _loop(logits, ids,
                                                                                  mask))
