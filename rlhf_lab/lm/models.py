"""Models: tokenizers, GPT-2 presets, loading a checkpoint, the reward model, the critic, devices.

Every network in the kit is an ordinary Hugging Face GPT-2 (``transformers``):

* the **policy** (base, SFT, PPO) is a ``GPT2LMHeadModel``;
* the **reward model** is ``GPT2ForSequenceClassification`` with one label: the SFT trunk plus
  a linear head read at the last non-pad token of prompt + response;
* the **critic** is ``GPT2ForTokenClassification`` with one label: a value ``V(s_t)`` per token.

All are saved and loaded with ``save_pretrained`` / ``from_pretrained``. Every stage also takes
any other causal LM with its own tokenizer (:func:`load_pretrained`, e.g. ``"gpt2"`` or a local
folder), as long as the tokenizer's pad token differs from its end-of-sequence token:
:func:`bpe_tokenizer` builds such a byte-level BPE tokenizer on the world's corpus.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rlhf_lab import world
from rlhf_lab.lm.sequences import position_ids

# transformers and tokenizers are imported inside the functions that use them: importing GPT-2's
# classes costs about 3 s on a laptop CPU (they pull in torch._dynamo and torch.distributed), and
# code that only reads cached results (notebooks 05 and 06 on a warm cache) never needs them.
if TYPE_CHECKING:
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        GPT2ForTokenClassification,
        GPT2LMHeadModel,
        PreTrainedTokenizerFast,
    )

__all__ = ["PRESETS", "PRESET_BATCH_SIZES", "world_tokenizer", "bpe_tokenizer", "gpt2_config", "new_policy",
           "reward_model_from", "critic_from", "count_parameters", "load_policy", "load_pretrained",
           "no_progress_bars",
           "pick_device", "autocast", "forward_logits", "POOLINGS", "reward_scores"]

# Shapes of the presets. Dropout is off everywhere: RL needs the same log-probs from the same
# weights, and these models are far too small to overfit the synthetic world. New models use the
# exact GELU (one fused op, faster on a CPU than GPT-2's tanh approximation).
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_positions=64),       # ~0.1M params, seconds
    "medium": dict(n_layer=4, n_embd=128, n_head=4, n_positions=64),    # ~0.8M params
    "small": dict(n_layer=4, n_embd=256, n_head=8, n_positions=64),     # ~3M params, minutes
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024),  # the 124M shape
}

# Batch sizes per preset (sequences per step): what fits a laptop's memory and keeps a step
# short. The tiny values are the course defaults; the larger presets trade batch for model size.
PRESET_BATCH_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(pretrain=128, sft=64, rm=64, ppo_rollouts=256, ppo_minibatch=64),
    "medium": dict(pretrain=128, sft=64, rm=64, ppo_rollouts=256, ppo_minibatch=64),
    "small": dict(pretrain=64, sft=32, rm=32, ppo_rollouts=128, ppo_minibatch=32),
    "gpt2": dict(pretrain=16, sft=8, rm=8, ppo_rollouts=64, ppo_minibatch=8),
}


def world_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the world's vocabulary (one token per word).

    Special tokens are distinct: ``<pad>`` (id 0) is not ``<eos>``, so padding can never be
    mistaken for the end of a reply.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast
    vocab = {word: i for i, word in enumerate(world.vocabulary())}
    core = Tokenizer(WordLevel(vocab, unk_token=world.UNK))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=world.PAD, bos_token=world.BOS,
                                  eos_token=world.EOS, unk_token=world.UNK, sep_token=world.SEP)
    tok.padding_side = "right"
    return tok


def bpe_tokenizer(vocab_size: int = 512, corpus_size: int = 4000, seed: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's kind) trained on the world's web corpus.

    Unlike :func:`world_tokenizer`, a word may take several tokens (``"engine"`` ->
    ``"Ġe" "ng" "ine"`` at a small ``vocab_size``) and any text can be encoded, byte by byte. The
    special tokens keep the world's names, each its own id: ``<pad>`` (0) is not ``<eos>`` (2).
    Deterministic in ``seed``. Save it with ``save_pretrained`` and load it back with
    ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    from rlhf_lab.datasets import pretraining_corpus  # datasets imports nothing from here
    if vocab_size < 256 + len(world.SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be >= {256 + len(world.SPECIAL_TOKENS)} (256 bytes and "
                         f"the special tokens), got {vocab_size}")
    core = Tokenizer(BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)   # "Ġword" everywhere
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=world.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator([f"{p.text} {reply}" for p, reply in pretraining_corpus(corpus_size, seed)],
                             trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=world.PAD, bos_token=world.BOS,
                                  eos_token=world.EOS, unk_token=world.UNK, sep_token=world.SEP,
                                  clean_up_tokenization_spaces=False)
    tok.padding_side = "right"
    return tok


def gpt2_config(preset: str = "tiny", tokenizer: PreTrainedTokenizerFast | None = None) -> GPT2Config:
    """A ``GPT2Config`` for one of :data:`PRESETS`, sized to ``tokenizer`` (default: the world's)."""
    from transformers import GPT2Config
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
    from transformers import GPT2LMHeadModel
    config = gpt2_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


@contextlib.contextmanager
def no_progress_bars():
    """transformers' own progress bars ("Loading weights", "Writing model shards") off inside the
    block and restored after it: loading a cached model takes milliseconds, and a bar for each
    one would bury a notebook cell's output."""
    from transformers.utils import logging as hf_logging
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _quietly(fn, *args, **kwargs):
    """Call ``from_pretrained`` without the 'newly initialised weights' notice (expected here)."""
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return fn(*args, **kwargs)
    finally:
        logger.setLevel(level)


def reward_model_from(policy, seed: int = 0, pooling: str = "last") -> GPT2ForSequenceClassification:
    """A reward model r_phi(x, y): ``policy``'s trunk plus a fresh scalar head.

    Hugging Face's sequence classifier reads the head at the last token that is not
    ``pad_token_id``, so the score does not depend on how much padding follows; ``pooling``
    (saved in the config, read by :func:`reward_scores`) can read it over the reply instead. Any
    causal LM with a sequence-classification class works (a GPT-2 gives a
    ``GPT2ForSequenceClassification``).
    """
    from transformers import AutoModelForSequenceClassification
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    config = type(policy.config).from_dict(policy.config.to_dict())
    config.num_labels = 1
    config.reward_pooling = pooling
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rm = AutoModelForSequenceClassification.from_config(config)
    rm.base_model.load_state_dict(policy.base_model.state_dict())
    return rm.to(policy.device)


def critic_from(source: torch.nn.Module, seed: int = 0) -> GPT2ForTokenClassification:
    """A critic V(s_t), one value per token, initialised from a reward model (trunk and head)
    or from a policy (trunk only; fresh head)."""
    from transformers import AutoModelForTokenClassification
    config = type(source.config).from_dict(source.config.to_dict())
    config.num_labels = 1
    config.classifier_dropout = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = AutoModelForTokenClassification.from_config(config)
    critic.base_model.load_state_dict(source.base_model.state_dict())
    rm_head = getattr(source, "score", None)          # a reward model's head (None on a policy)
    if rm_head is not None:
        head = getattr(critic, "classifier", None) or critic.score
        head.weight.data.copy_(rm_head.weight.data)
        if head.bias is not None:
            head.bias.data.zero_()
    return critic.to(source.device)


def load_policy(path: str | Path) -> GPT2LMHeadModel:
    """Load a saved policy (any GPT-2 causal LM directory written by ``save_pretrained``)."""
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(path)


def load_pretrained(name_or_path: str | Path):
    """``(tokenizer, causal LM)`` from a local folder or a hub name such as ``"gpt2"``.

    The ordinary ``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``.
    A tokenizer without a pad token of its own (GPT-2's pads with nothing; some reuse the
    end-of-sequence token) gets ``<pad>`` (a new token, and the model one more embedding row, if
    the vocabulary lacks it), so padding is never mistaken for the end of a reply.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path)
    except OSError as err:
        raise OSError(
            f"could not load {str(name_or_path)!r}: it is not a folder written by save_pretrained, "
            f"and the hub cannot be reached or has no such model ({err.__class__.__name__}). "
            f"Without network: download the weights on a machine that has it, e.g. "
            f"`hf download {name_or_path} --local-dir ./{Path(str(name_or_path)).name}`, copy the "
            f"folder here and pass its path: load_pretrained('path/to/folder').") from err
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": world.PAD})
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    return tokenizer, model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _has_mps() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given ("cpu", "cuda", "cuda:1", "mps"), else cuda, then mps, then cpu."""
    if device is not None:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from err
        if chosen.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r}, but this machine has no CUDA GPU")
        if chosen.type == "mps" and not _has_mps():
            raise ValueError(f"device={device!r}, but this machine has no Apple GPU (mps)")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _has_mps():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device: str | torch.device):
    """bf16 autocast on a CUDA GPU that supports it (about twice the matmul speed, fp32 weights
    and optimiser); on any other device a context that does nothing, so CPU runs are unchanged.

    Usage: ``with models.autocast(device): logits = model(...).logits``.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def forward_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One forward pass of a policy, reward model or critic over left-padded rows: float32 logits,
    (B, T, V) for a language model and (B, T, 1) / (B, 1) for a token / sequence scorer.

    Positions count real tokens only (:func:`rlhf_lab.lm.sequences.position_ids`), so padding a row
    differently changes nothing; bf16 autocast on a CUDA GPU (a CPU run is unchanged). Any module
    that takes ``input_ids``, ``attention_mask`` and ``position_ids`` and returns ``.logits`` works.
    """
    with autocast(input_ids.device):
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=position_ids(attention_mask)).logits
    return logits.float()


POOLINGS = ("last", "sum", "mean")
"""How a reward model's head becomes one score per reply (``config.reward_pooling``)."""


def reward_scores(rm, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  prompt_len: int) -> torch.Tensor:
    """r_phi(x, y) for each left-padded row whose reply starts at column ``prompt_len``: (B,).

    The reward model's ``config.reward_pooling`` says how its scalar head is read:

    - ``"last"`` (the default): at the last real token, as Hugging Face's sequence classifier
      does; the head must see the whole reply through attention alone;
    - ``"sum"``: the head at every reply token, summed (a sum of per-token rewards): a count of
      good or bad tokens is then a plain sum, which a small trunk learns from fewer labels;
    - ``"mean"``: the same, averaged over the reply's tokens.

    A model without a ``config`` (any module that returns ``logits`` of shape (B, 1)) is read at
    the last token; a model with a ``reward_scores`` method of its own (an ensemble,
    :class:`rlhf_lab.lm.ensemble.RewardEnsemble`) is asked for its scores.
    """
    if hasattr(rm, "reward_scores"):
        return rm.reward_scores(input_ids, attention_mask, prompt_len)
    pooling = getattr(getattr(rm, "config", None), "reward_pooling", "last")   # no config: "last"
    if pooling == "last":
        return forward_logits(rm, input_ids, attention_mask)[:, 0]
    if pooling not in POOLINGS:
        raise ValueError(f"config.reward_pooling must be one of {POOLINGS}, got {pooling!r}")
    with autocast(input_ids.device):
        hidden = rm.base_model(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids(attention_mask)).last_hidden_state
        per_token = rm.score(hidden).squeeze(-1).float()                     # (B, T)
    mask = attention_mask[:, prompt_len:].float()                            # the reply's tokens
    total = (per_token[:, prompt_len:] * mask).sum(-1)
    return total if pooling == "sum" else total / mask.sum(-1).clamp(min=1.0)
