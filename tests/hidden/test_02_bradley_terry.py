"""Hidden tests of notebook 02: ``bt_probability``, ``bradley_terry_loss`` and
``fit_bradley_terry``.

P(y_w ≻ y_l) = σ(r_chosen − r_rejected) elementwise; L_RM = −mean log σ(r_chosen − r_rejected)
(finite and exact for any margin, with its gradient); the fit returns the centred
maximum-likelihood strengths of a (K, K) win table (``wins[i, j]`` = games i won against j), in
``steps`` iterations. float64 rewards give a float64 result.
"""
import math

import torch
import torch.nn.functional as F
from _helpers import case, check_float64, check_grad, close, expect, loss_of, result, rng

from rlhf_lab.equations import losses

# ============================================================================ bt_probability

P = "bt_probability"


def _p_mistakes(c, r):
    m = (c - r).double()
    return [(torch.sigmoid(-m), "you swapped the rewards: P(y_w > y_l) = sigmoid(r_chosen - "
             "r_rejected)"),
            (m, "you returned the margin: apply the sigmoid"),
            (torch.sigmoid((c + r).double()), "only the DIFFERENCE of the rewards counts: "
             "sigmoid(r_chosen - r_rejected)")]


def test_bt_probability__elementwise_on_a_matrix(student):
    """Any shape: a (3, 4) matrix of reward pairs gives a (3, 4) matrix of probabilities."""
    g = rng(20)
    c = 2 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    r = 2 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    out = result(student.call(P, c, r), "your probability", (3, 4))
    expect(out, torch.sigmoid(c - r), "for a (3, 4) matrix of reward pairs", _p_mistakes(c, r),
           atol=1e-9)


def test_bt_probability__large_rewards_small_gap(student):
    """Rewards around 1e3 (float64) and 100 (float32) with gaps of order 1: exp(r) overflows, the
    probability does not."""
    gap = torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=torch.float64)
    for offset, dtype in ((1e3, torch.float64), (-1e3, torch.float64), (100.0, torch.float32)):
        c, r = (offset + gap).to(dtype), torch.full((4,), offset, dtype=dtype)
        out = result(student.call(P, c, r), f"with rewards near {offset:g} your probability",
                     (4,))
        expect(out, torch.sigmoid((c - r).double()), f"with rewards near {offset:g} and gaps of "
               f"order 1 ({dtype}): exp(reward) overflows; use torch.sigmoid of the difference",
               atol=1e-6)


def test_bt_probability__extreme_gaps_saturate(student):
    """Gaps of ±200 and ±1e30 in float32 and ±1e300 in float64: exactly 0 or 1, never NaN."""
    for gaps, dtype in (([200.0, -200.0, 1e30, -1e30, 0.0], torch.float32),
                        ([1e300, -1e300, 800.0, -800.0, 0.0], torch.float64)):
        c = torch.tensor(gaps, dtype=dtype)
        out = result(student.call(P, c, torch.zeros(5, dtype=dtype)),
                     f"at huge reward gaps ({dtype}) your probability", (5,))
        expect(out, [1.0, 0.0, 1.0, 0.0, 0.5], f"at reward gaps {gaps} ({dtype})", atol=1e-9)


def test_bt_probability__batch_of_one_and_scalars(student):
    """A single pair as a (1,) tensor and as 0-dim tensors."""
    c, r = torch.tensor([0.25], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    out = result(student.call(P, c, r), "for one pair your probability", (1,))
    expect(out, torch.sigmoid(c - r), "for r_chosen = [0.25], r_rejected = [1.5]",
           _p_mistakes(c, r), atol=1e-9)
    out = result(student.call(P, c[0], r[0]), "for 0-dim rewards your probability", ())
    expect(out, torch.sigmoid(c[0] - r[0]), "for 0-dim tensors r_chosen = 0.25, r_rejected = 1.5",
           atol=1e-9)


def test_bt_probability__per_pair_shift_invariance(student):
    """Adding a different constant c(x) to both rewards of each pair changes nothing."""
    g = rng(21)
    c, r = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g,
                                                                        dtype=torch.float64)
    shift = torch.tensor([-50.0, -3.0, 0.0, 0.7, 12.0, 300.0], dtype=torch.float64)
    a = result(student.call(P, c, r), "your probability", (6,))
    b = result(student.call(P, c + shift, r + shift), "your probability", (6,))
    expect(b, a, "adding a different constant to both rewards of each pair changed your "
           "probabilities: only r_chosen - r_rejected counts", atol=1e-9)


def test_bt_probability__float64_stays_float64(student):
    """float64 rewards give float64 probabilities, exact to float64 precision."""
    g = rng(25)
    c, r = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g,
                                                                            dtype=torch.float64)
    check_float64(student, P, (c, r), "with float64 rewards", torch.sigmoid(c - r), atol=1e-15)


# ============================================================================ bradley_terry_loss

L = "bradley_terry_loss"


def _softplus_mean(margin):
    return F.softplus(-margin.double()).mean()


def _l_mistakes(c, r):
    m = (c - r).double()
    return [(F.softplus(-m).sum(), "you summed over pairs: the loss is a mean"),
            (F.softplus(m).mean(), "you swapped chosen and rejected (or the sign inside the "
             "sigmoid): the loss is -log sigmoid(r_chosen - r_rejected)"),
            (-F.softplus(-m).mean(), "your loss has the wrong sign: it is MINUS the "
             "log-likelihood, so it is >= 0"),
            ((F.softplus(-c.double()) + F.softplus(r.double())).mean(), "you scored each reward "
             "on its own; Bradley-Terry uses the difference r_chosen - r_rejected"),
            (F.softplus(-m.clamp(min=-100)).mean(), "your loss is capped at large negative "
             "margins (binary_cross_entropy clamps log at -100): use F.logsigmoid")]


def test_bradley_terry_loss__mean_over_pairs(student):
    """Exact value on 7 random pairs (float64)."""
    g = rng(22)
    c = 3 * torch.randn(7, generator=g, dtype=torch.float64)
    r = 3 * torch.randn(7, generator=g, dtype=torch.float64)
    loss = loss_of(student.call(L, c, r))
    expect(loss, _softplus_mean(c - r), "on 7 random pairs", _l_mistakes(c, r), atol=1e-9)


def test_bradley_terry_loss__extreme_margins_are_exact(student):
    """Margins of ±1e4, ±800, ±50 and 0 in float64, and ±200 in float32: finite and exact."""
    cases = ((torch.tensor([-1e4, 1e4, -800.0, 800.0, -50.0, 50.0, 0.0], dtype=torch.float64),
              "float64 margins -1e4, 1e4, -800, 800, -50, 50, 0"),
             (torch.tensor([-200.0, 200.0, -1e4, 3.0], dtype=torch.float32),
              "float32 margins -200, 200, -1e4, 3"))
    for margin, label in cases:
        c, r = margin / 2, -margin / 2
        loss = loss_of(student.call(L, c, r))
        if not math.isfinite(float(loss)):
            raise AssertionError(f"for {label} your loss is {float(loss)}: log(sigmoid(x)) "
                                 f"underflows to log(0); use F.logsigmoid")
        expect(loss, _softplus_mean(c - r), f"for {label}", _l_mistakes(c, r), rtol=1e-5,
               atol=1e-6)


def test_bradley_terry_loss__gradient_at_extreme_margins(student):
    """dL/dr_chosen = -(1 - σ(m))/N and dL/dr_rejected = +(1 - σ(m))/N, also at m = ±1e4."""
    c = torch.tensor([-1e4, 1e4, -30.0, 0.5, 0.0], dtype=torch.float64)
    r = torch.tensor([0.0, 0.0, 0.0, -0.5, 0.0], dtype=torch.float64)
    want = -(1 - torch.sigmoid(c - r)) / len(c)
    check_grad(student, L, (c, r), 0, want, "for the gradient with respect to r_chosen at "
               "margins -1e4, 1e4, -30, 1, 0 (it is -(1 - sigmoid(margin))/N)", atol=1e-9)
    check_grad(student, L, (c, r), 1, -want, "for the gradient with respect to r_rejected at "
               "margins -1e4, 1e4, -30, 1, 0 (it is +(1 - sigmoid(margin))/N)", atol=1e-9)


def test_bradley_terry_loss__batch_of_one(student):
    """One pair: the loss is -log σ(m) of that pair."""
    for c, r in ((1.5, 2.5), (-3.0, -7.0)):
        ct = torch.tensor([c], dtype=torch.float64)
        rt = torch.tensor([r], dtype=torch.float64)
        loss = loss_of(student.call(L, ct, rt))
        expect(loss, _softplus_mean(ct - rt), f"for one pair r_chosen = {c}, r_rejected = {r}",
               _l_mistakes(ct, rt), atol=1e-9)


def test_bradley_terry_loss__per_pair_shifts_and_repeats(student):
    """A different constant per pair changes nothing; neither does repeating the batch."""
    g = rng(23)
    c = torch.randn(5, generator=g, dtype=torch.float64)
    r = torch.randn(5, generator=g, dtype=torch.float64)
    base = loss_of(student.call(L, c, r))
    shift = torch.tensor([100.0, -20.0, 3.0, 0.0, -400.0], dtype=torch.float64)
    shifted = loss_of(student.call(L, c + shift, r + shift))
    expect(shifted, base, "adding a different constant to both rewards of each pair changed "
           "your loss: Bradley-Terry sees only r_chosen - r_rejected", atol=1e-9)
    twice = loss_of(student.call(L, torch.cat([c, c]), torch.cat([r, r])))
    expect(twice, base, "the same pairs repeated twice gave a different loss: the loss is a mean "
           "over pairs", atol=1e-9)


def test_bradley_terry_loss__float32(student):
    """float32 rewards give the float64 answer to float32 precision."""
    g = rng(24)
    c, r = 2 * torch.randn(9, generator=g), 2 * torch.randn(9, generator=g)      # float32
    loss = loss_of(student.call(L, c, r))
    expect(loss, _softplus_mean(c - r), "on 9 float32 pairs", _l_mistakes(c, r), atol=1e-5,
           rtol=1e-5)


def test_bradley_terry_loss__float64_stays_float64(student):
    """float64 rewards give a float64 loss, exact to float64 precision."""
    g = rng(26)
    c, r = 3 * torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g,
                                                                             dtype=torch.float64)
    check_float64(student, L, (c, r), "with float64 rewards", _softplus_mean(c - r),
                  atol=1e-13)


# ============================================================================ fit_bradley_terry

FIT = "fit_bradley_terry"
TOL = 2e-3     # the notebook's gradient ascent (500 steps) gets within ~1e-5 on these tables


def _table(strengths, games):
    """Win counts exactly as Bradley-Terry expects them: its MLE is exactly ``strengths``."""
    s = torch.as_tensor(strengths, dtype=torch.float64)
    games = torch.as_tensor(games, dtype=torch.float64)
    games = torch.triu(games, 1) + torch.triu(games, 1).T
    return games * torch.sigmoid(s[:, None] - s[None, :])


def _fit(student, wins, what="your strengths", **kwargs):
    return result(student.call(FIT, wins, **kwargs), what, (len(wins),))


def _fit_mistakes(wins, s_true):
    s_true = torch.as_tensor(s_true, dtype=torch.float64)
    s_true = s_true - s_true.mean()
    return [(-s_true, "your strengths have the wrong sign: wins[i, j] counts the games team i "
             "WON against team j"),
            (s_true - s_true[0], "your strengths are not centred: return s - s.mean()"),
            (s_true.exp(), "you returned exp(s): return the strengths s themselves (centred)")]


def test_fit_bradley_terry__recovers_strengths_with_unequal_schedules(student):
    """5 teams that met 2 to 30 times each: the fit recovers the generating strengths."""
    truth = torch.tensor([1.2, 0.5, 0.0, -0.4, -1.3], dtype=torch.float64)
    games = torch.tensor([[0, 30, 4, 12, 2], [0, 0, 8, 20, 6], [0, 0, 0, 3, 25],
                          [0, 0, 0, 0, 10], [0, 0, 0, 0, 0]], dtype=torch.float64)
    wins = _table(truth, games)
    s = _fit(student, wins)
    expect(s, truth - truth.mean(), "on 5 teams with strengths [1.2, 0.5, 0, -0.4, -1.3] that "
           "met between 2 and 30 times (fractional win counts)", _fit_mistakes(wins, truth),
           atol=TOL, rtol=0)


def test_fit_bradley_terry__two_teams_log_odds(student):
    """Two teams, 7 wins to 2: s_0 - s_1 = log(7/2), centred: ±log(3.5)/2."""
    wins = torch.tensor([[0.0, 7.0], [2.0, 0.0]], dtype=torch.float64)
    s = _fit(student, wins)
    h = math.log(3.5) / 2
    expect(s, [h, -h], "for two teams where team 0 won 7 of 9 games",
           [([-h, h], "your strengths have the wrong sign: wins[i, j] counts the games team i "
             "WON against team j"), ([2 * h, 0.0], "your strengths are not centred")],
           atol=TOL, rtol=0)


def test_fit_bradley_terry__incomplete_schedule_is_the_mle(student):
    """Integer results where some pairs never met: the likelihood is at its maximum (every team's
    expected wins equal its actual wins) and the strengths are centred."""
    wins = torch.tensor([[0, 5, 0, 2, 0, 1],
                         [3, 0, 4, 0, 0, 0],
                         [0, 2, 0, 6, 1, 0],
                         [4, 0, 1, 0, 3, 0],
                         [0, 0, 5, 2, 0, 4],
                         [3, 0, 0, 0, 2, 0]], dtype=torch.float64)
    s = _fit(student, wins)
    if abs(float(s.mean())) > 1e-6:
        raise AssertionError(f"your strengths are not centred (mean {float(s.mean()):.3g}): "
                             f"return s - s.mean()")
    p = torch.sigmoid(s[:, None] - s[None, :])
    expected = ((wins + wins.T) * p).sum(1)
    worst = int((expected - wins.sum(1)).abs().argmax())
    gap = float((expected - wins.sum(1))[worst])
    if abs(gap) > 0.01:
        raise AssertionError(f"on a 6-team season where some pairs never met, your strengths "
                             f"are not the maximum-likelihood ones: team {worst} won "
                             f"{float(wins.sum(1)[worst]):.0f} games but your strengths expect "
                             f"{float(expected[worst]):.2f} (games played n_ij = wins[i, j] + "
                             f"wins[j, i]; pairs that never met count 0)")
    expect(s, losses.fit_bradley_terry(wins), "on a 6-team season where some pairs never met",
           atol=TOL, rtol=0)


def test_fit_bradley_terry__relabelling_and_transposing(student):
    """Renumbering the teams renumbers the strengths; swapping winners and losers negates
    them."""
    truth = torch.tensor([0.9, -0.2, 0.3, -1.0], dtype=torch.float64)
    wins = _table(truth, torch.full((4, 4), 12.0))
    s = _fit(student, wins)
    perm = torch.tensor([2, 0, 3, 1])
    s_perm = _fit(student, wins[perm][:, perm])
    expect(s_perm, s[perm], "renumbering the teams changed the strengths themselves (not only "
           "their order)", atol=TOL, rtol=0)
    s_t = _fit(student, wins.T.contiguous())
    expect(s_t, -s, "swapping winners and losers (wins.T) should negate every strength",
           atol=TOL, rtol=0)


def test_fit_bradley_terry__scaling_the_counts(student):
    """Ten times as many games with the same win rates give the same maximum-likelihood
    strengths (float32 input)."""
    truth = torch.tensor([-0.6, 0.8, 0.1], dtype=torch.float64)
    wins = _table(truth, torch.tensor([[0, 3, 5], [0, 0, 4], [0, 0, 0]]))
    s1 = _fit(student, wins.float())
    s10 = _fit(student, 10 * wins.float())
    expect(s1, truth - truth.mean(), "on 3 teams that met 3 to 5 times (float32 counts)",
           _fit_mistakes(wins, truth), atol=TOL, rtol=0)
    expect(s10, s1, "ten times as many games with the same win rates changed your strengths: the "
           "maximum-likelihood fit depends only on the rates", atol=TOL, rtol=0)


def test_fit_bradley_terry__steps_is_used(student):
    """``steps`` counts the iterations: one step from s = 0 is not yet the maximum, a few
    hundred are."""
    truth = torch.tensor([2.0, 0.5, -0.5, -2.0], dtype=torch.float64)
    wins = _table(truth, torch.tensor([[0, 40, 2, 3], [0, 0, 5, 30], [0, 0, 0, 6],
                                       [0, 0, 0, 0]]))
    with case("when fit_bradley_terry is given steps=1 and then steps=2000"):
        one = _fit(student, wins, steps=1)
        many = _fit(student, wins, steps=2000)
        expect(many, truth - truth.mean(), "with steps=2000 your strengths are not the maximum-"
               "likelihood ones", _fit_mistakes(wins, truth), atol=TOL, rtol=0)
        if close(one, many, atol=TOL, rtol=0):
            raise AssertionError("one step gave the same strengths as 2000: your function "
                                 "ignores its steps argument (loop `for _ in range(steps)`)")
