"""Hidden tests of notebook 04: ``kl_k1``, ``kl_k3``, ``shaped_rewards``, ``gae``,
``ppo_clip_loss``, ``value_loss``.

Conventions of the notebook: ``response_mask`` is bool (B, R), True on reply tokens; replies are
right-padded (each row is True then False); whatever the padding holds must not leak in (for
``shaped_rewards`` even -inf log-probabilities; for every exercise NaN and ±inf, which reach
neither a result nor a loss's gradient); per-token outputs (rewards, adv, returns) are 0 on
padding; losses are token means over kept tokens and may come as ``loss`` or ``(loss, stats)``.
Log-probabilities near -200 (float32) or -1000 (float64) stay exact: work with log-ratios, not
ratios of probabilities. float64 inputs give float64 results.
"""
import math

import torch
from _helpers import (case, check_float64, check_grad, expect, garbage_fill, loss_of, pair,
                      poison, result, rng)

K1, K3, SHAPED, GAE, CLIP, VALUE = ("kl_k1", "kl_k3", "shaped_rewards", "gae", "ppo_clip_loss",
                                    "value_loss")
D = torch.float64


def _mask(lengths, R):
    """Right-padded mask: row i has ``lengths[i]`` kept tokens."""
    return torch.arange(R)[None, :] < torch.tensor(lengths)[:, None]


def _token_mean(x, mask):
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum()


def _categoricals(seed, rows=4, V=10):
    g = rng(seed)
    pi = torch.log_softmax(1.5 * torch.randn(rows, V, generator=g, dtype=D), -1)
    ref = torch.log_softmax(1.5 * torch.randn(rows, V, generator=g, dtype=D), -1)
    return pi, ref

# ============================================================================ kl_k1


def _k1_mistakes(lp, lr):
    x = (lp - lr).double()
    return [(-x, "your k1 has the wrong sign: k1 = logp - logp_ref"),
            (x.abs(), "you took the absolute value: k1 = logp - logp_ref can be negative on a "
             "token (it is unbiased only with its sign)"),
            (0.5 * x ** 2, "that is k2 = (logp - logp_ref)²/2; k1 = logp - logp_ref"),
            (lp.double().exp() - lr.double().exp(), "you subtracted probabilities: k1 is the "
             "difference of LOG-probabilities")]


def test_kl_k1__elementwise_on_any_shape(student):
    """A (2, 3, 4) tensor in, the same shape out, k1 = logp − logp_ref elementwise."""
    g = rng(50)
    lp = -3 * torch.rand(2, 3, 4, generator=g, dtype=D)
    lr = -3 * torch.rand(2, 3, 4, generator=g, dtype=D)
    out = result(student.call(K1, lp, lr), "your k1", (2, 3, 4))
    expect(out, lp - lr, "on a (2, 3, 4) tensor of log-probabilities", _k1_mistakes(lp, lr),
           atol=1e-9)


def test_kl_k1__unbiased_on_several_distributions(student):
    """Averaged over y ~ π, row by row, k1 gives KL(π‖π_ref) of that row."""
    pi, ref = _categoricals(51)
    out = result(student.call(K1, pi, ref), "your k1", tuple(pi.shape))
    mean = (pi.exp() * out).sum(-1)
    exact = (pi.exp() * (pi - ref)).sum(-1)
    if not torch.allclose(mean, exact, atol=1e-9, rtol=1e-7):
        raise AssertionError(f"averaged over y ~ π your k1 gives {mean.tolist()[0]:.4f} on the "
                             f"first of 4 distributions, but KL(π‖π_ref) = "
                             f"{exact.tolist()[0]:.4f}: k1 = logp - logp_ref")


def test_kl_k1__extreme_log_probabilities(student):
    """Log-probabilities from -1e4 to 0: exact, no overflow."""
    lp = torch.tensor([-1e4, -1e-8, -50.0, -700.0, 0.0], dtype=D)
    lr = torch.tensor([-1e-8, -1e4, -700.0, -50.0, 0.0], dtype=D)
    out = result(student.call(K1, lp, lr), "your k1", (5,))
    expect(out, lp - lr, "for log-probabilities between -1e4 and 0", _k1_mistakes(lp, lr),
           atol=1e-9)


def test_kl_k1__float32_and_scalars(student):
    """float32 (B, R) inputs and 0-dim inputs."""
    g = rng(52)
    lp, lr = -2 * torch.rand(3, 5, generator=g), -2 * torch.rand(3, 5, generator=g)
    out = result(student.call(K1, lp, lr), "your k1", (3, 5))
    expect(out, lp.double() - lr.double(), "on float32 (3, 5) inputs", _k1_mistakes(lp, lr),
           atol=1e-6)
    out = result(student.call(K1, torch.tensor(-0.5, dtype=D), torch.tensor(-2.0, dtype=D)),
                 "for 0-dim inputs your k1", ())
    expect(out, 1.5, "for 0-dim logp = -0.5, logp_ref = -2", atol=1e-9)

def test_kl_k1__log_probs_near_minus_200_and_1000(student):
    """Log-probabilities near -200 in float32 and near -1000 in float64, where exp() underflows
    to 0: k1 stays exact (subtract log-probabilities, never divide probabilities)."""
    for base, dtype in ((-200.0, torch.float32), (-1000.0, torch.float64)):
        lp = torch.tensor([base - 0.5, base, base - 3.0, base + 0.25], dtype=dtype)
        lr = torch.tensor([base, base - 0.5, base + 1.0, base + 0.25], dtype=dtype)
        with case(f"with {str(dtype)[6:]} log-probabilities near {base:g}"):
            out = result(student.call(K1, lp, lr), "your k1", (4,))
            expect(out, (lp - lr).double(), "wrong k1", _k1_mistakes(lp, lr), atol=1e-4)


def test_kl_k1__float64_stays_float64(student):
    """float64 log-probabilities give a float64 k1, exact to float64 precision."""
    g = rng(59)
    lp, lr = -3 * torch.rand(2, 5, generator=g, dtype=D), -3 * torch.rand(2, 5, generator=g, dtype=D)
    check_float64(student, K1, (lp, lr), "with float64 log-probabilities", lp - lr, atol=1e-15)


# ============================================================================ kl_k3


def _k3(lp, lr):
    log_rho = (lr - lp).double()
    return torch.expm1(log_rho) - log_rho


def _k3_mistakes(lp, lr):
    log_rho = (lr - lp).double()
    return [(_k3(lr, lp), "your ratio is upside down: ρ = π_ref/π = exp(logp_ref - logp)"),
            (torch.expm1(log_rho) + log_rho, "the log ρ term has the wrong sign: k3 = (ρ - 1) - "
             "log ρ"),
            (0.5 * log_rho ** 2, "that is k2; k3 = (ρ - 1) - log ρ with ρ = π_ref/π"),
            (log_rho.exp() - log_rho, "you forgot the -1: k3 = (ρ - 1) - log ρ"),
            (-log_rho, "that is k1; k3 = (ρ - 1) - log ρ")]


def test_kl_k3__exact_values(student):
    """Exact on log-ratios from -5 to 5 in a (2, 6) tensor."""
    lr = torch.tensor([[-1.0, -0.2, -3.0, -0.01, -2.5, -6.0], [-4.0, -0.7, -1.2, -2.0, -5.5, -0.1]],
                      dtype=D)
    lp = torch.tensor([[-2.0, -0.1, -0.5, -0.01, -7.5, -1.0], [-0.5, -0.7, -3.0, -1.0, -0.5, -4.0]],
                      dtype=D)
    out = result(student.call(K3, lp, lr), "your k3", (2, 6))
    expect(out, _k3(lp, lr), "on a (2, 6) tensor of log-probabilities", _k3_mistakes(lp, lr),
           atol=1e-9)


def test_kl_k3__unbiased_and_non_negative(student):
    """Averaged over y ~ π, row by row, k3 gives KL(π‖π_ref); every token gives k3 >= 0."""
    pi, ref = _categoricals(53)
    out = result(student.call(K3, pi, ref), "your k3", tuple(pi.shape))
    if bool((out < -1e-9).any()):
        raise AssertionError(f"your k3 is negative on a token ({float(out.min()):.3g}): "
                             f"(ρ - 1) - log ρ >= 0 for every ρ > 0")
    mean = (pi.exp() * out).sum(-1)
    exact = (pi.exp() * (pi - ref)).sum(-1)
    if not torch.allclose(mean, exact, atol=1e-9, rtol=1e-7):
        inverted = (pi.exp() * _k3(ref, pi)).sum(-1)
        hint = (" — your ratio is upside down: ρ = π_ref/π" if torch.allclose(mean, inverted)
                else "")
        raise AssertionError(f"averaged over y ~ π your k3 gives {mean.tolist()[0]:.4f} on the "
                             f"first of 4 distributions, but KL(π‖π_ref) = "
                             f"{exact.tolist()[0]:.4f}{hint}")


def test_kl_k3__close_and_far_log_ratios(student):
    """Nearly equal log-probabilities (log ρ ~ 1e-7..1e-3): tiny but >= 0; far ones (log ρ = ±30,
    -700): exact."""
    lp = torch.full((4,), -1.0, dtype=D)
    small = torch.tensor([1e-7, -1e-7, 1e-3, -1e-3], dtype=D)
    out = result(student.call(K3, lp, lp + small), "your k3", (4,))
    if bool((out < -1e-12).any()):
        raise AssertionError("your k3 is negative when logp and logp_ref are nearly equal: "
                             "(ρ - 1) - log ρ >= 0 (torch.expm1 keeps it exact)")
    expect(out, _k3(lp, lp + small), "for log ρ = 1e-7, -1e-7, 1e-3, -1e-3 (k3 ≈ (log ρ)²/2)",
           atol=1e-11, rtol=1e-3)
    lp = torch.tensor([-31.0, -1.0, -1.0], dtype=D)
    lr = torch.tensor([-1.0, -31.0, -701.0], dtype=D)
    out = result(student.call(K3, lp, lr), "your k3", (3,))
    expect(out, _k3(lp, lr), "for log ρ = 30, -30 and -700", _k3_mistakes(lp, lr), rtol=1e-6)


def test_kl_k3__float32_batch(student):
    """float32 (B, R) inputs."""
    g = rng(54)
    lp, lr = -2 * torch.rand(3, 5, generator=g), -2 * torch.rand(3, 5, generator=g)
    out = result(student.call(K3, lp, lr), "your k3", (3, 5))
    expect(out, _k3(lp, lr), "on float32 (3, 5) inputs", _k3_mistakes(lp, lr), atol=1e-6,
           rtol=1e-5)

def test_kl_k3__log_probs_near_minus_200_and_1000(student):
    """Log-probabilities near -200 in float32 and near -1000 in float64, where exp() underflows
    to 0, with log ρ from -3 to 1: k3 stays exact; and log ρ = ±200 in float64."""
    for base, dtype in ((-200.0, torch.float32), (-1000.0, torch.float64)):
        lp = torch.tensor([base - 0.5, base, base - 3.0, base + 0.25], dtype=dtype)
        lr = torch.tensor([base, base - 0.5, base + 1.0, base + 0.25], dtype=dtype)
        with case(f"with {str(dtype)[6:]} log-probabilities near {base:g}"):
            out = result(student.call(K3, lp, lr), "your k3", (4,))
            if not bool(torch.isfinite(out).all()):
                raise AssertionError("your k3 is not finite: exp(logp) underflows to 0 there, "
                                     "so a ratio of probabilities is 0/0; compute "
                                     "log ρ = logp_ref - logp first, then exp(log ρ)")
            expect(out, _k3(lp, lr), "wrong k3", _k3_mistakes(lp, lr), atol=1e-5, rtol=1e-5)
    lp = torch.tensor([-1000.0, -800.0], dtype=D)
    lr = torch.tensor([-800.0, -1000.0], dtype=D)
    with case("with float64 log-probabilities -1000 and -800 (log ρ = 200 and -200)"):
        out = result(student.call(K3, lp, lr), "your k3", (2,))
        expect(out, _k3(lp, lr), "wrong k3", _k3_mistakes(lp, lr), rtol=1e-9)


def test_kl_k3__float64_stays_float64(student):
    """float64 log-probabilities give a float64 k3, exact to float64 precision."""
    g = rng(64)
    lp, lr = -3 * torch.rand(2, 5, generator=g, dtype=D), -3 * torch.rand(2, 5, generator=g, dtype=D)
    check_float64(student, K3, (lp, lr), "with float64 log-probabilities", _k3(lp, lr),
                  atol=1e-14)


# ============================================================================ shaped_rewards


def _shaped(scores, logp, logp_ref, mask, beta):
    """r_t = -β(logp_t - logp_ref_t) + 1[t = T] score, 0 on padding (loops)."""
    out = torch.zeros(mask.shape, dtype=D)
    for b in range(mask.shape[0]):
        n = int(mask[b].sum())
        for t in range(n):
            out[b, t] = -beta * (float(logp[b, t]) - float(logp_ref[b, t]))
        out[b, n - 1] += float(scores[b])
    return out


def _rl_case(seed, lengths=(6, 3, 1, 4), R=6):
    g = rng(seed)
    mask = _mask(lengths, R)
    logp = -torch.rand(len(lengths), R, generator=g, dtype=D) * 3
    logp_ref = -torch.rand(len(lengths), R, generator=g, dtype=D) * 3
    return g, mask, logp, logp_ref


def _shaped_mistakes(scores, logp, logp_ref, mask, beta):
    k1 = torch.where(mask, logp - logp_ref, torch.zeros_like(logp))
    penalty = -beta * k1
    B, R = mask.shape
    last_col, first, every = torch.zeros(B, R, dtype=D), torch.zeros(B, R, dtype=D), \
        mask * scores[:, None]
    last_col[:, -1], first[:, 0] = scores, scores
    at_len = torch.zeros(B, R, dtype=D)
    n = mask.sum(1)
    for b in range(B):
        if n[b] < R:
            at_len[b, n[b]] = scores[b]
    log_rho = -k1
    return [(penalty + last_col, "the score went to the last column; it belongs on the last "
             "KEPT token of each row (rows end at different places)"),
            ((penalty + last_col) * mask, "the score went to the last column; it belongs on the "
             "last KEPT token of each row (rows end at different places)"),
            (penalty + first, "the score belongs on the last reply token T, not the first"),
            (penalty + every, "the score is added once per reply, on its last token, not on "
             "every token"),
            (penalty + at_len, "off by one: the last kept token is at index (number of kept "
             "tokens) - 1"),
            (-penalty + _shaped(scores, logp, logp, mask, 0.0), "your KL penalty has the wrong "
             "sign: r_t = -β (logp - logp_ref) + ..."),
            (_shaped(scores, logp, logp_ref, mask, 0.0), "you left out the KL penalty "
             "-β (logp - logp_ref)"),
            (-beta * torch.where(mask, torch.expm1(log_rho) - log_rho, torch.zeros_like(k1))
             + _shaped(scores, logp, logp, mask, 0.0), "your penalty uses k3; the shaped "
             "reward uses k1 = logp - logp_ref")]


def test_shaped_rewards__right_padded_batch(student):
    """Replies of 6, 3, 1 and 4 tokens, padding holding -inf log-probabilities: the whole
    (B, R) output, 0 on padding."""
    g, mask, logp, logp_ref = _rl_case(55)
    logp, logp_ref = garbage_fill(logp, mask, -math.inf), garbage_fill(logp_ref, mask, -math.inf)
    scores = torch.tensor([1.5, -2.0, 0.7, 3.0], dtype=D)
    beta = 0.2
    out = result(student.call(SHAPED, scores, logp, logp_ref, mask, beta), "your rewards",
                 (4, 6), allow_nan=True)
    if not bool(torch.isfinite(out).all()):
        raise AssertionError("with -inf log-probabilities on the padding your rewards hold "
                             "NaN or inf: padding can hold anything; select the kept tokens "
                             "with torch.where before subtracting (0 · inf is NaN)")
    want = _shaped(scores, logp, logp_ref, mask, beta)
    expect(out * mask, want, "on replies of 6, 3, 1 and 4 tokens at β = 0.2",
           _shaped_mistakes(scores, garbage_fill(logp, mask, 0), garbage_fill(logp_ref, mask, 0),
                            mask, beta), atol=1e-9)
    if bool((out[~mask] != 0).any()):
        raise AssertionError("the padding of your rewards is not 0 (the notebook asks for 0 on "
                             "padding)")


def test_shaped_rewards__single_token_reply_batch_of_one(student):
    """One reply of one token (R = 1): r = score - β k1; a square batch (B = R)."""
    out = result(student.call(SHAPED, torch.tensor([2.0], dtype=D),
                              torch.tensor([[-0.5]], dtype=D), torch.tensor([[-1.5]], dtype=D),
                              torch.tensor([[True]]), 0.3), "your rewards", (1, 1))
    expect(out, [[2.0 - 0.3]], "for one 1-token reply with score 2, logp = -0.5, logp_ref = -1.5, "
           "β = 0.3", [([[2.0 + 0.3]], "your KL penalty has the wrong sign"),
                       ([[-0.3]], "the score is missing: add it on the last kept token")],
           atol=1e-9)
    g, mask, logp, logp_ref = _rl_case(58, lengths=(3, 1, 2), R=3)          # B = R = 3
    scores = torch.tensor([10.0, 20.0, 30.0], dtype=D)
    out = result(student.call(SHAPED, scores, logp, logp_ref, mask, 0.1), "your rewards", (3, 3))
    expect(out, _shaped(scores, logp, logp_ref, mask, 0.1), "on 3 replies of 3, 1 and 2 tokens "
           "(B = R = 3) with scores 10, 20, 30: each score belongs to its own row, so broadcast "
           "it as scores[:, None]", _shaped_mistakes(scores, logp, logp_ref, mask, 0.1), atol=1e-6)


def test_shaped_rewards__beta_zero_and_large_beta(student):
    """β = 0: the score alone on each last kept token; β = 5: the penalty dominates; float32."""
    g, mask, logp, logp_ref = _rl_case(56, lengths=(2, 5, 5), R=5)
    scores = torch.tensor([-1.0, 4.0, 0.5], dtype=D)
    logp, logp_ref = garbage_fill(logp, mask, 9.0), garbage_fill(logp_ref, mask, -9.0)
    for beta in (0.0, 5.0):
        out = result(student.call(SHAPED, scores.float(), logp.float(), logp_ref.float(), mask,
                                  beta), "your rewards", (3, 5))
        want = _shaped(scores, logp.float(), logp_ref.float(), mask, beta)
        expect(out, want, f"at β = {beta:g} on float32 replies of 2, 5 and 5 tokens "
               f"(padding 0)", _shaped_mistakes(scores, garbage_fill(logp.float().double(), mask,
                                                                      0),
                                                garbage_fill(logp_ref.float().double(), mask, 0),
                                                mask, beta), atol=1e-5)


def test_shaped_rewards__row_sums_are_score_minus_beta_kl(student):
    """Each row sums to score - β Σ_t k1 over the kept tokens (huge junk on the padding); scores
    of ±1e6 land whole on the last kept token."""
    g, mask, logp, logp_ref = _rl_case(57, lengths=(1, 7, 3), R=7)
    logp, logp_ref = garbage_fill(logp, mask, -1e30), garbage_fill(logp_ref, mask, 1e30)
    beta = 0.05
    scores = torch.tensor([2.0, -1.5, 0.0], dtype=D)
    out = result(student.call(SHAPED, scores, logp, logp_ref, mask, beta), "your rewards", (3, 7))
    kl = torch.where(mask, logp - logp_ref, torch.zeros_like(logp)).sum(-1)
    expect(out.sum(-1), scores - beta * kl, "for each row's sum (score - β·KL) on replies of 1, "
           "7 and 3 tokens with junk of ±1e30 on the padding", atol=1e-6)
    scores = torch.tensor([1e6, -1e6, 0.0], dtype=D)
    out = result(student.call(SHAPED, scores, logp, logp_ref, mask, beta), "your rewards", (3, 7))
    expect(out, _shaped(scores, logp, logp_ref, mask, beta), "with scores 1e6, -1e6 and 0",
           _shaped_mistakes(scores, garbage_fill(logp, mask, 0), garbage_fill(logp_ref, mask, 0),
                            mask, beta), atol=1e-6, rtol=1e-6)


def test_shaped_rewards__padding_holding_nan_and_inf(student):
    """log-probabilities of NaN, +inf and -inf on the padding: finite, exact rewards, 0 on the
    padding."""
    g, mask, logp, logp_ref = _rl_case(65, lengths=(6, 2, 4, 5))
    scores = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=D)
    bad_logp, bad_ref = poison(logp, mask), poison(logp_ref.roll(1, 1), mask)
    with case("with padded positions holding NaN, +inf and -inf log-probabilities"):
        out = result(student.call(SHAPED, scores, bad_logp, bad_ref, mask, 0.1), "your rewards",
                     (4, 6), allow_nan=True)
        if not bool(torch.isfinite(out).all()):
            raise AssertionError("your rewards hold NaN or inf: a padded position reached them "
                                 "(0 · NaN is NaN: select the kept tokens with torch.where "
                                 "before any arithmetic, rather than multiplying by the mask)")
        expect(out, _shaped(scores, logp, logp_ref.roll(1, 1), mask, 0.1), "wrong rewards",
               atol=1e-9)


def test_shaped_rewards__float64_stays_float64(student):
    """float64 inputs give float64 rewards, exact to float64 precision."""
    g, mask, logp, logp_ref = _rl_case(66, lengths=(4, 1, 3), R=4)
    scores = torch.tensor([1.25, -0.5, 3.0], dtype=D)
    check_float64(student, SHAPED, (scores, logp, logp_ref, mask, 0.15), "with float64 inputs",
                  _shaped(scores, logp, logp_ref, mask, 0.15))


# ============================================================================ gae


def _gae(rewards, values, mask, gamma, lam):
    """Per row: the episode is the kept prefix; V(s_{T+1}) = 0, A_{T+1} = 0 (loops)."""
    B, R = mask.shape
    adv, ret = torch.zeros(B, R, dtype=D), torch.zeros(B, R, dtype=D)
    for b in range(B):
        n, next_v, next_a = int(mask[b].sum()), 0.0, 0.0
        for t in reversed(range(n)):
            delta = float(rewards[b, t]) + gamma * next_v - float(values[b, t])
            next_a = delta + gamma * lam * next_a
            next_v = float(values[b, t])
            adv[b, t], ret[b, t] = next_a, next_a + next_v
    return adv, ret


def _gae_past_end(rewards, values, mask, gamma, lam):
    """The mistake: the last kept token bootstraps from the next (junk) position."""
    B, R = mask.shape
    adv = torch.zeros(B, R, dtype=D)
    for b in range(B):
        n = int(mask[b].sum())
        next_v = float(values[b, n]) if n < R else 0.0
        next_a = 0.0
        for t in reversed(range(n)):
            next_a = float(rewards[b, t]) + gamma * next_v - float(values[b, t]) \
                + gamma * lam * next_a
            next_v = float(values[b, t])
            adv[b, t] = next_a
    return adv


def _gae_mistakes(rewards, values, mask, gamma, lam):
    a = _gae(rewards, values, mask, gamma, lam)[0]
    return [(_gae_past_end(rewards, values, mask, gamma, lam), "you bootstrapped past the end: "
             "after the last kept token V(s_{T+1}) = 0, whatever the padding holds"),
            (_gae(rewards, values, mask, lam, gamma)[0], "you swapped γ and λ: δ_t = r_t + "
             "γ V(s_{t+1}) - V(s_t), A_t = δ_t + γλ A_{t+1}"),
            (_gae(rewards, values, mask, gamma, lam / gamma if gamma else lam)[0] if gamma else a,
             "you discounted with λ alone: A_t = δ_t + γλ A_{t+1}"),
            (_gae(rewards, values, mask, gamma, 1.0)[0], "you discounted with γ alone: A_t = "
             "δ_t + γλ A_{t+1}"),
            (_gae(rewards, values, mask, 1.0, lam)[0], "you left γ out: δ_t = r_t + γ V(s_{t+1}) "
             "- V(s_t), A_t = δ_t + γλ A_{t+1}")]


def _gae_case(seed, lengths=(7, 4, 1, 2), R=7):
    g = rng(seed)
    mask = _mask(lengths, R)
    rewards = garbage_fill(torch.randn(len(lengths), R, generator=g, dtype=D), mask, -30.0)
    values = garbage_fill(torch.randn(len(lengths), R, generator=g, dtype=D), mask, 50.0)
    return mask, rewards, values


def test_gae__ragged_batch_exact(student):
    """Replies of 7, 4, 1 and 2 tokens with junk on the padding, γ = 0.95, λ = 0.7: adv and
    returns on the kept tokens."""
    mask, rewards, values = _gae_case(60)
    adv, ret = pair(student.call(GAE, rewards, values, mask, 0.95, 0.7), "your gae", (4, 7))
    want_adv, want_ret = _gae(rewards, values, mask, 0.95, 0.7)
    expect(adv * mask, want_adv, "for the advantages on replies of 7, 4, 1 and 2 tokens at "
           "γ = 0.95, λ = 0.7", _gae_mistakes(rewards, values, mask, 0.95, 0.7), atol=1e-9)
    expect(ret * mask, want_ret, "for the returns (adv + values on kept tokens)",
           [((adv - values) * mask, "returns are adv + values, not adv - values")], atol=1e-9)


def test_gae__no_bootstrap_past_the_end(student):
    """The last kept token has A_T = r_T - V(s_T): nothing after it counts, neither the junk
    in padded positions nor anything past the last column."""
    mask = _mask((3, 5, 2), 5)
    rewards = garbage_fill(torch.tensor([[0.0, 0.5, 1.0, 0, 0], [0.2, 0.0, 0.0, 0.1, 2.0],
                                         [1.0, -1.0, 0, 0, 0]], dtype=D), mask, 100.0)
    values = garbage_fill(torch.tensor([[0.3, 0.6, 0.4, 0, 0], [1.0, 0.8, 0.6, 0.4, 0.2],
                                        [0.1, 0.9, 0, 0, 0]], dtype=D), mask, 1000.0)
    adv, _ = pair(student.call(GAE, rewards, values, mask, 1.0, 0.9), "your gae", (3, 5))
    last = torch.tensor([2, 4, 1])
    got = adv[torch.arange(3), last]
    want = rewards[torch.arange(3), last] - values[torch.arange(3), last]
    expect(got, want, "for the advantage of each row's last kept token (it is r_T - V(s_T); the "
           "padding holds values of 1000)",
           [(want + values.gather(1, (last + 1).clamp(max=4)[:, None])[:, 0] * (last < 4),
             "you bootstrapped past the end: after the last kept token V(s_{T+1}) = 0, "
             "whatever the padding holds")], atol=1e-9)
    expect(adv * mask, _gae(rewards, values, mask, 1.0, 0.9)[0], "for the advantages at γ = 1, "
           "λ = 0.9", _gae_mistakes(rewards, values, mask, 1.0, 0.9), atol=1e-9)


def test_gae__padding_and_empty_rows_are_zero(student):
    """adv and returns are 0 on padding, also on a row with no kept token; no NaN."""
    mask, rewards, values = _gae_case(61, lengths=(5, 0, 2), R=5)
    adv, ret = pair(student.call(GAE, rewards, values, mask, 0.9, 0.8), "your gae", (3, 5))
    if bool((adv[~mask] != 0).any()) or bool((ret[~mask] != 0).any()):
        raise AssertionError("adv and returns must be 0 on padding (the notebook asks for 0 on "
                             "padding; a row with no kept token is all padding)")
    want_adv, want_ret = _gae(rewards, values, mask, 0.9, 0.8)
    expect(adv, want_adv, "for the advantages on replies of 5, 0 and 2 tokens",
           _gae_mistakes(rewards, values, mask, 0.9, 0.8), atol=1e-9)
    expect(ret, want_ret, "for the returns on replies of 5, 0 and 2 tokens", atol=1e-9)


def test_gae__one_token_batch_of_one(student):
    """B = 1, R = 1: A = r - V, returns = r."""
    adv, ret = pair(student.call(GAE, torch.tensor([[2.5]], dtype=D),
                                 torch.tensor([[0.75]], dtype=D), torch.tensor([[True]]), 0.99,
                                 0.95), "your gae", (1, 1))
    expect(adv, [[1.75]], "for one 1-token reply with r = 2.5, V = 0.75 (A = r - V)", atol=1e-9)
    expect(ret, [[2.5]], "of the return of one 1-token reply with r = 2.5, V = 0.75", atol=1e-9)


def test_gae__limits_of_gamma_and_lambda(student):
    """γ = 0: A_t = r_t - V_t. λ = 1: A_t = discounted reward-to-go - V_t. λ = 0: the TD error."""
    mask, rewards, values = _gae_case(62, lengths=(6, 3, 5), R=6)
    for gamma, lam, label in ((0.0, 0.9, "γ = 0 (A_t = r_t - V(s_t))"),
                              (0.8, 1.0, "γ = 0.8, λ = 1 (discounted reward-to-go minus V)"),
                              (0.7, 0.0, "γ = 0.7, λ = 0 (the one-step TD error)")):
        adv, ret = pair(student.call(GAE, rewards, values, mask, gamma, lam), "your gae", (3, 6))
        want_adv, want_ret = _gae(rewards, values, mask, gamma, lam)
        expect(adv * mask, want_adv, f"for the advantages at {label}",
               _gae_mistakes(rewards, values, mask, gamma, lam), atol=1e-9)
        expect(ret * mask, want_ret, f"for the returns at {label}", atol=1e-9)


def test_gae__long_float32_rollout(student):
    """R = 48 in float32 at γ = 1, λ = 0.95 (the RLHF setting)."""
    g = rng(63)
    mask = _mask((48, 30, 11), 48)
    rewards = garbage_fill(0.1 * torch.randn(3, 48, generator=g), mask, 5.0)
    values = garbage_fill(torch.randn(3, 48, generator=g), mask, -5.0)
    adv, ret = pair(student.call(GAE, rewards, values, mask, 1.0, 0.95), "your gae", (3, 48))
    want_adv, want_ret = _gae(rewards, values, mask, 1.0, 0.95)
    expect(adv * mask, want_adv, "on float32 replies of 48, 30 and 11 tokens at γ = 1, λ = 0.95",
           _gae_mistakes(rewards.double(), values.double(), mask, 1.0, 0.95), atol=1e-4)
    expect(ret * mask, want_ret, "for the returns on float32 replies", atol=1e-4)

def test_gae__padding_holding_nan_and_inf(student):
    """Rewards and values of NaN, +inf and -inf on the padding (a whole empty row included):
    finite, exact adv and returns, 0 on the padding."""
    mask, rewards, values = _gae_case(67, lengths=(6, 3, 0, 1), R=6)
    with case("with padded positions holding NaN, +inf and -inf rewards and values"):
        adv, ret = pair(student.call(GAE, poison(rewards, mask), poison(values.flip(1), mask),
                                     mask, 0.9, 0.8), "your gae", (4, 6))
        want_adv, want_ret = _gae(rewards, values.flip(1), mask, 0.9, 0.8)
        expect(adv, want_adv, "wrong advantages (0 on the padding)", atol=1e-9)
        expect(ret, want_ret, "wrong returns (0 on the padding)", atol=1e-9)


def test_gae__float64_stays_float64(student):
    """float64 rewards and values give float64 adv and returns, exact to float64 precision."""
    mask, rewards, values = _gae_case(68, lengths=(5, 2, 4), R=5)
    check_float64(student, GAE, (rewards, values, mask, 0.97, 0.9), "with float64 rewards and "
                  "values", _gae(rewards, values, mask, 0.97, 0.9))


# ============================================================================ ppo_clip_loss


def _clip_loss(logp, logp_old, adv, mask, eps):
    """-mean over kept tokens of min(ρA, clip(ρ, 1-ε, 1+ε)A), ρ = exp(logp - logp_old)."""
    zero = torch.zeros((), dtype=logp.dtype)
    ratio = torch.exp(torch.where(mask, logp - logp_old, zero))
    adv = torch.where(mask, adv, zero)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
    return -torch.where(mask, surrogate, zero).sum() / mask.sum()


def _clip_mistakes(logp, logp_old, adv, mask, eps):
    zero = torch.zeros((), dtype=D)
    lr = torch.where(mask, logp - logp_old, zero)
    a = torch.where(mask, adv, zero)
    ratio = lr.exp()
    clipped = ratio.clamp(1 - eps, 1 + eps)
    mean = lambda x: torch.where(mask, x, zero).sum() / mask.sum()
    row_mean = (torch.where(mask, torch.minimum(ratio * a, clipped * a), zero).sum(-1)
                / mask.sum(-1).clamp(min=1))
    return [(-mean(torch.maximum(ratio * a, clipped * a)), "you took the max of the two "
             "surrogates: PPO takes the min, the pessimistic one"),
            (-mean(clipped * a), "you kept only the clipped term: take the min of ρA and "
             "clip(ρ)A"),
            (-mean(ratio * a), "your loss is never clipped: take the min of ρA and clip(ρ, 1-ε, "
             "1+ε)A"),
            (-mean(torch.minimum(ratio * a, ratio * a.clamp(1 - eps, 1 + eps))), "you clipped the "
             "advantage: clip the RATIO to [1-ε, 1+ε]"),
            (_clip_loss(logp_old, logp, adv, mask, eps), "your ratio is upside down: ρ = "
             "exp(logp - logp_old)"),
            (-mean(torch.minimum(lr * a, lr.clamp(1 - eps, 1 + eps) * a)), "your ratio is not "
             "exponentiated: ρ = exp(logp - logp_old)"),
            (-_clip_loss(logp, logp_old, adv, mask, eps), "your loss has the wrong sign: "
             "minimising it must increase ρA"),
            (-torch.where(mask, torch.minimum(ratio * a, clipped * a), zero).sum(), "you summed "
             "over tokens: average over the kept tokens"),
            (-torch.where(mask, torch.minimum(ratio * a, clipped * a), zero).sum() / mask.numel(),
             "you averaged over the padding too: divide by the number of kept tokens"),
            (-row_mean.mean(), "you averaged each row, then the rows: take one mean over every "
             "kept token")]


def _ppo_case(seed, lengths=(5, 2, 4), R=5, spread=0.5):
    g = rng(seed)
    mask = _mask(lengths, R)
    logp_old = -torch.rand(len(lengths), R, generator=g, dtype=D) * 2
    logp = logp_old + spread * torch.randn(len(lengths), R, generator=g, dtype=D)
    adv = torch.randn(len(lengths), R, generator=g, dtype=D)
    return mask, garbage_fill(logp, mask, 3.0), garbage_fill(logp_old, mask, -4.0), \
        garbage_fill(adv, mask, 20.0)


def test_ppo_clip_loss__ragged_batch_exact(student):
    """Replies of 5, 2 and 4 tokens with junk on the padding, ε = 0.1 and 0.3."""
    mask, logp, logp_old, adv = _ppo_case(70)
    for eps in (0.1, 0.3):
        loss = loss_of(student.call(CLIP, logp, logp_old, adv, mask, eps))
        expect(loss, _clip_loss(logp, logp_old, adv, mask, eps), f"on replies of 5, 2 and 4 "
               f"tokens at ε = {eps}", _clip_mistakes(logp, logp_old, adv, mask, eps), atol=1e-9)


def test_ppo_clip_loss__gradient(student):
    """The gradient with respect to logp equals autograd of the reference; 0 on padding."""
    mask, logp, logp_old, adv = _ppo_case(71, lengths=(5, 3, 5, 1), spread=0.4)
    x = logp.clone().requires_grad_(True)
    _clip_loss(x, logp_old, adv, mask, 0.2).backward()
    grad = check_grad(student, CLIP, (logp, logp_old, adv, mask, 0.2), 0, x.grad,
                      "for the gradient of your loss with respect to logp (ε = 0.2)", atol=1e-9)
    assert float(grad[~mask].abs().max()) == 0.0, "padding tokens received a gradient"


def test_ppo_clip_loss__clip_boundaries(student):
    """ε = 0.3: ratios 1.29 / 0.71 still get gradient, 1.31 / 0.69 do not when A pushes them
    further; a ratio moved the harmful way always gets gradient."""
    ratio = torch.tensor([[1.29, 1.31, 0.71, 0.69, 1.31, 0.69, 1.0, 2.0]], dtype=D)
    a = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 1.0, 0.5, -2.0]], dtype=D)
    mask = torch.ones(1, 8, dtype=torch.bool)
    args = (ratio.log(), torch.zeros(1, 8, dtype=D), a, mask, 0.3)
    _, grads = student.grad(CLIP, args, (0,))
    if grads[0] is None:
        raise AssertionError("your loss does not depend on logp")
    g = grads[0][0]
    want = -(ratio * a)[0] / 8 * torch.tensor([1, 0, 1, 0, 1, 1, 1, 1], dtype=D)
    names = ["ρ = 1.29, A > 0 (inside the clip)", "ρ = 1.31, A > 0 (past 1 + ε)",
             "ρ = 0.71, A < 0 (inside the clip)", "ρ = 0.69, A < 0 (past 1 - ε)",
             "ρ = 1.31, A < 0 (moved the harmful way)", "ρ = 0.69, A > 0 (moved the harmful "
             "way)", "ρ = 1", "ρ = 2, A < 0 (moved the harmful way)"]
    for i, name in enumerate(names):
        if not math.isclose(float(g[i]), float(want[i]), rel_tol=1e-6, abs_tol=1e-12):
            raise AssertionError(f"at ε = 0.3 the token with {name} got gradient "
                                 f"{float(g[i]):.4g}, expected {float(want[i]):.4g} "
                                 f"(-ρA/N unless the clipped term is the smaller one)")


def test_ppo_clip_loss__ratio_one_and_empty_row(student):
    """logp = logp_old: the loss is -mean(A) over kept tokens; a row with no kept token changes
    nothing."""
    mask = _mask((3, 0, 4), 4)
    g = rng(72)
    logp = garbage_fill(-torch.rand(3, 4, generator=g, dtype=D), mask, 2.0)
    adv = garbage_fill(torch.randn(3, 4, generator=g, dtype=D), mask, 9.0)
    loss = loss_of(student.call(CLIP, logp, logp, adv, mask, 0.2))
    expect(loss, -adv[mask].mean(), "when logp = logp_old (ρ = 1) on replies of 3, 0 and 4 "
           "tokens: the loss is -mean(A) over the kept tokens",
           [(torch.tensor(0.0), "your ratio is not exponentiated: ρ = exp(logp - logp_old) is 1 "
             "here, not 0")] + _clip_mistakes(logp, logp, adv, mask, 0.2), atol=1e-9)
    keep = torch.tensor([0, 2])
    alone = loss_of(student.call(CLIP, logp[keep], logp[keep], adv[keep], mask[keep], 0.2))
    expect(loss, alone, "a row with no kept token changed your loss", atol=1e-9)


def test_ppo_clip_loss__large_log_ratios_and_batch_of_one(student):
    """log ρ = ±20 where the clip makes the loss finite, in float32; one token alone."""
    lr = torch.tensor([[20.0, -20.0, 20.0, 0.1, 0.0]])
    a = torch.tensor([[1.0, -1.0, -1e-6, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    logp_old = torch.full((1, 5), -1.0)
    loss = loss_of(student.call(CLIP, logp_old + lr, logp_old, a, mask, 0.2))
    want = _clip_loss((logp_old + lr).double(), logp_old.double(), a.double(), mask, 0.2)
    if not math.isfinite(float(loss)):
        raise AssertionError("with log-ratios of ±20 your loss is not finite: the clip should cap "
                             "the helpful moves (take the min of ρA and clip(ρ)A)")
    expect(loss, want, "for float32 log-ratios 20, -20, 20, 0.1 with advantages 1, -1, -1e-6, 2",
           _clip_mistakes((logp_old + lr).double(), logp_old.double(), a.double(), mask, 0.2),
           rtol=1e-4, atol=1e-5)
    one = loss_of(student.call(CLIP, torch.tensor([[-0.5]], dtype=D),
                               torch.tensor([[-1.0]], dtype=D), torch.tensor([[2.0]], dtype=D),
                               torch.tensor([[True]]), 0.2))
    expect(one, -1.2 * 2.0, "for one token with ρ = e^0.5 = 1.65, A = 2, ε = 0.2 (-(1 + ε)A)",
           [(-math.exp(0.5) * 2.0, "your loss is never clipped: take the min of ρA and "
             "clip(ρ)A")], atol=1e-9)

def test_ppo_clip_loss__padding_holding_nan_and_inf(student):
    """logp, logp_old and adv of NaN, +inf and -inf on the padding: a finite, exact loss and
    a finite, exact gradient (0 on the padding)."""
    mask, logp, logp_old, adv = _ppo_case(73, lengths=(5, 1, 3, 4))
    bad = (poison(logp, mask), poison(logp_old.flip(0), mask), poison(adv.roll(2, 1), mask))
    want = _clip_loss(logp, logp_old.flip(0), adv.roll(2, 1), mask, 0.2)
    with case("with padded positions holding NaN, +inf and -inf in logp, logp_old and adv"):
        loss = loss_of(student.call(CLIP, *bad, mask, 0.2))
        if not math.isfinite(float(loss)):
            raise AssertionError(f"your loss is {float(loss)}: a padded position reached it "
                                 f"(0 · NaN is NaN: select the kept tokens with torch.where "
                                 f"before any arithmetic, rather than multiplying by the mask)")
        expect(loss, want, "wrong loss", atol=1e-9)
        x = logp.clone().requires_grad_(True)
        _clip_loss(x, logp_old.flip(0), adv.roll(2, 1), mask, 0.2).backward()
        check_grad(student, CLIP, (*bad, mask, 0.2), 0, x.grad, "for the gradient with respect "
                   "to logp", atol=1e-9)


def test_ppo_clip_loss__log_probs_near_minus_200_and_1000(student):
    """logp and logp_old near -200 in float32 and near -1000 in float64, where exp() underflows
    to 0: the ratio comes from the log-ratio, so loss and gradient stay exact."""
    for base, dtype in ((-200.0, torch.float32), (-1000.0, torch.float64)):
        mask, logp, logp_old, adv = _ppo_case(74, lengths=(5, 3, 4), spread=0.3)
        logp, logp_old = (base + logp).to(dtype), (base + logp_old).to(dtype)
        adv = adv.to(dtype)
        args = (logp, logp_old, adv, mask, 0.2)
        with case(f"with {str(dtype)[6:]} log-probabilities near {base:g}"):
            loss = loss_of(student.call(CLIP, *args))
            if not math.isfinite(float(loss)):
                raise AssertionError(f"your loss is {float(loss)}: exp(logp) underflows to 0 "
                                     f"there, so a ratio of probabilities is 0/0; use "
                                     f"ρ = exp(logp - logp_old)")
            want = _clip_loss(logp.double(), logp_old.double(), adv.double(), mask, 0.2)
            expect(loss, want, "wrong loss", _clip_mistakes(logp.double(), logp_old.double(),
                                                           adv.double(), mask, 0.2), atol=1e-4)
            x = logp.double().clone().requires_grad_(True)
            _clip_loss(x, logp_old.double(), adv.double(), mask, 0.2).backward()
            check_grad(student, CLIP, args, 0, x.grad, "for the gradient with respect to logp",
                       atol=1e-5)


def test_ppo_clip_loss__float64_stays_float64(student):
    """float64 inputs give a float64 loss, exact to float64 precision."""
    mask, logp, logp_old, adv = _ppo_case(75)
    check_float64(student, CLIP, (logp, logp_old, adv, mask, 0.2), "with float64 inputs",
                  _clip_loss(logp, logp_old, adv, mask, 0.2))


# ============================================================================ value_loss


def _value_loss(values, values_old, returns, mask, eps):
    zero = torch.zeros((), dtype=values.dtype)
    error = (values - returns) ** 2
    if eps is not None:
        clipped = values_old + (values - values_old).clamp(-eps, eps)
        error = torch.maximum(error, (clipped - returns) ** 2)
    return 0.5 * torch.where(mask, error, zero).sum() / mask.sum()


def _value_mistakes(values, values_old, returns, mask, eps):
    zero = torch.zeros((), dtype=D)
    mean = lambda x: torch.where(mask, x, zero).sum() / mask.sum()
    plain = (values - returns) ** 2
    out = [(2 * _value_loss(values, values_old, returns, mask, eps), "you forgot the factor 1/2: "
            "L_V = 0.5 · mean max(...)"),
           (0.5 * mean(plain), "your loss ignores clip_eps_value: the clipped term "
            "(V_clip - R)² counts where it is larger")]
    if not bool(mask.all()):
        out.append((0.5 * torch.where(mask, plain, zero).sum() / mask.numel(), "you averaged over "
                    "the padding too: divide by the number of kept tokens"))
    if eps is not None:
        clipped = values_old + (values - values_old).clamp(-eps, eps)
        out += [(0.5 * mean(torch.minimum(plain, (clipped - returns) ** 2)), "you took the min "
                 "of the two squared errors: the value clip takes the max, the pessimistic one"),
                (0.5 * mean(torch.maximum(plain, (values.clamp(-eps, eps) - returns) ** 2)),
                 "clip the CHANGE of the value around V_old: V_old + clip(V - V_old, -ε, ε)"),
                (0.5 * mean((clipped - returns) ** 2), "you kept only the clipped term: take the "
                 "max of (V - R)² and (V_clip - R)²")]
    return out


def _value_case(seed, lengths=(5, 3, 1), R=5):
    g = rng(seed)
    mask = _mask(lengths, R)
    values_old = torch.randn(len(lengths), R, generator=g, dtype=D)
    values = values_old + 0.6 * torch.randn(len(lengths), R, generator=g, dtype=D)
    returns = torch.randn(len(lengths), R, generator=g, dtype=D)
    return mask, garbage_fill(values, mask, 40.0), garbage_fill(values_old, mask, -40.0), \
        garbage_fill(returns, mask, 25.0)


def test_value_loss__ragged_batch_clipped(student):
    """Replies of 5, 3 and 1 tokens with junk on the padding, ε_V = 0.25 and 0.5."""
    mask, values, values_old, returns = _value_case(80)
    for eps in (0.25, 0.5):
        loss = loss_of(student.call(VALUE, values, values_old, returns, mask, eps))
        expect(loss, _value_loss(values, values_old, returns, mask, eps), f"on replies of 5, 3 "
               f"and 1 tokens at clip_eps_value = {eps}",
               _value_mistakes(values, values_old, returns, mask, eps), atol=1e-9)


def test_value_loss__no_clip(student):
    """clip_eps_value = None: 0.5 · mean (V - R)² over kept tokens, whatever V_old is."""
    mask, values, values_old, returns = _value_case(81, lengths=(2, 5, 4))
    loss = loss_of(student.call(VALUE, values, values_old, returns, mask, None))
    expect(loss, _value_loss(values, values_old, returns, mask, None), "with clip_eps_value = "
           "None (plain 0.5 · mean (V - R)²)", _value_mistakes(values, values_old, returns, mask,
                                                              None), atol=1e-9)
    loss = loss_of(student.call(VALUE, values, values_old + 100.0, returns, mask, None))
    expect(loss, _value_loss(values, values_old, returns, mask, None), "with clip_eps_value = "
           "None, V_old must not matter", atol=1e-9)


def test_value_loss__gradient(student):
    """The gradient with respect to the values equals autograd of the reference; 0 on padding."""
    mask, values, values_old, returns = _value_case(82, lengths=(5, 4, 2, 5))
    x = values.clone().requires_grad_(True)
    _value_loss(x, values_old, returns, mask, 0.3).backward()
    grad = check_grad(student, VALUE, (values, values_old, returns, mask, 0.3), 0, x.grad,
                      "for the gradient of your loss with respect to the values (ε_V = 0.3)",
                      atol=1e-9)
    assert float(grad[~mask].abs().max()) == 0.0, "padding tokens received a gradient"


def test_value_loss__clip_regions(student):
    """V_old = 0, R = 1, ε_V = 0.2: V = 0.5 (moved toward R past the clip) gets no gradient,
    V = -0.5 (moved away) and V = 0.1 (inside) do."""
    values = torch.tensor([[0.5, -0.5, 0.1, 1.5]], dtype=D)
    args = (values, torch.zeros(1, 4, dtype=D), torch.ones(1, 4, dtype=D),
            torch.ones(1, 4, dtype=torch.bool), 0.2)
    loss = loss_of(student.call(VALUE, *args))
    want = 0.5 * (0.8 ** 2 + 1.5 ** 2 + 0.9 ** 2 + 0.8 ** 2) / 4
    expect(loss, want, "for V = [0.5, -0.5, 0.1, 1.5], V_old = 0, R = 1, ε_V = 0.2",
           _value_mistakes(*args), atol=1e-9)
    _, grads = student.grad(VALUE, args, (0,))
    if grads[0] is None:
        raise AssertionError("your loss does not depend on the values")
    g = grads[0][0]
    want_g = torch.tensor([0.0, -1.5 / 4, -0.9 / 4, 0.0], dtype=D)
    if not torch.allclose(g, want_g, atol=1e-9):
        raise AssertionError(f"with V_old = 0, R = 1, ε_V = 0.2 the gradients for V = 0.5, -0.5, "
                             f"0.1, 1.5 should be 0, -0.375, -0.225, 0 (a value clipped on the "
                             f"pessimistic side gets none); got "
                             f"{[round(v, 4) for v in g.tolist()]}")


def test_value_loss__empty_row_batch_of_one_float32(student):
    """A row with no kept token changes nothing; one token alone; float32."""
    mask, values, values_old, returns = _value_case(83, lengths=(4, 0, 3), R=4)
    v, vo, r = values.float(), values_old.float(), returns.float()
    loss = loss_of(student.call(VALUE, v, vo, r, mask, 0.2))
    expect(loss, _value_loss(v.double(), vo.double(), r.double(), mask, 0.2), "on float32 "
           "replies of 4, 0 and 3 tokens", _value_mistakes(v.double(), vo.double(), r.double(),
                                                          mask, 0.2), atol=1e-6, rtol=1e-5)
    one = loss_of(student.call(VALUE, torch.tensor([[2.0]], dtype=D),
                               torch.tensor([[1.0]], dtype=D), torch.tensor([[3.0]], dtype=D),
                               torch.tensor([[True]]), 0.5))
    expect(one, 0.5 * max(1.0, 1.5 ** 2), "for one token with V = 2, V_old = 1, R = 3, ε_V = 0.5",
           atol=1e-9)


def test_value_loss__padding_holding_nan_and_inf(student):
    """values, values_old and returns of NaN, +inf and -inf on the padding: a finite, exact
    loss and a finite, exact gradient (0 on the padding)."""
    mask, values, values_old, returns = _value_case(84, lengths=(5, 2, 4, 1))
    bad = (poison(values, mask), poison(values_old.flip(0), mask), poison(returns.roll(1, 1),
                                                                           mask))
    clean = (values, values_old.flip(0), returns.roll(1, 1))
    for eps in (0.2, None):
        with case(f"with padded positions holding NaN, +inf and -inf in values, values_old and "
                  f"returns (clip_eps_value = {eps})"):
            loss = loss_of(student.call(VALUE, *bad, mask, eps))
            if not math.isfinite(float(loss)):
                raise AssertionError(f"your loss is {float(loss)}: a padded position reached it "
                                     f"(0 · NaN is NaN: select the kept tokens with torch.where "
                                     f"before any arithmetic, rather than multiplying by the "
                                     f"mask)")
            expect(loss, _value_loss(*clean, mask, eps), "wrong loss", atol=1e-9)
            x = values.clone().requires_grad_(True)
            _value_loss(x, *clean[1:], mask, eps).backward()
            check_grad(student, VALUE, (*bad, mask, eps), 0, x.grad, "for the gradient with "
                       "respect to the values (a square taken before the mask has a NaN "
                       "derivative on the padding)", atol=1e-9)


def test_value_loss__float64_stays_float64(student):
    """float64 inputs give a float64 loss, exact to float64 precision."""
    mask, values, values_old, returns = _value_case(85)
    check_float64(student, VALUE, (values, values_old, returns, mask, 0.3), "with float64 inputs",
                  _value_loss(values, values_old, returns, mask, 0.3))
