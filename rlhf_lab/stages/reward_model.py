"""Stage 2: a Bradley-Terry reward model trained on simulated human preferences.

1. sample two replies per prompt from the SFT policy;
2. the simulated annotator picks one by Bradley-Terry sampling from the gold utility;
3. train ``r_phi`` (SFT trunk + scalar head) to minimise ``-log sigmoid(r_chosen - r_rejected)``;
4. evaluate on fresh held-out pairs: accuracy next to the Bayes ceiling, accuracy against the
   gold order, correlation with gold, calibration.

The loss is a parameter, so a student's ``bradley_terry_loss`` can drive the real training.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import random
from dataclasses import dataclass, field

import torch

from rlhf_lab import world
from rlhf_lab.core.config import LATER, non_negative, positive, require
from rlhf_lab.core.plug import as_loss_and_stats, pluggable
from rlhf_lab.core.progress import progress
from rlhf_lab.equations.losses import bradley_terry_loss
from rlhf_lab.lm import models
from rlhf_lab.lm.generation import sample_texts
from rlhf_lab.lm.sequences import encode_pairs

__all__ = ["learning_rate", "RewardConfig", "PreferenceData", "sample_preferences", "training_pairs",
           "score_texts", "train_reward_model", "evaluate_reward_model", "calibration_table"]


@dataclass(frozen=True)
class RewardConfig:
    """Stage 2: the reward model r_phi(x, y)."""
    n_pairs: int = 4000
    """Labelled pairs to train on (the lecture's 'human labels'; typical 250-16000)."""
    epochs: int = 3
    """Passes over the pairs."""
    batch_size: int = 64
    """Pairs per step."""
    lr: float = 3e-3
    """AdamW peak learning rate: 20 warm-up steps, then a cosine decay to 0. (A constant 1e-3 for
    2 epochs left the 16k-pair model below the 4k one.)"""
    n_heldout: int = 1000
    """Fresh pairs for evaluation, never trained on."""
    max_response_len: int = 24
    """Longest sampled reply, in tokens."""
    seed: int = 0
    """Seed for sampling the replies, the labels, the head and the batch order."""
    pooling: str = "last"
    """How the head is read (:func:`rlhf_lab.lm.models.reward_scores`): at the last token
    (``"last"``), or summed / averaged over the reply's tokens (``"sum"``, ``"mean"``)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    labels: str = "bradley_terry"
    """The annotator: ``"bradley_terry"`` samples each label from sigma(r*(y1) - r*(y2)), as a
    noisy human would; ``"deterministic"`` always prefers the reply with the higher r* (as Gao et
    al. labelled with their gold reward model), ties by a seeded coin."""

    sharpness: float = field(default=1.0, metadata=LATER)
    """The annotator's sharpness s for the training labels, ``P(y1 ≻ y2) = σ(s·Δr*)``
    (:func:`rlhf_lab.world.annotate`): 1 is the course's annotator, larger a more consistent
    one (``benchmarks/rm_diagnosis.py`` prints how often two such annotators agree). The
    held-out pairs keep the course's annotator, so accuracies and the Bayes ceiling compare
    across sharpness."""
    trunk_seed: int | None = field(default=None, metadata=LATER)
    """Where the trunk comes from: None starts the reward model from the run's own SFT model; an
    integer s from the SFT model (the run's SFT config) fine-tuned from a base model pretrained
    with seed s (:meth:`trunk_pretraining`), so that ensemble members can differ in their
    pretraining (Eisenstein et al. 2023, "Helping or Herding?"). The pairs still come from the
    run's own SFT policy, and the held-out evaluation is unchanged. Read by
    :func:`rlhf_lab.pipeline.runs.load_or_train_rm`; :func:`train_reward_model` starts from
    whatever trunk it is given."""

    def __post_init__(self):
        positive(self, "n_pairs", "epochs", "batch_size", "lr", "n_heldout", "max_response_len",
                 "sharpness")
        non_negative(self, "weight_decay")
        require(self.pooling in models.POOLINGS, "pooling",
                f"must be one of {models.POOLINGS}, got {self.pooling!r}")
        require(self.labels in world.ANNOTATORS, "labels",
                f"must be one of {world.ANNOTATORS}, got {self.labels!r}")
        require(self.batch_size <= self.n_pairs, "batch_size",
                f"must not exceed n_pairs ({self.n_pairs}), got {self.batch_size}")
        require(self.trunk_seed is None or (isinstance(self.trunk_seed, numbers.Integral)
                                            and not isinstance(self.trunk_seed, bool)
                                            and self.trunk_seed >= 0), "trunk_seed",
                f"must be None (the run's own SFT model) or an integer >= 0, got {self.trunk_seed!r}")

    def trunk_pretraining(self, base):
        """The pretraining config of the base model under the trunk: ``base`` (a
        :class:`~rlhf_lab.stages.sft.PretrainConfig`) itself, or with its seed set to
        ``trunk_seed``."""
        return base if self.trunk_seed is None else dataclasses.replace(base, seed=self.trunk_seed)


@dataclass
class PreferenceData:
    """Pairs of replies with the annotator's label (``first_preferred``) and their gold scores."""
    prompts: list
    first: list[str]
    second: list[str]
    first_preferred: list[int]
    gold_first: list[float]
    gold_second: list[float]

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def chosen(self) -> list[str]:
        return [a if w else b for a, b, w in zip(self.first, self.second, self.first_preferred)]

    @property
    def rejected(self) -> list[str]:
        return [b if w else a for a, b, w in zip(self.first, self.second, self.first_preferred)]


def sample_preferences(policy, tokenizer, n_pairs: int, seed: int,
                       max_response_len: int = 24, labels: str = "bradley_terry",
                       sharpness: float = 1.0) -> PreferenceData:
    """Two replies per random prompt from ``policy``, labelled by the simulated annotator
    (``labels``: :data:`rlhf_lab.world.ANNOTATORS`, with ``sharpness``)."""
    rng = random.Random(f"preferences-{seed}")
    prompts = [rng.choice(world.all_prompts()) for _ in range(n_pairs)]
    texts = sample_texts(policy, tokenizer, prompts + prompts, max_response_len, seed)
    first, second = texts[:n_pairs], texts[n_pairs:]
    preferred = world.annotate(prompts, first, second, seed=seed, annotator=labels,
                               sharpness=sharpness)
    return PreferenceData(prompts, first, second, preferred, world.gold_utilities(prompts, first),
                          world.gold_utilities(prompts, second))


def training_pairs(cfg: RewardConfig, policy, tokenizer) -> PreferenceData:
    """The ``cfg.n_pairs`` pairs a reward model of ``cfg`` learns from: replies of ``policy`` (the
    run's SFT policy), labelled by ``cfg``'s annotator, all drawn with ``cfg.seed``."""
    return sample_preferences(policy, tokenizer, cfg.n_pairs, cfg.seed, cfg.max_response_len,
                              cfg.labels, cfg.sharpness)


def _rewards(rm, batch) -> torch.Tensor:
    """r_phi for each row of an encoded batch (:func:`rlhf_lab.lm.models.reward_scores`): (B,)."""
    return models.reward_scores(rm, batch.input_ids, batch.attention_mask, batch.prompt_len)


@torch.no_grad()
def score_texts(rm, tokenizer, prompts, texts, max_response_len: int = 24,
                batch_size: int = 512) -> torch.Tensor:
    """Reward-model scores of (prompt, reply) pairs: (N,) float tensor."""
    rm.eval()
    device = next(rm.parameters()).device
    scores = []
    for start in range(0, len(prompts), batch_size):
        batch = encode_pairs(tokenizer, prompts[start:start + batch_size],
                             texts[start:start + batch_size], max_response_len).to(device)
        scores.append(_rewards(rm, batch).float().cpu())
    return torch.cat(scores)


def learning_rate(peak: float, step: int, total: int) -> float:
    """The reward model's schedule at ``step`` of ``total``: a linear warm-up over the first 20
    steps, times a cosine decay from ``peak`` to 0.

        lr(t) = peak · min(1, (t + 1) / 20) · (1 + cos(π t / total)) / 2

    >>> learning_rate(1e-3, 0, 100), learning_rate(1e-3, 19, 100), learning_rate(1e-3, 50, 100)
    (5e-05, 0.0009135402871372809, 0.0005)
    """
    return peak * min(1.0, (step + 1) / 20) * 0.5 * (1.0 + math.cos(math.pi * step / total))


def train_reward_model(cfg: RewardConfig, sft_model, tokenizer=None, loss_fn=bradley_terry_loss,
                       data: PreferenceData | None = None):
    """Stage 2. Returns (reward model, metrics). ``data`` defaults to ``cfg.n_pairs`` fresh pairs
    sampled from ``sft_model``."""
    tokenizer = tokenizer or models.world_tokenizer()
    loss_fn = pluggable(loss_fn, bradley_terry_loss, "bradley_terry_loss")
    data = data or training_pairs(cfg, sft_model, tokenizer)
    torch.manual_seed(cfg.seed)
    rm = models.reward_model_from(sft_model, seed=cfg.seed, pooling=cfg.pooling)
    n = len(data)
    pairs = encode_pairs(tokenizer, data.prompts * 2, data.chosen + data.rejected,
                         cfg.max_response_len)                  # rows 0..n-1 chosen, n..2n-1 rejected
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = torch.Generator().manual_seed(cfg.seed)
    device = next(rm.parameters()).device
    steps_per_epoch = len(data) // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch
    history = []
    rm.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(data), generator=order)
        for i in progress(range(steps_per_epoch), desc=f"reward model {epoch + 1}/{cfg.epochs}", leave=False):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            both = pairs.rows(torch.cat([idx, idx + n])).to(device)    # 2B rows: chosen, then rejected
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg.lr, step, total_steps)
            r_chosen, r_rejected = _rewards(rm, both).split(len(idx))
            loss, stats = as_loss_and_stats(loss_fn(r_chosen, r_rejected))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"reward model: the loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
            opt.step()
            history.append({"step": step, "loss": loss.item(),
                            "accuracy": (r_chosen > r_rejected).float().mean().item()})
    rm.eval()
    return rm, {"history": history, "n_pairs": len(data), "params": models.count_parameters(rm)}


def calibration_table(p_first: torch.Tensor, first_preferred: torch.Tensor, bins: int = 10) -> list[dict]:
    """Predicted P(first preferred) against how often the annotator preferred the first reply, per
    bin of the prediction. A calibrated model has ``predicted ≈ observed`` in every bin."""
    edges = torch.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (p_first >= lo) & ((p_first < hi) | (hi == 1))
        if inside.any():
            rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "count": int(inside.sum()),
                         "predicted": p_first[inside].mean().item(),
                         "observed": first_preferred[inside].float().mean().item()})
    return rows


def evaluate_reward_model(rm, tokenizer, heldout: PreferenceData, max_response_len: int = 24) -> dict:
    """Held-out metrics of a reward model on labelled pairs it never saw."""
    r1 = score_texts(rm, tokenizer, heldout.prompts, heldout.first, max_response_len)
    r2 = score_texts(rm, tokenizer, heldout.prompts, heldout.second, max_response_len)
    labels = torch.tensor(heldout.first_preferred)
    g1, g2 = torch.tensor(heldout.gold_first), torch.tensor(heldout.gold_second)
    untied = g1 != g2
    scores, gold = torch.cat([r1, r2]), torch.cat([g1, g2]).float()
    return {
        "accuracy": ((r1 > r2).long() == labels).float().mean().item(),
        "bayes_ceiling": world.bayes_ceiling(heldout.gold_first, heldout.gold_second),
        "gold_order_accuracy": ((r1 > r2) == (g1 > g2))[untied].float().mean().item(),
        "gold_correlation": torch.corrcoef(torch.stack([scores, gold]))[0, 1].item(),
        "calibration": calibration_table(torch.sigmoid(r1 - r2), labels),
    }
