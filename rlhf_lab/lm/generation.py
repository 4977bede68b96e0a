"""Sampling responses from a causal LM, with the KV cache and an explicit random generator.

A hand-written loop rather than ``model.generate``: it takes a ``torch.Generator`` (so the same
seed gives the same samples), applies the temperature in one visible place, and on the tiny
models it is faster because it does nothing else.
"""
from __future__ import annotations

import torch

from rlhf_lab.lm.sequences import decode_responses, encode_prompts, position_ids, response_mask_from

__all__ = ["sample_responses", "sample_responses_pruned", "sample_texts"]


@torch.no_grad()
def sample_responses(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                     max_new_tokens: int, eos_id: int, pad_id: int, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one response per prompt: ``y_t ~ softmax(logits_t / temperature)``.

    Args:
        prompt_ids, prompt_mask: (B, P) left-padded prompts and their attention mask.
        max_new_tokens: R_max, the longest response; a response that has not produced ``eos_id``
            by then is cut (and has no end-of-sequence).
    Returns:
        response_ids (B, R) with ``pad_id`` after each ``eos_id``, and response_mask (B, R) bool,
        True up to and including the first ``eos_id``. R <= max_new_tokens: the loop stops as soon
        as every row has ended.

    Rows that have ended leave the model (with their KV cache) once they are a fifth of those
    still in it, but every step still draws for all B rows: ``torch.multinomial`` uses as many
    random numbers per row whatever the probabilities, so the samples are bit for bit those of the
    loop without pruning, and the ended rows cost no more forward passes.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    B = prompt_ids.shape[0]
    attention_mask = prompt_mask.long()
    pos = position_ids(attention_mask)
    out = model(input_ids=prompt_ids, attention_mask=attention_mask, position_ids=pos, use_cache=True)
    next_pos = pos[:, -1:] + 1                                            # (B_live, 1)
    live = torch.arange(B, device=prompt_ids.device)                      # rows still in the model
    done = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
    logits = None
    tokens = []
    for _ in range(max_new_tokens):
        step = out.logits[:, -1].float()
        if len(live) < B:           # ended rows left the model; the draw still covers all B rows
            logits[live] = step
        else:
            logits = step
        probs = torch.softmax(logits / temperature, dim=-1)              # (B, V)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)     # (B,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens.append(token)
        done = done | (token == eos_id)
        if bool(done.all()):
            break
        live_done = done[live]
        if int(live_done.sum()) > 0.2 * len(live):                       # drop the ended rows
            keep = (~live_done).nonzero().squeeze(-1)
            live, attention_mask, next_pos = live[keep], attention_mask[keep], next_pos[keep]
            out.cache.batch_select_indices(keep)
            logits = logits.clone()          # own the (B, V) logits: they were the model's output
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = model(input_ids=token[live, None], attention_mask=attention_mask,
                    position_ids=next_pos, cache=out.cache, use_cache=True)
        next_pos = next_pos + 1
    response_ids = torch.stack(tokens, dim=1)                             # (B, R)
    return response_ids, response_mask_from(response_ids, eos_id)


@torch.no_grad()
def sample_responses_pruned(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                            max_new_tokens: int, eos_id: int, pad_id: int,
                            generator: torch.Generator) -> torch.Tensor:
    """:func:`sample_responses` for large pools (best-of-n): rows that have ended leave the batch.

    Replies of the world average ~10 of 24 tokens, so dropping the finished rows (and their KV
    cache) whenever a fifth of the batch has ended halves the work. Unlike
    :func:`sample_responses`, it draws only for the rows left, so the two samplers give different,
    equally distributed samples for one seed. Temperature 1.

    Args:
        prompt_ids, prompt_mask: (B, P) left-padded prompts and their attention mask.
    Returns:
        response ids (B, max_new_tokens), ``pad_id`` after each ``eos_id`` (the response mask is
        :func:`rlhf_lab.lm.sequences.response_mask_from` of it).
    """
    attention_mask = prompt_mask.long()
    pos = position_ids(attention_mask)
    out = model(input_ids=prompt_ids, attention_mask=attention_mask, position_ids=pos, use_cache=True)
    next_pos = pos[:, -1:] + 1                                            # (B, 1)
    device = prompt_ids.device
    response = torch.full((len(prompt_ids), max_new_tokens), pad_id, dtype=torch.long, device=device)
    rows = torch.arange(len(prompt_ids), device=device)                   # batch row -> output row
    done = torch.zeros(len(rows), dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        probs = torch.softmax(out.logits[:, -1].float(), dim=-1)          # (B_live, V)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        response[rows, t] = torch.where(done, torch.full_like(token, pad_id), token)
        done = done | (token == eos_id)
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if int(done.sum()) > 0.2 * len(rows):                             # drop the ended rows
            keep = (~done).nonzero().squeeze(-1)
            rows, token, done = rows[keep], token[keep], done[keep]
            attention_mask, next_pos = attention_mask[keep], next_pos[keep]
            out.cache.batch_select_indices(keep)
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attention_mask,
                    position_ids=next_pos, cache=out.cache, use_cache=True)
        next_pos = next_pos + 1
    return response


@torch.no_grad()
def sample_texts(model, tokenizer, prompts, max_new_tokens: int, seed: int,
                 batch_size: int = 512, temperature: float = 1.0) -> list[str]:
    """Sample one reply (as text, ending in ``<eos>`` if it ended) for each prompt in ``prompts``."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids, mask = encode_prompts(tokenizer, chunk)
        response, response_mask = sample_responses(
            model, ids.to(device), mask.to(device), max_new_tokens, tokenizer.eos_token_id,
            tokenizer.pad_token_id, temperature, generator)
        texts += decode_responses(tokenizer, response.cpu(), response_mask.cpu())
    return texts
