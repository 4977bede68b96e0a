"""PPO-ptx (Ouyang et al. 2022, InstructGPT eq. 2): mix pretraining text into PPO's policy loss.

With ``ptx_coef`` = γ > 0 each policy step reads a batch of web text (drawn with a seed the base
model never saw) and adds γ times its next-token NLL to the clipped policy loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_lab import datasets
from rlhf_lab.core.plug import as_loss_and_stats
from rlhf_lab.equations import beyond_losses
from rlhf_lab.lm import models
from rlhf_lab.lm.sequences import Batch, encode_pairs

__all__ = ["PTX_CORPUS_SEED", "PretrainingText", "pretraining_text", "ptx_policy_loss"]

PTX_CORPUS_SEED = 50_000
"""Seed of PPO-ptx's web text (plus ``PPOConfig.seed``): never the base model's training seed."""


@dataclass
class PretrainingText:
    """PPO-ptx's web text (every real token counts, as in pretraining) and the generator that
    draws its batches, apart from the PPO loop's own, so that drawing them changes nothing else."""
    data: Batch
    generator: torch.Generator

    def sample(self, n: int, device) -> Batch:
        idx = torch.randint(len(self.data.input_ids), (n,), generator=self.generator)
        return self.data.rows(idx).to(device)


def pretraining_text(cfg, tokenizer) -> PretrainingText:
    """``cfg.ptx_corpus_size`` web replies (:func:`rlhf_lab.datasets.pretraining_corpus`, seed
    ``PTX_CORPUS_SEED + cfg.seed``, which the base model never trained on), encoded as
    :func:`rlhf_lab.stages.sft.pretrain` encodes its corpus."""
    corpus = datasets.pretraining_corpus(cfg.ptx_corpus_size, PTX_CORPUS_SEED + cfg.seed)
    data = encode_pairs(tokenizer, [p for p, _ in corpus], [r for _, r in corpus], cfg.max_new_tokens)
    return PretrainingText(data, torch.Generator().manual_seed(cfg.seed))


def ptx_policy_loss(pg_loss, lm, ptx_text: PretrainingText, cfg,
                    losses) -> tuple[torch.Tensor, dict]:
    """PPO-ptx: ``L = L_PPO + γ NLL_pretrain`` on a fresh batch of web text. Returns the loss and
    ``ptx_nll`` (the batch's NLL, recomputed here so the log never depends on a student's stats).
    ``losses`` is the loop's :class:`~rlhf_lab.stages.ppo.PPOLosses` (its ``ppo_ptx_loss``)."""
    batch = ptx_text.sample(cfg.ptx_batch_size, next(lm.parameters()).device)
    logits_ptx = models.forward_logits(lm, batch.input_ids, batch.attention_mask)     # (B, T, V)
    loss, _ = as_loss_and_stats(losses.ppo_ptx_loss(pg_loss, logits_ptx, batch.input_ids,
                                                    batch.attention_mask, cfg.ptx_coef))
    with torch.no_grad():
        nll = beyond_losses.pretraining_nll(logits_ptx, batch.input_ids, batch.attention_mask)
    return loss, {"ptx_nll": nll.item(), "policy_loss": loss.item()}
