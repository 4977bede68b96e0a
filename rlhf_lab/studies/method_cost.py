"""What PPO and GRPO cost on the machine at hand: the bytes their networks hold once training has
started, and the seconds an iteration takes. GRPO drops PPO's critic; this measures what that saves."""
from __future__ import annotations

from dataclasses import replace

import torch

from rlhf_lab.stages.grpo import build_grpo_networks, train_grpo
from rlhf_lab.stages.ppo import PPOConfig, build_networks, train_ppo
from rlhf_lab.studies.memory import measured_bytes

__all__ = ["held_bytes", "seconds_per_iteration"]


def _materialise_adam(optimizer) -> None:
    """Give every parameter a zero gradient and take one step, so Adam allocates its two moments
    (with a zero gradient and no weight decay, the weights do not move)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()


def held_bytes(cfg, sft_model, reward_model=None) -> dict[str, int]:
    """Bytes each network of a method actually holds once training has started: weights,
    gradients and Adam state (:func:`rlhf_lab.studies.measured_bytes`), plus a ``total``.

    ``cfg`` picks the method: a :class:`~rlhf_lab.stages.ppo.PPOConfig` builds PPO's networks (policy,
    critic, reference, reward model), a :class:`GRPOConfig` GRPO's (no critic). The reward model
    counts only when it is used (``cfg.reward == "proxy"``)."""
    reward_model = reward_model if cfg.reward == "proxy" else None
    if isinstance(cfg, PPOConfig):
        policy, lm, critic, reference, reward_model, optimizers = build_networks(
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
    sizes = {name: measured_bytes(module, optimizer) for name, (module, optimizer) in held.items()}
    return {**sizes, "total": sum(sizes.values())}


def seconds_per_iteration(cfg, sft_model, reward_model, iterations: int) -> float:
    """Train ``iterations`` fresh iterations of ``cfg``'s method here and now; mean seconds each."""
    cfg = replace(cfg, iterations=iterations)
    if isinstance(cfg, PPOConfig):
        result = train_ppo(cfg, sft_model, reward_model)
    else:
        result = train_grpo(cfg, sft_model, reward_model)
    return sum(h["t_total"] for h in result.history) / len(result.history)
