"""Stage 3: KL-regularised PPO against a reward model — one flat loop.

Per iteration (the lecture's pseudocode, one named function per step; before the first, step 0
optionally centres the score, ``reward_norm``)::

    1. generate   y ~ pi_theta(. | x) for a batch of prompts            (KV cache, no grad)
    2. score      logp_old, logp_ref, values V(s_t), r_phi(x, y)        (forwards, no grad)
    3. rewards    r_t = -beta (logp_old - logp_ref) + [t = T] r_phi      (shaped_rewards)
    4. GAE        adv, returns                                          (gae)
    5. K epochs of minibatches: PPO clip loss + clipped value loss      (ppo_clip_loss, value_loss)
       [+ PPO-ptx: ptx_coef x next-token NLL of a batch of web text      (ppo_ptx_loss)]

The four networks of the lecture: the policy pi_theta (trained), the reference pi_ref (the frozen
SFT model), the reward model r_phi (frozen) and the critic V (trained). By default the critic is a
value head on the policy's trunk (``critic="head"``, as in the value-head models of TRL): three
networks, and cheaper per iteration than ``critic="separate"``, InstructGPT's separate critic
network initialised from the RM (the fourth network). Every equation is a parameter of
:func:`train_ppo` (``losses=PPOLosses(...)``), so a student's version can drive the training.

PPO-ptx (InstructGPT eq. 2): with ``ptx_coef`` = γ > 0 each policy step adds γ times the NLL of a
batch of web text (drawn with a seed the base model never saw), to pay less alignment tax
(:mod:`rlhf_lab.studies.alignment_tax`); with γ = 0 the loop is plain PPO, number for number.
"""
from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass, field

import torch

from rlhf_lab import world
from rlhf_lab.core.config import LATER, in_unit_interval, non_negative, positive, require
from rlhf_lab.core.plug import as_loss_and_stats, pluggable
from rlhf_lab.core.progress import progress
from rlhf_lab.equations import beyond_losses, rl_losses
from rlhf_lab.equations.masking import (
    entropy_from_logits,
    masked_mean,
    masked_whiten,
    response_logits,
    response_logprobs,
)
from rlhf_lab.lm import models
from rlhf_lab.lm.evaluation import evaluate_policy
from rlhf_lab.lm.sequences import position_ids
from rlhf_lab.lm.value_head import PolicyWithValueHead
from rlhf_lab.stages.ptx import PretrainingText, pretraining_text, ptx_policy_loss
from rlhf_lab.stages.rollout import PPOResult, Rollout, clipped_step, generate_rollout

__all__ = ['PPOConfig', 'PPOLosses', 'adaptive_beta', 'score_rollout', 'final_scores', 'reward_normaliser', 'ppo_update',
           'ppo_step', 'build_networks', 'train_ppo']


@dataclass(frozen=True)
class PPOConfig:
    """Stage 3: PPO against a reward model with a KL penalty to the SFT reference."""
    beta: float = 0.03
    """KL coefficient β in r_t = -β (log π - log π_ref) + r_φ at the end (typical 0.01-0.3);
    the starting value when ``kl_target`` is set."""
    iterations: int = 60
    """PPO iterations, each one rollout batch + K epochs (typical 50-200)."""
    rollouts: int = 256
    """Responses sampled per iteration (the batch B)."""
    epochs: int = 4
    """K, passes over each rollout batch."""
    minibatch_size: int = 64
    """Responses per gradient step; B / minibatch_size steps per epoch."""
    lr: float = 5e-5
    """Policy learning rate. At 3e-4 the KL overshoots the gold peak within a few iterations."""
    critic_lr: float = 2e-4
    """Critic learning rate: the value head's (it starts at zero) or the separate critic's (it
    starts from the RM); either must move faster than the policy."""
    clip_eps: float = 0.2
    """ε, the PPO clip range of the ratio π_θ/π_θold (typical 0.1-0.3)."""
    clip_eps_value: float = 0.2
    """Clip range of the value update around the rollout's values."""
    gamma: float = 1.0
    """γ, discount per token (1: an episode is one short reply)."""
    lam: float = 0.95
    """λ of GAE: 0 = one-step TD, 1 = Monte Carlo returns."""
    temperature: float = 1.0
    """Sampling temperature; the same one divides the logits when log-probs are recomputed."""
    max_new_tokens: int = 24
    """Longest response in tokens."""
    kl_target: float | None = None
    """If set, β adapts toward this mean sequence KL (Ziegler et al. 2019); else β is fixed."""
    kl_horizon: int = 10_000
    """Horizon of the adaptive controller, in responses."""
    critic: str = "head"
    """"head": a value head on the policy trunk (three networks, so cheaper per iteration; the
    value loss's gradients share the policy's trunk); "separate": a critic network initialised
    from the RM (InstructGPT's four networks). benchmarks/bench_ppo.py times both."""
    reward: str = "proxy"
    """"proxy": the reward model; "gold": the world's gold utility itself (the oracle)."""
    missing_eos_penalty: float = 0.0
    """Subtracted from the score of a response that never produced <eos> (0 = off)."""
    vf_coef: float = 0.5
    """Weight of the value loss when the critic is a head on the policy trunk."""
    max_grad_norm: float = 1.0
    """Gradient clipping for policy and critic."""
    sample_every: int = 10
    """Keep a few sample texts every this many iterations."""
    ptx_coef: float = field(default=0.0, metadata=LATER)
    """γ of PPO-ptx (InstructGPT eq. 2): weight of the pretraining NLL added to the policy loss;
    0 = plain PPO. 0.01-0.03 removes the tiny model's tax at β = 0.03; 0.1 and more pulls the
    replies back towards web text and costs gold (InstructGPT used 27.8 on its own scale)."""
    ptx_batch_size: int = field(default=32, metadata=LATER)
    """Web-text sequences read with every policy minibatch step when ``ptx_coef`` > 0."""
    ptx_corpus_size: int = field(default=4096, metadata=LATER)
    """Web replies in PPO-ptx's pretraining text, drawn once per run (seed PTX_CORPUS_SEED + seed)."""
    eval_every: int = field(default=0, metadata=LATER)
    """Evaluate the policy before the first iteration, every this many iterations and after the
    last (:func:`rlhf_lab.lm.evaluation.evaluate_policy`: ``eval_per_prompt`` replies to each
    prompt, drawn with ``eval_seed`` every time); 0 = off. Fixed seeds on every prompt tell
    checkpoints apart better than random rollout batches do; training is unchanged."""
    eval_per_prompt: int = field(default=16, metadata=LATER)
    """Replies per prompt of each evaluation (typical 8-64)."""
    eval_seed: int = field(default=12_345, metadata=LATER)
    """Seed of the evaluation's sampling, the same at every checkpoint."""
    reward_norm: str | None = field(default=None, metadata=LATER)
    """None: r_φ as it is; "center": minus its mean over one batch of the reference's replies
    (:func:`reward_normaliser`); "whiten": also over their std (Ziegler et al. 2019). Why: with a
    value head starting at zero and λ < 1, a positive mean score favours a reply's last tokens, so
    the policy first learns to stop early. Keep None with the separate critic (it starts from r_φ)."""
    seed: int = 0
    """Seed of the prompt order, the sampling and the value head."""

    def __post_init__(self):
        non_negative(self, "beta", "missing_eos_penalty", "vf_coef", "ptx_coef")
        positive(self, "iterations", "rollouts", "epochs", "minibatch_size", "lr", "critic_lr",
                 "temperature", "max_new_tokens", "kl_horizon", "max_grad_norm", "sample_every",
                 "ptx_batch_size", "ptx_corpus_size")
        for name, low in (("eval_every", 0), ("eval_per_prompt", 1), ("eval_seed", 0)):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                    f"must be an int >= {low}, got {value!r}")
        for name in ("ptx_batch_size", "ptx_corpus_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool), name,
                    f"must be an int, got {value!r}")
        require(0 < self.clip_eps < 1, "clip_eps", f"must lie in (0, 1), got {self.clip_eps}")
        require(self.clip_eps_value > 0, "clip_eps_value", f"must be > 0, got {self.clip_eps_value}")
        in_unit_interval(self, "gamma", "lam")
        require(self.kl_target is None or self.kl_target > 0, "kl_target",
                f"must be > 0 or None, got {self.kl_target}")
        require(self.rollouts % self.minibatch_size == 0, "minibatch_size",
                f"must divide rollouts ({self.rollouts}), got {self.minibatch_size}")
        for name, allowed in (("critic", ("separate", "head")), ("reward", ("proxy", "gold")),
                              ("reward_norm", (None, "center", "whiten"))):
            require(getattr(self, name) in allowed, name,
                    f"must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class PPOLosses:
    """The equations the loop calls; replace any of them with a student's version."""
    shaped_rewards: callable = rl_losses.shaped_rewards
    gae: callable = rl_losses.gae
    ppo_clip_loss: callable = rl_losses.ppo_clip_loss
    value_loss: callable = rl_losses.value_loss
    ppo_ptx_loss: callable = beyond_losses.ppo_ptx_loss

    def pluggable(self) -> "PPOLosses":
        ref = PPOLosses()
        return PPOLosses(**{name: pluggable(getattr(self, name), getattr(ref, name), name)
                            for name in ("shaped_rewards", "gae", "ppo_clip_loss", "value_loss",
                                         "ppo_ptx_loss")})


def adaptive_beta(beta: float, kl: float, kl_target: float, horizon: int, n_responses: int) -> float:
    """Ziegler et al. (2019) proportional controller:
    ``β <- β (1 + clip(KL / KL_target - 1, -0.2, 0.2) · n / horizon)``."""
    error = max(-0.2, min(0.2, kl / kl_target - 1.0))
    return beta * (1.0 + error * n_responses / horizon)


@torch.no_grad()
def score_rollout(rollout: Rollout, policy, reference, critic, reward_model, cfg: PPOConfig) -> None:
    """Step 2: old-policy and reference log-probs, values V(s_t), entropy and the reward."""
    ids, am = rollout.input_ids, rollout.attention_mask
    P = ids.shape[1] - rollout.response_mask.shape[1]
    if isinstance(policy, PolicyWithValueHead):
        logits, values = policy(ids, am, position_ids(am))
    else:
        logits = models.forward_logits(policy, ids, am)
        values = models.forward_logits(critic, ids, am)[..., 0]                       # (B, P+R)
    rollout.logp_old = response_logprobs(logits, ids, P, cfg.temperature)             # (B, R)
    rollout.entropy = entropy_from_logits(response_logits(logits, P, cfg.temperature))
    ref_logits = models.forward_logits(reference, ids, am)
    rollout.logp_ref = response_logprobs(ref_logits, ids, P, cfg.temperature)
    rollout.values = values[:, P - 1:-1].float()                # V(s_t) is read where y_t is predicted
    lm = policy.policy if isinstance(policy, PolicyWithValueHead) else policy
    rollout.scores = final_scores(rollout, lm, reward_model, cfg)


def final_scores(rollout: Rollout, lm, reward_model, cfg: PPOConfig) -> torch.Tensor:
    """Each reply's score, paid at its last token: r_φ(x, y) (r*(x, y) if ``cfg.reward == "gold"``)
    − ``missing_eos_penalty`` if it never wrote <eos>: (B,). Sets ``rollout.gold`` (r*, monitored)."""
    ids, am = rollout.input_ids, rollout.attention_mask
    P = ids.shape[1] - rollout.response_mask.shape[1]
    if rollout.texts is not None:
        rollout.gold = torch.tensor(world.gold_utilities(rollout.prompts, rollout.texts),
                                    device=ids.device)
    scores = rollout.gold.clone() if cfg.reward == "gold" else models.reward_scores(reward_model, ids, am, P)
    ended = ids[:, P:].eq(lm.config.eos_token_id).any(-1)        # lm: the policy's causal LM
    return scores - cfg.missing_eos_penalty * (~ended).float()


NORM_SEED = 7_919          # offset of the seed of reward_normaliser's batch


@torch.no_grad()
def reward_normaliser(policy, reward_model, tokenizer, cfg: PPOConfig) -> tuple[float, float]:
    """Step 0 (``cfg.reward_norm``): (μ, σ) of the :func:`final_scores` of one batch of the untrained
    policy's (= the reference's) replies, or (μ, 1) with "center"; drawn with generators of its own."""
    lm = policy.policy if isinstance(policy, PolicyWithValueHead) else policy
    rng = random.Random(cfg.seed + NORM_SEED)
    prompts = [rng.choice(world.all_prompts()) for _ in range(cfg.rollouts)]
    sampler = torch.Generator(next(lm.parameters()).device).manual_seed(cfg.seed + NORM_SEED)
    rollout = generate_rollout(policy, tokenizer, prompts, cfg, sampler)
    scores = final_scores(rollout, lm, reward_model, cfg)       # no other forward pass needed
    mean, std = scores.mean().item(), scores.std().item()
    return mean, (std if cfg.reward_norm == "whiten" and std > 0 else 1.0)


def ppo_update(rollout: Rollout, adv, returns, policy, critic, optimizers, cfg: PPOConfig,
               losses: PPOLosses, generator, ptx_text: PretrainingText | None = None) -> dict:
    """Step 5: K epochs of minibatch updates on one rollout; returns averaged stats. With
    ``ptx_text`` (PPO-ptx) every policy step adds ``cfg.ptx_coef`` x the NLL of a web-text batch."""
    P = rollout.input_ids.shape[1] - rollout.response_mask.shape[1]
    B = rollout.input_ids.shape[0]
    totals: dict[str, float] = {}
    steps = 0
    lm = policy.policy if isinstance(policy, PolicyWithValueHead) else policy
    policy.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(B, generator=generator).split(cfg.minibatch_size):
            ids, am, mask = rollout.input_ids[idx], rollout.attention_mask[idx], rollout.response_mask[idx]
            if isinstance(policy, PolicyWithValueHead):
                logits, values = policy(ids, am, position_ids(am))
            else:
                logits = models.forward_logits(policy, ids, am)
                values = models.forward_logits(critic, ids, am)[..., 0]
            logp = response_logprobs(logits, ids, P, cfg.temperature)
            pg_loss, pg_stats = as_loss_and_stats(
                losses.ppo_clip_loss(logp, rollout.logp_old[idx], adv[idx], mask, cfg.clip_eps))
            vf_loss, vf_stats = as_loss_and_stats(
                losses.value_loss(values[:, P - 1:-1], rollout.values[idx], returns[idx], mask,
                                  cfg.clip_eps_value))
            policy_loss, ptx_stats = pg_loss, {}
            if ptx_text is not None:                # PPO-ptx: + γ NLL of web text
                policy_loss, ptx_stats = ptx_policy_loss(pg_loss, lm, ptx_text, cfg, losses)
            for name, loss in (("policy loss", policy_loss), ("value loss", vf_loss)):
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the {name} became {loss.item()}")
            if critic is None:                      # one trunk: one combined step
                clipped_step(optimizers[0], policy_loss + cfg.vf_coef * vf_loss, policy,
                             cfg.max_grad_norm)
            else:
                clipped_step(optimizers[0], policy_loss, policy, cfg.max_grad_norm)
                clipped_step(optimizers[1], vf_loss, critic, cfg.max_grad_norm)
            for k, v in {**pg_stats, **vf_stats, "pg_loss": pg_loss.item(), "vf_loss": vf_loss.item(),
                         **ptx_stats}.items():
                if isinstance(v, (int, float)):
                    totals[k] = totals.get(k, 0.0) + float(v)
            steps += 1
    policy.eval()
    return {k: v / steps for k, v in totals.items()}


def ppo_step(rollout: Rollout, policy, reference, critic, reward_model, optimizers,
             cfg: PPOConfig, losses: PPOLosses, beta: float, generator,
             ptx_text: PretrainingText | None = None, reward_norm: tuple = (0.0, 1.0)) -> dict:
    """Steps 2-5 of one iteration on a generated rollout; returns the update's stats and the
    seconds spent scoring (``t_score``) and updating (``t_update``). The reward is
    (score − μ) / σ with ``reward_norm`` = (μ, σ) (:func:`reward_normaliser`)."""
    t0 = time.perf_counter()
    # 2. score: logp_old, logp_ref, values, reward
    score_rollout(rollout, policy, reference, critic, reward_model, cfg)
    mask = rollout.response_mask
    t1 = time.perf_counter()
    with torch.no_grad():
        # 3. KL-shaped token rewards
        shift, scale = reward_norm
        rewards = losses.shaped_rewards((rollout.scores - shift) / scale, rollout.logp_old,
                                        rollout.logp_ref, mask, beta)
        # 4. GAE, then whiten the advantages over the batch's response tokens
        adv, returns = losses.gae(rewards, rollout.values, mask, cfg.gamma, cfg.lam)
        adv = masked_whiten(adv, mask)
    # 5. K epochs of minibatch updates
    stats = ppo_update(rollout, adv, returns, policy, critic, optimizers, cfg, losses, generator,
                       ptx_text)
    return {**stats, "t_score": t1 - t0, "t_update": time.perf_counter() - t1}


def build_networks(cfg: PPOConfig, sft_model, reward_model, reference=None):
    """The four networks and the optimisers: (policy, lm, critic, reference, reward_model, optimizers).

    ``lm`` is the causal LM being trained (a copy of ``sft_model``); ``policy`` is ``lm`` itself
    or, with ``cfg.critic == "head"``, ``lm`` with a value head (then ``critic`` is None). The
    frozen reference is a copy of ``reference``, by default of ``sft_model``.
    """
    torch.manual_seed(cfg.seed)
    reference = copy.deepcopy(sft_model if reference is None else reference).eval().requires_grad_(False)
    if reward_model is not None:
        reward_model = reward_model.eval().requires_grad_(False)
    lm = copy.deepcopy(sft_model)
    if cfg.critic == "head":
        policy, critic = PolicyWithValueHead(lm, seed=cfg.seed), None
        optimizers = [torch.optim.AdamW([{"params": lm.parameters(), "lr": cfg.lr},
                                         {"params": policy.value_head.parameters(), "lr": cfg.critic_lr}],
                                        weight_decay=0.0)]
    else:
        policy = lm
        critic = models.critic_from(reward_model if reward_model is not None else sft_model, seed=cfg.seed)
        optimizers = [torch.optim.AdamW(lm.parameters(), lr=cfg.lr, weight_decay=0.0),
                      torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0)]
    return policy, lm, critic, reference, reward_model, optimizers


def _record(result: PPOResult, it: int, rollout: Rollout, beta: float, stats: dict, cfg: PPOConfig,
            t0: float, t1: float) -> float:
    """Append iteration ``it``'s metrics row (and, every ``cfg.sample_every``, three samples) to
    ``result``; return the batch's mean sequence KL."""
    mask = rollout.response_mask
    t_end = time.perf_counter()
    kl = rl_losses.sequence_kl(rollout.logp_old, rollout.logp_ref, mask).mean().item()
    result.history.append({
        "iteration": it, "proxy": rollout.scores.mean().item(), "gold": rollout.gold.mean().item(),
        "kl": kl, "beta": beta, "objective": rollout.scores.mean().item() - beta * kl,
        "entropy": masked_mean(rollout.entropy, mask).item(),
        "length": mask.sum(-1).float().mean().item(), **stats,
        "t_generate": t1 - t0, "t_total": t_end - t0, "tokens": int(mask.sum())})
    if it % cfg.sample_every == 0 or it == cfg.iterations - 1:
        result.samples += [{"iteration": it, "prompt": p.text, "text": t, "gold": g, "score": s}
                           for p, t, g, s in zip(rollout.prompts[:3], rollout.texts[:3],
                                                 rollout.gold[:3].tolist(), rollout.scores[:3].tolist())]
    return kl


def train_ppo(cfg: PPOConfig, sft_model, reward_model=None, tokenizer=None,
              losses: PPOLosses = PPOLosses(), reference=None) -> PPOResult:
    """Stage 3: PPO from ``sft_model`` (also the frozen reference) against ``reward_model``.

    ``reference``: another frozen π_ref for the KL penalty (iterative RLHF starts round k from
    the policy of round k-1 but keeps the penalty to π_SFT); default: ``sft_model`` itself.

    A NaN or inf loss stops training with a message naming the quantity; the policy returned is
    the last good one (from before the failing iteration).
    """
    require(cfg.reward == "gold" or reward_model is not None, "reward_model",
            "is required unless cfg.reward == 'gold'")
    tokenizer = tokenizer or models.world_tokenizer()
    losses = losses.pluggable()
    policy, lm, critic, reference, reward_model, optimizers = build_networks(cfg, sft_model, reward_model,
                                                                             reference)
    rng = random.Random(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)            # minibatch order (and sampling on a CPU)
    device = next(lm.parameters()).device
    sampler = generator if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)
    prompts_all = world.all_prompts()
    ptx_text = pretraining_text(cfg, tokenizer) if cfg.ptx_coef > 0 else None   # PPO-ptx only
    result = PPOResult(policy=lm)

    def checkpoint(done: int) -> None:              # the policy after `done` iterations
        result.evals.append({"iteration": done, **evaluate_policy(
            lm, reference, tokenizer, reward_model, cfg.eval_per_prompt, cfg.eval_seed,
            cfg.max_new_tokens)})

    # 0. the score's shift and scale (none by default)
    norm = (0.0, 1.0) if cfg.reward_norm is None else reward_normaliser(policy, reward_model, tokenizer, cfg)
    result.reward_norm = norm
    beta = cfg.beta
    for it in progress(range(cfg.iterations), desc=f"PPO β={cfg.beta:g}", leave=False):
        if cfg.eval_every and it % cfg.eval_every == 0:
            checkpoint(it)
        last_good = {k: v.detach().clone() for k, v in lm.state_dict().items()}
        t0 = time.perf_counter()
        prompts = [rng.choice(prompts_all) for _ in range(cfg.rollouts)]
        # 1. generate
        rollout = generate_rollout(policy, tokenizer, prompts, cfg, sampler)
        t1 = time.perf_counter()
        # 2.-5. score, shape rewards, GAE, K epochs of updates
        try:
            stats = ppo_step(rollout, policy, reference, critic, reward_model, optimizers, cfg,
                             losses, beta, generator, ptx_text, norm)
        except FloatingPointError as err:
            lm.load_state_dict(last_good)
            result.stopped = f"stopped at iteration {it}: {err}; kept the policy of iteration {it - 1}"
            warnings.warn(result.stopped, RuntimeWarning)
            break
        kl = _record(result, it, rollout, beta, stats, cfg, t0, t1)
        if cfg.kl_target is not None:
            beta = adaptive_beta(beta, kl, cfg.kl_target, cfg.kl_horizon, cfg.rollouts)
    if cfg.eval_every and result.evals[-1]["iteration"] != len(result.history):
        checkpoint(len(result.history))
    return result
