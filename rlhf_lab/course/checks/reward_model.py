"""Checks of notebook 02: the Bradley-Terry probability, its stable loss, and the league-table fit."""
from __future__ import annotations

import math

import numpy as np
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

__all__ = ['check_bt_probability', 'check_bt_loss', 'check_bt_fit']


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
