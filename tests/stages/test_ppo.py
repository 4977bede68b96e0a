"""The PPO loop: config checks, rollout alignment, the controller, fault handling, smoke runs."""
import dataclasses
import random
import types

import pytest
import torch

from rlhf_lab import world
from rlhf_lab.equations.rl_losses import ppo_clip_loss
from rlhf_lab.lm import models
from rlhf_lab.lm.evaluation import evaluate_policy
from rlhf_lab.pipeline import runs
from rlhf_lab.stages.ppo import (
    PPOConfig,
    PPOLosses,
    NORM_SEED,
    adaptive_beta,
    build_networks,
    generate_rollout,
    reward_normaliser,
    score_rollout,
    train_ppo,
)


@pytest.mark.parametrize("field,value", [("beta", -0.1), ("clip_eps", 0.0), ("clip_eps", 1.0),
                                         ("gamma", 1.5), ("lam", -0.1), ("rollouts", 0),
                                         ("critic", "twin"), ("reward", "human"), ("kl_target", -1.0),
                                         ("minibatch_size", 48), ("eval_every", -1),
                                         ("eval_per_prompt", 0), ("eval_seed", 1.5),
                                         ("reward_norm", "zscore")])
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        PPOConfig(**{field: value})


def test_adaptive_beta_is_ziegler_controller():
    assert adaptive_beta(0.1, kl=2.0, kl_target=1.0, horizon=1000, n_responses=100) == pytest.approx(0.1 * 1.02)
    assert adaptive_beta(0.1, kl=0.5, kl_target=1.0, horizon=1000, n_responses=100) == pytest.approx(0.1 * 0.98)
    assert adaptive_beta(0.1, kl=1.0, kl_target=1.0, horizon=1000, n_responses=100) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def trained(small_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return (runs.load_or_train_sft(small_config, root=root).model,
            runs.load_or_train_rm(small_config, root=root).model, root)


@pytest.mark.slow
def test_rollout_alignment_and_temperature(fast_ppo, trained, tok):
    sft, rm, _ = trained
    prompts = world.all_prompts()[:8]
    cfg = PPOConfig(temperature=0.05, max_new_tokens=10, **{k: v for k, v in fast_ppo.items() if k != "max_new_tokens"})
    rollout = generate_rollout(sft, tok, prompts, cfg, torch.Generator().manual_seed(0))
    critic = models.critic_from(rm)
    score_rollout(rollout, sft, sft, critic, rm, cfg)
    mask = rollout.response_mask
    # a low temperature sharpens both the sampling and the recomputed log-probs
    hot = generate_rollout(sft, tok, prompts, dataclasses.replace(cfg, temperature=1.0),
                           torch.Generator().manual_seed(0))
    score_rollout(hot, sft, sft, critic, rm, dataclasses.replace(cfg, temperature=1.0))
    assert rollout.logp_old[mask].mean() > hot.logp_old[hot.response_mask].mean() + 0.5
    # the recomputed log-prob of token j is log softmax(logits / T) at its own prefix, computed here
    # one prefix at a time, without the cache or any padding
    row, P = 0, rollout.input_ids.shape[1] - mask.shape[1]
    for j in range(int(mask[row].sum())):
        with torch.no_grad():
            logits = sft(input_ids=rollout.input_ids[row:row + 1, :P + j]).logits[0, -1]
        expected = torch.log_softmax(logits / 0.05, -1)[rollout.input_ids[row, P + j]]
        assert rollout.logp_old[row, j].item() == pytest.approx(expected.item(), abs=1e-3)
    assert torch.equal(rollout.logp_old, rollout.logp_ref)              # reference == policy here
    # V(s_0) is the critic's output at the last prompt token (before any response token)
    with torch.no_grad():
        v0 = critic(input_ids=rollout.input_ids[:1, :P]).logits[0, -1, 0]
    assert rollout.values[0, 0].item() == pytest.approx(v0.item(), abs=1e-5)
    # nothing after <eos> is kept
    after_eos = rollout.input_ids[:, P:][~mask]
    assert after_eos.eq(tok.pad_token_id).all()


@pytest.mark.slow
@pytest.mark.parametrize("critic", ["separate", "head"])
def test_smoke_run_records_every_metric(fast_ppo, trained, critic):
    sft, rm, _ = trained
    result = train_ppo(PPOConfig(critic=critic, **fast_ppo), sft, rm)
    assert result.stopped is None and len(result.history) == 2
    row = result.history[-1]
    for key in ("proxy", "gold", "kl", "entropy", "length", "clipfrac", "approx_kl", "vf_loss",
                "explained_variance", "beta", "t_generate", "t_update"):
        assert key in row and row[key] == row[key], key          # present and not NaN
    assert result.history[0]["kl"] == pytest.approx(0.0, abs=1e-5)    # first rollout: policy == ref
    assert result.samples and {"prompt", "text", "gold", "score"} <= set(result.samples[0])


@pytest.mark.slow
def test_same_seed_same_numbers(fast_ppo, trained):
    sft, rm, _ = trained
    a = train_ppo(PPOConfig(**fast_ppo), sft, rm).history
    b = train_ppo(PPOConfig(**fast_ppo), sft, rm).history
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("t_")} for r in rows]
    assert strip(a) == strip(b)


@pytest.mark.slow
def test_checkpoint_evaluations_leave_training_unchanged(fast_ppo, trained):
    """eval_every = 2 over 3 iterations evaluates the policy after 0, 2 and 3 iterations; the
    first is the SFT policy itself (KL 0) and equals a direct evaluation with the same seed; the
    training's own numbers and weights are those of a run without evaluations."""
    sft, rm, _ = trained
    cfg = PPOConfig(**{**fast_ppo, "iterations": 3})
    plain = train_ppo(cfg, sft, rm)
    checked = train_ppo(dataclasses.replace(cfg, eval_every=2, eval_per_prompt=2), sft, rm)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("t_")} for r in rows]
    assert strip(checked.history) == strip(plain.history) and plain.evals == []
    for a, b in zip(checked.policy.state_dict().values(), plain.policy.state_dict().values()):
        assert torch.equal(a, b)
    assert [e["iteration"] for e in checked.evals] == [0, 2, 3]
    first = checked.evals[0]
    assert first["kl"] == 0.0 and first["n"] == 2 * len(world.all_prompts())
    assert first == {"iteration": 0, **evaluate_policy(sft, sft, reward_model=rm, n_per_prompt=2,
                                                       seed=12_345, max_new_tokens=fast_ppo["max_new_tokens"])}
    assert checked.evals[-1]["kl"] > 0


class _Shifted(torch.nn.Module):
    """A reward model whose every score is ``shift`` higher."""
    def __init__(self, rm, shift: float):
        super().__init__()
        self.rm, self.shift = rm, shift

    def forward(self, **inputs):
        return types.SimpleNamespace(logits=self.rm(**inputs).logits + self.shift)


class _Constant(torch.nn.Module):
    """A reward model that scores every reply ``value``."""
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, input_ids, **_):
        return types.SimpleNamespace(logits=torch.full((len(input_ids), 1), self.value))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["center", "whiten"])
def test_reward_normaliser_is_the_mean_and_spread_of_one_reference_batch(fast_ppo, trained, tok, how):
    """(μ, σ) are the mean and standard deviation of the scores of cfg.rollouts SFT replies drawn
    with the seed cfg.seed + NORM_SEED; "center" keeps the scale at 1."""
    sft, rm, _ = trained
    cfg = PPOConfig(**fast_ppo, reward_norm=how)
    policy, _, critic, reference, rm, _ = build_networks(cfg, sft, rm)
    shift, scale = reward_normaliser(policy, rm, tok, cfg)
    rng = random.Random(cfg.seed + NORM_SEED)
    prompts = [rng.choice(world.all_prompts()) for _ in range(cfg.rollouts)]
    rollout = generate_rollout(policy, tok, prompts, cfg, torch.Generator().manual_seed(cfg.seed + NORM_SEED))
    with torch.no_grad():
        scores = models.reward_scores(rm, rollout.input_ids, rollout.attention_mask,
                                      rollout.input_ids.shape[1] - rollout.response_mask.shape[1])
    assert shift == pytest.approx(scores.mean().item(), abs=1e-6)
    assert scale == (pytest.approx(scores.std().item(), abs=1e-6) if how == "whiten" else 1.0)
    flat = _Constant(2.5)                                   # no spread: nothing to scale by
    assert reward_normaliser(policy, flat, tok, cfg) == (2.5, 1.0)


@pytest.mark.slow
def test_a_centred_score_ignores_a_constant_added_to_the_reward_model(fast_ppo, trained):
    """With reward_norm="center" the policy sees r_φ − μ, so a reward model that scores every
    reply 5 higher trains the same policy; without it the run differs (the constant changes the
    advantages through the value head, which starts at zero)."""
    sft, rm, _ = trained
    gap = lambda x, y: max((p - q).abs().max().item()
                           for p, q in zip(x.policy.state_dict().values(), y.policy.state_dict().values()))
    cfg = PPOConfig(**fast_ppo, reward_norm="center")
    a, b = train_ppo(cfg, sft, rm), train_ppo(cfg, sft, _Shifted(rm, 5.0))
    assert b.reward_norm[0] == pytest.approx(a.reward_norm[0] + 5.0, abs=1e-4)
    assert [h["kl"] for h in b.history] == pytest.approx([h["kl"] for h in a.history], abs=1e-5)
    assert gap(a, b) < 1e-4            # float rounding, which Adam's first steps amplify
    plain = dataclasses.replace(cfg, reward_norm=None)
    c, d = train_ppo(plain, sft, rm), train_ppo(plain, sft, _Shifted(rm, 5.0))
    assert c.reward_norm == (0.0, 1.0)
    assert gap(c, d) > 1e-4 and d.history[-1]["kl"] != pytest.approx(c.history[-1]["kl"], rel=0.1)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_policy(fast_ppo, trained):
    sft, rm, _ = trained
    calls = {"n": 0}

    def breaks_in_second_iteration(logp, logp_old, adv, mask, clip_eps):
        calls["n"] += 1
        loss, stats = ppo_clip_loss(logp, logp_old, adv, mask, clip_eps)
        return (loss * float("nan"), stats) if calls["n"] > 4 else (loss, stats)   # 2 epochs x 2

    cfg = PPOConfig(**fast_ppo)
    with pytest.warns(RuntimeWarning, match="policy loss"):
        broken = train_ppo(cfg, sft, rm, losses=PPOLosses(ppo_clip_loss=breaks_in_second_iteration))
    assert "policy loss" in broken.stopped and len(broken.history) == 1
    one_iteration = train_ppo(dataclasses.replace(cfg, iterations=1), sft, rm).policy
    for (name, a), b in zip(broken.policy.state_dict().items(), one_iteration.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_unwritten_student_function_falls_back(fast_ppo, trained):
    from rlhf_lab.core.plug import FallbackWarning
    sft, rm, _ = trained

    def gae(rewards, values, response_mask, gamma, lam):
        raise NotImplementedError

    with pytest.warns(FallbackWarning, match="gae"):
        result = train_ppo(PPOConfig(**fast_ppo), sft, rm, losses=PPOLosses(gae=gae))
    assert len(result.history) == 2


@pytest.mark.slow
def test_ppo_on_gold_raises_gold(trained):
    """Against the oracle (the gold utility itself) a short run must clearly raise mean gold."""
    sft, _, _ = trained
    cfg = PPOConfig(reward="gold", beta=0.01, iterations=12, rollouts=64, minibatch_size=32,
                    epochs=2, lr=1e-3, critic="head", max_new_tokens=16)
    history = train_ppo(cfg, sft, None).history
    first, last = history[0]["gold"], sum(h["gold"] for h in history[-3:]) / 3
    assert last > first + 0.5, (first, last)


@pytest.mark.slow
def test_pipeline_caches_ppo(fast_ppo, small_config, trained):
    _, _, root = trained
    run = small_config.with_ppo(**fast_ppo)
    a = runs.load_or_train_ppo(run, root=root)
    b = runs.load_or_train_ppo(run, root=root)
    assert a.metrics == b.metrics and a.path == b.path


@pytest.mark.slow
def test_adaptive_controller_moves_beta_toward_the_target(fast_ppo, trained):
    sft, rm, _ = trained
    cfg = PPOConfig(kl_target=1e-4, kl_horizon=64, beta=0.05, **{**fast_ppo, "iterations": 3})
    betas = [h["beta"] for h in train_ppo(cfg, sft, rm).history]
    assert betas[0] == 0.05
    # the KL of iteration 0 is exactly 0 (below target): beta falls by the clipped 20 % x B / horizon
    assert betas[1] == pytest.approx(0.05 * (1 - 0.2 * 32 / 64))
