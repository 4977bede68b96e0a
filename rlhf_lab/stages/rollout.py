"""What PPO and GRPO share: a batch of sampled experience (step 1 of both loops), one clipped
optimiser step, and the result a policy-gradient stage returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlhf_lab.lm.generation import sample_responses
from rlhf_lab.lm.sequences import decode_responses, encode_prompts
from rlhf_lab.lm.value_head import PolicyWithValueHead

__all__ = ['Rollout', 'generate_rollout', 'clipped_step', 'PPOResult']


@dataclass
class Rollout:
    """One batch of experience. Per-token tensors are response-only: (B, R)."""
    input_ids: torch.Tensor        # (B, P+R) prompt + response
    attention_mask: torch.Tensor   # (B, P+R)
    response_mask: torch.Tensor    # (B, R) bool
    prompts: list
    texts: list[str] | None          # decoded responses (None outside the world, e.g. benchmarks)
    scores: torch.Tensor = None    # (B,) reward used for training (RM or gold)
    gold: torch.Tensor = None      # (B,) gold utility, for monitoring
    logp_old: torch.Tensor = None
    logp_ref: torch.Tensor = None
    values: torch.Tensor = None
    entropy: torch.Tensor = None


@torch.no_grad()
def generate_rollout(policy, tokenizer, prompts, cfg, generator) -> Rollout:
    """Step 1: sample one response per prompt; stop at <eos> and mask everything after it.

    ``cfg`` is the stage config (PPO's or GRPO's): its ``max_new_tokens`` and ``temperature``."""
    lm = policy.policy if isinstance(policy, PolicyWithValueHead) else policy
    device = next(lm.parameters()).device
    prompt_ids, prompt_mask = (t.to(device) for t in encode_prompts(tokenizer, prompts))
    lm.eval()
    response, response_mask = sample_responses(lm, prompt_ids, prompt_mask, cfg.max_new_tokens,
                                               tokenizer.eos_token_id, tokenizer.pad_token_id,
                                               cfg.temperature, generator)
    return Rollout(input_ids=torch.cat([prompt_ids, response], 1),
                   attention_mask=torch.cat([prompt_mask, response_mask.long()], 1),
                   response_mask=response_mask, prompts=list(prompts),
                   texts=decode_responses(tokenizer, response, response_mask))


def clipped_step(optimizer, loss, module, max_grad_norm: float) -> None:
    """Backward, clip the gradient norm of ``module`` to ``max_grad_norm``, one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    optimizer.step()


@dataclass
class PPOResult:
    """The trained policy (a plain causal LM), one metrics row per iteration, sample texts, why
    training stopped early (None if it ran to the end), and the checkpoint evaluations
    (``cfg.eval_every``: one dict per checkpoint, ``iteration`` = iterations done before it), and
    the (shift, scale) PPO applied to the score (``PPOConfig.reward_norm``)."""
    policy: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    stopped: str | None = None
    evals: list[dict] = field(default_factory=list)
    reward_norm: tuple = (0.0, 1.0)
