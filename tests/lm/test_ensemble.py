"""An ensemble of reward models read as one: the aggregate of its members' own scores."""
import pytest
import torch

from rlhf_lab import world
from rlhf_lab.lm import models
from rlhf_lab.lm.ensemble import RewardEnsemble
from rlhf_lab.stages.reward_model import score_texts

PROMPTS = [world.Prompt("review", "car"), world.Prompt("advise", "printer"), world.Prompt("review", "car")]
TEXTS = ["the engine is great . <eos>", "you should clean the ink . <eos>", "um um"]


@pytest.fixture(scope="module")
def members():
    policy = models.new_policy("tiny", seed=1)
    return [models.reward_model_from(policy, seed=s, pooling=p).eval()
            for s, p in ((2, "last"), (3, "sum"), (4, "mean"))]


@pytest.mark.parametrize("how,k", [("min", 1.0), ("mean", 1.0), ("mean_minus_std", 2.0)])
def test_ensemble_scores_are_the_aggregate_of_each_members_own_reading(members, tok, how, k):
    each = torch.stack([score_texts(m, tok, PROMPTS, TEXTS) for m in members])          # (3, 3)
    together = score_texts(RewardEnsemble(members, how, k), tok, PROMPTS, TEXTS)
    want = {"min": each.min(0).values, "mean": each.mean(0),
            "mean_minus_std": each.mean(0) - k * each.std(0, unbiased=False)}[how]
    assert torch.allclose(together, want, atol=1e-6)
    assert len(set(each[:, 0].tolist())) == 3                    # the members really differ


def test_an_ensemble_of_one_is_its_member(members, tok):
    alone = score_texts(members[1], tok, PROMPTS, TEXTS)
    assert torch.equal(score_texts(RewardEnsemble(members[1:2], "mean_minus_std"), tok, PROMPTS, TEXTS),
                       alone)


def test_bad_ensembles_are_refused_naming_the_argument(members):
    with pytest.raises(ValueError, match="^members"):
        RewardEnsemble([])
    with pytest.raises(ValueError, match="^how"):
        RewardEnsemble(members, how="median")
    with pytest.raises(ValueError, match="^k"):
        RewardEnsemble(members, how="mean_minus_std", k=-1.0)
