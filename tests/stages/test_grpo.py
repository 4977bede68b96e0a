"""GRPO: config checks, group layout, the zero-gradient property of flat groups, fault handling,
determinism, memory, the cached pipeline stage and the comparison with PPO."""
import dataclasses
import random
from types import SimpleNamespace

import pytest
import torch

from rlhf_lab import world
from rlhf_lab.core.plug import FallbackWarning
from rlhf_lab.equations import beyond_losses
from rlhf_lab.lm import models
from rlhf_lab.pipeline import runs
from rlhf_lab.stages.grpo import GRPOConfig, group_prompts, train_grpo
from rlhf_lab.stages.ppo import PPOConfig
from rlhf_lab.stages.reward_model import RewardConfig
from rlhf_lab.stages.sft import PretrainConfig, SFTConfig
from rlhf_lab.studies import memory
from rlhf_lab.studies.method_cost import held_bytes

TINY = GRPOConfig(iterations=2, prompts_per_iteration=4, group_size=4, epochs=2, minibatch_size=8,
                  max_new_tokens=8, reward="gold", lr=1e-3)


class ConstantRewardModel(torch.nn.Module):
    """Scores every reply 0.7, whatever it says."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return SimpleNamespace(logits=torch.full((input_ids.shape[0], 1), 0.7))


@pytest.fixture(scope="module")
def policy():
    return models.new_policy("tiny", seed=0)


def _without_times(history):
    return [{k: v for k, v in row.items() if not k.startswith("t_")} for row in history]


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("field,value", [("group_size", 1), ("group_size", 2.0), ("beta", -0.1),
                                         ("clip_eps", 0.0), ("clip_eps", 1.0), ("reward", "human"),
                                         ("prompts_per_iteration", 0), ("minibatch_size", 48)])
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        GRPOConfig(**{field: value})


def test_default_batch_matches_ppo():
    assert GRPOConfig().rollouts == PPOConfig().rollouts == 256
    assert GRPOConfig(prompts_per_iteration=6, group_size=4, minibatch_size=8).rollouts == 24


def test_group_prompts_puts_each_group_in_adjacent_rows():
    cfg = GRPOConfig(prompts_per_iteration=5, group_size=3, minibatch_size=5)
    prompts = group_prompts(world.all_prompts(), cfg, random.Random(0))
    assert len(prompts) == 15
    groups = [prompts[i:i + 3] for i in range(0, 15, 3)]
    assert all(g[0] == g[1] == g[2] for g in groups)
    assert len({g[0] for g in groups}) > 1


@pytest.mark.slow
def test_constant_reward_gives_zero_gradient_so_the_policy_stays(policy):
    """A reward that is constant within a group gives zero advantages; at beta = 0 the loss is
    then exactly 0, its gradient too, and Adam does not move the weights."""
    cfg = dataclasses.replace(TINY, reward="proxy", beta=0.0)
    result = train_grpo(cfg, policy, ConstantRewardModel())
    assert result.stopped is None and _same_weights(result.policy, policy)
    assert all(row["flat_groups"] == 1.0 and row["reward_std"] == 0.0 for row in result.history)
    assert result.history[-1]["kl"] == 0.0
    moved = train_grpo(dataclasses.replace(cfg, reward="gold"), policy)      # a real reward moves it
    assert not _same_weights(moved.policy, policy) and moved.history[-1]["kl"] != 0.0


@pytest.mark.slow
def test_advantages_are_computed_once_over_the_full_batch(policy):
    """group_advantages sees every reply of the batch; minibatches smaller than a group get the
    slices of those advantages (each group's advantages sum to 0, a minibatch's need not)."""
    calls, slices = [], []

    def spy_advantages(scores, group_size):
        adv = beyond_losses.group_advantages(scores, group_size)
        calls.append((scores.shape[0], group_size, adv))
        return adv

    def spy_loss(logp, logp_old, logp_ref, adv, mask, clip_eps, beta):
        slices.append(adv.clone())
        return beyond_losses.grpo_loss(logp, logp_old, logp_ref, adv, mask, clip_eps, beta)

    cfg = dataclasses.replace(TINY, minibatch_size=2, epochs=1)
    train_grpo(cfg, policy, advantage_fn=spy_advantages, loss_fn=spy_loss)
    assert [(n, g) for n, g, _ in calls] == [(16, 4), (16, 4)]
    for _, _, adv in calls:
        assert torch.allclose(adv.reshape(4, 4).sum(1), torch.zeros(4), atol=1e-5)
    first = torch.cat(slices[:8])                       # iteration 0: one epoch of 8 minibatches
    assert sorted(first.tolist()) == pytest.approx(sorted(calls[0][2].tolist()))
    assert any(abs(s.sum().item()) > 1e-3 for s in slices[:8])


@pytest.mark.slow
def test_smoke_run_records_ppo_metrics_and_is_deterministic(policy):
    a = train_grpo(TINY, policy)
    b = train_grpo(TINY, policy)
    assert a.stopped is None and len(a.history) == 2
    for key in ("proxy", "gold", "kl", "beta", "objective", "entropy", "length", "clipfrac",
                "approx_kl", "kl_penalty", "reward_std", "loss", "t_generate", "t_update", "t_total"):
        assert key in a.history[-1] and a.history[-1][key] == a.history[-1][key], key
    assert a.history[0]["kl"] == pytest.approx(0.0, abs=1e-5)          # first batch: policy == ref
    assert a.history[-1]["proxy"] == a.history[-1]["gold"]                 # reward="gold"
    assert a.samples and a.samples[0]["iteration"] == 0
    assert _without_times(a.history) == _without_times(b.history)
    assert _same_weights(a.policy, b.policy)
    c = train_grpo(dataclasses.replace(TINY, seed=1), policy)
    assert _without_times(c.history) != _without_times(a.history)


@pytest.mark.slow
def test_a_student_function_not_written_falls_back_to_the_reference(policy):
    def grpo_loss(logp, logp_old, logp_ref, adv, response_mask, clip_eps, beta):
        raise NotImplementedError

    def group_advantages(scores, group_size):
        raise NotImplementedError

    with pytest.warns(FallbackWarning, match="grpo_loss"):
        student = train_grpo(TINY, policy, loss_fn=grpo_loss)
    with pytest.warns(FallbackWarning, match="group_advantages"):
        train_grpo(TINY, policy, advantage_fn=group_advantages)
    reference = train_grpo(TINY, policy)
    assert _without_times(student.history) == _without_times(reference.history)


@pytest.mark.slow
def test_a_nan_loss_stops_and_keeps_the_last_good_policy(policy):
    steps = {"n": 0}
    per_iteration = TINY.epochs * TINY.rollouts // TINY.minibatch_size

    def nan_in_second_iteration(*args):
        steps["n"] += 1
        loss, stats = beyond_losses.grpo_loss(*args)
        return (loss * float("nan") if steps["n"] > per_iteration else loss), stats

    with pytest.warns(RuntimeWarning, match="iteration 1"):
        result = train_grpo(dataclasses.replace(TINY, iterations=3), policy, loss_fn=nan_in_second_iteration)
    assert "GRPO loss became nan" in result.stopped and len(result.history) == 1
    one = train_grpo(dataclasses.replace(TINY, iterations=1), policy)
    assert _same_weights(result.policy, one.policy)


def test_held_bytes_counts_fp32_weights_grads_and_adam_state(policy):
    n = models.count_parameters(policy)
    grpo = held_bytes(GRPOConfig(reward="gold"), policy)
    assert grpo == {"policy": 16 * n, "reference": 4 * n, "total": 20 * n}
    assert grpo["total"] == memory.rlhf_memory(n, memory.FP32, ("policy", "reference"))[-1]["bytes"]
    ppo = held_bytes(PPOConfig(reward="gold", critic="separate"), policy)
    assert set(ppo) == {"policy", "critic", "reference", "total"}
    assert ppo["total"] - grpo["total"] == ppo["critic"] > 0
    # a value head adds only its own weights: hidden size + 1, at 16 bytes each
    head = held_bytes(PPOConfig(reward="gold", critic="head"), policy)
    assert head["total"] - grpo["total"] == 16 * (policy.config.hidden_size + 1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    run = runs.RunConfig(base=PretrainConfig(corpus_size=500, steps=20, batch_size=32),
                             sft=SFTConfig(n_demonstrations=100, steps=10, batch_size=16),
                             rm=RewardConfig(n_pairs=64, epochs=1, batch_size=16, n_heldout=32),
                             grpo=dataclasses.replace(TINY, reward="proxy"),
                             ppo=PPOConfig(iterations=2, rollouts=16, minibatch_size=8, epochs=1,
                                           max_new_tokens=8))
    runs.load_or_train_rm(run, root)
    return run, root


@pytest.mark.slow
def test_load_or_train_grpo_is_cached(small_run):
    run, root = small_run
    first = runs.load_or_train_grpo(run, root)
    assert first.path.name == f"grpo-{runs.stage_keys(run)['grpo']}"
    assert len(first.metrics["history"]) == 2 and first.metrics["stopped"] is None
    assert {"gold", "proxy", "kl", "n"} <= set(first.metrics["evaluation"])
    again = runs.load_or_train_grpo(run, root)
    assert again.path == first.path and again.metrics == first.metrics
    keys = runs.stage_keys(run)
    assert runs.stage_keys(run.with_grpo(beta=0.1))["grpo"] != keys["grpo"]
    assert runs.stage_keys(run.with_grpo(beta=0.1))["ppo"] == keys["ppo"]
    assert runs.stage_keys(run.with_rm(n_pairs=128))["grpo"] != keys["grpo"]

