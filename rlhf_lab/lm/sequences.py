"""From text to token tensors and back, with one layout used by every stage.

A batch of prompt + response sequences is laid out as::

    | left pad | prompt (P tokens) | response ... <eos> | right pad |
      <------------- P --------->  <-------- R -------------->

Prompts are left-padded so that every response starts at the same column P; responses are
right-padded after their ``<eos>``. ``attention_mask`` is 1 on real tokens, ``response_mask`` is
True on response tokens up to and including the first ``<eos>`` (the tokens a loss counts).
Positions are counted from the first real token (:func:`position_ids`), so left padding changes
nothing.

Any tokenizer works whose pad token differs from its end-of-sequence token: the world's
word-level one (one token per word) or a byte-level BPE (a word may take several tokens). Texts
on the world's side always read the same: words separated by spaces, ending with ``<eos>`` if the
reply ended. The special tokens go in and out by id (:func:`encode_pairs`,
:func:`decode_responses`), so a BPE never sees the world's ``<eos>`` as five characters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_lab import world

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
        """The rows ``idx``, cut after their last real token (less work per training step).

        Prompts are left-padded, so a row's last real token sits at column P + its reply's length,
        not at its count of real tokens: the cut keeps every reply whole."""
        mask = self.attention_mask[idx]
        columns = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        width = int((mask * columns).max())
        return Batch(self.input_ids[idx, :width], self.attention_mask[idx, :width],
                     self.response_mask[idx, :width], self.prompt_len)

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.response_mask.to(device), self.prompt_len)


def prompt_text(tokenizer, prompt: world.Prompt | str) -> str:
    """The text a model reads for a prompt: ``<bos> TASK TOPIC <sep>`` (the markers the
    tokenizer has; :func:`encode_prompts` puts them in by id)."""
    text = prompt.text if isinstance(prompt, world.Prompt) else prompt
    head = tokenizer.bos_token or ""
    tail = tokenizer.sep_token or ""
    return f"{head} {text} {tail}".strip()


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens added (one batched call)."""
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _prompt_rows(tokenizer, prompts) -> list[list[int]]:
    """Each prompt as ``<bos> TASK TOPIC <sep>`` ids; a marker the tokenizer lacks is left out."""
    head = [tokenizer.bos_token_id] if tokenizer.bos_token is not None else []
    tail = [tokenizer.sep_token_id] if tokenizer.sep_token is not None else []
    texts = [p.text if isinstance(p, world.Prompt) else p for p in prompts]
    return [head + ids + tail for ids in _ids(tokenizer, texts)]


def _response_rows(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each world reply as ids: its words, then the tokenizer's end-of-sequence id where the text
    has the world's ``<eos>`` marker (and the ids of anything written after it)."""
    parts = [text.partition(world.EOS) for text in texts]        # (words, "<eos>" or "", rest)
    rows = _ids(tokenizer, [words.strip() for words, _, _ in parts])
    for row, (_, eos, rest) in zip(rows, parts):
        if eos:
            row += [tokenizer.eos_token_id] + (_ids(tokenizer, [rest.strip()])[0] if rest.strip() else [])
    return rows


def encode_prompts(tokenizer, prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and attention mask, both (B, P)."""
    rows = _prompt_rows(tokenizer, prompts)
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
    rows = [row[:max_response_len] for row in _response_rows(tokenizer, list(responses))]
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


def _world_names(tokenizer) -> dict[int, str]:
    """The tokenizer's special token ids -> the world's markers; its end-of-sequence id is always
    ``<eos>`` (even where it doubles as bos or unk, as in GPT-2's tokenizer)."""
    names = {tokenizer.pad_token_id: world.PAD, tokenizer.bos_token_id: world.BOS,
             tokenizer.sep_token_id: world.SEP, tokenizer.unk_token_id: world.UNK}
    names.pop(None, None)
    names[tokenizer.eos_token_id] = world.EOS
    return names


def _pieces(ids: list[int], names: dict[int, str]) -> list:
    """Split ids into runs of ordinary tokens (lists of ids) and special tokens (their world
    marker). Example, with names {2: "<eos>"}: [7, 8, 2] -> [[7, 8], "<eos>"]."""
    if names.keys().isdisjoint(ids):                   # the common case: one run, no marker
        return [ids] if ids else []
    pieces, run = [], []
    for i in ids:
        if i in names:
            pieces += [run, names[i]] if run else [names[i]]
            run = []
        else:
            run.append(i)
    return pieces + [run] if run else pieces


def _decode_batch(tokenizer, runs: list[list[int]]) -> list[str]:
    """Decode many id lists at once, as written (no clean-up of spaces before punctuation); a fast
    tokenizer's Rust backend directly (``batch_decode`` costs more than the decoding itself)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch(runs, skip_special_tokens=False)
    return tokenizer.batch_decode(runs, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Response tokens back to the text the gold utility reads: words separated by spaces, then
    ``<eos>`` if the response ended (whatever the tokenizer calls its end-of-sequence token).

    Runs of ordinary tokens are decoded (a BPE's "Ġe" "ng" "ine" -> "engine"); special tokens are
    written as the world's markers (``<pad>``, ``<bos>``, ``<sep>``, ``<unk>``, ``<eos>``).
    """
    names, eos_id = _world_names(tokenizer), tokenizer.eos_token_id
    rows = []
    for ids, keep in zip(response_ids.tolist(), response_mask.tolist()):
        ids = [i for i, k in zip(ids, keep) if k]
        ended = bool(ids) and ids[-1] == eos_id
        rows.append(_pieces(ids[:-1], names) + [world.EOS] if ended else _pieces(ids, names))
    runs = [piece for row in rows for piece in row if isinstance(piece, list)]
    decoded = iter(_decode_batch(tokenizer, runs) if runs else [])
    texts = []
    for row in rows:                                   # the decoded runs come back in order
        words = [next(decoded).strip() if isinstance(piece, list) else piece for piece in row]
        texts.append(" ".join(w for w in words if w))
    return texts
