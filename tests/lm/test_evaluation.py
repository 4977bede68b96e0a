"""Tests of rlhf_lab.lm.evaluation: the policy yardstick (reward, KL) on tiny random models."""
import pytest
import torch

from rlhf_lab import world
from rlhf_lab.lm import models
from rlhf_lab.lm.evaluation import evaluate_policy


@pytest.fixture(scope="module")
def two_policies():
    return models.new_policy("tiny", seed=0), models.new_policy("tiny", seed=1)


def test_kl_to_itself_is_zero_and_numbers_are_deterministic(two_policies):
    a, _ = two_policies
    first = evaluate_policy(a, a, n_per_prompt=1, max_new_tokens=6, seed=3)
    assert first["kl"] == 0.0 and first["proxy"] is None
    assert first["n"] == len(world.all_prompts())
    assert first == evaluate_policy(a, a, n_per_prompt=1, max_new_tokens=6, seed=3)
    assert 1 <= first["length"] <= 6 and 0.0 <= first["eos"] <= 1.0
    assert sum(first["parts"].values()) == pytest.approx(first["gold"], abs=1e-9)   # r* = Σ parts
    assert set(first["parts"]) == set(world.gold_breakdown(world.all_prompts()[0], "<eos>"))


def test_kl_between_different_models_is_positive_on_average(two_policies):
    a, b = two_policies
    assert evaluate_policy(a, b, n_per_prompt=4, max_new_tokens=6, seed=0)["kl"] > 0.0


def test_proxy_is_the_reward_model_mean(two_policies):
    a, _ = two_policies
    rm = models.reward_model_from(a, seed=0)
    with torch.no_grad():
        rm.score.weight.zero_()
        rm.score.bias.fill_(0.75) if rm.score.bias is not None else None
    out = evaluate_policy(a, a, reward_model=rm, n_per_prompt=1, max_new_tokens=4)
    expected = 0.75 if rm.score.bias is not None else 0.0
    assert out["proxy"] == pytest.approx(expected, abs=1e-6)


def test_bad_n_per_prompt(two_policies):
    with pytest.raises(ValueError, match="n_per_prompt"):
        evaluate_policy(*two_policies, n_per_prompt=0)
