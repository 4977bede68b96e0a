"""A teaching space small enough to enumerate: every response of a tiny language, with an exactly
normalised reference policy and a reward, so π*, log Z and KL are computed exactly (notebook 03)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["EnumerableSpace", "enumerable_space"]


@dataclass(frozen=True)
class EnumerableSpace:
    """Every response of a tiny language, with its reference log-probability and reward."""

    sequences: list          # the Y responses, tuples of token ids, shortest first
    logp_ref: torch.Tensor   # (Y,) or (P, Y): exactly normalised log π_ref(y)
    rewards: torch.Tensor    # (Y,) or (P, Y): r(y)


def _transitions(seq: tuple, vocab_size: int, max_len: int):
    """(state, next) pairs of the Markov chain that writes ``seq``: state 0 = start, v+1 = after
    token v; next = a token, or ``vocab_size`` = stop (implicit once ``max_len`` is reached)."""
    states = [0] + [tok + 1 for tok in seq]
    nexts = list(seq) + ([vocab_size] if len(seq) < max_len else [])
    return zip(states, nexts)


def enumerable_space(vocab_size: int = 3, max_len: int = 4, seed: int = 0,
                     reward_fn: Optional[Callable[[tuple], float]] = None,
                     reward_scale: float = 1.0, n_prompts: Optional[int] = None,
                     dtype: torch.dtype = torch.float64) -> EnumerableSpace:
    """All sequences of length 1..``max_len`` over ``vocab_size`` tokens, with π_ref and r.

    π_ref is a random Markov chain (one per prompt): from the start state or the previous token
    it emits the next token or stops, with softmax(N(0, 1)) probabilities; it cannot stop before
    the first token and must stop at ``max_len``. So Σ_y π_ref(y) = 1 exactly.

    The default reward is ``reward_scale * Σ_t W[t, y_t]`` with W ~ N(0, 1) of shape
    (max_len, vocab_size) per prompt: a score for each word at each position. Different
    sequences get different rewards (almost surely), so the β → 0 limit is a single response.
    ``reward_fn(seq) -> float`` replaces it (the same for every prompt; ``reward_scale`` unused).

    Returns an :class:`EnumerableSpace` with Y = Σ_{l=1}^{L} V^l responses (120 by default);
    tensors are (Y,) if ``n_prompts`` is None, else (n_prompts, Y).

    Example: ``enumerable_space(2, 2).sequences`` = [(0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)].
    """
    if vocab_size < 1 or max_len < 1:
        raise ValueError(f"vocab_size and max_len must be >= 1, got {vocab_size}, {max_len}")
    if sum(vocab_size ** length for length in range(1, max_len + 1)) > 200_000:
        raise ValueError("the space has more than 200k responses: lower vocab_size or max_len")
    if n_prompts is not None and n_prompts < 1:
        raise ValueError(f"n_prompts must be None or >= 1, got {n_prompts}")
    gen = torch.Generator().manual_seed(seed)
    P, V, L = n_prompts or 1, vocab_size, max_len
    logits = torch.randn(P, V + 1, V + 1, generator=gen, dtype=dtype)   # (P, state, next)
    logits[:, 0, V] = -math.inf                                          # no empty response
    trans = torch.log_softmax(logits, dim=-1)
    weights = reward_scale * torch.randn(P, L, V, generator=gen, dtype=dtype)

    sequences = [seq for length in range(1, L + 1)
                 for seq in itertools.product(range(V), repeat=length)]
    logp_ref = torch.stack([sum(trans[:, s, t] for s, t in _transitions(seq, V, L))
                            for seq in sequences], dim=-1)              # (P, Y)
    if reward_fn is None:
        rewards = torch.stack([sum(weights[:, t, tok] for t, tok in enumerate(seq))
                               for seq in sequences], dim=-1)           # (P, Y)
    else:
        row = torch.tensor([float(reward_fn(seq)) for seq in sequences], dtype=dtype)
        rewards = row.expand(P, -1).clone()
    if n_prompts is None:
        logp_ref, rewards = logp_ref[0], rewards[0]
    return EnumerableSpace(sequences, logp_ref, rewards)
