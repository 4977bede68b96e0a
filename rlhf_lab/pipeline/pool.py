"""The shared sample pool: m replies to each world prompt from the SFT policy, with their gold utility.

Best-of-n, the beta sweep's closed-form estimate and PPO's Gao study all read the same cached
pool, so their numbers are comparable. :func:`score_pool` scores each distinct reply once with a
reward model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from rlhf_lab import world
from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_hash, integer
from rlhf_lab.lm import models
from rlhf_lab.lm.generation import sample_responses_pruned
from rlhf_lab.lm.sequences import decode_responses, encode_pairs, encode_prompts, response_mask_from
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_sft, stage_keys

__all__ = ['Pool', 'sample_pool', 'PoolSpec', 'load_or_sample_pool', 'encode_pool', 'score_pool']


@dataclass
class Pool:
    """m replies to each of P prompts, and the distinct (prompt, reply) pairs among them."""
    prompts: list            # (P,) world.Prompt
    texts: list              # P lists of m reply texts
    gold: np.ndarray         # (P, m) gold utility r*(x, y)
    unique_prompts: list     # (U,) the prompt of each distinct (prompt, reply) pair
    unique_texts: list       # (U,) its reply
    index: np.ndarray        # (P, m) int: row of each sample in the unique lists
    max_new_tokens: int      # the longest reply, in tokens
    seconds: dict            # time spent sampling, decoding and computing gold


def sample_pool(policy, tokenizer, n_per_prompt: int, seed: int, max_new_tokens: int = 24,
                batch_size: int = 8192) -> Pool:
    """m = ``n_per_prompt`` replies from ``policy`` to each of the 48 world prompts, with gold.

    Sampled in large batches from one ``torch.Generator`` (same seed and batch size, same pool).
    The policy repeats its favourite replies (a quarter of 48 x 1024 samples are repeats), so
    each distinct reply is decoded and scored by the gold utility once.
    """
    integer(n_per_prompt, "n_per_prompt", 1)
    policy.eval()
    prompts = world.all_prompts()
    P, m = len(prompts), n_per_prompt
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)          # (P, L)
    owner = torch.arange(P).repeat_interleave(m)                          # (P*m,) prompt of each row
    generator = torch.Generator().manual_seed(seed)
    seconds, start = {}, time.perf_counter()
    ids = torch.cat([sample_responses_pruned(policy, prompt_ids[rows], prompt_mask[rows],
                                             max_new_tokens, tokenizer.eos_token_id,
                                             tokenizer.pad_token_id, generator)
                     for rows in owner.split(batch_size)])                # (P*m, R)
    seconds["sampling"], start = time.perf_counter() - start, time.perf_counter()
    # decode each distinct (prompt, token ids) once
    distinct, inverse = np.unique(torch.cat([owner[:, None], ids], 1).numpy(), axis=0,
                                  return_inverse=True)
    distinct_ids = torch.from_numpy(distinct[:, 1:])
    texts = decode_responses(tokenizer, distinct_ids,
                             response_mask_from(distinct_ids, tokenizer.eos_token_id))
    seconds["decoding"], start = time.perf_counter() - start, time.perf_counter()
    # gold utility of each distinct (prompt, text) once
    row_of: dict[tuple[int, str], int] = {}                               # (prompt, text) -> row
    text_row = np.array([row_of.setdefault((int(p), t), len(row_of))
                         for p, t in zip(distinct[:, 0], texts)])
    unique_prompts, unique_texts = [prompts[p] for p, _ in row_of], [t for _, t in row_of]
    gold_u = np.array(world.gold_utilities(unique_prompts, unique_texts))
    index = text_row[inverse.reshape(-1)].reshape(P, m)                   # (P, m)
    seconds["gold"] = time.perf_counter() - start

    return Pool(prompts, [[unique_texts[u] for u in row] for row in index.tolist()], gold_u[index],
                unique_prompts, unique_texts, index, max_new_tokens, seconds)


@dataclass(frozen=True)
class PoolSpec:
    """What identifies a pool: the cache key of :func:`load_or_sample_pool` hashes it."""
    n_per_prompt: int
    seed: int
    max_new_tokens: int
    batch_size: int


def load_or_sample_pool(run: RunConfig, n_per_prompt: int, seed: int, max_new_tokens: int = 24,
                        root=None, batch_size: int = 8192) -> Pool:
    """:func:`sample_pool` from the SFT policy of ``run``, cached as the artifact ``pool-<key>``.

    Notebook 05's closed-form estimate and notebook 06's best-of-n both read 48 × 1024 replies of
    π_SFT with the same seed: the second one loads them (about 1 s instead of 13 s). ``seconds``
    are those of the run that sampled them.
    """
    spec = PoolSpec(n_per_prompt, seed, max_new_tokens, batch_size)
    key = config_hash(spec, stage_keys(run)["sft"])

    def sample() -> Pool:
        sft = load_or_train_sft(run, root).model
        return sample_pool(sft, models.world_tokenizer(), n_per_prompt, seed, max_new_tokens,
                           batch_size)

    def save(pool: Pool, folder) -> None:
        write_json(folder / "pool.json", {
            "unique_prompts": [p.text for p in pool.unique_prompts], "unique_texts": pool.unique_texts,
            "unique_gold": _unique_gold(pool).tolist(), "index": pool.index.tolist(),
            "max_new_tokens": pool.max_new_tokens, "seconds": pool.seconds})

    def load(folder) -> Pool:
        d = read_json(folder / "pool.json")
        prompts = world.all_prompts()
        by_text = {p.text: p for p in prompts}
        unique_prompts = [by_text[t] for t in d["unique_prompts"]]
        index = np.array(d["index"], dtype=np.int64)
        gold_u = np.array(d["unique_gold"], dtype=np.float64)
        texts = [[d["unique_texts"][u] for u in row] for row in index.tolist()]
        return Pool(prompts, texts, gold_u[index], unique_prompts, d["unique_texts"], index,
                    d["max_new_tokens"], d["seconds"])

    return cached("pool", key, sample, save, load, root)


def _unique_gold(pool: Pool) -> np.ndarray:
    """The gold utility of each distinct (prompt, reply) pair, read back from the (P, m) array."""
    gold = np.empty(len(pool.unique_texts))
    gold[pool.index.reshape(-1)] = pool.gold.reshape(-1)
    return gold


def encode_pool(tokenizer, pool: Pool):
    """The distinct (prompt, reply) pairs of ``pool`` encoded for a reward model, with their real
    lengths and the order that sorts them by length: ``(batch, lengths, order)``, the input of
    :func:`score_pool` (about 2 s for 36,000 pairs: worth doing once per pool)."""
    batch = encode_pairs(tokenizer, pool.unique_prompts, pool.unique_texts, pool.max_new_tokens)
    lengths = batch.attention_mask.sum(-1)
    return batch, lengths, torch.argsort(lengths)


@torch.no_grad()
def score_pool(rm, tokenizer, pool: Pool, batch_size: int = 4096, chunk_size: int = 512,
               encoded=None) -> np.ndarray:
    """Reward-model scores r_φ(x, y) of every sample in the pool: (P, m), or (M, P, m) for a list
    of M reward models.

    The distinct (prompt, reply) pairs are encoded once (as reward_model.score_texts does;
    ``encoded``: :func:`encode_pool`'s result, to reuse it) and sorted by length, so each batch of
    ``batch_size`` carries little padding; every model scores each pair once. A batch goes
    through the model ``chunk_size`` rows at a time, so that its activations stay within the
    CPU's caches; the scores are the same to float rounding (bit for bit on some CPUs, not on
    others).
    """
    rms = list(rm) if isinstance(rm, (list, tuple)) else [rm]
    batch, lengths, order = encoded if encoded is not None else encode_pool(tokenizer, pool)
    scores = torch.empty(len(rms), len(order))                            # (M, U)
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        width = int(lengths[idx].max())
        ids, mask = batch.input_ids[idx, :width], batch.attention_mask[idx, :width]
        for j, model in enumerate(rms):
            model.eval()
            scores[j, idx] = torch.cat([models.reward_scores(model, i, m, batch.prompt_len)
                                        for i, m in zip(ids.split(chunk_size), mask.split(chunk_size))])
    per_sample = scores.numpy().astype(np.float64)[:, pool.index]         # (M, P, m)
    return per_sample if isinstance(rm, (list, tuple)) else per_sample[0]
