"""Visible checks of the notebook exercises: one ``check_<exercise>(fn)`` per exercise.

Each check runs a student's function on a few small cases, compares it with the package's
reference, and tests the property that matters (the shift, the mask, shift invariance, numerical
stability, the clip). It prints one line and returns a bool; it never raises::

    ✓ sft_loss: all 5 checks passed
    ✗ sft_loss: off by one: you scored token t with the logits at position t, ...

A failure names the property and shows a small example, so the message says what to fix. The
checks import only the math (``losses``, ``rl_losses``, ``theory``, ``overopt_math``,
``beyond_losses``), never a
stage, the pipeline or the plots.
"""
from __future__ import annotations

import copy
import inspect
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from . import beyond_losses, losses, overopt_math, rl_losses, theory
from .student import as_loss_and_stats

__all__ = ["check_response_logprob", "check_sft_loss", "check_bt_probability", "check_bt_loss",
           "check_bt_fit", "check_boltzmann_policy", "check_optimal_objective",
           "check_kl_optimal", "check_kl_estimators", "check_shaped_rewards", "check_gae",
           "check_ppo_clip_loss", "check_value_loss", "check_kl_best_of_n", "check_gao_fit",
           "check_ensemble", "check_dpo_loss", "check_group_advantages", "check_ppo_ptx_loss"]


# ============================================================================ the machinery


class _Fail(Exception):
    """A property failed; the message is for the student. ``specific`` is False for a bare
    "wrong value" (no known mistake recognised): the later cases may then name the mistake."""

    def __init__(self, message: str, specific: bool = True):
        super().__init__(message)
        self.specific = specific


class _NotWritten(Exception):
    """The student's function raised NotImplementedError."""


def _run(name: str, cases, *fns) -> bool:
    """Run the cases in order and print one line; return success.

    The first failure that names its cause is reported. A bare "wrong value" is kept while the
    later cases run, since one of them may recognise the mistake (a small example often cannot
    tell a sum from a mean; a bigger one can)."""
    for fn in fns:
        if not callable(fn):
            print(f"✗ {name}: expected a function, got {type(fn).__name__}")
            return False
    first_vague = None
    try:
        for case in cases:
            try:
                case()
            except _Fail as failure:
                if failure.specific:
                    raise
                first_vague = first_vague or failure
        if first_vague is not None:
            raise first_vague
    except _NotWritten:
        message = "not implemented yet (replace `raise NotImplementedError` with your code)"
    except _Fail as failure:
        message = str(failure)
    except Exception as error:      # a bug in a check must not look like the student's fault
        message = f"the check itself failed ({type(error).__name__}: {error}); please report it"
    else:
        print(f"✓ {name}: all {len(cases)} checks passed")
        return True
    print(f"✗ {name}: {message}")
    return False


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a.isnan(), b.isnan())) and \
            bool((a[~a.isnan()] == b[~b.isnan()]).all())
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    return True


def _call(fn, *args, **kwargs):
    """Call the student's function on copies of the arguments; turn trouble into a message."""
    copies = copy.deepcopy((args, kwargs))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*copies[0], **copies[1])
    except NotImplementedError:
        raise _NotWritten from None
    except Exception as error:
        raise _Fail(f"your function raised {type(error).__name__}: {error}") from None
    names = list(inspect.signature(fn).parameters) if _has_signature(fn) else []
    for i, (before, after) in enumerate(zip(args, copies[0])):
        if not _same(before, after):
            name = names[i] if i < len(names) else f"argument {i + 1}"
            raise _Fail(f"your function changed its argument `{name}` in place; work on a copy "
                        f"(e.g. `x = x.clone()`, or avoid in-place ops such as `+=` and `[...] =`)")
    return out


def _has_signature(fn) -> bool:
    try:
        inspect.signature(fn)
        return True
    except (TypeError, ValueError):
        return False


def _fmt(x, digits: int = 4) -> str:
    """A short readable rendering of a number or a small tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().double().tolist()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v, digits) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if math.isfinite(x) else str(x)
    return str(x)


def _tensor(out, what: str, shape=None) -> torch.Tensor:
    """Validate a returned tensor: type, dtype, shape, NaN."""
    if not isinstance(out, torch.Tensor):
        raise _Fail(f"{what} should be a torch tensor, got {type(out).__name__}")
    if not out.is_floating_point():
        raise _Fail(f"{what} should be a floating-point tensor, got dtype {out.dtype}")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise _Fail(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.isnan().any():
        raise _Fail(f"{what} contains NaN: {_fmt(out)}")
    return out


def _loss(out, what: str = "your loss") -> torch.Tensor:
    """A loss function may return ``loss`` or ``(loss, stats)``; the loss must be a scalar."""
    loss, _ = as_loss_and_stats(out)
    loss = _tensor(loss, what)
    if loss.dim() != 0:
        raise _Fail(f"{what} has shape {tuple(loss.shape)}; a loss is a single number (0-dim "
                    f"tensor): average over the tokens or pairs")
    return loss


def _close(got, want, atol=1e-5, rtol=1e-4) -> bool:
    got = torch.as_tensor(got, dtype=torch.float64)
    want = torch.as_tensor(want, dtype=torch.float64)
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=atol, rtol=rtol,
                                                           equal_nan=False))


def _diff(got, want) -> str:
    """'expected A, got B' for small values; for big tensors, the entry that differs most."""
    got_t = torch.as_tensor(got, dtype=torch.float64)
    want_t = torch.as_tensor(want, dtype=torch.float64)
    if want_t.numel() <= 8 or got_t.shape != want_t.shape:
        return f"expected {_fmt(want)}, got {_fmt(got)}"
    gap = (got_t - want_t).abs().nan_to_num(math.inf)
    where = tuple(int(i) for i in np.unravel_index(int(gap.argmax()), tuple(gap.shape)))
    return (f"at index {where}: expected {_fmt(want_t[where].item())}, got "
            f"{_fmt(got_t[where].item())}")


def _expect(got, want, example: str, wrong=(), atol=1e-5, rtol=1e-4) -> None:
    """Fail unless ``got`` matches ``want``; name a known mistake if ``got`` matches one."""
    if _close(got, want, atol, rtol):
        return
    for candidate, message in wrong:
        if _close(got, candidate, atol, rtol):
            raise _Fail(f"{message} ({example}: {_diff(got, want)})")
    raise _Fail(f"wrong value {example}: {_diff(got, want)}", specific=False)


def _needs_grad(result: torch.Tensor, inputs: torch.Tensor, what: str) -> torch.Tensor:
    """The gradient of ``result.sum()`` with respect to ``inputs``; fail if it cannot flow."""
    if not result.requires_grad:
        raise _Fail(f"{what} is cut off from the graph (no gradient reaches it): avoid .item(), "
                    f".detach(), numpy and python floats inside the function")
    grad, = torch.autograd.grad(result.sum(), inputs, allow_unused=True)
    if grad is None:
        raise _Fail(f"{what} does not depend on its input: no gradient reaches it")
    return grad


# ============================================================================ stage 1: the LM


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

    def outside_tokens():
        logits2, ids2 = _perturb_outside(logits, ids, mask)
        out = _call(fn, logits2, ids2, mask)
        if not _close(out, want):
            raise _Fail(f"changing the prompt/padding tokens (and the logits that do not predict "
                        f"a response token) changed your result: {_fmt(want)} vs {_fmt(out)}")

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


def _call_live(fn, *args):
    """Call without copying (the gradient must reach the caller's tensors)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)
    except NotImplementedError:
        raise _NotWritten from None
    except Exception as error:
        raise _Fail(f"your function raised {type(error).__name__}: {error}") from None


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

    def outside_tokens():
        logits2, ids2 = _perturb_outside(logits, ids, mask)
        loss = _loss(_call(fn, logits2, ids2, mask))
        if not _close(loss, want):
            raise _Fail(f"masked tokens changed your loss: changing the prompt and padding gave "
                        f"{_fmt(loss.item())} instead of {_fmt(want.item())}")

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


# ============================================================================ Bradley-Terry


_R_CHOSEN = torch.tensor([1.0, -0.5, 2.0, 0.3, -1.2], dtype=torch.float64)
_R_REJECTED = torch.tensor([0.0, 0.5, -1.0, 0.3, -2.0], dtype=torch.float64)


def check_bt_probability(fn) -> bool:
    """Check ``bt_probability(r_chosen, r_rejected) -> P(y_w > y_l)``, elementwise."""
    want = losses.bt_probability(_R_CHOSEN, _R_REJECTED)

    def example():
        out = _tensor(_call(fn, torch.tensor([1.0]), torch.tensor([0.0])), "your probability", (1,))
        _expect(out, [0.7310586], "for r_chosen = 1, r_rejected = 0 (sigmoid(1))",
                [([0.2689414], "you swapped the two rewards: P(y_w > y_l) = sigmoid(r_chosen - "
                  "r_rejected)")])

    def elementwise():
        out = _tensor(_call(fn, _R_CHOSEN, _R_REJECTED), "your probability", (5,))
        _expect(out, want, f"for r_chosen = {_fmt(_R_CHOSEN)}, r_rejected = {_fmt(_R_REJECTED)}",
                [(1 - want, "you swapped the two rewards: P(y_w > y_l) = sigmoid(r_chosen - "
                  "r_rejected)")])

    def shift():
        a = _call(fn, _R_CHOSEN, _R_REJECTED)
        b = _call(fn, _R_CHOSEN + 3, _R_REJECTED + 3)
        if not _close(a, b):
            raise _Fail(f"your probability changes when you add 3 to both rewards: "
                        f"{_fmt(a[0].item())} vs {_fmt(b[0].item())}; only the difference counts")

    def symmetry():
        a, b = _call(fn, _R_CHOSEN, _R_REJECTED), _call(fn, _R_REJECTED, _R_CHOSEN)
        if not _close(a + b, torch.ones(5, dtype=torch.float64)):
            raise _Fail(f"P(a > b) + P(b > a) should be 1, got {_fmt((a + b)[0].item())}")

    def huge_gaps():
        out = _call(fn, torch.tensor([1e4, -1e4, 0.0]), torch.zeros(3))
        if isinstance(out, torch.Tensor) and out.isnan().any():
            raise _Fail(f"at reward gaps of +1e4, -1e4, 0 your probability is {_fmt(out)}: "
                        f"exp overflows; use torch.sigmoid(r_chosen - r_rejected)")
        _expect(out, [1.0, 0.0, 0.5], "at reward gaps of +1e4, -1e4 and 0")

    return _run("bt_probability", [example, elementwise, shift, symmetry, huge_gaps], fn)


def check_bt_loss(fn) -> bool:
    """Check ``bradley_terry_loss(r_chosen, r_rejected) -> loss or (loss, stats)``."""
    want, _ = losses.bradley_terry_loss(_R_CHOSEN, _R_REJECTED)
    margin = _R_CHOSEN - _R_REJECTED

    def equal_rewards():
        loss = _loss(_call(fn, torch.zeros(4), torch.zeros(4)))
        _expect(loss, math.log(2), "at equal rewards (log 2)",
                [(-math.log(2), "your loss is negative: it is -log sigmoid(r_chosen - "
                  "r_rejected)")])

    def random_case():
        loss = _loss(_call(fn, _R_CHOSEN, _R_REJECTED))
        wrong = [(-F.logsigmoid(-margin).mean(), "you swapped chosen and rejected: the loss is "
                  "-log sigmoid(r_chosen - r_rejected)"),
                 (want * len(margin), "you summed over pairs: average them"),
                 (-want, "your loss has the wrong sign: it is MINUS the log-likelihood")]
        _expect(loss, want, f"for r_chosen = {_fmt(_R_CHOSEN)}, r_rejected = {_fmt(_R_REJECTED)}",
                wrong)

    def shift():
        a = _loss(_call(fn, _R_CHOSEN, _R_REJECTED))
        b = _loss(_call(fn, _R_CHOSEN + 3, _R_REJECTED + 3))
        if not _close(a, b):
            raise _Fail(f"your loss changes when you add 3 to both rewards: {_fmt(a.item())} vs "
                        f"{_fmt(b.item())}; the Bradley-Terry model sees only the difference")

    def huge_gaps():
        loss = _loss(_call(fn, torch.tensor([-1e4]), torch.tensor([0.0])))
        if not torch.isfinite(loss):
            raise _Fail(f"at a gap r_chosen - r_rejected = -1e4 your loss is {loss.item()} "
                        f"(expected 1e4): log(sigmoid(x)) underflows to log(0); use F.logsigmoid")
        _expect(loss, 1e4, "at a gap of -1e4")
        loss = _loss(_call(fn, torch.tensor([1e4]), torch.tensor([0.0])))
        _expect(loss, 0.0, "at a gap of +1e4")

    def gradient():
        r = _R_CHOSEN.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, r, _R_REJECTED)), r, "your loss")
        expected = -(1 - torch.sigmoid(margin)) / len(margin)
        _expect(grad, expected, "for the gradient with respect to r_chosen "
                "(-(1 - sigmoid(margin)) / N)")

    return _run("bradley_terry_loss", [equal_rewards, random_case, shift, huge_gaps, gradient], fn)


def _expected_table(strengths, games: float) -> torch.Tensor:
    """Win counts exactly as Bradley-Terry expects them (fractions allowed): its MLE is exact."""
    s = torch.as_tensor(strengths, dtype=torch.float64)
    table = games * torch.sigmoid(s[:, None] - s[None, :])
    return table * (1 - torch.eye(len(s), dtype=torch.float64))


def _league():
    from .datasets import league_table      # plain data: no stage, no training
    return league_table()


def check_bt_fit(fn) -> bool:
    """Check ``fit_bradley_terry(wins) -> (K,)`` centred maximum-likelihood strengths."""
    truth = torch.tensor([0.8, 0.2, -0.3, -0.7], dtype=torch.float64)
    teams, league = _league()

    def _strengths(wins):
        out = _call(fn, wins)
        out = torch.as_tensor(out) if isinstance(out, (np.ndarray, list)) else out
        return _tensor(out, "your strengths", (len(wins),)).double()

    def known_strengths():
        s = _strengths(_expected_table(truth, 20))
        centred = s - s.mean()
        example = f"on a table generated from strengths {_fmt(truth)}"
        if _close(centred, -truth, atol=2e-3):
            raise _Fail(f"your strengths have the wrong sign ({example}): wins[i, j] counts the "
                        f"games team i WON against team j")
        _expect(centred, truth, example, atol=2e-3)

    def centred():
        s = _strengths(league)
        if abs(s.mean().item()) > 1e-4:
            raise _Fail(f"your strengths are not centred (mean {s.mean().item():.3g}): the "
                        f"likelihood cannot tell s from s + c, so fix c by returning s - s.mean()")

    def converged():
        s = _strengths(league)
        p = torch.sigmoid(s[:, None] - s[None, :])
        expected = ((league + league.T) * p).sum(1)
        worst = int((expected - league.sum(1)).abs().argmax())
        if abs(expected[worst] - league.sum(1)[worst]) > 0.05:
            raise _Fail(f"not at the maximum of the likelihood: the {teams[worst]} won "
                        f"{league.sum(1)[worst]:.0f} games but your strengths predict "
                        f"{expected[worst]:.2f} (at the maximum they are equal): check the "
                        f"gradient, take more steps or a larger step size")
        _expect(s, losses.fit_bradley_terry(league), "on the league table", atol=2e-3)

    def three_teams():
        s = _strengths(_expected_table([1.0, 0.0, -1.0], 8))
        _expect(s - s.mean(), [1.0, 0.0, -1.0], "on a 3-team table generated from [1, 0, -1]",
                atol=2e-3)

    return _run("fit_bradley_terry", [known_strengths, centred, converged, three_teams], fn)


# ============================================================================ the closed form


def _space():
    space = theory.enumerable_space(vocab_size=3, max_len=3, seed=4, n_prompts=2)
    return space.logp_ref, 2.0 * space.rewards          # (2, 39) each


_HALF = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
_LOG3 = torch.tensor([0.0, math.log(3)], dtype=torch.float64)


def check_boltzmann_policy(fn) -> bool:
    """Check ``boltzmann_policy(logp_ref, rewards, beta) -> log π*`` of shape (..., Y)."""
    logp_ref, rewards = _space()

    def example():
        out = _tensor(_call(fn, _HALF, _LOG3, 1.0), "your log π*", (2,))
        want = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
        if _close(out, want.exp()):
            raise _Fail("you returned probabilities; return log-probabilities log π*(y)")
        _expect(out, want, "for π_ref = [1/2, 1/2], r = [0, log 3], β = 1 (π* = [1/4, 3/4])",
                [(torch.log(torch.tensor([0.5, 1.5], dtype=torch.float64)),
                  "your π* is not normalised: subtract log Z = logsumexp(log π_ref + r/β)")])

    def batch():
        beta = 0.5
        out = _tensor(_call(fn, logp_ref, rewards, beta), "your log π*", tuple(logp_ref.shape))
        want = theory.boltzmann_policy(logp_ref, rewards, beta)
        norm = lambda s: s - torch.logsumexp(s, -1, keepdim=True)
        wrong = [(norm(logp_ref + rewards * beta), "you multiplied the rewards by β: the exponent "
                  "is r/β (a small β means a weak KL penalty)"),
                 (norm(logp_ref - rewards / beta), "your π* favours LOW rewards: the weight is "
                  "exp(+r/β)"),
                 (norm(rewards / beta), "you forgot π_ref: π* ∝ π_ref(y) exp(r(y)/β)"),
                 (logp_ref + rewards / beta - torch.logsumexp(logp_ref + rewards / beta, 0),
                  "you normalised over the wrong dim: Z sums over the responses (the last dim)")]
        _expect(out, want, "on 2 prompts x 39 responses at β = 0.5", wrong)

    def shift():
        a = _call(fn, logp_ref, rewards, 0.5)
        b = _call(fn, logp_ref, rewards + 3.0, 0.5)
        if not _close(a, b):
            raise _Fail("adding 3 to every reward changed your π*: a constant in r cancels "
                        "against Z, so π* must stay the same")

    def small_beta():
        out = _call(fn, logp_ref, rewards, 1e-3)
        out = torch.as_tensor(out)
        if out.isnan().any() or (out == math.inf).any():
            raise _Fail("at β = 1e-3 your π* holds NaN or inf: exp(r/β) overflows; stay in log "
                        "space (log π_ref + r/β - logsumexp(...))")
        want = theory.beta_to_zero_policy(logp_ref, rewards)
        if not _close(out.exp(), want.exp(), atol=1e-3):
            raise _Fail("at β = 1e-3 your π* should put (almost) all its mass on the best "
                        "response in the support of π_ref")

    def large_beta():
        out = torch.as_tensor(_call(fn, logp_ref, rewards, 1e4))
        if not _close(out.exp(), logp_ref.exp(), atol=1e-3):
            raise _Fail("at β = 1e4 your π* should be (almost) π_ref: the KL penalty dominates")

    def outside_support():
        lp = torch.log(torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64))
        out = _tensor(_call(fn, lp, torch.tensor([9.0, 1.0, 0.0], dtype=torch.float64), 1.0),
                      "with π_ref = [0, 1/2, 1/2] your log π*", (3,))
        if out[0] != -math.inf:
            raise _Fail("a response with π_ref(y) = 0 must keep π*(y) = 0 (log π* = -inf), "
                        "however high its reward")

    return _run("boltzmann_policy", [example, batch, shift, small_beta, large_beta,
                                     outside_support], fn)


def check_optimal_objective(fn) -> bool:
    """Check ``optimal_objective(logp_ref, rewards, beta) -> β log Z`` of shape (...)."""
    logp_ref, rewards = _space()

    def example():
        out = _tensor(_call(fn, _HALF, _LOG3, 1.0), "your objective", ())
        _expect(out, math.log(2), "for π_ref = [1/2, 1/2], r = [0, log 3], β = 1 (log 2)")

    def batch():
        beta = 0.5
        out = _tensor(_call(fn, logp_ref, rewards, beta), "your objective", (2,))
        log_z = theory.log_partition(logp_ref, rewards, beta)
        wrong = [(log_z, "you returned log Z: the optimum of the objective is β log Z"),
                 (beta * (torch.logsumexp(rewards / beta, -1) - math.log(rewards.shape[-1])),
                  "you averaged exp(r/β) uniformly: Z weights each response by π_ref(y)")]
        _expect(out, beta * log_z, "on 2 prompts x 39 responses at β = 0.5", wrong)

    def upper_bound():
        beta = 0.5
        best = torch.as_tensor(_call(fn, logp_ref, rewards, beta))
        mean_ref = (logp_ref.exp() * rewards).sum(-1)
        if (best < mean_ref - 1e-9).any():
            raise _Fail(f"your optimum {_fmt(best)} is below the objective of π_ref itself "
                        f"(E_ref[r] - β·0 = {_fmt(mean_ref)}): it can only be higher")

    def limits():
        small = torch.as_tensor(_call(fn, logp_ref, rewards, 1e-3))
        if not torch.isfinite(small).all():
            raise _Fail("at β = 1e-3 your objective is not finite: compute log Z with logsumexp")
        _expect(small, rewards.max(-1).values, "at β = 1e-3 (β log Z tends to max r)", atol=1e-2)
        large = torch.as_tensor(_call(fn, logp_ref, rewards, 1e4))
        _expect(large, (logp_ref.exp() * rewards).sum(-1),
                "at β = 1e4 (β log Z tends to E_ref[r])", atol=1e-2)

    return _run("optimal_objective", [example, batch, upper_bound, limits], fn)


def check_kl_optimal(fn) -> bool:
    """Check ``kl_optimal(logp_ref, rewards, beta) -> KL(π*‖π_ref)`` of shape (...)."""
    logp_ref, rewards = _space()

    def example():
        out = _tensor(_call(fn, _HALF, _LOG3, 1.0), "your KL", ())
        _expect(out, 0.75 * math.log(3) - math.log(2),
                "for π_ref = [1/2, 1/2], r = [0, log 3], β = 1 ((3/4) log 3 - log 2)")

    def batch():
        beta = 0.5
        out = _tensor(_call(fn, logp_ref, rewards, beta), "your KL", (2,))
        want = theory.kl_optimal(logp_ref, rewards, beta)
        p_star = theory.boltzmann_policy(logp_ref, rewards, beta).exp()
        wrong = [((p_star * rewards).sum(-1) - theory.log_partition(logp_ref, rewards, beta),
                  "you forgot to divide E_π*[r] by β: KL = E_π*[r]/β - log Z"),
                 ((logp_ref.exp() * (logp_ref - p_star.log())).sum(-1),
                  "you computed KL(π_ref‖π*), the other direction: KL(π*‖π_ref) averages "
                  "over π*")]
        _expect(out, want, "on 2 prompts x 39 responses at β = 0.5", wrong)

    def non_negative_and_monotone():
        kls = [torch.as_tensor(_call(fn, logp_ref, rewards, b)) for b in (0.2, 1.0, 5.0)]
        if any((k < -1e-9).any() for k in kls):
            raise _Fail(f"your KL is negative somewhere: {_fmt(kls)}; a KL is >= 0")
        if not ((kls[0] >= kls[1]) & (kls[1] >= kls[2])).all():
            raise _Fail(f"your KL should shrink as β grows (β = 0.2, 1, 5 gave {_fmt(kls)})")

    def small_beta():
        out = torch.as_tensor(_call(fn, logp_ref, rewards, 1e-3))
        if not torch.isfinite(out).all():
            raise _Fail("at β = 1e-3 your KL is not finite: stay in log space (logsumexp)")
        best = theory.beta_to_zero_policy(logp_ref, rewards)
        _expect(out, -(best.exp() * logp_ref).sum(-1), "at β = 1e-3 (→ -log π_ref(argmax r))",
                atol=1e-2)

    return _run("kl_optimal", [example, batch, non_negative_and_monotone, small_beta], fn)


# ============================================================================ PPO


def check_kl_estimators(k1, k3) -> bool:
    """Check ``kl_k1(logp, logp_ref)`` and ``kl_k3(logp, logp_ref)`` (per token, same shape)."""
    lp, lr = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
    g = torch.Generator().manual_seed(5)
    pi = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)       # (6,)
    ref = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)
    exact_kl = (pi.exp() * (pi - ref)).sum()

    def examples():
        _expect(_tensor(_call(k1, lp, lr), "your k1", (2,)), [1.0, -1.0],
                "of k1 for logp = [-1, -2], logp_ref = [-2, -1]",
                [([-1.0, 1.0], "your k1 has the wrong sign: k1 = logp - logp_ref")])
        _expect(_tensor(_call(k3, lp, lr), "your k3", (2,)), [math.exp(-1), math.e - 2],
                "of k3 for logp = [-1, -2], logp_ref = [-2, -1]",
                [([math.e - 2, math.exp(-1)], "your k3 uses ρ = π/π_ref; it must be "
                  "ρ = π_ref/π = exp(logp_ref - logp)")])

    def unbiased():
        for name, fn in (("k1", k1), ("k3", k3)):
            values = _tensor(_call(fn, pi, ref), f"your {name}", (6,))
            mean = (pi.exp() * values).sum()
            if not _close(mean, exact_kl):
                hint = (" (check the direction of the ratio: ρ = π_ref/π)" if name == "k3"
                        else " (k1 = logp - logp_ref)")
                raise _Fail(f"averaged over y ~ π, your {name} gives {mean.item():.4f} but "
                            f"KL(π‖π_ref) = {exact_kl.item():.4f}{hint}")

    def k3_non_negative():
        values = torch.as_tensor(_call(k3, pi, ref))
        if (values < -1e-6).any():
            raise _Fail(f"your k3 is negative on some token ({_fmt(values.min().item())}): "
                        f"(ρ - 1) - log ρ >= 0 for every ρ > 0")

    def shapes():
        x = torch.randn(2, 3, generator=g)
        for name, fn in (("k1", k1), ("k3", k3)):
            _tensor(_call(fn, x, x - 0.1), f"your {name} on (2, 3) inputs", (2, 3))

    return _run("kl_estimators", [examples, unbiased, k3_non_negative, shapes], k1, k3)


def _rl_case(seed: int = 6):
    """(B=3, R=5) rollout tensors with responses of 5, 3 and 1 tokens; masked entries hold
    garbage (which must change nothing)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    rand = lambda scale=1.0: scale * torch.randn(3, 5, generator=g, dtype=torch.float64)
    garbage = lambda x: torch.where(mask, x, torch.full_like(x, 7.0))
    return g, mask, rand, garbage


def check_shaped_rewards(fn) -> bool:
    """Check ``shaped_rewards(scores, logp, logp_ref, response_mask, beta) -> (B, R)``."""
    g, mask, rand, garbage = _rl_case()
    scores = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    logp, logp_ref = garbage(-rand().abs()), garbage(-rand().abs())
    beta = 0.1
    want = rl_losses.shaped_rewards(scores, logp, logp_ref, mask, beta)

    def example():
        out = _tensor(_call(fn, torch.tensor([2.0]), torch.tensor([[-1.0, -1.0, 0.0]]),
                            torch.tensor([[-2.0, -1.5, 0.0]]), torch.tensor([[True, True, False]]),
                            0.1), "your rewards", (1, 3))
        _expect(out, [[-0.1, 1.95, 0.0]], "for score 2, logp [-1, -1, pad], logp_ref "
                "[-2, -1.5, pad], β = 0.1")

    def ragged():
        out = _tensor(_call(fn, scores, logp, logp_ref, mask, beta), "your rewards", (3, 5))
        penalty = -beta * (logp - logp_ref) * mask
        last_col = torch.zeros_like(want)
        last_col[:, -1] = scores
        first = torch.zeros_like(want)
        first[:, 0] = scores
        wrong = [((penalty + last_col) * mask, "the score went to the last column; it belongs "
                  "on the last RESPONSE token of each row (rows end at different places: use "
                  "the mask)"),
                 (penalty + first, "the score belongs on the last response token T, not the first"),
                 (want - 2 * penalty, "your KL penalty has the wrong sign: where logp > logp_ref "
                  "the token reward is -β(logp - logp_ref) < 0")]
        _expect(out * mask, want, "on responses of 5, 3 and 1 tokens at β = 0.1", wrong)
        if (out[~mask] != 0).any():
            raise _Fail(f"masked positions should hold 0, got {_fmt(out[~mask])}")

    def sums():
        out = torch.as_tensor(_call(fn, scores, logp, logp_ref, mask, beta))
        kl = ((logp - logp_ref) * mask).sum(-1)
        _expect((out * mask).sum(-1), scores - beta * kl,
                "of each row's sum (score - β·KL)")

    def beta_zero():
        out = torch.as_tensor(_call(fn, scores, logp, logp_ref, mask, 0.0))
        _expect((out * mask).sum(-1), scores, "at β = 0 (each row sums to its score)")

    return _run("shaped_rewards", [example, ragged, sums, beta_zero], fn)


def _pair(out, what, shape):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _Fail(f"{what} should return a pair (adv, returns), got {type(out).__name__}")
    return _tensor(out[0], "your adv", shape), _tensor(out[1], "your returns", shape)


def _gae_variant(rewards, values, mask, gamma, decay, stop_at_end=True):
    """A plain GAE loop with a knob per common mistake: ``decay`` replaces γλ; with
    ``stop_at_end=False`` the last response token bootstraps from the (masked) next position."""
    rewards, adv = rewards * mask, torch.zeros_like(rewards)
    next_v = next_a = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        a = rewards[:, t] + gamma * next_v - values[:, t] + decay * next_a
        keep = mask[:, t] if stop_at_end else torch.ones_like(mask[:, t])
        next_v, next_a = values[:, t] * keep, a * keep
        adv[:, t] = a
    return adv * mask


_PAST_END = ("you bootstrapped past the end: after the last response token V(s_{T+1}) = 0, "
             "whatever the (masked) next position holds")


def check_gae(fn) -> bool:
    """Check ``gae(rewards, values, response_mask, gamma, lam) -> (adv, returns)``, (B, R) each."""
    g, mask, rand, garbage = _rl_case(seed=7)
    rewards, values = garbage(rand()), garbage(rand())

    def example():
        adv, ret = _pair(_call(fn, torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 9.0]]),
                               torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 9.0]]),
                               torch.tensor([[True, True, True], [True, True, False]]), 1.0, 0.5),
                         "your gae", (2, 3))
        keep = torch.tensor([[True, True, True], [True, True, False]])
        want = torch.tensor([[0.125, 0.25, 0.5], [0.25, 0.5, 0.0]])
        r = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 9.0]])
        v = torch.tensor([[0.5] * 3, [0.5, 0.5, 9.0]])
        _expect(adv * keep, want, "for rewards [[0, 0, 1], [0, 1, pad]], values [[.5, .5, .5], "
                "[.5, .5, pad]] with pad = 9, γ = 1, λ = 0.5",
                [(_gae_variant(r, v, keep, 1.0, 0.5, stop_at_end=False), _PAST_END),
                 (_gae_variant(r * 1.0, v, torch.ones_like(keep), 1.0, 0.5) * keep, _PAST_END)])
        _expect(ret * keep, (want + torch.tensor([[0.5] * 3, [0.5, 0.5, 0.0]])),
                "of the returns (adv + values)")

    def reward_to_go():
        adv, _ = _pair(_call(fn, rewards, values, mask, 1.0, 1.0), "your gae", (3, 5))
        togo = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1])
        _expect(adv * mask, (togo - values) * mask, "at γ = λ = 1 (reward-to-go minus V)")

    def one_step():
        adv, _ = _pair(_call(fn, rewards, values, mask, 0.9, 0.0), "your gae", (3, 5))
        next_v = torch.cat([values[:, 1:] * mask[:, 1:], torch.zeros(3, 1, dtype=values.dtype)], 1)
        _expect(adv * mask, (rewards + 0.9 * next_v - values) * mask,
                "at λ = 0 (the one-step TD error δ_t = r_t + γV(s_{t+1}) - V(s_t))")

    def general():
        gamma, lam = 0.9, 0.8
        adv, ret = _pair(_call(fn, rewards, values, mask, gamma, lam), "your gae", (3, 5))
        want_adv, want_ret = rl_losses.gae(rewards, values, mask, gamma, lam)
        wrong = [(_gae_variant(rewards, values, mask, gamma, gamma * lam, False), _PAST_END),
                 (_gae_variant(rewards, values, mask, 1.0, lam),
                  "you left γ out: δ_t = r_t + γV(s_{t+1}) - V(s_t), A_t = δ_t + γλ A_{t+1}"),
                 (_gae_variant(rewards, values, mask, gamma, lam),
                  "you discounted with λ alone: A_t = δ_t + γλ A_{t+1}"),
                 (_gae_variant(rewards, values, mask, gamma, gamma),
                  "you discounted with γ alone: A_t = δ_t + γλ A_{t+1}")]
        _expect(adv * mask, want_adv, "at γ = 0.9, λ = 0.8 on responses of 5, 3 and 1 tokens",
                wrong)
        _expect(ret * mask, want_ret, "of the returns (they are adv + values)",
                [((adv - values) * mask, "returns are adv + values, not adv - values")])
        if (adv[~mask] != 0).any() or (ret[~mask] != 0).any():
            raise _Fail("masked positions should hold 0 in adv and returns")

    return _run("gae", [example, reward_to_go, one_step, general], fn)


def check_ppo_clip_loss(fn) -> bool:
    """Check ``ppo_clip_loss(logp, logp_old, adv, response_mask, clip_eps) -> loss or (loss,
    stats)``."""
    g, mask, rand, garbage = _rl_case(seed=8)
    logp_old = garbage(-rand().abs())
    logp, adv = garbage(logp_old + rand(0.4)), garbage(rand())
    eps = 0.2
    want, _ = rl_losses.ppo_clip_loss(logp, logp_old, adv, mask, eps)

    def example():
        loss = _loss(_call(fn, torch.log(torch.tensor([[1.5, 0.5, 1.0]])), torch.zeros(1, 3),
                           torch.tensor([[1.0, 1.0, -2.0]]), torch.ones(1, 3, dtype=torch.bool),
                           0.2))
        _expect(loss, 0.1, "for ratios [1.5, 0.5, 1], adv [1, 1, -2], ε = 0.2",
                [(-(1.5 + 0.8 - 2) / 3, "you took the max of the two surrogates: PPO takes the "
                  "min, the pessimistic one"),
                 (-(1.2 + 0.8 - 2) / 3, "you kept only the clipped term: PPO takes the min of "
                  "ratio·A and clip(ratio)·A"),
                 (-0.1, "your loss has the wrong sign: minimising it must increase ratio·A")])

    def ragged():
        loss = _loss(_call(fn, logp, logp_old, adv, mask, eps))
        ratio = torch.exp(logp - logp_old)
        clipped = ratio.clamp(1 - eps, 1 + eps)
        mean = lambda x: (x * mask).sum() / mask.sum()
        wrong = [(-mean(torch.maximum(ratio * adv, clipped * adv)), "you took the max of the two "
                  "surrogates: PPO takes the min, the pessimistic one"),
                 (-mean(torch.minimum(adv / ratio, adv / ratio.clamp(1 - eps, 1 + eps))),
                  "your ratio is upside down: ratio = exp(logp - logp_old)"),
                 (-(torch.minimum(ratio * adv, clipped * adv) * mask).sum(),
                  "you summed over tokens: average over the response tokens"),
                 (-torch.minimum(ratio * adv, clipped * adv).mean(),
                  "masked tokens changed your loss: average over response_mask only")]
        _expect(loss, want, "on random rollouts with responses of 5, 3 and 1 tokens", wrong)

    def gradients():
        lp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]], dtype=torch.float64))
        lp.requires_grad_(True)
        a = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
        loss = _loss(_call_live(fn, lp, torch.zeros(1, 4, dtype=torch.float64), a,
                                torch.ones(1, 4, dtype=torch.bool), 0.2))
        grad = _needs_grad(loss, lp, "your loss")[0]
        if grad[0] != 0 or grad[3] != 0:
            raise _Fail("a token that already moved past the clip in the direction its advantage "
                        "wants (ratio 1.5 with A > 0, or 0.5 with A < 0) must get zero gradient")
        if grad[1] == 0 or grad[2] == 0:
            raise _Fail("a token whose ratio moved the wrong way (1.5 with A < 0, or 0.5 with "
                        "A > 0) must still get a gradient: only helpful moves are clipped")

    return _run("ppo_clip_loss", [ragged, example, gradients], fn)


def check_value_loss(fn) -> bool:
    """Check ``value_loss(values, values_old, returns, response_mask, clip_eps_value) -> loss or
    (loss, stats)``."""
    g, mask, rand, garbage = _rl_case(seed=9)
    values_old, returns = garbage(rand()), garbage(rand())
    values = garbage(values_old + rand(0.3))
    want, _ = rl_losses.value_loss(values, values_old, returns, mask, 0.2)

    def example():
        loss = _loss(_call(fn, torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2), torch.ones(1, 2),
                           torch.ones(1, 2, dtype=torch.bool), 0.2))
        _expect(loss, 0.4625, "for V = [0.5, -0.1], V_old = 0, R = 1, ε = 0.2",
                [(0.925, "you forgot the factor 1/2: L_V = 0.5 · mean max(...)"),
                 (0.365, "you took the min of the two squared errors: the value clip takes the "
                  "max, the pessimistic one")])

    def unclipped():
        loss = _loss(_call(fn, values, values_old, returns, mask, None))
        want_plain, _ = rl_losses.value_loss(values, values_old, returns, mask, None)
        _expect(loss, want_plain, "with clip_eps_value=None (plain 0.5·mean (V - R)²)")

    def ragged():
        loss = _loss(_call(fn, values, values_old, returns, mask, 0.2))
        clipped = values_old + (values - values_old).clamp(-0.2, 0.2)
        err = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
        wrong = [(0.5 * err.mean(), "masked tokens changed your loss: average over response_mask "
                  "only"),
                 (0.5 * (torch.maximum((values - returns) ** 2, (values.clamp(-0.2, 0.2)
                                                                 - returns) ** 2) * mask).sum()
                  / mask.sum(), "clip the CHANGE of the value around V_old: V_old + clip(V - "
                  "V_old, -ε, ε)")]
        _expect(loss, want, "on random values with responses of 5, 3 and 1 tokens, ε = 0.2", wrong)

    def gradient():
        v = values.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, v, values_old, returns, mask, 0.2)), v,
                           "your loss")
        if grad[~mask].abs().max() > 0:
            raise _Fail("masked tokens get a gradient: only response tokens train the critic")

    return _run("value_loss", [example, unclipped, ragged, gradient], fn)


# ============================================================================ overoptimisation


def check_kl_best_of_n(fn) -> bool:
    """Check ``kl_best_of_n(n) -> log n - (n - 1)/n`` for a number or an array of n."""
    def values():
        for n, want in ((1, 0.0), (2, math.log(2) - 0.5), (1024, math.log(1024) - 1023 / 1024)):
            got = _call(fn, n)
            try:
                got = float(got)
            except (TypeError, ValueError):
                raise _Fail(f"kl_best_of_n({n}) should be a number, got {type(got).__name__}") \
                    from None
            wrong = [(math.log2(n) - (n - 1) / n, "use the natural log (nats), not log2"),
                     (math.log(n) - 1 / n, "the correction is (n - 1)/n, not 1/n"),
                     (math.log(n), "you left out the correction -(n - 1)/n")]
            _expect(got, want, f"for n = {n}", [(w, m) for w, m in wrong if w != want])

    def arrays():
        ns = np.array([1, 4, 16, 256])
        try:
            got = _call(fn, ns)
        except _Fail as failure:
            raise _Fail(f"{failure}; it must also accept a numpy array of n: use np.log, not "
                        f"math.log") from None
        if isinstance(got, torch.Tensor):
            got = got.numpy()
        got = np.asarray(got, dtype=np.float64)
        if got.shape != ns.shape:
            raise _Fail(f"for an array of n = {ns.tolist()} you returned shape {got.shape}; use "
                        f"np.log (math.log takes one number only)")
        _expect(got, overopt_math.kl_best_of_n(ns), f"for n = {ns.tolist()}")

    def bound_and_growth():
        ns = np.array([1, 2, 8, 64, 4096])
        got = np.asarray(_call(fn, ns), dtype=np.float64)
        if np.any(np.diff(got) <= 0) or np.any(got > np.log(ns) + 1e-12):
            raise _Fail(f"KL_bon must grow with n and stay below log n; got {_fmt(got)}")

    return _run("kl_best_of_n", [values, arrays, bound_and_growth], fn)


def _alpha_beta(out, what):
    if hasattr(out, "alpha") and hasattr(out, "beta"):
        return float(out.alpha), float(out.beta)
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        try:
            return float(out[0]), float(out[1])
        except (TypeError, ValueError):
            pass
    raise _Fail(f"{what} should return a GaoFit or a pair (alpha, beta), got {type(out).__name__}")


def check_gao_fit(fn, form: str = "bon") -> bool:
    """Check a least-squares fit of Gao et al.'s curve: ``fit_bon(d, gain)`` (form "bon",
    ``d(α - βd)``) or ``fit_rl(d, gain)`` (form "rl", ``d(α - β log d)``)."""
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    reference = overopt_math.fit_bon if form == "bon" else overopt_math.fit_rl
    curve = (lambda d, a, b: d * (a - b * d)) if form == "bon" else \
        (lambda d, a, b: d * (a - b * np.log(d)))
    d = np.array([0.3, 0.6, 1.0, 1.4, 1.8, 2.2, 2.6]) if form == "rl" else \
        np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    noise = np.array([0.03, -0.05, 0.02, 0.04, -0.03, 0.01, -0.02])
    name = f"fit_{form}"

    def exact():
        a, b = (2.0, 0.5) if form == "bon" else (1.0, 0.5)
        got = _alpha_beta(_call(fn, d, curve(d, a, b)), f"your {name}")
        _expect(got, [a, b], f"on a noiseless curve with α = {a}, β = {b}",
                [([a, -b], f"your β has the wrong sign: the curve is "
                  f"{'d(α - βd)' if form == 'bon' else 'd(α - β log d)'}, so β > 0 when the "
                  f"gain turns down")], atol=1e-6)

    def noisy():
        gain = curve(d, 1.5, 0.4) + noise
        got = _alpha_beta(_call(fn, d, gain), f"your {name}")
        want = reference(d, gain)
        X = np.stack([np.ones_like(d), d, -d ** 2 if form == "bon" else -d * np.log(d)], 1)
        with_intercept = np.linalg.lstsq(X, gain, rcond=None)[0][1:]
        _expect(got, [want.alpha, want.beta], "on a noisy curve (least squares)",
                [(with_intercept, "your fit has an intercept: the gain is 0 at d = 0 by "
                  "definition, so the model has no constant term")], atol=1e-6)

    return _run(name, [exact, noisy], fn)


def check_ensemble(fn) -> bool:
    """Check ``aggregate_ensemble(scores, how, k=1.0)`` over dim 0 for "mean", "min",
    "mean_minus_std"."""
    scores = torch.tensor([[1.0, 3.0, 0.0], [3.0, 3.0, 2.0], [2.0, 3.0, -2.0]],
                          dtype=torch.float64)                                      # (M=3, 3)

    def example():
        two = torch.tensor([[1.0, 3.0], [3.0, 3.0]])
        expected = {"mean": [2.0, 3.0], "min": [1.0, 3.0], "mean_minus_std": [1.0, 3.0]}
        for how, want in expected.items():
            out = _call(fn, two, how)
            if isinstance(out, tuple):
                raise _Fail(f"how={how!r} returned a tuple: torch.min(x, dim) gives (values, "
                            f"indices); take .values")
            out = _tensor(out, f"with how={how!r} your result", (2,))
            _expect(out, want, f"with how={how!r} for scores [[1, 3], [3, 3]] (2 models)")

    def three_models():
        for how in ("mean", "min", "mean_minus_std"):
            out = _tensor(_call(fn, scores, how), f"with how={how!r} your result", (3,))
            want = overopt_math.aggregate_ensemble(scores, how)
            wrong = [(overopt_math.aggregate_ensemble(scores.T, how), "reduce over dim 0 (the "
                      "models), not over the responses")]
            if how == "mean_minus_std":
                wrong.append((scores.mean(0) - scores.std(0), "use the population std "
                              "(unbiased=False), so that one model gives std 0"))
                wrong.append((scores.mean(0) + scores.std(0, unbiased=False), "it is mean MINUS "
                              "k·std: disagreement must lower the reward"))
            _expect(out, want, f"with how={how!r} for 3 models x 3 responses", wrong)

    def k_and_one_model():
        out = _tensor(_call(fn, scores, "mean_minus_std", 2.0), "with k=2 your result", (3,))
        _expect(out, overopt_math.aggregate_ensemble(scores, "mean_minus_std", 2.0),
                "with how='mean_minus_std', k=2")
        one = _tensor(_call(fn, scores[:1], "mean_minus_std"), "for one model your result", (3,))
        _expect(one, scores[0], "for a single model (std 0, not NaN)")

    return _run("aggregate_ensemble", [example, three_models, k_and_one_model], fn)


# ============================================================================ beyond vanilla RLHF


def check_dpo_loss(fn) -> bool:
    """Check ``dpo_loss(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected, beta)
    -> loss or (loss, stats)``."""
    g = torch.Generator().manual_seed(21)
    lc, lr, rc, rr = (-6 + 2 * torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4))

    def equal_to_reference():
        loss = _loss(_call(fn, lc, lr, lc.clone(), lr.clone(), 0.1))
        _expect(loss, math.log(2), "with the policy equal to the reference (every implicit "
                "reward is 0)", [(0.0, "with π_θ = π_ref the margin is 0 and -log σ(0) = log 2")])

    def value():
        want, _ = beyond_losses.dpo_loss(lc, lr, rc, rr, 0.5)
        wrong = [(-F.logsigmoid((lc - rc) - (lr - rr)).mean(), "you left out β: the implicit "
                  "reward is β·(logp - logp_ref)"),
                 (-F.logsigmoid(0.5 * (lc - lr)).mean(), "you left out the reference: the "
                  "implicit reward is β·(logp - logp_ref)"),
                 (-F.logsigmoid(0.5 * ((lr - rr) - (lc - rc))).mean(), "chosen and rejected "
                  "are swapped"),
                 (-F.logsigmoid(0.5 * ((lc - rc) - (lr - rr))).sum(), "average over the pairs, "
                  "do not sum")]
        _expect(_loss(_call(fn, lc, lr, rc, rr, 0.5)), want, "for 5 random pairs at β = 0.5",
                wrong)

    def stable():
        big = torch.tensor([-3000.0, -1.0])
        loss = _loss(_call(fn, big, big.flip(0), torch.zeros(2), torch.zeros(2), 1.0))
        if not torch.isfinite(loss):
            raise _Fail("a margin of ±3000 gives an infinite loss: use F.logsigmoid(x), not "
                        "torch.log(torch.sigmoid(x))")
        _expect(loss, 1499.5 + 0.5 * math.log1p(math.exp(-2999.0)), "at margins -2999 and +2999")

    def gradient():
        x = lc.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, x, lr, rc, rr, 0.5)), x, "your loss")
        m = 0.5 * ((lc - rc) - (lr - rr))
        _expect(grad, -0.5 * torch.sigmoid(-m) / 5, "for the gradient with respect to logp_chosen")

    return _run("dpo_loss", [equal_to_reference, value, stable, gradient], fn)


def check_group_advantages(fn) -> bool:
    """Check ``group_advantages(scores, group_size, eps=1e-6) -> (B,)``."""
    def example():
        out = _tensor(_call(fn, torch.tensor([1.0, 3.0, 5.0, 5.0]), 2), "your advantages", (4,))
        _expect(out, [-1.0, 1.0, 0.0, 0.0], "for scores [1, 3, 5, 5] in groups of 2",
                [([1.0, -1.0, 0.0, 0.0], "the sign is flipped: a reply better than its group "
                  "gets a positive advantage")])

    def groups():
        scores = torch.tensor([1.0, 2.0, 6.0, -1.0, 0.0, 4.0], dtype=torch.float64)
        want = beyond_losses.group_advantages(scores, 3)
        g = scores.reshape(2, 3)
        c = g - g.mean(1, keepdim=True)
        strided = scores.reshape(3, 2).T
        cs = strided - strided.mean(1, keepdim=True)
        wrong = [(c.reshape(-1), "divide by the group's standard deviation (+ eps)"),
                 ((c / (g.std(1, keepdim=True) + 1e-6)).reshape(-1), "use the population std "
                  "(unbiased=False), not the sample std"),
                 ((cs / (cs.pow(2).mean(1, keepdim=True).sqrt() + 1e-6)).T.reshape(-1),
                  "a group is group_size ADJACENT rows: rows [g·G, (g+1)·G)")]
        out = _tensor(_call(fn, scores, 3), "your advantages", (6,))
        _expect(out, want, "for [1, 2, 6, -1, 0, 4] in groups of 3", wrong)
        _expect(out.reshape(2, 3).sum(1), [0.0, 0.0], "for the sum of each group's advantages")

    def constant():
        out = _tensor(_call(fn, torch.tensor([2.0, 2.0, 2.0, 0.0, 1.0, 2.0]), 3),
                      "with a constant group your advantages", (6,))
        _expect(out[:3], [0.0, 0.0, 0.0], "for a group whose replies all scored 2 (add eps "
                "to the std so that 0/0 does not happen)")

    return _run("group_advantages", [example, groups, constant], fn)


def check_ppo_ptx_loss(fn) -> bool:
    """Check ``ppo_ptx_loss(pg_loss, logits_ptx, input_ids_ptx, attention_mask_ptx, ptx_coef)
    -> loss or (loss, stats)``."""
    g = torch.Generator().manual_seed(22)
    logits = 2 * torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    ids = torch.randint(1, 6, (2, 5), generator=g)
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pg = torch.tensor(0.3, dtype=torch.float64)

    def uniform():
        loss = _loss(_call(fn, pg, torch.zeros(2, 5, 6, dtype=torch.float64), ids, am, 2.0))
        _expect(loss, 0.3 + 2 * math.log(6), "for uniform logits over 6 words, ptx_coef = 2 "
                "(pg_loss + 2·log 6)", [(2 * 0.3 + math.log(6), "ptx_coef multiplies the "
                                          "pretraining NLL, not the PPO loss"),
                                         (0.3 - 2 * math.log(6), "the NLL is ADDED")])

    def value():
        want, _ = beyond_losses.ppo_ptx_loss(pg, logits, ids, am, 0.5)
        lp_all = F.log_softmax(logits, -1)
        noshift = lp_all.gather(-1, ids[..., None])[..., 0]
        shifted = lp_all[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        wrong = [(pg - 0.5 * (noshift * am).sum() / am.sum(), "off by one: the logits at t "
                  "predict the token at t+1 (pair logits[:, :-1] with input_ids[:, 1:])"),
                 (pg - 0.5 * shifted.mean(), "padding counted: average only over real tokens "
                  "(attention_mask)")]
        _expect(_loss(_call(fn, pg, logits, ids, am, 0.5)), want,
                "for 2 rows (one padded) at ptx_coef = 0.5", wrong)

    def zero():
        _expect(_loss(_call(fn, pg, logits, ids, am, 0.0)), 0.3, "with ptx_coef = 0 (plain PPO)")

    return _run("ppo_ptx_loss", [uniform, value, zero], fn)
