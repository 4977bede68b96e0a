"""GRPO: PPO without a critic — each reply is judged against the other replies to its prompt.

Group Relative Policy Optimization (Shao et al., 2024, "DeepSeekMath", section 4) samples G
replies per prompt and uses the group's mean score as the baseline that PPO's critic would
otherwise learn. Per iteration (one flat loop, one named function per step)::

    1. generate   G replies y_1..y_G ~ pi_theta(. | x) per prompt, a group's rows adjacent
    2. score      logp_old, logp_ref and the reward r(x, y_i)          (forwards, no grad)
    3. advantages A_i = (r_i - mean_group r) / std_group r              (group_advantages)
    4. K epochs of minibatches of the clipped loss + beta * k3 KL      (grpo_loss)

Three networks instead of PPO's four: the policy (trained), the reference and the reward model
(frozen). The KL penalty moves from the reward into the loss, since no critic is there to learn
it. Minibatches may split a group: the advantages are computed once, over the whole batch.

On beta: both terms of the GRPO loss are token means, so it is about ``(1/L) (-E[r]/sigma + beta
KL_seq)`` with L the mean reply length and sigma the spread of the reward within a group. It
solves PPO's objective ``E[r] - beta' KL`` with ``beta' ~ beta * sigma``; the history records
``reward_std`` (mean within-group sigma) so the two betas can be put side by side. Against the
default reward model sigma is only 0.1-0.3, so the same number restrains GRPO far less than PPO.
So GRPO's beta must be several times PPO's for the same leash: the default 0.3 is meant to sit
near PPO at 0.03 (the runs behind that are in docs/lab_notes.md). GRPO keeps PPO's policy
learning rate: with no critic to catch up with, it already moves further per iteration.

"""
from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass

import torch

from rlhf_lab import world
from rlhf_lab.core.config import non_negative, positive, require
from rlhf_lab.core.plug import as_loss_and_stats, pluggable
from rlhf_lab.core.progress import progress
from rlhf_lab.equations import beyond_losses, rl_losses
from rlhf_lab.equations.masking import entropy_from_logits, masked_mean, response_logits, response_logprobs
from rlhf_lab.lm import models
from rlhf_lab.lm.models import forward_logits, reward_scores
from rlhf_lab.stages import ppo
from rlhf_lab.stages.ppo import PPOResult, Rollout, clipped_step

__all__ = ["GRPOConfig", "train_grpo", "group_prompts", "score_groups", "grpo_update",
           "build_grpo_networks"]


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO against a reward model, with a k3 KL penalty to the SFT reference in the loss."""
    beta: float = 0.3
    """β, weight of the mean per-token k3 KL(π_θ ‖ π_ref) in the loss (DeepSeekMath: 0.04).
    In PPO's units it is worth β × the within-group reward std (0.1-0.3 here): 0.3 ends near
    PPO's default 0.03 (typical 0.1-1 here)."""
    iterations: int = 60
    """GRPO iterations, each one batch of groups + K epochs (PPO's default is 60 as well)."""
    prompts_per_iteration: int = 32
    """Prompts per batch; the batch holds prompts_per_iteration × group_size replies."""
    group_size: int = 8
    """G, replies sampled per prompt (>= 2: the baseline is the mean of the others' scores)."""
    epochs: int = 4
    """K, passes over each batch."""
    minibatch_size: int = 64
    """Replies per gradient step; must divide the batch (prompts × G)."""
    lr: float = 5e-5
    """Policy learning rate, PPO's (typical 1e-5 to 1e-4)."""
    clip_eps: float = 0.2
    """ε, the clip range of the ratio π_θ/π_θold (typical 0.1-0.3)."""
    temperature: float = 1.0
    """Sampling temperature; the same one divides the logits when log-probs are recomputed."""
    max_new_tokens: int = 24
    """Longest reply in tokens."""
    reward: str = "proxy"
    """"proxy": the reward model; "gold": the world's gold utility itself (the oracle)."""
    max_grad_norm: float = 1.0
    """Gradient clipping of the policy."""
    sample_every: int = 10
    """Keep a few sample texts every this many iterations."""
    seed: int = 0
    """Seed of the prompt order, the sampling and the minibatch order."""

    def __post_init__(self):
        non_negative(self, "beta")
        positive(self, "iterations", "prompts_per_iteration", "epochs", "minibatch_size", "lr",
                 "temperature", "max_new_tokens", "max_grad_norm", "sample_every")
        require(isinstance(self.group_size, int) and not isinstance(self.group_size, bool)
                and self.group_size >= 2, "group_size",
                f"must be an integer >= 2 (a group needs others to compare with), got {self.group_size!r}")
        require(0 < self.clip_eps < 1, "clip_eps", f"must lie in (0, 1), got {self.clip_eps}")
        require(self.rollouts % self.minibatch_size == 0, "minibatch_size",
                f"must divide the rollouts per iteration (prompts_per_iteration × group_size = "
                f"{self.rollouts}), got {self.minibatch_size}")
        require(self.reward in ("proxy", "gold"), "reward",
                f"must be 'proxy' or 'gold', got {self.reward!r}")

    @property
    def rollouts(self) -> int:
        """Replies per iteration, B = prompts_per_iteration × group_size (PPO's ``rollouts``)."""
        return self.prompts_per_iteration * self.group_size


def group_prompts(prompts_all, cfg: GRPOConfig, rng: random.Random) -> list:
    """Step 1a: draw ``prompts_per_iteration`` prompts and repeat each ``group_size`` times in a
    row, so rows ``[g*G, (g+1)*G)`` are the replies to one prompt (the layout of
    :func:`~rlhf_lab.equations.beyond_losses.group_advantages`)."""
    drawn = [rng.choice(prompts_all) for _ in range(cfg.prompts_per_iteration)]
    return [p for p in drawn for _ in range(cfg.group_size)]


@torch.no_grad()
def score_groups(rollout: Rollout, policy, reference, reward_model, cfg: GRPOConfig) -> None:
    """Step 2: old-policy and reference log-probs, entropy, gold and the reward (no critic)."""
    ids, am = rollout.input_ids, rollout.attention_mask
    P = ids.shape[1] - rollout.response_mask.shape[1]
    logits = forward_logits(policy, ids, am)                                      # (B, P+R, V)
    rollout.logp_old = response_logprobs(logits, ids, P, cfg.temperature)         # (B, R)
    rollout.entropy = entropy_from_logits(response_logits(logits, P, cfg.temperature))
    ref_logits = forward_logits(reference, ids, am)
    rollout.logp_ref = response_logprobs(ref_logits, ids, P, cfg.temperature)
    if rollout.texts is not None:
        rollout.gold = torch.tensor(world.gold_utilities(rollout.prompts, rollout.texts),
                                    device=ids.device)
    if cfg.reward == "gold":
        rollout.scores = rollout.gold.clone()
    else:
        rollout.scores = reward_scores(reward_model, ids, am, P)                  # (B,)


def grpo_update(rollout: Rollout, adv, policy, optimizer, cfg: GRPOConfig, loss_fn,
                generator) -> dict:
    """Step 4: K epochs of minibatch steps on ``loss_fn`` (GRPO's loss); averaged stats.
    A non-finite loss raises ``FloatingPointError``."""
    P = rollout.input_ids.shape[1] - rollout.response_mask.shape[1]
    totals: dict[str, float] = {}
    steps = 0
    policy.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(cfg.rollouts, generator=generator).split(cfg.minibatch_size):
            ids, am = rollout.input_ids[idx], rollout.attention_mask[idx]
            logits = forward_logits(policy, ids, am)                              # (b, P+R, V)
            logp = response_logprobs(logits, ids, P, cfg.temperature)             # (b, R)
            loss, stats = as_loss_and_stats(
                loss_fn(logp, rollout.logp_old[idx], rollout.logp_ref[idx], adv[idx],
                        rollout.response_mask[idx], cfg.clip_eps, cfg.beta))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the GRPO loss became {loss.item()}")
            clipped_step(optimizer, loss, policy, cfg.max_grad_norm)
            stats.setdefault("loss", loss.item())
            for k, v in stats.items():
                if isinstance(v, (int, float)):
                    key = "kl_penalty" if k == "kl" else k       # the loss's k3 term, not the k1 KL
                    totals[key] = totals.get(key, 0.0) + float(v)
            steps += 1
    policy.eval()
    return {k: v / steps for k, v in totals.items()}


def build_grpo_networks(cfg: GRPOConfig, sft_model, reward_model):
    """The three networks and the optimiser: (policy, reference, reward_model, optimizer)."""
    torch.manual_seed(cfg.seed)
    reference = copy.deepcopy(sft_model).eval().requires_grad_(False)
    if reward_model is not None:
        reward_model = reward_model.eval().requires_grad_(False)
    policy = copy.deepcopy(sft_model)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    return policy, reference, reward_model, optimizer


def _group_stats(scores: torch.Tensor, group_size: int) -> dict:
    """Mean within-group std of the reward, and the fraction of groups whose replies all scored
    the same (their advantages are 0: nothing to learn from them)."""
    std = scores.reshape(-1, group_size).std(dim=1, unbiased=False)
    return {"reward_std": std.mean().item(), "flat_groups": (std < 1e-6).float().mean().item()}


def train_grpo(cfg: GRPOConfig, sft_model, reward_model=None, tokenizer=None,
               loss_fn=beyond_losses.grpo_loss,
               advantage_fn=beyond_losses.group_advantages) -> PPOResult:
    """GRPO from ``sft_model`` (also the frozen reference) against ``reward_model`` (or the gold
    utility when ``cfg.reward == "gold"``). ``loss_fn`` and ``advantage_fn`` have the signatures
    of :func:`~rlhf_lab.equations.beyond_losses.grpo_loss` and
    :func:`~rlhf_lab.equations.beyond_losses.group_advantages`; a student's version that raises
    ``NotImplementedError`` falls back to the reference with a warning.

    Returns a :class:`~rlhf_lab.stages.ppo.PPOResult` whose history rows have PPO's keys where they mean
    the same thing. A NaN or inf loss stops training; the policy returned is the last good one.
    """
    require(cfg.reward == "gold" or reward_model is not None, "reward_model",
            "is required unless cfg.reward == 'gold'")
    tokenizer = tokenizer or models.world_tokenizer()
    loss_fn = pluggable(loss_fn, beyond_losses.grpo_loss, "grpo_loss")
    advantage_fn = pluggable(advantage_fn, beyond_losses.group_advantages, "group_advantages")
    policy, reference, reward_model, optimizer = build_grpo_networks(cfg, sft_model, reward_model)
    rng = random.Random(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)            # minibatch order (and sampling on a CPU)
    device = next(policy.parameters()).device
    sampler = generator if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)
    prompts_all = world.all_prompts()
    result = PPOResult(policy=policy)
    for it in progress(range(cfg.iterations), desc=f"GRPO β={cfg.beta:g}", leave=False):
        last_good = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        t0 = time.perf_counter()
        # 1. generate G replies per prompt, a group's rows adjacent
        rollout = ppo.generate_rollout(policy, tokenizer, group_prompts(prompts_all, cfg, rng),
                                       cfg, sampler)
        t1 = time.perf_counter()
        # 2. score: logp_old, logp_ref, reward
        score_groups(rollout, policy, reference, reward_model, cfg)
        t2 = time.perf_counter()
        # 3. group-relative advantages, over the whole batch before any minibatch split
        with torch.no_grad():
            adv = advantage_fn(rollout.scores, cfg.group_size)                          # (B,)
        # 4. K epochs of minibatch updates
        try:
            stats = grpo_update(rollout, adv, policy, optimizer, cfg, loss_fn, generator)
        except FloatingPointError as err:
            policy.load_state_dict(last_good)
            result.stopped = f"stopped at iteration {it}: {err}; kept the policy of iteration {it - 1}"
            warnings.warn(result.stopped, RuntimeWarning)
            break
        t_end = time.perf_counter()
        result.history.append(_history_row(it, rollout, cfg, stats, (t0, t1, t2, t_end)))
        if it % cfg.sample_every == 0 or it == cfg.iterations - 1:
            result.samples += [{"iteration": it, "prompt": p.text, "text": t, "gold": g, "score": s}
                               for p, t, g, s in zip(rollout.prompts[:3], rollout.texts[:3],
                                                     rollout.gold[:3].tolist(), rollout.scores[:3].tolist())]
    return result


def _history_row(it: int, rollout: Rollout, cfg: GRPOConfig, stats: dict, times) -> dict:
    """One iteration's metrics, named as in :func:`~rlhf_lab.stages.ppo.train_ppo`."""
    t0, t1, t2, t_end = times
    mask = rollout.response_mask
    kl = rl_losses.sequence_kl(rollout.logp_old, rollout.logp_ref, mask).mean().item()
    proxy = rollout.scores.mean().item()
    return {"iteration": it, "proxy": proxy, "gold": rollout.gold.mean().item(), "kl": kl,
            "beta": cfg.beta, "objective": proxy - cfg.beta * kl,
            "entropy": masked_mean(rollout.entropy, mask).item(),
            "length": mask.sum(-1).float().mean().item(),
            **_group_stats(rollout.scores, cfg.group_size), **stats,
            "t_generate": t1 - t0, "t_score": t2 - t1, "t_update": t_end - t2,
            "t_total": t_end - t0, "tokens": int(mask.sum())}


