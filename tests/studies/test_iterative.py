"""Iterative RLHF: the round structure, the SFT reference, the cache."""
import dataclasses

import pytest

from rlhf_lab.course.plots import beyond as beyond_plots
from rlhf_lab.pipeline.runs import load_or_train_sft
from rlhf_lab.stages.ppo import PPOConfig
from rlhf_lab.stages.reward_model import PreferenceData
from rlhf_lab.studies import iterative
from rlhf_lab.studies.iterative import IterativeConfig, fingerprint, merge_preferences, ppo_from

TINY = IterativeConfig(rounds=2, labels_per_round=64, iterations_per_round=2, rollouts=32,
                       n_heldout=32, eval_per_prompt=1)


@pytest.mark.parametrize("field,value", [("rounds", 0), ("labels_per_round", -5), ("beta", 0.0),
                                         ("iterations_per_round", 1.5), ("n_heldout", 0),
                                         ("rollouts", 0), ("eval_per_prompt", 0), ("seed", 0.5)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        IterativeConfig(**{field: value})


@pytest.fixture
def tiny_ppo(fast_ppo):
    """PPO's fast settings without the two the iterative study sets per round."""
    return {k: v for k, v in fast_ppo.items() if k not in ("iterations", "rollouts")}


def test_round_ppo_config_keeps_the_run_but_sets_the_round(small_config, tiny_ppo):
    run = small_config.with_ppo(kl_target=1.0, **tiny_ppo)
    cfg = IterativeConfig(beta=0.05, iterations_per_round=7, rollouts=32, seed=3)
    ppo = cfg.ppo(run, 2)
    assert (ppo.beta, ppo.kl_target, ppo.iterations, ppo.rollouts) == (0.05, None, 7, 32)
    assert ppo.seed == run.ppo.seed + 3 + 2 and ppo.max_new_tokens == run.ppo.max_new_tokens


def test_merge_preferences_keeps_every_pair_in_order():
    a = PreferenceData(["p1"], ["a1"], ["b1"], [1], [0.5], [0.0])
    b = PreferenceData(["p2", "p3"], ["a2", "a3"], ["b2", "b3"], [0, 1], [1.0, 2.0], [3.0, 4.0])
    m = merge_preferences(a, b)
    assert len(m) == 3 and m.first == ["a1", "a2", "a3"] and m.first_preferred == [1, 0, 1]
    assert m.gold_second == [0.0, 3.0, 4.0] and m.chosen == ["a1", "b2", "a3"]


@pytest.mark.slow
def test_ppo_from_penalises_the_kl_to_the_given_reference(small_config, tiny_ppo, tmp_path):
    from rlhf_lab.lm import models
    from rlhf_lab.stages.reward_model import train_reward_model
    sft = load_or_train_sft(small_config, tmp_path).model
    rm, _ = train_reward_model(small_config.rm, sft)
    cfg = PPOConfig(beta=0.05, iterations=2, rollouts=32, **tiny_ppo)
    same = ppo_from(cfg, sft, sft, rm)
    assert same.history[0]["kl"] == 0.0               # the first rollout: π_θ = π_ref exactly
    assert fingerprint(same.policy) != fingerprint(sft)
    other = models.new_policy("tiny", seed=5)
    moved = ppo_from(cfg, sft, other, rm)            # start from SFT, penalise KL to another model
    assert abs(moved.history[0]["kl"]) > 0.1
    assert fingerprint(sft) == fingerprint(load_or_train_sft(small_config, tmp_path).model)  # untouched


@pytest.mark.slow
def test_rounds_add_labels_continue_the_policy_and_are_cached(small_config, tiny_ppo, tmp_path, monkeypatch):
    run = small_config.with_ppo(**tiny_ppo)
    result = iterative.iterative_rlhf(run, TINY, root=tmp_path, jobs=1)
    it, one = (result["arms"][a]["rounds"] for a in ("iterative", "one_round"))
    assert [r["labels"] for r in it] == [64, 128] and [r["new_labels"] for r in it] == [64, 64]
    assert [r["labels"] for r in one] == [128, 128] and [r["new_labels"] for r in one] == [128, 0]
    sft_print = fingerprint(load_or_train_sft(run, tmp_path).model)
    for rows in (it, one):
        assert rows[0]["policy_start"] == sft_print                   # round 0 starts from SFT
        assert rows[1]["policy_start"] == rows[0]["policy_end"]       # round k+1 from round k
        assert rows[1]["policy_end"] != rows[1]["policy_start"]
        assert [r["iterations"] for r in rows] == [2, 4]
        for r in rows:
            assert 0 <= r["rm_sft"]["accuracy"] <= 1 and 0 <= r["rm_policy"]["accuracy"] <= 1
            assert r["n"] == 48 and r["proxy"] is not None
    history = result["arms"]["iterative"]["history"]
    assert [h["iteration"] for h in history] == [0, 1, 2, 3] and history[0]["kl"] == 0.0
    assert [h["round"] for h in history] == [0, 0, 1, 1]
    assert result["sft"]["kl"] == 0.0
    assert any(p.name.startswith("iterative-") for p in tmp_path.iterdir())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached study was trained again")
    monkeypatch.setattr(iterative, "run_arm", no_training)
    assert iterative.iterative_rlhf(run, TINY, root=tmp_path, jobs=1) == result
    other = dataclasses.replace(TINY, beta=0.5)                        # a new config: not cached
    with pytest.raises(AssertionError, match="trained again"):
        iterative.iterative_rlhf(run, other, root=tmp_path, jobs=1)
    beyond_plots.iterative_rounds(result)


def test_bad_jobs_argument_is_named(small_config):
    with pytest.raises(ValueError, match="jobs"):
        iterative.iterative_rlhf(small_config, TINY, jobs=0)
