"""From text to token tensors and back, with one layout used by every stage.

A batch of prompt + response sequences is laid out as::

    | left pad | prompt (P tokens) | response ... <eos> | right pad |
      <------------- P --------->  <-------- R -------------->

Prompts are left-padded so that every response starts at the same column P; responses are
right-padded after their ``<eos>``. ``attention_mask`` is 1 on real tokens, ``response_mask`` is
True on response tokens up to and including the first ``<eos>`` (the tokens a loss counts).
Positions are counted from the first real token (:func:`position_ids`), so left padding changes
nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import world

__all__ = ["Batch", "prompt_text", "encode_prompts", "encode_pairs", "position_ids",
           "response_mask_from", "decode_responses"]


@dataclass
class Batch:
    """Token tensors of prompt + response sequences (see the module docstring)."""
    input_ids: torch.Tensor       # (B, P+R) long
    attention_mask: torch.Tensor  # (B, P+R) long, 1 on real tokens
    response_mask: torch.Tensor   # (B, P+R) bool, True on response tokens
    prompt_len: int               # P, the column where responses start

    def rows(self, idx: torch.Tensor) -> "Batch":
        """The rows ``idx``, cut to their longest real sequence (less work per training step)."""
        width = int(self.attention_mask[idx].sum(-1).max())
        return Batch(self.input_ids[idx, :width], self.attention_mask[idx, :width],
                     self.response_mask[idx, :width], self.prompt_len)

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.response_mask.to(device), self.prompt_len)


def prompt_text(tokenizer, prompt: world.Prompt | str) -> str:
    """The text a model reads for a prompt: ``<bos> TASK TOPIC <sep>`` (the markers the
    tokenizer has)."""
    text = prompt.text if isinstance(prompt, world.Prompt) else prompt
    head = tokenizer.bos_token or ""
    tail = tokenizer.sep_token or ""
    return f"{head} {text} {tail}".strip()


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_prompts(tokenizer, prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and attention mask, both (B, P)."""
    rows = [_ids(tokenizer, prompt_text(tokenizer, p)) for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


def encode_pairs(tokenizer, prompts, responses, max_response_len: int) -> Batch:
    """Encode prompts and response texts (each ending with ``<eos>`` if it ended).

    A response longer than ``max_response_len`` tokens is cut there (and so loses its ``<eos>``,
    which the gold utility penalises, as it should).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must have the same length, got "
                         f"{len(prompts)} and {len(responses)}")
    if max_response_len < 1:
        raise ValueError(f"max_response_len must be >= 1, got {max_response_len}")
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)
    rows = [_ids(tokenizer, _eos_as_token(tokenizer, r))[:max_response_len] for r in responses]
    width = max(len(r) for r in rows)
    resp = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    for i, row in enumerate(rows):
        resp[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    resp_mask = torch.arange(width)[None, :] < lengths[:, None]           # (B, R)
    input_ids = torch.cat([prompt_ids, resp], dim=1)
    attention_mask = torch.cat([prompt_mask, resp_mask.long()], dim=1)
    response_mask = torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool), resp_mask], dim=1)
    return Batch(input_ids, attention_mask, response_mask, prompt_ids.shape[1])


def _eos_as_token(tokenizer, text: str) -> str:
    """Write the world's ``<eos>`` marker as this tokenizer's own end-of-sequence token."""
    return text.replace(world.EOS, tokenizer.eos_token) if tokenizer.eos_token else text


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from the first real token: 0 on left padding, then 0, 1, 2, ..."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_mask_from(response_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """True on each response token up to and including the first ``<eos>``; False after it.

    Example: eos_id=2, response_ids [[5, 2, 7], [5, 6, 7]] -> [[T, T, F], [T, T, T]].
    """
    is_eos = response_ids == eos_id
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()   # eos seen strictly before t
    return eos_before == 0


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Response tokens back to the text the gold utility reads: words, then ``<eos>`` if the
    response ended."""
    texts = []
    eos_id = tokenizer.eos_token_id
    for ids, keep in zip(response_ids.tolist(), response_mask.tolist()):
        ids = [i for i, k in zip(ids, keep) if k]
        ended = bool(ids) and ids[-1] == eos_id
        words = tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=False).strip()
        texts.append(f"{words} {world.EOS}".strip() if ended else words)
    return texts
