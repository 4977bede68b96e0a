import math

import pytest
import torch

from rlhf_lab.equations.losses import (
    bradley_terry_loss,
    bt_probability,
    plackett_luce_loss,
    response_logprob,
    sft_loss,
)
from rlhf_lab.equations.masking import gather_logprobs, masked_mean, response_logits, response_logprobs


def test_bt_loss_is_log2_at_equal_rewards():
    loss, stats = bradley_terry_loss(torch.zeros(5), torch.zeros(5))
    assert loss.item() == pytest.approx(math.log(2))
    assert stats["accuracy"] == 0.0


@pytest.mark.parametrize("gap", [1e4, -1e4])
def test_bt_loss_is_finite_and_exact_at_huge_gaps(gap):
    r_chosen = torch.tensor([gap], requires_grad=True)
    loss, _ = bradley_terry_loss(r_chosen, torch.zeros(1))
    expected = 0.0 if gap > 0 else -gap          # -log sigmoid(g) -> max(-g, 0) for |g| large
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(r_chosen.grad).all()
    assert r_chosen.grad.item() == pytest.approx(0.0 if gap > 0 else -1.0)


def test_bt_probability_is_shift_invariant_and_exact():
    a, b = torch.tensor([1.0, -2.0, 0.3]), torch.tensor([0.0, 1.0, 0.3])
    assert torch.allclose(bt_probability(a, b), bt_probability(a + 7.5, b + 7.5))
    assert bt_probability(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(0.7310586)
    loss1, _ = bradley_terry_loss(a, b)
    loss2, _ = bradley_terry_loss(a - 3, b - 3)
    assert loss1.item() == pytest.approx(loss2.item())


def test_plackett_luce_by_hand_and_for_two_replies_is_bradley_terry():
    loss, stats = plackett_luce_loss(torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64))
    by_hand = -((2 - math.log(math.e ** 2 + math.e + 1)) + (1 - math.log(math.e + 1)))
    assert loss.item() == pytest.approx(by_hand, abs=1e-12) and loss.dtype == torch.float64
    assert stats["accuracy"] == 1.0 and stats["top1"] == 1.0
    a, b = torch.tensor([1.0, -2.0, 0.3, 8.0]), torch.tensor([0.0, 1.0, 0.3, -9.0])
    pl, _ = plackett_luce_loss(torch.stack([a, b], 1))
    bt, _ = bradley_terry_loss(a, b)
    assert pl.item() == pytest.approx(bt.item(), rel=1e-6)


def test_plackett_luce_padding_reaches_neither_loss_nor_gradient():
    rewards = torch.tensor([[1.0, 0.5, -1.0, 0.0], [0.2, 1.2, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    junk = torch.where(mask, rewards, torch.tensor([math.nan, math.inf], dtype=torch.float64)
                       .repeat(4)[:4])
    junk.requires_grad_(True)
    loss, stats = plackett_luce_loss(junk, mask)
    loss.backward()
    row0, _ = plackett_luce_loss(rewards[:1])
    row1, _ = plackett_luce_loss(rewards[1:, :2])
    assert loss.item() == pytest.approx((row0.item() + row1.item()) / 2, abs=1e-12)
    assert torch.isfinite(junk.grad).all() and (junk.grad[~mask] == 0).all()
    assert junk.grad[0, 0] < 0 < junk.grad[0, 3]          # raise the best, lower the worst
    assert stats["top1"] == 0.5                            # row 1 ranks its lower reward first
    shifted, _ = plackett_luce_loss(rewards + torch.tensor([[5.0], [-3.0]], dtype=torch.float64),
                                    mask)
    assert shifted.item() == pytest.approx(loss.item(), abs=1e-12)
    with pytest.raises(ValueError, match="ranking_mask"):
        plackett_luce_loss(rewards, mask.float())
    with pytest.raises(ValueError, match="at least two"):
        plackett_luce_loss(rewards, torch.tensor([[True] * 4, [True, False, False, False]]))


def test_bt_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="r_rejected"):
        bt_probability(torch.zeros(2), torch.zeros(3))


def _example():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.tensor([[1, 4, 3, 6, 2], [1, 5, 3, 2, 0]])
    mask = torch.tensor([[False, False, True, True, True], [False, False, True, True, False]])
    return logits, ids, mask


def test_sft_loss_equals_hand_computation():
    logits, ids, mask = _example()
    logp = torch.log_softmax(logits, -1)
    # response tokens at positions 2,3,4 (row 0) and 2,3 (row 1) are predicted from t-1
    terms = [logp[0, 1, 3], logp[0, 2, 6], logp[0, 3, 2], logp[1, 1, 3], logp[1, 2, 2]]
    loss, stats = sft_loss(logits, ids, mask)
    assert loss.item() == pytest.approx(-torch.stack(terms).mean().item(), rel=1e-6)
    assert stats["tokens"] == 5


def test_sft_loss_ignores_prompt_and_padding():
    logits, ids, mask = _example()
    loss, _ = sft_loss(logits, ids, mask)
    ids2, logits2 = ids.clone(), logits.clone()
    ids2[0, 1] = 0                   # a prompt token that is not a label of any response token? no:
    ids2[1, 4] = 6                   # padding token changed
    logits2[:, 0] += 5.0             # logits at the first prompt position (predicts a prompt token)
    logits2[1, 3:] = 100.0           # logits at / after the last response token of row 1
    loss2, _ = sft_loss(logits2, ids2, mask)
    logits3 = logits.clone()
    logits3[0, 1] = 0.0              # position 1 predicts the first response token: must matter
    assert loss2.item() == pytest.approx(loss.item())
    assert sft_loss(logits3, ids, mask)[0].item() != pytest.approx(loss.item())


def test_sft_loss_of_uniform_logits_is_log_v():
    _, ids, mask = _example()
    assert sft_loss(torch.zeros(2, 5, 7), ids, mask)[0].item() == pytest.approx(math.log(7))
    assert response_logprob(torch.zeros(2, 5, 7), ids, mask).tolist() == \
        pytest.approx([3 * math.log(1 / 7), 2 * math.log(1 / 7)])


def test_gather_logprobs_shift_and_masked_mean():
    logits = torch.tensor([[[0.0, 10.0], [10.0, 0.0]]])            # (1, 2, 2)
    out = gather_logprobs(logits, torch.tensor([[0, 1]]))
    assert out.shape == (1, 1) and out.item() == pytest.approx(-4.5399e-05, rel=1e-3)
    assert masked_mean(torch.tensor([[1.0, 2.0, float("nan")]]),
                       torch.tensor([[True, True, False]])).item() == 1.5


def test_response_logprobs_score_each_reply_token_at_its_temperature():
    torch.manual_seed(0)
    logits, tokens, P = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5)), 2   # replies: columns 2..4
    for T in (1.0, 0.5):
        got = response_logprobs(logits, tokens, P, temperature=T)                  # (2, 3)
        by_hand = torch.tensor([[torch.log_softmax(logits[b, P - 1 + j] / T, -1)[tokens[b, P + j]]
                                 for j in range(3)] for b in range(2)])
        assert got.shape == (2, 3) and torch.allclose(got, by_hand, atol=1e-6)
        assert torch.equal(response_logits(logits, P, T), logits[:, P - 1:-1] / T)
    assert torch.equal(response_logprobs(logits, tokens, P), gather_logprobs(logits, tokens)[:, P - 1:])


def test_sft_loss_rejects_bad_masks():
    logits, ids, mask = _example()
    with pytest.raises(ValueError, match="response_mask"):
        sft_loss(logits, ids, mask.long())
    with pytest.raises(ValueError, match="response_mask"):
        sft_loss(logits, ids, torch.zeros_like(mask))


def test_fit_bradley_terry_matches_exact_cases_and_the_score_equations():
    from rlhf_lab.datasets import league_table
    from rlhf_lab.equations.losses import fit_bradley_terry

    s = fit_bradley_terry(torch.tensor([[0.0, 3.0], [1.0, 0.0]]))
    assert (s[0] - s[1]).item() == pytest.approx(math.log(3)) and s.sum().item() == pytest.approx(0)
    teams, wins = league_table()
    s = fit_bradley_terry(wins)
    expected_wins = ((wins + wins.T) * torch.sigmoid(s[:, None] - s[None, :])).sum(1)
    assert torch.allclose(expected_wins, wins.sum(1)) and len(teams) == len(s) == 6
    with pytest.raises(ValueError, match="wins"):
        fit_bradley_terry(torch.ones(2, 3))
