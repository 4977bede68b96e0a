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
Measured (60 iterations, 256 replies, lr 5e-5; final KL of the training batch): GRPO at
beta = 0.03 / 0.1 / 0.3 / 1 ends at KL 12.6 / 7.1 / 3.4 / 0.2, PPO at 0.03 / 0.1 / 0.3 at
5.0 / 1.1 / 0.3. GRPO's beta is therefore about ten times PPO's (default 0.3 ~ PPO's 0.03).
At lr 5e-5, PPO's policy rate, GRPO already moves faster per iteration than PPO (no critic
to catch up with), so the rate is kept.

:func:`compare_grpo_ppo` trains GRPO at a few betas and sets it against PPO runs of the same
betas with a separate critic (four networks): final gold, proxy and KL, seconds per iteration
and memory.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, replace

import torch

from . import beyond_losses, memory, models, ppo, rl_losses, world
from .config import non_negative, positive, require
from .masking import entropy_from_logits, masked_mean, response_logits, response_logprobs
from .models import forward_logits
from .ppo import PPOResult, Rollout, clipped_step
from .progress import progress
from .student import as_loss_and_stats, pluggable

__all__ = ["GRPOConfig", "train_grpo", "group_prompts", "score_groups", "grpo_update",
           "build_grpo_networks", "held_bytes", "seconds_per_iteration", "compare_grpo_ppo"]


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
    """Policy learning rate, PPO's (measured: GRPO already moves faster per iteration at it)."""
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
    :func:`~rlhf_lab.beyond_losses.group_advantages`)."""
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
        rollout.scores = forward_logits(reward_model, ids, am)[:, 0]              # (B,)


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
    of :func:`~rlhf_lab.beyond_losses.grpo_loss` and
    :func:`~rlhf_lab.beyond_losses.group_advantages`; a student's version that raises
    ``NotImplementedError`` falls back to the reference with a warning.

    Returns a :class:`~rlhf_lab.ppo.PPOResult` whose history rows have PPO's keys where they mean
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
    """One iteration's metrics, named as in :func:`~rlhf_lab.ppo.train_ppo`."""
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


# ---------------------------------------------------------------------------------------------
# GRPO against PPO: the frontier, time and memory
# ---------------------------------------------------------------------------------------------

def _materialise_adam(optimizer) -> None:
    """Give every parameter a zero gradient and take one step, so Adam allocates its two moments
    (with a zero gradient and no weight decay, the weights do not move)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()


def held_bytes(cfg, sft_model, reward_model=None) -> dict[str, int]:
    """Bytes each network of a method actually holds once training has started: weights,
    gradients and Adam state (:func:`rlhf_lab.memory.measured_bytes`), plus a ``total``.

    ``cfg`` picks the method: a :class:`~rlhf_lab.ppo.PPOConfig` builds PPO's networks (policy,
    critic, reference, reward model), a :class:`GRPOConfig` GRPO's (no critic). The reward model
    counts only when it is used (``cfg.reward == "proxy"``)."""
    reward_model = reward_model if cfg.reward == "proxy" else None
    if isinstance(cfg, ppo.PPOConfig):
        policy, lm, critic, reference, reward_model, optimizers = ppo.build_networks(
            cfg, sft_model, reward_model)
        held = {"policy": (policy, optimizers[0]), "reference": (reference, None)}
        if critic is not None:
            held["critic"] = (critic, optimizers[1])
    else:
        policy, reference, reward_model, optimizer = build_grpo_networks(cfg, sft_model, reward_model)
        held = {"policy": (policy, optimizer), "reference": (reference, None)}
    if reward_model is not None:
        held["reward model"] = (reward_model, None)
    for _, optimizer in held.values():
        if optimizer is not None:
            _materialise_adam(optimizer)
    sizes = {name: memory.measured_bytes(module, optimizer) for name, (module, optimizer) in held.items()}
    return {**sizes, "total": sum(sizes.values())}


def _formula_bytes(cfg, n_params: int) -> int:
    """:func:`rlhf_lab.memory.rlhf_memory` in FP32 (the tiny models' precision): PPO's four
    networks or GRPO's three, all of ``n_params`` parameters."""
    networks = ["policy", "reference"]
    if isinstance(cfg, ppo.PPOConfig) and cfg.critic == "separate":
        networks.append("critic")
    if cfg.reward == "proxy":
        networks.append("reward model")
    return memory.rlhf_memory(n_params, memory.FP32, networks=tuple(networks))[-1]["bytes"]


def seconds_per_iteration(cfg, sft_model, reward_model, iterations: int) -> float:
    """Train ``iterations`` fresh iterations of ``cfg``'s method here and now; mean seconds each."""
    cfg = replace(cfg, iterations=iterations)
    if isinstance(cfg, ppo.PPOConfig):
        result = ppo.train_ppo(cfg, sft_model, reward_model)
    else:
        result = train_grpo(cfg, sft_model, reward_model)
    return sum(h["t_total"] for h in result.history) / len(result.history)


def compare_grpo_ppo(run=None, betas=(0.03, 0.1), root=None, jobs: int | None = None,
                     iterations: int | None = 12, timed_iterations: int = 1,
                     n_per_prompt: int = 8, grpo_betas=None) -> list[dict]:
    """GRPO against PPO at each β: one row per (method, β).

    PPO runs are ``run.with_ppo(beta=b, critic="separate")`` (InstructGPT's four networks, the
    setup GRPO removes a network from) for b in ``betas``, GRPO runs
    ``run.with_grpo(beta=b, iterations=iterations)`` for b in ``grpo_betas`` (default: the same
    numbers, though GRPO's β is worth less, see the module docstring; ``iterations=None``: the
    config's own). Both are cached pipeline artifacts, missing ones trained ``jobs`` at a time;
    the default GRPO runs (two of 12 iterations) are notebook-sized. Each row:

    * ``gold``, ``proxy``, ``kl``, ``length``: :func:`~rlhf_lab.evaluation.evaluate_policy` of the
      final policy (``n_per_prompt`` replies per prompt), the point on the reward–KL plane;
    * ``s_per_iteration``: mean seconds of ``timed_iterations`` iterations trained here, one
      method after the other, so that both are timed under the same load (``s_per_iteration_run``
      is the mean over the cached run's own history, timed whenever it was trained);
    * ``networks``, ``formula_bytes``: :func:`~rlhf_lab.memory.rlhf_memory` in FP32 for the
      networks the method holds (4 for PPO with a separate critic, 3 for GRPO);
      ``measured_bytes``: what those networks hold once training starts (:func:`held_bytes`).
    """
    from . import pipeline
    from .evaluation import evaluate_policy
    run = run if run is not None else pipeline.RunConfig()
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    require(isinstance(jobs, int) and jobs >= 1, "jobs", f"must be an int >= 1, got {jobs!r}")
    grpo_betas = betas if grpo_betas is None else grpo_betas
    for name, values in (("betas", betas), ("grpo_betas", grpo_betas)):
        require(len(values) > 0 and all(b >= 0 for b in values), name,
                f"must be a non-empty sequence of numbers >= 0, got {values!r}")
    grpo_runs = {b: run.with_grpo(beta=b, **({"iterations": iterations} if iterations else {}))
                 for b in grpo_betas}
    ppo_runs = {b: run.with_ppo(beta=b, critic="separate") for b in betas}    # four networks
    sft = pipeline.load_or_train_sft(run, root).model
    rm = pipeline.load_or_train_rm(run, root).model      # upstream stages once, before any worker
    pipeline.train_runs([("ppo", r) for r in ppo_runs.values()] + [("grpo", r) for r in grpo_runs.values()],
               root, jobs)
    n_params = models.count_parameters(sft)
    rows = []
    for method, runs in (("PPO", ppo_runs), ("GRPO", grpo_runs)):
        first = next(iter(runs.values()))
        cfg = first.ppo if method == "PPO" else first.grpo
        seconds = (seconds_per_iteration(cfg, sft, rm, timed_iterations)
                   if timed_iterations > 0 else math.nan)
        measured = held_bytes(cfg, sft, rm)["total"]
        for beta, r in runs.items():
            art = (pipeline.load_or_train_ppo if method == "PPO" else pipeline.load_or_train_grpo)(r, root)
            history = art.metrics["history"]
            evaluation = evaluate_policy(art.model, sft, reward_model=rm, n_per_prompt=n_per_prompt)
            rows.append({"method": method, "beta": beta, "iterations": len(history),
                         "rollouts": (r.ppo if method == "PPO" else r.grpo).rollouts,
                         **{k: evaluation[k] for k in ("gold", "proxy", "kl", "length")},
                         "s_per_iteration": seconds,
                         "s_per_iteration_run": sum(h["t_total"] for h in history) / len(history),
                         "networks": 4 if method == "PPO" and r.ppo.critic == "separate" else 3,
                         "formula_bytes": _formula_bytes(cfg, n_params), "measured_bytes": measured})
    return rows
