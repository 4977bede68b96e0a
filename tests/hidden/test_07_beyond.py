"""Hidden tests of notebook 07: ``dpo_loss``, ``group_advantages``, ``ppo_ptx_loss``.

DPO: L = −mean log σ(β[(logp_c − logp_ref_c) − (logp_r − logp_ref_r)]) over (B,) sequence
log-probabilities, finite for any margin. GRPO: A_i = (r_i − mean_g) / (std_g + eps) over
contiguous groups of ``group_size`` rows, population std. PPO-ptx: pg_loss + ptx_coef · the mean
next-token NLL of the pretraining batch over positions where the token and the one before it
are real (attention_mask 1); logits at padded positions may hold anything, NaN and ±inf included.
float64 inputs give float64 results.
"""
import math

import torch
import torch.nn.functional as F
from _helpers import case, check_float64, check_grad, expect, loss_of, poison, result, rng

DPO, GROUP, PTX = "dpo_loss", "group_advantages", "ppo_ptx_loss"

# ============================================================================ dpo_loss


def _dpo(lc, lr, rc, rr, beta):
    return -F.logsigmoid(beta * ((lc - rc) - (lr - rr)).double()).mean()


def _dpo_mistakes(lc, lr, rc, rr, beta):
    lc, lr, rc, rr = (t.double() for t in (lc, lr, rc, rr))
    return [(-F.logsigmoid((lc - rc) - (lr - rr)).mean(), "you left out beta: the implicit "
             "reward is beta * (logp - logp_ref)"),
            (-F.logsigmoid(beta * ((lr - rr) - (lc - rc))).mean(), "chosen and rejected are "
             "swapped: the chosen reply's implicit reward comes first"),
            (-F.logsigmoid(beta * ((lc + rc) - (lr + rr))).mean(), "subtract the reference "
             "log-probabilities (logp - logp_ref), do not add them"),
            (-F.logsigmoid(beta * (lc - lr)).mean(), "you left out the reference model: the "
             "implicit reward is beta * (logp - logp_ref)"),
            (-F.logsigmoid(beta * ((lc - rc) - (lr - rr))).sum(), "average over the pairs "
             "(mean), do not sum"),
            (F.logsigmoid(beta * ((lc - rc) - (lr - rr))).mean(), "the sign is flipped: the "
             "loss is MINUS the mean log sigmoid")]


def _dpo_args(seed, B=6, dtype=torch.float64):
    g = rng(seed)
    return tuple(-5 + 3 * torch.randn(B, generator=g, dtype=dtype) for _ in range(4))


def test_dpo_loss__log2_when_policy_equals_reference(student):
    """π_θ = π_ref: every implicit reward is 0 and the loss is log 2, whatever β."""
    lc, lr, _, _ = _dpo_args(70)
    for beta in (0.1, 1.0, 7.0):
        out = loss_of(student.call(DPO, lc, lr, lc.clone(), lr.clone(), beta))
        expect(out, math.log(2), f"with the policy equal to the reference (beta = {beta})",
               atol=1e-9)


def test_dpo_loss__exact_value(student):
    """Six random pairs at β = 0.1 and 0.5 (float64)."""
    args = _dpo_args(71)
    for beta in (0.1, 0.5):
        out = loss_of(student.call(DPO, *args, beta))
        expect(out, _dpo(*args, beta), f"for six random pairs at beta = {beta}",
               _dpo_mistakes(*args, beta), atol=1e-9)


def test_dpo_loss__huge_margins_stay_finite(student):
    """Implicit-reward gaps of ±2000 (float32 and float64): log σ must not be log(0)."""
    for dtype in (torch.float32, torch.float64):
        lc = torch.tensor([-1.0, -20000.0, -3.0], dtype=dtype)
        lr = torch.tensor([-20000.0, -1.0, -3.0], dtype=dtype)
        ref = torch.full((3,), -2.0, dtype=dtype)
        out = loss_of(student.call(DPO, lc, lr, ref, ref.clone(), 0.1))
        want = _dpo(lc, lr, ref, ref, 0.1)
        if not torch.isfinite(out):
            raise AssertionError(f"with implicit-reward gaps of +-2000 ({dtype}) your loss is "
                                 f"{out.item()}; use F.logsigmoid, not torch.log(torch.sigmoid(.))")
        expect(out, want, f"with implicit-reward gaps of +-2000 ({dtype})", rtol=1e-5, atol=1e-4)


def test_dpo_loss__gradient_is_the_bt_gradient(student):
    """dL/dlogp_chosen = −β σ(−β m) / B and dL/dlogp_ref_chosen = +β σ(−β m) / B."""
    args = _dpo_args(72, B=5)
    beta = 0.3
    m = beta * ((args[0] - args[2]) - (args[1] - args[3]))
    want = -beta * torch.sigmoid(-m) / 5
    check_grad(student, DPO, (*args, beta), 0, want, "the gradient with respect to logp_chosen",
               atol=1e-9)
    check_grad(student, DPO, (*args, beta), 2, -want, "the gradient with respect to "
               "logp_ref_chosen", atol=1e-9)
    check_grad(student, DPO, (*args, beta), 1, -want, "the gradient with respect to "
               "logp_rejected", atol=1e-9)


def test_dpo_loss__same_shift_of_a_pair_changes_nothing(student):
    """Adding c to a reply's log-prob under both π_θ and π_ref leaves its implicit reward alone."""
    args = _dpo_args(73)
    c = torch.linspace(-4, 4, 6, dtype=torch.float64)
    a = loss_of(student.call(DPO, *args, 0.2))
    b = loss_of(student.call(DPO, args[0] + c, args[1] - c, args[2] + c, args[3] - c, 0.2))
    expect(b, a.item(), "after adding c to logp_chosen and logp_ref_chosen (and -c to both "
           "rejected ones): only log-RATIOS to the reference count", atol=1e-9)


def test_dpo_loss__batch_of_one_and_float64(student):
    """One pair; float64 inputs give a float64 loss, exact to float64 precision."""
    args = tuple(torch.tensor([v], dtype=torch.float64) for v in (-4.0, -6.5, -5.0, -5.5))
    with case("for one pair (B = 1) at beta = 0.3"):
        out = loss_of(student.call(DPO, *args, 0.3))
        expect(out, _dpo(*args, 0.3), "wrong loss", _dpo_mistakes(*args, 0.3), atol=1e-12)
    args = _dpo_args(82)
    check_float64(student, DPO, (*args, 0.2), "with float64 log-probabilities",
                  _dpo(*args, 0.2), atol=1e-13)


# ============================================================================ group_advantages


def _group(scores, G, eps=1e-6):
    s = scores.double().reshape(-1, G)
    c = s - s.mean(1, keepdim=True)
    return (c / (c.pow(2).mean(1, keepdim=True).sqrt() + eps)).reshape(-1)


def _group_mistakes(scores, G, eps=1e-6):
    s = scores.double()
    grouped = s.reshape(-1, G)
    c = grouped - grouped.mean(1, keepdim=True)
    strided = s.reshape(G, -1).T                                   # rows g, g + B/G, ...
    cs = strided - strided.mean(1, keepdim=True)
    strided_adv = (cs / (cs.pow(2).mean(1, keepdim=True).sqrt() + eps)).T.reshape(-1)
    return [(c.reshape(-1), "divide by the group's standard deviation (+ eps)"),
            ((c / (grouped.std(1, keepdim=True) + eps)).reshape(-1), "use the population "
             "standard deviation (unbiased=False / correction=0), not the sample one"),
            ((s - s.mean()) / (s.std(correction=0) + eps), "normalise within each group of "
             "replies to the same prompt, not over the whole batch"),
            (strided_adv, "a group is group_size ADJACENT rows: rows [g*G, (g+1)*G)"),
            (-_group(scores, G, eps), "the sign is flipped: a reply better than its group "
             "gets a positive advantage")]


def test_group_advantages__exact_value(student):
    """Two groups of three, then three groups of four (float64)."""
    for scores, G in ((torch.tensor([1.0, 2.0, 6.0, -1.0, 0.0, 4.0], dtype=torch.float64), 3),
                      (torch.randn(12, generator=rng(74), dtype=torch.float64), 4)):
        out = result(student.call(GROUP, scores, G), "your advantages", scores.shape)
        expect(out, _group(scores, G), f"for {len(scores)} scores in groups of {G}",
               _group_mistakes(scores, G), atol=1e-6)


def test_group_advantages__zero_sum_and_unit_scale_per_group(student):
    """Every group's advantages sum to 0 and have mean square 1 (up to eps)."""
    scores = 5 + 3 * torch.randn(40, generator=rng(75), dtype=torch.float64)
    out = result(student.call(GROUP, scores, 8), "your advantages", (40,)).reshape(5, 8)
    expect(out.sum(1), torch.zeros(5), "the sum of each group's advantages", atol=1e-6)
    expect(out.pow(2).mean(1), torch.ones(5), "the mean square of each group's advantages",
           atol=1e-4)


def test_group_advantages__constant_group_gives_zeros(student):
    """A group whose replies all scored the same: zeros, never NaN (that is what eps is for)."""
    scores = torch.tensor([2.0, 2.0, 2.0, 2.0, 1.0, 3.0, 0.0, 0.0], dtype=torch.float64)
    out = result(student.call(GROUP, scores, 4), "with one constant group your advantages", (8,))
    expect(out, _group(scores, 4), "with a first group of four equal scores", atol=1e-6)


def test_group_advantages__each_group_on_its_own_scale(student):
    """Shifting and scaling one group's scores does not change any advantage."""
    scores = torch.randn(9, generator=rng(76), dtype=torch.float64)
    moved = scores.clone()
    moved[3:6] = 100.0 + 10.0 * moved[3:6]
    a = result(student.call(GROUP, scores, 3), "your advantages", (9,))
    b = result(student.call(GROUP, moved, 3), "your advantages", (9,))
    expect(b, a, "after moving the second group's scores to 100 + 10 r", atol=1e-5)


def test_group_advantages__float32_stays_float(student):
    """float32 scores in, float32-accurate advantages out, shape (B,)."""
    scores = torch.randn(16, generator=rng(77))
    out = result(student.call(GROUP, scores, 2), "your advantages", (16,))
    expect(out, _group(scores, 2), "for 16 float32 scores in pairs", _group_mistakes(scores, 2),
           atol=1e-4)


def test_group_advantages__eps_is_used(student):
    """eps = 0.5 on groups whose std is about 1 gives visibly smaller advantages than the default;
    a group with one constant value gives zeros for any eps."""
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    with case("with eps = 0.5 instead of the default 1e-6"):
        out = result(student.call(GROUP, scores, 4, 0.5), "your advantages", (8,))
        expect(out, _group(scores, 4, 0.5), "wrong advantages",
               [(_group(scores, 4), "your advantages ignore eps: it was 0.5 here, so divide by "
                 "(std + eps)")], atol=1e-9)
    with case("with eps passed by name, eps=0.25"):
        out = result(student.call(GROUP, scores, 4, eps=0.25), "your advantages", (8,))
        expect(out, _group(scores, 4, 0.25), "wrong advantages", atol=1e-9)


def test_group_advantages__one_group_and_float64(student):
    """A batch that is a single group (B = group_size); float64 scores give float64 advantages."""
    scores = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    with case("for a batch that is one group of three scores"):
        out = result(student.call(GROUP, scores, 3), "your advantages", (3,))
        expect(out, _group(scores, 3), "wrong advantages", _group_mistakes(scores, 3), atol=1e-9)
    scores = torch.randn(12, generator=rng(83), dtype=torch.float64)
    check_float64(student, GROUP, (scores, 4), "with float64 scores", _group(scores, 4),
                  atol=1e-12)


# ============================================================================ ppo_ptx_loss


def _nll(logits, ids, am):
    real = am.bool()
    mask = real[:, 1:] & real[:, :-1]
    lp = torch.log_softmax(logits.double()[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return -(lp * mask).sum() / mask.sum()


def _ptx_case(seed, B=3, T=6, V=5):
    g = rng(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    ids = torch.randint(1, V, (B, T), generator=g)
    am = torch.tensor([[1] * T, [1] * (T - 2) + [0, 0], [0] + [1] * (T - 1)])[:B]
    return logits, ids, am


def _ptx_mistakes(pg, logits, ids, am, coef):
    lp_all = torch.log_softmax(logits.double(), -1)
    lp_noshift = lp_all.gather(-1, ids[..., None])[..., 0]
    real = am.bool()
    mask = real[:, 1:] & real[:, :-1]
    lp = torch.log_softmax(logits.double()[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    nll = _nll(logits, ids, am)
    return [(pg - (lp_noshift * real).sum() / real.sum() * coef, "shift: the logits at "
             "position t score the token at t+1 (compare logits[:, :-1] with input_ids[:, 1:])"),
            (pg - lp.mean() * coef, "padding counts in your mean: keep only the positions where "
             "the token and the one before it are real (attention_mask)"),
            (pg + coef * (-(lp * mask).sum()), "average the NLL over the real tokens, do not "
             "sum it"),
            (coef * pg + nll, "ptx_coef multiplies the pretraining NLL, not the PPO loss"),
            (pg - coef * nll, "the pretraining term is ADDED: minimising the NLL keeps what the "
             "model knew"),
            (pg + coef * (-(lp * real[:, 1:]).sum() / real[:, 1:].sum()), "a token predicted "
             "from a padding position does not count: both x_t and x_{t+1} must be real")]


def test_ppo_ptx_loss__uniform_logits(student):
    """Uniform logits over V give pg_loss + ptx_coef · log V."""
    ids, am = torch.tensor([[1, 2, 3, 4], [2, 2, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    for coef in (0.5, 2.0):
        out = loss_of(student.call(PTX, torch.tensor(0.25, dtype=torch.float64),
                                   torch.zeros(2, 4, 7, dtype=torch.float64), ids, am, coef))
        expect(out, 0.25 + coef * math.log(7), f"with uniform logits over 7 words and "
               f"ptx_coef = {coef}", atol=1e-9)


def test_ppo_ptx_loss__exact_value_with_padding(student):
    """Right padding, left padding and a full row; ptx_coef = 0.7."""
    logits, ids, am = _ptx_case(78)
    pg = torch.tensor(-0.3, dtype=torch.float64)
    out = loss_of(student.call(PTX, pg, logits, ids, am, 0.7))
    expect(out, pg + 0.7 * _nll(logits, ids, am), "for three rows (full, right-padded, "
           "left-padded) at ptx_coef = 0.7", _ptx_mistakes(pg, logits, ids, am, 0.7), atol=1e-9)


def test_ppo_ptx_loss__padding_logits_are_ignored(student):
    """Huge logits at padding positions change nothing."""
    logits, ids, am = _ptx_case(79)
    poisoned = logits.clone()
    poisoned[1, 3:] = 1e4                  # predicts the padding of row 1
    poisoned[2, 0] = -1e4                  # the left pad of row 2
    pg = torch.tensor(0.1, dtype=torch.float64)
    a = loss_of(student.call(PTX, pg, logits, ids, am, 1.0))
    b = loss_of(student.call(PTX, pg, poisoned, ids, am, 1.0))
    expect(b, a.item(), "after putting huge logits at positions that only see or predict "
           "padding", atol=1e-9)


def test_ppo_ptx_loss__zero_coef_is_plain_ppo(student):
    """ptx_coef = 0 gives pg_loss exactly, and the gradient reaches pg_loss with weight 1."""
    logits, ids, am = _ptx_case(80)
    pg = torch.tensor(0.42, dtype=torch.float64)
    expect(loss_of(student.call(PTX, pg, logits, ids, am, 0.0)), 0.42, "with ptx_coef = 0",
           atol=1e-12)
    check_grad(student, PTX, (pg, logits, ids, am, 3.0), 0, torch.tensor(1.0, dtype=torch.float64),
               "the gradient with respect to pg_loss")


def test_ppo_ptx_loss__gradient_of_the_logits(student):
    """d/dlogits = ptx_coef · (softmax − onehot(next token)) / N on counted positions, 0 elsewhere."""
    logits, ids, am = _ptx_case(81)
    x = logits.clone().requires_grad_(True)
    (2.0 * _nll(x, ids, am)).backward()
    check_grad(student, PTX, (torch.tensor(0.0, dtype=torch.float64), logits, ids, am, 2.0), 1,
               x.grad, "the gradient with respect to logits_ptx", atol=1e-9)


def test_ppo_ptx_loss__padding_holding_nan_and_inf(student):
    """Logits of NaN, +inf and -inf at the padded positions (attention_mask 0): a finite, exact
    loss, and an exact gradient on the logits that are counted."""
    logits, ids, am = _ptx_case(84)
    bad = poison(logits, am.bool().unsqueeze(-1))
    pg = torch.tensor(0.2, dtype=torch.float64)
    with case("with padded positions whose logits hold NaN, +inf and -inf"):
        out = loss_of(student.call(PTX, pg, bad, ids, am, 1.5))
        if not math.isfinite(float(out)):
            raise AssertionError(f"your loss is {float(out)}: a padded position reached it "
                                 f"(0 · NaN is NaN: select the counted positions with "
                                 f"torch.where or ignore_index, rather than multiplying by the "
                                 f"mask)")
        expect(out, pg + 1.5 * _nll(logits, ids, am), "wrong loss", atol=1e-9)
        x = logits.clone().requires_grad_(True)
        (1.5 * _nll(x, ids, am)).backward()
        _, grads = student.grad(PTX, (pg, bad, ids, am, 1.5), (1,))
        if grads[0] is None:
            raise AssertionError("your loss does not depend on logits_ptx")
        real = am.bool()
        counted = torch.cat([real[:, 1:] & real[:, :-1], torch.zeros_like(real[:, :1])], 1)
        grad = grads[0].double()[counted]
        if not bool(torch.isfinite(grad).all()):
            raise AssertionError("the gradient on the counted logits holds NaN or inf: the "
                                 "padding leaked into it")
        expect(grad, x.grad[counted], "the gradient on the counted logits is wrong", atol=1e-9)


def test_ppo_ptx_loss__all_padding_row_and_batch_of_one(student):
    """A row that is all padding counts for nothing; a batch of one row works."""
    logits, ids, am = _ptx_case(85)
    empty = torch.cat([am, torch.zeros(1, am.shape[1], dtype=am.dtype)])
    more_logits = torch.cat([logits, torch.randn(1, *logits.shape[1:], generator=rng(86),
                                                 dtype=logits.dtype)])
    more_ids = torch.cat([ids, ids[:1]])
    pg = torch.tensor(-0.1, dtype=torch.float64)
    with case("with a fourth row that is all padding (attention_mask all 0)"):
        out = loss_of(student.call(PTX, pg, more_logits, more_ids, empty, 0.8))
        expect(out, pg + 0.8 * _nll(logits, ids, am), "the padding row changed your loss",
               atol=1e-9)
    with case("for a batch of one row with one padded position at the end"):
        one_am = torch.tensor([[1, 1, 1, 1, 1, 0]])
        out = loss_of(student.call(PTX, pg, logits[:1], ids[:1], one_am, 0.8))
        expect(out, pg + 0.8 * _nll(logits[:1], ids[:1], one_am), "wrong loss", atol=1e-9)


def test_ppo_ptx_loss__float64_stays_float64(student):
    """float64 pg_loss and logits give a float64 loss, exact to float64 precision."""
    logits, ids, am = _ptx_case(87)
    pg = torch.tensor(0.3, dtype=torch.float64)
    check_float64(student, PTX, (pg, logits, ids, am, 0.6), "with float64 pg_loss and logits",
                  pg + 0.6 * _nll(logits, ids, am), atol=1e-12)
