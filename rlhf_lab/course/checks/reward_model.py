"""Checks of notebook 02: the Bradley-Terry probability, its stable loss, the K-wise Plackett-Luce
loss, and the league-table fit."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rlhf_lab.core.plug import as_loss_and_stats
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

__all__ = ['check_bt_probability', 'check_bt_loss', 'check_plackett_luce_loss', 'check_bt_fit']


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


def _pl_rows(rewards, lengths, denominators="rest"):
    """−log P(ranking) of each row, choice by choice (float64): the i-th choice is among the
    replies j ≥ i ("rest"), or wrongly among j ≤ i ("seen"), all of them ("all"), or j ≥ i
    with the row's padding too ("padded")."""
    out = []
    for full, n in zip(rewards.double(), lengths):
        row = full[:n]
        den = {"rest": lambda i: row[i:], "seen": lambda i: row[:i + 1],
               "all": lambda i: row, "padded": lambda i: full[i:]}[denominators]
        out.append(-sum(row[i] - torch.logsumexp(den(i), 0) for i in range(n)))
    return torch.stack(out)


def _pl_wrong(rewards, lengths) -> list:
    """Known mistakes of the Plackett-Luce loss, with what each looks like."""
    r = rewards.double()
    rows = _pl_rows(r, lengths)
    pairs = []
    for row, n in zip(r, lengths):
        i, j = torch.triu_indices(n, n, 1)
        pairs.append(F.softplus(-(row[i] - row[j])).mean())
    return [(_pl_rows(r, lengths, "seen").mean(), "your denominators run over the replies "
             "ranked ABOVE (a forward cumulative sum): the i-th choice is among the replies not "
             "yet chosen, j >= i (flip, torch.logcumsumexp, flip back); or you read the "
             "ranking worst first, which gives the same number"),
            (_pl_rows(r, lengths, "all").mean(), "each of your choices is among ALL the "
             "replies: the i-th choice is only among the replies not yet chosen, j >= i"),
            (torch.stack(pairs).mean(), "you averaged Bradley-Terry over all C(K, 2) pairs "
             "(InstructGPT's loss): Plackett-Luce multiplies K - 1 choices"),
            (rows.sum(), "you summed over the rankings: average over prompts"),
            ((rows / torch.tensor(lengths, dtype=torch.float64)).mean(), "you averaged over the "
             "replies of each ranking: sum the log-probabilities of its choices"),
            (torch.stack([-torch.log_softmax(row[:n], 0)[0] for row, n in zip(r, lengths)]).mean(),
             "you kept only the first choice: a ranking is K - 1 choices, each among the replies "
             "not yet chosen"),
            (-rows.mean(), "your loss has the wrong sign: it is MINUS the log-likelihood")]


_LENGTHS = [4, 3, 2, 3]


def _ragged(fill) -> tuple:
    """Four rankings of 4, 3, 2 and 3 replies padded to K = 4 with ``fill``, and their mask."""
    rewards = torch.tensor([[1.5, 0.2, -0.4, -1.0], [0.8, 1.1, -2.0, 0.0],
                            [-0.5, -1.5, 0.0, 0.0], [0.3, 0.9, 0.1, 0.0]], dtype=torch.float64)
    mask = torch.arange(4)[None, :] < torch.tensor(_LENGTHS)[:, None]
    fills = torch.as_tensor(fill, dtype=torch.float64).expand(4, 4)
    return torch.where(mask, rewards, fills), mask, list(_LENGTHS)


def check_plackett_luce_loss(fn) -> bool:
    """Check ``plackett_luce_loss(rewards, ranking_mask=None) -> loss or (loss, stats)``."""

    def example():
        r = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
        loss = _loss(_call(fn, r))
        _expect(loss, _pl_rows(r, [3]).mean(), "for one ranking with rewards [2, 1, 0]",
                _pl_wrong(r, [3]))

    def bradley_terry():
        r = torch.stack([_R_CHOSEN, _R_REJECTED], 1)                       # (5, 2)
        want, _ = losses.bradley_terry_loss(_R_CHOSEN, _R_REJECTED)
        _expect(_loss(_call(fn, r)), want, "for rankings of K = 2 replies (the Bradley-Terry "
                "loss of exercise 2)", _pl_wrong(r, [2] * 5))

    def ragged():
        r, mask, lengths = _ragged(9.0)
        loss = _loss(_call(fn, r, mask))
        zeroed = torch.where(mask, r, torch.zeros_like(r))
        wrong = [(_pl_rows(r, [4] * 4).mean(), "the padding counted as replies: use "
                  "ranking_mask"),
                 (_pl_rows(r, lengths, "padded").mean(), "the padding still enters your "
                  "denominators: set it to -inf (torch.where) before the log-cum-sum-exp"),
                 (_pl_rows(zeroed, lengths, "padded").mean(), "the padding became replies with "
                  "reward 0 in your denominators: set it to -inf (torch.where) rather than "
                  "multiplying by the mask")]
        _expect(loss, _pl_rows(r, lengths).mean(), "for rankings of 4, 3, 2 and 3 replies "
                "padded to K = 4 with 9.0", wrong + _pl_wrong(r, lengths))

    def padding_nan():
        r, mask, lengths = _ragged([math.nan, math.inf, -math.inf, math.nan])
        loss, _ = as_loss_and_stats(_call(fn, r, mask))
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise _Fail(f"with NaN, inf and -inf on the padding your loss is {_fmt(loss)}: the "
                        f"padding reached it (0 · NaN is NaN); select the ranked replies with "
                        f"torch.where before any arithmetic")
        _expect(_loss(loss), _pl_rows(r, lengths).mean(), "for the same rankings with NaN, inf "
                "and -inf on the padding")

    def shift():
        r, mask, lengths = _ragged(0.0)
        a = _loss(_call(fn, r, mask))
        shift = torch.tensor([[3.0], [-2.0], [50.0], [0.5]], dtype=torch.float64)
        b = _loss(_call(fn, r + shift, mask))
        if not _close(a, b):
            raise _Fail(f"adding a constant to the rewards of each ranking changed your loss "
                        f"({_fmt(a.item())} vs {_fmt(b.item())}): each choice is a softmax, so "
                        f"only differences within a ranking count")

    def huge_gaps():
        for rewards, want in (([1e4, 0.0, -1e4], 0.0), ([-1e4, 0.0, 1e4], 3e4)):
            loss, _ = as_loss_and_stats(_call(fn, torch.tensor([rewards], dtype=torch.float64)))
            if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
                raise _Fail(f"for rewards {_fmt(rewards)} your loss is {_fmt(loss)} (expected "
                            f"{want:g}): exp overflows; use torch.logcumsumexp")
            _expect(_loss(loss), want, f"for one ranking with rewards {_fmt(rewards)}")

    def gradient():
        r, mask, lengths = _ragged(0.0)
        x = r.clone().requires_grad_(True)
        grad = _needs_grad(_loss(_call_live(fn, x, mask)), x, "your loss")
        y = r.clone().requires_grad_(True)
        _pl_rows(y, lengths).mean().backward()
        if grad.isnan().any():
            raise _Fail("your gradient holds NaN: keep the padding out of every operation "
                        "(torch.where)")
        _expect(grad, y.grad, "for the gradient with respect to the rewards (0 on the padding)")

    return _run("plackett_luce_loss", [example, bradley_terry, ragged, padding_nan, shift,
                                       huge_gaps, gradient], fn)


def _expected_table(strengths, games: float) -> torch.Tensor:
    """Win counts exactly as Bradley-Terry expects them (fractions allowed): its MLE is exact."""
    s = torch.as_tensor(strengths, dtype=torch.float64)
    table = games * torch.sigmoid(s[:, None] - s[None, :])
    return table * (1 - torch.eye(len(s), dtype=torch.float64))


def _league():
    from rlhf_lab.datasets import league_table  # plain data: no stage, no training
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
