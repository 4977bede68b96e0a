"""Stages 0 and 1: next-token training — pretraining on the web corpus, then SFT.

Both stages run the same flat loop (:func:`train_next_token`) with a different data set and mask:
pretraining counts every token after ``<bos>``; SFT counts response tokens only, so the model
learns to *answer* prompts, not to write them. The loss is a parameter, so a student's
``sft_loss`` can drive the real training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from rlhf_lab import datasets, world
from rlhf_lab.core.config import positive, require
from rlhf_lab.core.plug import as_loss_and_stats, pluggable
from rlhf_lab.core.progress import progress
from rlhf_lab.equations.losses import sft_loss
from rlhf_lab.lm import models
from rlhf_lab.lm.generation import sample_texts
from rlhf_lab.lm.sequences import Batch, encode_pairs

__all__ = ["PretrainConfig", "SFTConfig", "train_next_token", "pretrain", "train_sft",
           "heldout_loss", "evaluate_gold"]


@dataclass(frozen=True)
class PretrainConfig:
    """Stage 0: a base model pretrained on mixed-quality web text."""
    preset: str = "tiny"
    """Model shape, a key of ``models.PRESETS`` ("tiny": ~0.1M params, seconds on a CPU)."""
    corpus_size: int = 20000
    """Number of web replies generated for the corpus (typical 5k-50k)."""
    steps: int = 600
    """Optimiser steps (typical 200-2000)."""
    batch_size: int = 128
    """Sequences per step (typical 64-256)."""
    lr: float = 3e-3
    """AdamW learning rate, with linear warm-up over 5 % of the steps and cosine decay."""
    max_response_len: int = 24
    """Longest reply in tokens, ``<eos>`` included; longer replies are cut."""
    seed: int = 0
    """Seed for the corpus, the initialisation and the batch order."""

    def __post_init__(self):
        require(self.preset in models.PRESETS, "preset",
                f"must be one of {sorted(models.PRESETS)}, got {self.preset!r}")
        positive(self, "corpus_size", "steps", "batch_size", "lr", "max_response_len")


@dataclass(frozen=True)
class SFTConfig:
    """Stage 1: supervised fine-tuning on curated demonstrations (response tokens only)."""
    n_demonstrations: int = 1500
    """Curated (prompt, reply) pairs: the best 15 % of web replies by gold utility."""
    steps: int = 400
    """Optimiser steps (typical 100-500)."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 2e-3
    """AdamW learning rate (warm-up then cosine decay)."""
    heldout_fraction: float = 0.1
    """Share of demonstrations kept aside for the held-out loss."""
    seed: int = 0
    """Seed for the data and the batch order."""

    def __post_init__(self):
        positive(self, "n_demonstrations", "steps", "batch_size", "lr")
        require(0 < self.heldout_fraction < 1, "heldout_fraction",
                f"must lie in (0, 1), got {self.heldout_fraction}")


def _lr_at(step: int, steps: int, lr: float) -> float:
    warmup = max(1, steps // 20)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


def _rows(batch: Batch, idx: torch.Tensor, loss_mask: torch.Tensor,
          device: torch.device) -> tuple[Batch, torch.Tensor]:
    """The rows ``idx`` of a data set and of its loss mask, cut to their longest sequence, on
    ``device`` (the data set stays in CPU memory)."""
    sub = batch.rows(idx)
    return sub.to(device), loss_mask[idx, :sub.input_ids.shape[1]].to(device)


def train_next_token(model, data: Batch, loss_mask: torch.Tensor, steps: int, batch_size: int,
                     lr: float, seed: int, loss_fn=sft_loss, desc: str = "train") -> list[dict]:
    """The flat loop shared by pretraining and SFT. Returns one stats dict per step.

    ``loss_mask`` (N, T) bool selects the tokens the loss counts; it is passed to ``loss_fn`` as
    its ``response_mask``.
    """
    loss_fn = pluggable(loss_fn, sft_loss, "sft_loss")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    order = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    history = []
    model.train()
    for step in progress(range(steps), desc=desc, leave=False):
        idx = torch.randint(len(data.input_ids), (batch_size,), generator=order)
        batch, mask = _rows(data, idx, loss_mask, device)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        logits = models.forward_logits(model, batch.input_ids, batch.attention_mask)   # (B, T, V)
        loss, stats = as_loss_and_stats(loss_fn(logits, batch.input_ids, mask))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append({"step": step, "loss": loss.item(), **{k: v for k, v in stats.items()
                                                               if isinstance(v, (int, float))}})
    model.eval()
    return history


@torch.no_grad()
def heldout_loss(model, data: Batch, batch_size: int = 256) -> float:
    """Mean response-token NLL of ``model`` on ``data`` (the reference SFT loss)."""
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(data.input_ids), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data.input_ids)))
        batch, mask = _rows(data, idx, data.response_mask, device)
        logits = models.forward_logits(model, batch.input_ids, batch.attention_mask)   # (B, T, V)
        loss, stats = sft_loss(logits, batch.input_ids, mask)
        total += loss.item() * stats["tokens"]
        tokens += stats["tokens"]
    return total / max(tokens, 1)


def evaluate_gold(model, tokenizer, n_per_prompt: int, seed: int, max_new_tokens: int = 24):
    """Sample ``n_per_prompt`` replies to each of the 48 prompts; return (prompts, texts, gold)."""
    prompts = world.all_prompts() * n_per_prompt
    texts = sample_texts(model, tokenizer, prompts, max_new_tokens, seed)
    return prompts, texts, world.gold_utilities(prompts, texts)


def pretrain(cfg: PretrainConfig, tokenizer=None):
    """Stage 0. Returns (base model, metrics)."""
    tokenizer = tokenizer or models.world_tokenizer()
    torch.manual_seed(cfg.seed)
    model = models.new_policy(cfg.preset, seed=cfg.seed, tokenizer=tokenizer)
    corpus = datasets.pretraining_corpus(cfg.corpus_size, cfg.seed)
    data = encode_pairs(tokenizer, [p for p, _ in corpus], [r for _, r in corpus],
                        cfg.max_response_len)
    every_token = data.attention_mask.bool()            # prompt and reply: plain language modelling
    history = train_next_token(model, data, every_token, cfg.steps, cfg.batch_size, cfg.lr,
                               cfg.seed, desc="pretrain")
    return model, {"history": history, "final_loss": history[-1]["loss"]}


def train_sft(cfg: SFTConfig, base_model, tokenizer=None, loss_fn=sft_loss,
              max_response_len: int = 24):
    """Stage 1: fine-tune (a copy of) ``base_model`` on curated demonstrations.

    Returns (SFT model, metrics) with the loss history and the held-out loss before and after.
    """
    import copy
    tokenizer = tokenizer or models.world_tokenizer()
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(base_model)
    demos = datasets.sft_demonstrations(cfg.n_demonstrations, cfg.seed)
    rng = random.Random(cfg.seed)
    rng.shuffle(demos)
    n_held = max(1, int(len(demos) * cfg.heldout_fraction))
    held, train = demos[:n_held], demos[n_held:]
    encode = lambda rows: encode_pairs(tokenizer, [p for p, _ in rows], [r for _, r in rows],
                                       max_response_len)
    train_data, held_data = encode(train), encode(held)
    before = heldout_loss(model, held_data)
    history = train_next_token(model, train_data, train_data.response_mask, cfg.steps,
                               cfg.batch_size, cfg.lr, cfg.seed, loss_fn=loss_fn, desc="sft")
    return model, {"history": history, "heldout_loss_before": before,
                   "heldout_loss_after": heldout_loss(model, held_data)}
