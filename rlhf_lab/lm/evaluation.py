"""One yardstick for every trained policy (PPO, DPO, GRPO, iterative RLHF, ...).

:func:`evaluate_policy` samples replies to the world's prompts and reports the numbers that put
a policy on the reward–KL plane: gold utility, proxy reward, and the sequence KL to the
reference, estimated without bias from the policy's own samples as the mean of
``sum_t log pi(y_t|s_t) - log pi_ref(y_t|s_t)`` (k1).
"""
from __future__ import annotations

import statistics

import torch

from rlhf_lab import world
from rlhf_lab.equations.masking import masked_sum, response_logprobs
from rlhf_lab.lm import models
from rlhf_lab.lm.generation import sample_responses
from rlhf_lab.lm.sequences import decode_responses, encode_prompts

__all__ = ["evaluate_policy", "sequence_logprobs"]


@torch.no_grad()
def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      prompt_len: int, response_mask: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) of each row's response (columns ``prompt_len:``), summed over the kept
    tokens of ``response_mask`` (B, R): (B,)."""
    logits = models.forward_logits(model, input_ids, attention_mask)                # (B, P+R, V)
    return masked_sum(response_logprobs(logits, input_ids, prompt_len), response_mask, dim=-1)


@torch.no_grad()
def evaluate_policy(policy, reference, tokenizer=None, reward_model=None, n_per_prompt: int = 8,
                    seed: int = 12_345, max_new_tokens: int = 24, batch_size: int = 512) -> dict:
    """Sample ``n_per_prompt`` replies to each of the world's prompts from ``policy``.

    Returns python floats: ``gold`` (mean gold utility) and ``gold_std``, ``proxy`` (mean reward
    model score, None without ``reward_model``), ``kl`` (mean sequence KL(pi || pi_ref), k1 on
    the policy's samples), ``length`` (mean reply tokens), ``eos`` (fraction of replies that
    ended), ``n`` (replies) and ``parts``: the mean of each part of the gold utility
    (:func:`rlhf_lab.world.gold_breakdown`), whose sum is ``gold``. Same seed, same numbers.
    """
    if n_per_prompt < 1:
        raise ValueError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
    tokenizer = tokenizer or models.world_tokenizer()
    policy.eval()
    reference.eval()
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    prompts = world.all_prompts() * n_per_prompt
    golds, proxies, kls, lengths, ended, parts = [], [], [], [], [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        prompt_ids, prompt_mask = (t.to(device) for t in encode_prompts(tokenizer, chunk))
        response, response_mask = sample_responses(policy, prompt_ids, prompt_mask, max_new_tokens,
                                                   tokenizer.eos_token_id, tokenizer.pad_token_id,
                                                   1.0, generator)
        ids = torch.cat([prompt_ids, response], 1)
        am = torch.cat([prompt_mask, response_mask.long()], 1)
        P = prompt_ids.shape[1]
        kl = (sequence_logprobs(policy, ids, am, P, response_mask)
              - sequence_logprobs(reference, ids, am, P, response_mask))
        texts = decode_responses(tokenizer, response.cpu(), response_mask.cpu())
        breakdowns = [world.gold_breakdown(p, t) for p, t in zip(chunk, texts)]
        golds += [sum(b.values()) for b in breakdowns]          # = world.gold_utilities, once
        parts += breakdowns
        kls += kl.cpu().tolist()
        lengths += response_mask.sum(-1).cpu().tolist()
        ended += response.eq(tokenizer.eos_token_id).any(-1).cpu().tolist()
        if reward_model is not None:
            reward_model.eval()
            proxies += models.reward_scores(reward_model, ids, am, P).cpu().tolist()
    return {"gold": statistics.fmean(golds), "gold_std": statistics.pstdev(golds),
            "proxy": statistics.fmean(proxies) if proxies else None,
            "kl": statistics.fmean(kls), "length": statistics.fmean(lengths),
            "eos": statistics.fmean(float(e) for e in ended), "n": len(golds),
            "parts": {k: statistics.fmean(b[k] for b in parts) for k in parts[0]}}
