"""The reward model's options: how its head is read (pooling), the annotator, the recipe."""
import math

import pytest
import torch

from rlhf_lab.lm import models
from rlhf_lab.lm.sequences import encode_pairs
from rlhf_lab.stages.reward_model import RewardConfig, sample_preferences, score_texts, train_reward_model
from rlhf_lab import world

PROMPTS = [world.Prompt("review", "car"), world.Prompt("advise", "pizza"), world.Prompt("review", "car")]
REPLIES = ["the engine is great . <eos>", "check the oven . you should test the crust . <eos>", "um <eos>"]


@pytest.fixture(scope="module")
def policy():
    return models.new_policy("tiny", seed=3)


def _per_token(rm, batch):
    hidden = rm.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=(batch.attention_mask.cumsum(-1) - 1).clamp(min=0)).last_hidden_state
    return rm.score(hidden).squeeze(-1)                                  # (B, T)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_pooled_scores_add_up_the_head_over_the_reply_tokens(policy, tok, pooling):
    rm = models.reward_model_from(policy, seed=1, pooling=pooling)
    batch = encode_pairs(tok, PROMPTS, REPLIES, 24)
    with torch.no_grad():
        got = models.reward_scores(rm, batch.input_ids, batch.attention_mask, batch.prompt_len)
        per_token = _per_token(rm, batch)
    for i in range(len(REPLIES)):
        reply = per_token[i][batch.response_mask[i]]                      # the reply's tokens only
        want = reply.sum() if pooling == "sum" else reply.mean()
        assert got[i].item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)


def test_last_token_pooling_is_hugging_faces_sequence_classifier(policy, tok):
    rm = models.reward_model_from(policy, seed=1)
    batch = encode_pairs(tok, PROMPTS, REPLIES, 24)
    with torch.no_grad():
        got = models.reward_scores(rm, batch.input_ids, batch.attention_mask, batch.prompt_len)
        want = models.forward_logits(rm, batch.input_ids, batch.attention_mask)[:, 0]
    assert torch.equal(got, want)


@pytest.mark.parametrize("pooling", ["last", "sum", "mean"])
def test_a_score_does_not_depend_on_its_batch_mates(policy, tok, pooling):
    rm = models.reward_model_from(policy, seed=1, pooling=pooling)
    alone = torch.cat([score_texts(rm, tok, [p], [r]) for p, r in zip(PROMPTS, REPLIES)])
    together = score_texts(rm, tok, PROMPTS, REPLIES)                    # other padding widths
    assert torch.allclose(alone, together, atol=1e-5)


def test_the_pooling_is_saved_with_the_model(policy, tok, tmp_path):
    rm = models.reward_model_from(policy, seed=1, pooling="sum")
    rm.save_pretrained(tmp_path)
    loaded = type(rm).from_pretrained(tmp_path)
    assert loaded.config.reward_pooling == "sum"
    assert torch.allclose(score_texts(rm, tok, PROMPTS, REPLIES), score_texts(loaded, tok, PROMPTS, REPLIES))


def test_an_unknown_pooling_is_refused(policy):
    with pytest.raises(ValueError, match="pooling must be one of"):
        models.reward_model_from(policy, pooling="max")
    rm = models.reward_model_from(policy)
    rm.config.reward_pooling = "max"
    with pytest.raises(ValueError, match="reward_pooling must be one of"):
        models.reward_scores(rm, torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), 1)


@pytest.mark.parametrize("field, value", [("pooling", "max"), ("labels", "oracle"), ("weight_decay", -0.1),
                                          ("sharpness", 0.0), ("sharpness", -2.5), ("trunk_seed", -1),
                                          ("trunk_seed", 1.0), ("trunk_seed", True), ("trunk_seed", "1")])
def test_reward_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        RewardConfig(**{field: value})


def test_a_trunk_seed_is_a_pretraining_seed_and_keeps_old_cache_keys():
    from rlhf_lab.core.config import config_dict
    from rlhf_lab.stages.sft import PretrainConfig
    assert "trunk_seed" not in config_dict(RewardConfig())           # the default: old keys hold
    assert config_dict(RewardConfig(trunk_seed=0))["trunk_seed"] == 0
    base = PretrainConfig(steps=50, seed=3)
    assert RewardConfig().trunk_pretraining(base) is base             # None: the run's own base
    assert RewardConfig(trunk_seed=7).trunk_pretraining(base) == PretrainConfig(steps=50, seed=7)
    with pytest.raises(ValueError, match=r"trunk_seed must be None \(the run's own SFT model\) or an integer >= 0, got -1"):
        RewardConfig(trunk_seed=-1)


def test_the_annotators_sharpness_keeps_old_cache_keys_and_reaches_the_labels(policy, tok):
    from rlhf_lab.core.config import config_dict
    assert "sharpness" not in config_dict(RewardConfig())            # the default: old keys hold
    assert config_dict(RewardConfig(sharpness=2.5))["sharpness"] == 2.5
    soft = sample_preferences(policy, tok, 200, seed=4, max_response_len=8)
    sharp = sample_preferences(policy, tok, 200, seed=4, max_response_len=8, sharpness=50.0)
    assert (soft.first, soft.gold_first) == (sharp.first, sharp.gold_first)    # the same replies
    order = [int(a > b) for a, b in zip(sharp.gold_first, sharp.gold_second)]
    untied = [i for i, (a, b) in enumerate(zip(sharp.gold_first, sharp.gold_second)) if abs(a - b) > 0.2]
    assert all(sharp.first_preferred[i] == order[i] for i in untied)   # σ(50 · 0.2) > 0.9999
    assert soft.first_preferred != sharp.first_preferred


def test_training_with_the_options_is_deterministic_and_reports_the_size(policy, tok):
    cfg = RewardConfig(n_pairs=64, epochs=1, batch_size=32, pooling="sum", weight_decay=0.01,
                       labels="deterministic", max_response_len=8)
    rm_a, metrics = train_reward_model(cfg, policy, tok)
    rm_b, _ = train_reward_model(cfg, policy, tok)
    assert metrics["params"] == models.count_parameters(rm_a) and metrics["n_pairs"] == 64
    assert rm_a.config.reward_pooling == "sum"
    assert torch.equal(score_texts(rm_a, tok, PROMPTS, REPLIES), score_texts(rm_b, tok, PROMPTS, REPLIES))


def test_learning_rate_warms_up_over_20_steps_then_decays_to_zero():
    from rlhf_lab.stages.reward_model import learning_rate
    assert learning_rate(1e-3, 0, 100) == pytest.approx(1e-3 / 20 * 1.0, rel=1e-12)    # cos(0) = 1
    assert learning_rate(1e-3, 50, 100) == pytest.approx(1e-3 * 0.5, rel=1e-12)        # half way
    assert learning_rate(1e-3, 100, 100) == pytest.approx(0.0, abs=1e-18)
    assert learning_rate(1e-3, 9, 100) == pytest.approx(1e-3 * 0.5 * 0.5 * (1 + math.cos(math.pi * 0.09)))
