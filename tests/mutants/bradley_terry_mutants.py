"""Realistic wrong answers to ``bt_probability``, ``bradley_terry_loss``,
``plackett_luce_loss`` and ``fit_bradley_terry``."""
import math

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------- bt_probability


def bt_probability__swapped(r_chosen, r_rejected):
    return torch.sigmoid(r_rejected - r_chosen)


def bt_probability__exp_ratio_overflows(r_chosen, r_rejected):
    return torch.exp(r_chosen) / (torch.exp(r_chosen) + torch.exp(r_rejected))


def bt_probability__exp_of_margin_overflows(r_chosen, r_rejected):
    e = torch.exp(r_chosen - r_rejected)
    return e / (1 + e)


def bt_probability__no_sigmoid(r_chosen, r_rejected):
    return r_chosen - r_rejected


def bt_probability__normalised_sigmoids(r_chosen, r_rejected):
    a, b = torch.sigmoid(r_chosen), torch.sigmoid(r_rejected)
    return a / (a + b)


def bt_probability__mean_of_batch(r_chosen, r_rejected):
    return torch.sigmoid(r_chosen - r_rejected).mean()


def bt_probability__softmax_wrong_dim(r_chosen, r_rejected):
    return torch.softmax(torch.stack([r_chosen, r_rejected]), dim=-1)[0]


def bt_probability__tanh_without_half(r_chosen, r_rejected):
    return 0.5 * (1 + torch.tanh(r_chosen - r_rejected))


def bt_probability__clamped_margin(r_chosen, r_rejected):
    return torch.sigmoid((r_chosen - r_rejected).clamp(-10, 10))


def bt_probability__flattened(r_chosen, r_rejected):
    return torch.sigmoid(r_chosen.reshape(-1) - r_rejected.reshape(-1))

# ---------------------------------------------------------------------------- bradley_terry_loss


def bradley_terry_loss__log_of_sigmoid(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()


def bradley_terry_loss__log_sigmoid_plus_eps(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected) + 1e-8).mean()


def bradley_terry_loss__bce_on_probabilities(r_chosen, r_rejected):
    p = torch.sigmoid(r_chosen - r_rejected)
    return F.binary_cross_entropy(p, torch.ones_like(p))


def bradley_terry_loss__sum(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).sum()


def bradley_terry_loss__swapped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()


def bradley_terry_loss__sign_flipped(r_chosen, r_rejected):
    return F.logsigmoid(r_chosen - r_rejected).mean()


def bradley_terry_loss__softplus_wrong_sign(r_chosen, r_rejected):
    return F.softplus(r_chosen - r_rejected).mean()


def bradley_terry_loss__independent_labels(r_chosen, r_rejected):
    """Classifies the chosen reply as good and the rejected one as bad, each on its own."""
    return (-F.logsigmoid(r_chosen) - F.logsigmoid(-r_rejected)).mean()


def bradley_terry_loss__item_inside(r_chosen, r_rejected):
    loss = -F.logsigmoid(r_chosen - r_rejected).mean()
    return torch.tensor(loss.item(), dtype=r_chosen.dtype), {"loss": loss.item()}


def bradley_terry_loss__hinge(r_chosen, r_rejected):
    return torch.relu(1 - (r_chosen - r_rejected)).mean()


def bradley_terry_loss__exp_formula(r_chosen, r_rejected):
    """log(1 + exp(-m)) written out: exp overflows at large negative margins."""
    return torch.log1p(torch.exp(r_rejected - r_chosen)).mean()

# ---------------------------------------------------------------------------- plackett_luce_loss


def _mask_of(rewards, ranking_mask):
    return torch.ones_like(rewards, dtype=torch.bool) if ranking_mask is None else ranking_mask


def _reverse_lse(scores):
    return torch.logcumsumexp(scores.flip(-1), -1).flip(-1)


def plackett_luce_loss__forward_cumsum(rewards, ranking_mask=None):
    """Denominators over the replies ranked above (and itself): a logcumsumexp without the flip."""
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    terms = torch.where(mask, s - torch.logcumsumexp(s, -1), 0.0)
    return -terms.sum(-1).mean()


def plackett_luce_loss__ignores_the_mask(rewards, ranking_mask=None):
    return -(rewards - _reverse_lse(rewards)).sum(-1).mean()


def plackett_luce_loss__multiplies_by_the_mask(rewards, ranking_mask=None):
    """Zeroes the padding by multiplying: 0 · NaN is NaN, and a 0 reward is still a reply."""
    mask = _mask_of(rewards, ranking_mask).to(rewards.dtype)
    r = rewards * mask
    return -((r - _reverse_lse(r)) * mask).sum(-1).mean()


def plackett_luce_loss__mask_only_the_terms(rewards, ranking_mask=None):
    """Masks the choices but lets the padding into every denominator."""
    mask = _mask_of(rewards, ranking_mask)
    terms = torch.where(mask, rewards - _reverse_lse(rewards), 0.0)
    return -terms.sum(-1).mean()


def plackett_luce_loss__sum_over_prompts(rewards, ranking_mask=None):
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    return -torch.where(mask, s - _reverse_lse(s), 0.0).sum()


def plackett_luce_loss__mean_over_replies(rewards, ranking_mask=None):
    """A masked mean over every ranked reply of the batch instead of a sum per ranking."""
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    return -torch.where(mask, s - _reverse_lse(s), 0.0).sum() / mask.sum()


def plackett_luce_loss__softmax_over_all(rewards, ranking_mask=None):
    """Every choice among all the replies of the ranking: a sum of log_softmax."""
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    return -torch.where(mask, torch.log_softmax(s, -1), 0.0).sum(-1).mean()


def plackett_luce_loss__top_one_only(rewards, ranking_mask=None):
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    return -torch.log_softmax(s, -1)[:, 0].mean()


def plackett_luce_loss__all_pairs_bradley_terry(rewards, ranking_mask=None):
    """InstructGPT's loss: −log σ(r_i − r_j) averaged over the C(K, 2) pairs of each ranking."""
    mask = _mask_of(rewards, ranking_mask)
    k = rewards.shape[1]
    i, j = torch.triu_indices(k, k, 1)
    pair = mask[:, i] & mask[:, j]
    nll = torch.where(pair, -F.logsigmoid(rewards[:, i] - rewards[:, j]), 0.0)
    return (nll.sum(-1) / pair.sum(-1)).mean()


def plackett_luce_loss__naive_exp(rewards, ranking_mask=None):
    mask = _mask_of(rewards, ranking_mask)
    e = torch.where(mask, torch.exp(rewards), 0.0)
    rest = e.flip(-1).cumsum(-1).flip(-1)
    return -torch.where(mask, torch.log(e / rest), 0.0).sum(-1).mean()


def plackett_luce_loss__worst_first(rewards, ranking_mask=None):
    """Reads each ranking as listed worst first: its last reply is the first choice."""
    mask = _mask_of(rewards, ranking_mask)
    n = mask.sum(-1, keepdim=True)
    pos = torch.arange(rewards.shape[1])
    r = rewards.gather(-1, torch.where(mask, n - 1 - pos, pos))
    s = torch.where(mask, r, -math.inf)
    return -torch.where(mask, s - _reverse_lse(s), 0.0).sum(-1).mean()


def plackett_luce_loss__mean_over_positions(rewards, ranking_mask=None):
    """Each ranking's log-likelihood divided by its number of replies."""
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    nll = -torch.where(mask, s - _reverse_lse(s), 0.0).sum(-1)
    return (nll / mask.sum(-1)).mean()


def plackett_luce_loss__log_of_probabilities(rewards, ranking_mask=None):
    """Forms each choice's probability, then takes its log: log(0) = -inf at large gaps."""
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards, -math.inf)
    p = torch.exp(s - _reverse_lse(s))
    return -torch.where(mask, torch.log(p), 0.0).sum(-1).mean()


def plackett_luce_loss__clamped_rewards(rewards, ranking_mask=None):
    """Clamps the rewards to ±50 'for stability': wrong for large gaps."""
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards.clamp(-50, 50), -math.inf)
    return -torch.where(mask, s - _reverse_lse(s), 0.0).sum(-1).mean()


def plackett_luce_loss__float32_arithmetic(rewards, ranking_mask=None):
    mask = _mask_of(rewards, ranking_mask)
    s = torch.where(mask, rewards.float(), -math.inf)
    return -torch.where(mask, s - _reverse_lse(s), 0.0).sum(-1).mean()


# ---------------------------------------------------------------------------- fit_bradley_terry


def _ascent(wins, steps=500, lr=1.0, games=None, sign=1.0):
    wins = torch.as_tensor(wins, dtype=torch.float64)
    games = wins + wins.T if games is None else games
    s = torch.zeros(len(wins), dtype=torch.float64)
    for _ in range(steps):
        expected = (games * torch.sigmoid(s[:, None] - s[None, :])).sum(1)
        s = s + sign * lr * (wins.sum(1) - expected) / games.sum(1).clamp(min=1e-12)
    return s


def fit_bradley_terry__transposed(wins, steps=500, lr=1.0):
    s = _ascent(torch.as_tensor(wins, dtype=torch.float64).T, steps, lr)
    return s - s.mean()


def fit_bradley_terry__not_centred(wins, steps=500, lr=1.0):
    s = _ascent(wins, steps, lr)
    return s - s[0]


def fit_bradley_terry__too_few_steps(wins, steps=15, lr=0.3):
    s = _ascent(wins, steps, lr)
    return s - s.mean()


def fit_bradley_terry__games_are_wins(wins, steps=500, lr=1.0):
    """Counts only wins[i, j] as the games of the pair (forgets wins[j, i])."""
    wins = torch.as_tensor(wins, dtype=torch.float64)
    s = _ascent(wins, steps, 0.5, games=wins)
    return s - s.mean()


def fit_bradley_terry__log_odds_heuristic(wins, steps=500, lr=1.0):
    wins = torch.as_tensor(wins, dtype=torch.float64)
    s = torch.log(wins.sum(1) / wins.sum(0))
    return s - s.mean()


def fit_bradley_terry__exp_strengths(wins, steps=500, lr=1.0):
    s = _ascent(wins, steps, lr)
    return torch.exp(s - s.mean())


def fit_bradley_terry__win_fraction(wins, steps=500, lr=1.0):
    wins = torch.as_tensor(wins, dtype=torch.float64)
    frac = wins.sum(1) / (wins + wins.T).sum(1)
    return frac - frac.mean()


def fit_bradley_terry__unnormalised_step(wins, steps=500, lr=0.01):
    """Plain gradient ascent with a small fixed step: not converged on big tables."""
    wins = torch.as_tensor(wins, dtype=torch.float64)
    games = wins + wins.T
    s = torch.zeros(len(wins), dtype=torch.float64)
    for _ in range(100):
        s = s + lr * (wins.sum(1) - (games * torch.sigmoid(s[:, None] - s[None, :])).sum(1))
    return s - s.mean()


# ---------------------------------------------------------------------------- issue #25 edge cases


def bt_probability__float32_result(r_chosen, r_rejected):
    """Was honest before issue #25: float64 rewards, float32 probabilities."""
    return torch.sigmoid(r_chosen - r_rejected).float()


def bt_probability__float32_arithmetic(r_chosen, r_rejected):
    return torch.sigmoid(r_chosen.float() - r_rejected.float()).to(r_chosen.dtype)


def bradley_terry_loss__float32_loss(r_chosen, r_rejected):
    return -F.logsigmoid((r_chosen - r_rejected).float()).mean()


def fit_bradley_terry__ignores_steps(wins, steps=500, lr=1.0):
    """Hard-codes its iteration count: ``steps`` is documented but never read."""
    wins = torch.as_tensor(wins, dtype=torch.float64)
    games, won = wins + wins.T, wins.sum(1)
    s = torch.zeros(len(wins), dtype=torch.float64)
    for _ in range(500):
        expected = (games * torch.sigmoid(s[:, None] - s[None, :])).sum(1)
        s = s + lr * (won - expected) / games.sum(1)
    return s - s.mean()
