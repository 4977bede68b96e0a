"""Models: the world's tokenizer, GPT-2 presets, the reward model and the critic.

Every network in the kit is an ordinary Hugging Face GPT-2 (``transformers``):

* the **policy** (base, SFT, PPO) is a ``GPT2LMHeadModel``;
* the **reward model** is ``GPT2ForSequenceClassification`` with one label: the SFT trunk plus
  a linear head read at the last non-pad token of prompt + response;
* the **critic** is ``GPT2ForTokenClassification`` with one label: a value ``V(s_t)`` per token.

All are saved and loaded with ``save_pretrained`` / ``from_pretrained``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2ForTokenClassification,
                          GPT2LMHeadModel, PreTrainedTokenizerFast)

from . import world

__all__ = ["PRESETS", "world_tokenizer", "gpt2_config", "new_policy", "reward_model_from",
           "critic_from", "count_parameters", "load_policy", "pick_device"]

# Shapes of the presets. Dropout is off everywhere: RL needs the same log-probs from the same
# weights, and these models are far too small to overfit the synthetic world. New models use the
# exact GELU (one fused op, faster on a CPU than GPT-2's tanh approximation).
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_positions=64),       # ~0.1M params, seconds
    "small": dict(n_layer=4, n_embd=256, n_head=8, n_positions=64),     # ~3M params, minutes
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024),  # the 124M shape
}


def world_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the world's vocabulary (one token per word).

    Special tokens are distinct: ``<pad>`` (id 0) is not ``<eos>``, so padding can never be
    mistaken for the end of a reply.
    """
    vocab = {word: i for i, word in enumerate(world.vocabulary())}
    core = Tokenizer(WordLevel(vocab, unk_token=world.UNK))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=world.PAD, bos_token=world.BOS,
                                  eos_token=world.EOS, unk_token=world.UNK, sep_token=world.SEP)
    tok.padding_side = "right"
    return tok


def gpt2_config(preset: str = "tiny", tokenizer: PreTrainedTokenizerFast | None = None) -> GPT2Config:
    """A ``GPT2Config`` for one of :data:`PRESETS`, sized to ``tokenizer`` (default: the world's)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    tok = tokenizer if tokenizer is not None else world_tokenizer()
    return GPT2Config(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
                      activation_function="gelu", **PRESETS[preset])


def new_policy(preset: str = "tiny", seed: int = 0,
               tokenizer: PreTrainedTokenizerFast | None = None) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 language model of the given preset (deterministic in seed)."""
    config = gpt2_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def _quietly(fn, *args, **kwargs):
    """Call ``from_pretrained`` without the 'newly initialised weights' notice (expected here)."""
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return fn(*args, **kwargs)
    finally:
        logger.setLevel(level)


def reward_model_from(policy: GPT2LMHeadModel, seed: int = 0) -> GPT2ForSequenceClassification:
    """A reward model r_phi(x, y): ``policy``'s trunk plus a fresh scalar head.

    Hugging Face's sequence classifier reads the head at the last token that is not
    ``pad_token_id``, so the score does not depend on how much padding follows.
    """
    config = GPT2Config.from_dict(policy.config.to_dict())
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rm = GPT2ForSequenceClassification(config)
    rm.transformer.load_state_dict(policy.transformer.state_dict())
    return rm


def critic_from(source: torch.nn.Module, seed: int = 0) -> GPT2ForTokenClassification:
    """A critic V(s_t), one value per token, initialised from a reward model (trunk and head)
    or from a policy (trunk only; fresh head)."""
    config = GPT2Config.from_dict(source.config.to_dict())
    config.num_labels = 1
    config.classifier_dropout = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = GPT2ForTokenClassification(config)
    critic.transformer.load_state_dict(source.transformer.state_dict())
    if isinstance(source, GPT2ForSequenceClassification):
        critic.classifier.weight.data.copy_(source.score.weight.data)
        critic.classifier.bias.data.zero_()
    return critic


def load_policy(path: str | Path) -> GPT2LMHeadModel:
    """Load a saved policy (any GPT-2 causal LM directory written by ``save_pretrained``)."""
    return GPT2LMHeadModel.from_pretrained(path)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
