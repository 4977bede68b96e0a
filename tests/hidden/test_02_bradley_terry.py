"""Hidden tests of notebook 02: ``bt_probability``, ``bradley_terry_loss``,
``plackett_luce_loss`` and ``fit_bradley_terry``.

P(y_w ≻ y_l) = σ(r_chosen − r_rejected) elementwise; L_RM = −mean log σ(r_chosen − r_rejected)
(finite and exact for any margin, with its gradient); the Plackett–Luce loss of (B, K) rewards
listed best first is −mean_b Σ_i [r_i − log Σ_{j≥i} e^{r_j}] over each row's ranked replies
(``ranking_mask``: True on them, padding at the end that may hold NaN or ±inf); the fit returns
the centred maximum-likelihood strengths of a (K, K) win table (``wins[i, j]`` = games i won
against j), in ``steps`` iterations. float64 rewards give a float64 result.
"""
import math

import torch
import torch.nn.functional as F
from _helpers import case, check_float64, check_grad, close, expect, loss_of, poison, result, rng

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


# ============================================================================ plackett_luce_loss

PL = "plackett_luce_loss"


def _pl_rows(rewards, lengths=None, denominators="rest", reverse=False):
    """Minus the Plackett–Luce log-likelihood of each ranking, term by term, in float64.

    ``denominators``: "rest" (j ≥ i, the right one), "seen" (j ≤ i, a forward cumulative sum),
    "all" (every reply of the ranking), "padded" (j ≥ i over the whole row, padding included)."""
    r = rewards.double()
    lengths = lengths or [r.shape[1]] * len(r)
    out = []
    for b, n in enumerate(lengths):
        row = r[b, :n].flip(0) if reverse else r[b, :n]
        full = r[b] if denominators == "padded" else row
        den = {"rest": lambda i: row[i:], "seen": lambda i: row[:i + 1], "all": lambda i: row,
               "padded": lambda i: full[i:]}[denominators]
        out.append(-sum(row[i] - torch.logsumexp(den(i), 0) for i in range(n)))
    return torch.stack(out)


def _pl(rewards, lengths=None):
    return _pl_rows(rewards, lengths).mean()


def _pairwise_rows(rewards, lengths=None):
    """InstructGPT's loss per ranking: −log σ(r_i − r_j) averaged over its C(n, 2) pairs."""
    r = rewards.double()
    lengths = lengths or [r.shape[1]] * len(r)
    rows = []
    for b, n in enumerate(lengths):
        i, j = torch.triu_indices(n, n, 1)
        rows.append(F.softplus(-(r[b, i] - r[b, j])).mean())
    return torch.stack(rows)


def _pl_mistakes(rewards, lengths=None):
    r = rewards.double()
    lengths = lengths or [r.shape[1]] * len(r)
    rows = _pl_rows(r, lengths)
    n = torch.tensor(lengths, dtype=torch.float64)
    top = torch.stack([-torch.log_softmax(r[b, :k], 0)[0] for b, k in enumerate(lengths)])
    return [(rows.sum(), "you summed over the rankings: the loss is a mean over prompts"),
            (-rows.mean(), "your loss has the wrong sign: it is MINUS the log-likelihood"),
            (_pl_rows(r, lengths, "seen").mean(), "your denominators run over the replies "
             "ranked ABOVE (a forward cumulative sum): the i-th choice is among the replies not "
             "yet chosen, j ≥ i (a log-cum-sum-exp from the right: flip, logcumsumexp, flip)"),
            (_pl_rows(r, lengths, "all").mean(), "every choice of yours is among ALL the "
             "replies: the i-th choice is only among those not yet chosen, j ≥ i"),
            (_pl_rows(r, lengths, reverse=True).mean(), "you read the ranking worst first: "
             "the replies are listed best first"),
            (_pairwise_rows(r, lengths).mean(), "you averaged Bradley–Terry over every pair "
             "of the ranking (InstructGPT's loss): Plackett–Luce is a product of K − 1 choices, "
             "not of the C(K, 2) pairs"),
            (_pairwise_rows(r, lengths).mean() * (n * (n - 1) / 2).mean(), "you summed "
             "Bradley–Terry over every pair of the ranking: Plackett–Luce is a product of "
             "K − 1 choices, not of the C(K, 2) pairs"),
            (top.mean(), "you kept only the first choice (the best reply against all): the "
             "ranking is K − 1 choices, each among the replies not yet chosen"),
            ((rows / n).mean(), "you averaged over the positions of each ranking: sum the "
             "log-probabilities of its choices, then average over prompts"),
            ((rows / (n - 1)).mean(), "you averaged over the choices of each ranking: sum the "
             "log-probabilities of its choices, then average over prompts"),
            (rows.sum() / n.sum(), "you averaged over every reply of the batch: sum within each "
             "ranking, then average over prompts")]


def _rankings(seed, shape, scale=2.0, lengths=None, fill=None):
    """Rewards (B, K) and the mask of rankings of the given lengths (padding at the end)."""
    g = rng(seed)
    r = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    lengths = lengths or [shape[1]] * shape[0]
    mask = torch.arange(shape[1])[None, :] < torch.tensor(lengths)[:, None]
    if fill is not None:
        r = torch.where(mask, r, torch.full_like(r, fill))
    return r, mask, list(lengths)


def test_plackett_luce_loss__exact_on_rankings_of_four_to_nine(student):
    """Full rankings of K = 4, 6 and 9 replies (InstructGPT's range), no mask: the exact mean
    over prompts of −Σ_i [r_i − log Σ_{j≥i} e^{r_j}]."""
    for seed, k in ((60, 4), (61, 6), (62, 9)):
        r, _, _ = _rankings(seed, (5, k))
        loss = loss_of(student.call(PL, r))
        expect(loss, _pl(r), f"for 5 full rankings of K = {k} replies (no ranking_mask)",
               _pl_mistakes(r), atol=1e-9)


def test_plackett_luce_loss__two_replies_is_bradley_terry(student):
    """K = 2: −mean log σ(r_1 − r_2), the Bradley–Terry loss, also at margins of ±50."""
    g = rng(63)
    r = 3 * torch.randn(7, 2, generator=g, dtype=torch.float64)
    r[5], r[6] = torch.tensor([-25.0, 25.0]), torch.tensor([30.0, -20.0])
    loss = loss_of(student.call(PL, r))
    bt = F.softplus(-(r[:, 0] - r[:, 1])).mean()
    expect(loss, bt, "for 7 rankings of K = 2 replies (it is the Bradley–Terry loss "
           "-mean log sigmoid(r_1 - r_2))", _pl_mistakes(r), atol=1e-9)


def test_plackett_luce_loss__ragged_rankings_with_padding(student):
    """Rankings of 6, 4, 2 and 3 replies padded to K = 6 with a large finite reward: the
    padding is no reply at all — neither a choice nor in any denominator."""
    r, mask, lengths = _rankings(64, (4, 6), lengths=[6, 4, 2, 3], fill=7.5)
    with case("for rankings of 6, 4, 2 and 3 replies padded to K = 6 (ranking_mask False on the "
              "padding, which holds 7.5)"):
        loss = loss_of(student.call(PL, r, mask))
        wrong = [(_pl(r), "the padding counted as replies: use ranking_mask"),
                 (_pl_rows(r, lengths, "padded").mean(), "the padding still enters your "
                  "denominators: set it to -inf before the log-cum-sum-exp (torch.where)")]
        expect(loss, _pl(r, lengths), "wrong loss", wrong + _pl_mistakes(r, lengths),
               atol=1e-9)


def test_plackett_luce_loss__padding_holding_nan_and_inf(student):
    """NaN, +inf and -inf on the padding: a finite, exact loss and gradient (0 on the
    padding)."""
    r, mask, lengths = _rankings(65, (4, 5), lengths=[5, 2, 4, 3])
    bad = poison(r, mask)
    with case("with padded positions holding NaN, +inf and -inf (rankings of 5, 2, 4 and 3 "
              "replies)"):
        loss = loss_of(student.call(PL, bad, mask))
        if not math.isfinite(float(loss)):
            raise AssertionError(f"your loss is {float(loss)}: a padded position reached it "
                                 f"(0 · NaN is NaN: select the ranked replies with torch.where "
                                 f"before any arithmetic, rather than multiplying by the mask)")
        expect(loss, _pl(r, lengths), "wrong loss", _pl_mistakes(r, lengths), atol=1e-9)
        x = r.clone().requires_grad_(True)
        _pl(x, lengths).backward()
        check_grad(student, PL, (bad, mask), 0, x.grad, "for the gradient with respect to the "
                   "rewards (0 on the padding)", atol=1e-9)


def test_plackett_luce_loss__shift_per_prompt_and_the_mask_by_name(student):
    """A different constant added to each ranking changes nothing; ranking_mask=None (or left
    out) is an all-True mask."""
    r, mask, lengths = _rankings(66, (5, 4), lengths=[4, 3, 4, 2, 4])
    base = loss_of(student.call(PL, r, mask))
    shift = torch.tensor([[300.0], [-40.0], [0.5], [1e3], [-7.0]], dtype=torch.float64)
    with case("adding a different constant to the rewards of each ranking"):
        shifted = loss_of(student.call(PL, r + shift, ranking_mask=mask))
        expect(shifted, base, "your loss changed: each choice is a softmax over the replies "
               "left, so only differences of rewards within a ranking count", atol=1e-9)
    with case("with ranking_mask=None"):
        full = loss_of(student.call(PL, r, ranking_mask=None))
        expect(full, _pl(r), "ranking_mask=None means every entry is a ranked reply",
               _pl_mistakes(r), atol=1e-9)
        every = loss_of(student.call(PL, r, torch.ones(5, 4, dtype=torch.bool)))
        expect(every, full, "an all-True ranking_mask gave another loss than ranking_mask=None",
               atol=1e-9)


def test_plackett_luce_loss__large_rewards_are_stable(student):
    """Rewards near ±1e4 (float64) and 300 (float32), gaps from 0.5 to 2e4: finite and
    exact (exp(r) overflows; a log-cum-sum-exp does not)."""
    cases = ((torch.tensor([[1e4 + 1, 1e4, 1e4 - 0.5, -1e4], [-1e4, 0.0, 1e4, 5e3]],
                           dtype=torch.float64), "float64 rewards near ±1e4"),
             (torch.tensor([[301.0, 300.0, 299.5, -300.0], [-300.0, 0.0, 300.0, 150.0]]),
              "float32 rewards near ±300"))
    for r, label in cases:
        with case(f"for {label}"):
            loss = loss_of(student.call(PL, r))
            if not math.isfinite(float(loss)):
                raise AssertionError(f"your loss is {float(loss)}: exp(r) overflows; use "
                                     f"torch.logcumsumexp (or torch.logsumexp), never exp then "
                                     f"log")
            expect(loss, _pl(r), "wrong loss", _pl_mistakes(r), atol=1e-6, rtol=1e-6)


def test_plackett_luce_loss__gradient_raises_the_best_and_lowers_the_worst(student):
    """The exact gradient; on every ranking it is negative for the best reply (raising its
    reward lowers the loss) and positive for the worst."""
    r, mask, lengths = _rankings(67, (3, 5), lengths=[5, 3, 4])
    x = r.clone().requires_grad_(True)
    _pl(x, lengths).backward()
    grad = check_grad(student, PL, (r, mask), 0, x.grad, "for the gradient with respect to the "
                      "rewards of rankings of 5, 3 and 4 replies", atol=1e-9)
    for b, n in enumerate(lengths):
        if not (grad[b, 0] < 0 < grad[b, n - 1]):
            raise AssertionError("your gradient should push the best reply's reward up and the "
                                 "worst reply's down (dL/dr_1 < 0 < dL/dr_n)")


def test_plackett_luce_loss__batch_of_one_and_the_order_matters(student):
    """One ranking: exact; listed in the order of its rewards it costs less than listed in the
    reverse order; reordering the prompts changes nothing."""
    r = torch.tensor([[1.5, 0.5, -0.25, -2.0]], dtype=torch.float64)
    best_first = loss_of(student.call(PL, r))
    expect(best_first, _pl(r), "for one ranking of rewards [1.5, 0.5, -0.25, -2]",
           _pl_mistakes(r), atol=1e-9)
    worst_first = loss_of(student.call(PL, r.flip(1)))
    if not float(best_first) < float(worst_first):
        raise AssertionError("a ranking that agrees with the rewards should cost less than the "
                             "reverse ranking: the replies are listed best first")
    r, mask, _ = _rankings(68, (4, 5), lengths=[5, 3, 4, 2])
    perm = torch.tensor([2, 0, 3, 1])
    a = loss_of(student.call(PL, r, mask))
    b = loss_of(student.call(PL, r[perm], mask[perm]))
    expect(b, a, "reordering the prompts (rows) changed your loss", atol=1e-9)


def test_plackett_luce_loss__float64_stays_float64(student):
    """float64 rewards give a float64 loss, exact to float64 precision."""
    r, mask, lengths = _rankings(69, (3, 6), lengths=[6, 4, 5])
    check_float64(student, PL, (r, mask), "with float64 rewards", _pl(r, lengths), atol=1e-13)


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
