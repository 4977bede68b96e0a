"""Direct Preference Optimisation: the preference pairs train the policy itself, no RM, no PPO.

Rafailov et al. (2023) solve the closed form ``pi* = pi_ref exp(r / beta) / Z`` for the reward,
``r = beta log pi*/pi_ref + beta log Z``, and put it into the Bradley-Terry loss of the reward
model. ``beta log Z`` is the same for both replies to a prompt and cancels, so the loss needs only
the policy and the frozen reference (:func:`rlhf_lab.equations.beyond_losses.dpo_loss`)::

    L_DPO(theta) = - E_(x, y_w, y_l) log sigmoid( beta [log pi(y_w|x)/pi_ref(y_w|x)
                                                        - log pi(y_l|x)/pi_ref(y_l|x)] )

Two places to watch it work:

* :func:`train_dpo` — the tiny GPT-2 of the world, trained on exactly the pairs the reward model
  of stage 2 learned from:

  1. copy the SFT model twice: the policy (trained) and the reference (frozen);
  2. compute the reference log-probabilities of every chosen and rejected reply once;
  3. epochs of minibatches: sequence log-probs of the policy, the DPO loss, one AdamW step.

* :func:`dpo_enumerable` — a tabular policy over every response of
  :func:`rlhf_lab.equations.enumerable_space.enumerable_space`, where the exact optimum ``pi*`` is known: with many
  pairs DPO lands on it, with few it does not, and with the exact Bradley-Terry probabilities as
  soft labels its optimum *is* ``pi*``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhf_lab.core.config import integer, positive, require
from rlhf_lab.core.plug import as_loss_and_stats, pluggable
from rlhf_lab.core.progress import progress
from rlhf_lab.equations import closed_form
from rlhf_lab.equations.beyond_losses import dpo_loss, implicit_reward
from rlhf_lab.equations.losses import response_logprob
from rlhf_lab.lm import models
from rlhf_lab.lm.sequences import Batch, encode_pairs
from rlhf_lab.stages.reward_model import PreferenceData

__all__ = ["DPOConfig", "train_dpo", "sequence_logprob", "reference_logprobs", "dpo_enumerable", "enumerable_pairs"]


@dataclass(frozen=True)
class DPOConfig:
    """DPO on the reward model's preference pairs. The defaults are chosen to move the policy
    about as far from the reference as PPO at the same beta (docs/lab_notes.md has the runs)."""
    beta: float = 0.1
    """beta, the KL coefficient of the objective DPO solves; the scale of the implicit reward
    ``beta log pi/pi_ref`` (typical 0.03-0.5; small beta lets the policy move further)."""
    epochs: int = 2
    """Passes over the pairs (more passes over a fixed set overfit it: KL up, gold down;
    typical 1-3)."""
    batch_size: int = 64
    """Pairs per step (each step runs the policy on 2 x batch_size sequences)."""
    lr: float = 1e-4
    """AdamW learning rate, constant after 10 warm-up steps (typical 3e-5 to 3e-4 here). With a
    finite data set the KL that DPO reaches depends on lr and epochs as much as on beta."""
    max_response_len: int = 24
    """Longest reply in tokens; longer ones are cut (as for the reward model)."""
    seed: int = 0
    """Seed of the batch order."""

    def __post_init__(self):
        positive(self, "beta", "epochs", "batch_size", "lr", "max_response_len")
        require(math.isfinite(self.beta), "beta", f"must be finite, got {self.beta!r}")
        for name in ("epochs", "batch_size", "max_response_len", "seed"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool), name,
                    f"must be an integer, got {value!r}")


# ---------------------------------------------------------------------------------------------
# DPO on the language model
# ---------------------------------------------------------------------------------------------

def sequence_logprob(model, batch: Batch) -> torch.Tensor:
    """``log pi(y|x) = sum_t log pi(y_t | x, y_<t)`` over each row's response tokens, (B,).

    With gradient (this is what DPO differentiates). The logits/labels shift and the
    ``response_mask`` live in :func:`rlhf_lab.equations.losses.response_logprob`; prompt and padding
    tokens never count, so padding a row differently changes nothing.
    """
    logits = models.forward_logits(model, batch.input_ids, batch.attention_mask)    # (B, T, V)
    return response_logprob(logits, batch.input_ids, batch.response_mask)


@torch.no_grad()
def reference_logprobs(reference, pairs: Batch, batch_size: int = 512) -> torch.Tensor:
    """``log pi_ref(y|x)`` of every row of ``pairs``, computed once before training: (N,)."""
    device = next(reference.parameters()).device
    out = []
    for start in range(0, pairs.input_ids.shape[0], batch_size):
        idx = torch.arange(start, min(start + batch_size, pairs.input_ids.shape[0]))
        out.append(sequence_logprob(reference, pairs.rows(idx).to(device)).cpu())
    return torch.cat(out)


def _pair_stats(logp_c, logp_r, ref_c, ref_r, beta: float) -> dict[str, float]:
    """Accuracy and margin of the implicit rewards, whatever the loss function reports."""
    margin = implicit_reward(logp_c, ref_c, beta) - implicit_reward(logp_r, ref_r, beta)
    return {"accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()}


def train_dpo(cfg: DPOConfig, sft_model, tokenizer, data: PreferenceData, loss_fn=dpo_loss):
    """DPO from ``sft_model`` on the pairs of ``data``. Returns ``(policy, metrics)``.

    ``loss_fn(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected, beta)`` returns
    ``loss`` or ``(loss, stats)``; a student's version that raises ``NotImplementedError`` is
    replaced by :func:`rlhf_lab.equations.beyond_losses.dpo_loss` with a warning. ``metrics["history"]``
    has one row per step: ``loss``, ``accuracy`` and ``margin`` (of the implicit rewards on the
    batch, before the step). On step 0 the policy is the reference: the loss is exactly log 2.
    """
    require(len(data) >= cfg.batch_size, "batch_size",
            f"must not exceed the number of pairs ({len(data)}), got {cfg.batch_size}")
    loss_fn = pluggable(loss_fn, dpo_loss, "dpo_loss")
    start = time.perf_counter()
    # 1. the trained policy and the frozen reference, both copies of the SFT model
    torch.manual_seed(cfg.seed)
    policy = copy.deepcopy(sft_model)
    reference = copy.deepcopy(sft_model).eval().requires_grad_(False)
    device = next(policy.parameters()).device
    n = len(data)
    pairs = encode_pairs(tokenizer, data.prompts * 2, data.chosen + data.rejected,
                         cfg.max_response_len)           # rows 0..n-1 chosen, n..2n-1 rejected
    # 2. the reference's log-probabilities, once
    ref_chosen, ref_rejected = reference_logprobs(reference, pairs).split(n)
    # 3. epochs of minibatches
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    order = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = n // cfg.batch_size
    history = []
    policy.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=order)
        for i in progress(range(steps_per_epoch), desc=f"DPO β={cfg.beta:g} {epoch + 1}/{cfg.epochs}",
                      leave=False):
            step = epoch * steps_per_epoch + i
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            both = pairs.rows(torch.cat([idx, idx + n])).to(device)     # chosen, then rejected
            logp_c, logp_r = sequence_logprob(policy, both).split(len(idx))
            ref_c, ref_r = ref_chosen[idx].to(device), ref_rejected[idx].to(device)
            loss, _ = as_loss_and_stats(loss_fn(logp_c, logp_r, ref_c, ref_r, cfg.beta))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"DPO: the loss (dpo_loss) became {loss.item()} at step "
                                         f"{step}")
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / 10)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                stats = _pair_stats(logp_c, logp_r, ref_c, ref_r, cfg.beta)
            history.append({"step": step, "loss": loss.item(), **stats})
    policy.eval()
    return policy, {"history": history, "n_pairs": n, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# DPO on an enumerable space, where pi* is exact
# ---------------------------------------------------------------------------------------------

def enumerable_pairs(logp_ref: torch.Tensor, rewards: torch.Tensor, n_pairs: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_pairs`` preference pairs over the responses: two independent draws from ``pi_ref``,
    labelled by Bradley-Terry sampling with the true rewards, ``P(a > b) = sigmoid(r_a - r_b)``.

    Returns ``(chosen, rejected)``, two (n_pairs,) tensors of response indices.
    """
    gen = torch.Generator().manual_seed(seed)
    p_ref = logp_ref.exp()
    a = torch.multinomial(p_ref, n_pairs, replacement=True, generator=gen)
    b = torch.multinomial(p_ref, n_pairs, replacement=True, generator=gen)
    p_a_wins = torch.sigmoid(rewards[a] - rewards[b])                       # Bradley-Terry
    a_wins = torch.rand(n_pairs, generator=gen, dtype=rewards.dtype) < p_a_wins
    return torch.where(a_wins, a, b), torch.where(a_wins, b, a)


def _soft_label_loss(logp, logp_ref, rewards, beta: float) -> torch.Tensor:
    """The DPO loss in the limit of infinite data with exact labels: every ordered pair (a, b),
    weighted by how often it is drawn, ``pi_ref(a) pi_ref(b)``, and by how often a wins,
    ``sigmoid(r_a - r_b)``::

        L = - sum_{a,b} pi_ref(a) pi_ref(b) sigmoid(r_a - r_b) log sigmoid(h_a - h_b),
        h = beta (log pi - log pi_ref)

    It is minimised exactly where ``h_a - h_b = r_a - r_b`` for all pairs: at ``pi = pi*``.
    """
    h = implicit_reward(logp, logp_ref, beta)                                       # (Y,)
    weight = (logp_ref[:, None] + logp_ref[None, :]).exp()                          # (Y, Y)
    target = torch.sigmoid(rewards[:, None] - rewards[None, :])                     # (Y, Y)
    return -(weight * target * F.logsigmoid(h[:, None] - h[None, :])).sum()


def _against_optimal(logp_dpo, logp_ref, rewards, beta: float) -> dict:
    """The tabular DPO policy next to π*: both policies, their distance, their reward-KL points."""
    logp_star = closed_form.boltzmann_policy(logp_ref, rewards, beta)
    dpo_stats = closed_form.policy_stats(logp_dpo, logp_ref, rewards, beta)
    star_stats = closed_form.policy_stats(logp_star, logp_ref, rewards, beta)
    return {"logp_dpo": logp_dpo, "logp_star": logp_star, "logp_ref": logp_ref, "rewards": rewards,
            "kl_to_optimal": float((logp_dpo.exp() * (logp_dpo - logp_star)).sum()),
            "tv": float(0.5 * (logp_dpo.exp() - logp_star.exp()).abs().sum()),
            "dpo": {"reward": float(dpo_stats["expected_reward"]), "kl": float(dpo_stats["kl"])},
            "optimal": {"reward": float(star_stats["expected_reward"]), "kl": float(star_stats["kl"])}}


def dpo_enumerable(logp_ref, rewards, beta: float, n_pairs: int = 20_000, steps: int = 300,
                   lr: float = 0.1, seed: int = 0, soft: bool = False, loss_fn=dpo_loss) -> dict:
    """DPO with a tabular policy over every response of an enumerable space, next to ``pi*``.

    The policy is ``log pi = log_softmax(theta)``, one logit per response, initialised at the
    reference (``theta = log pi_ref``). It is trained full-batch with Adam on the DPO loss of
    ``n_pairs`` sampled pairs (:func:`enumerable_pairs`; ``loss_fn``: a student's
    ``dpo_loss``), or with ``soft=True`` on the exact
    infinite-data loss (:func:`_soft_label_loss`; ``n_pairs`` is then unused).

    Args: logp_ref, rewards: (Y,) from :func:`rlhf_lab.equations.enumerable_space.enumerable_space`; beta > 0.
    Returns a dict: ``logp_dpo``, ``logp_star`` (:func:`rlhf_lab.equations.closed_form.boltzmann_policy`),
    ``logp_ref``, ``rewards`` (all (Y,)); ``kl_to_optimal`` = KL(pi_dpo || pi*) and ``tv`` =
    1/2 sum |pi_dpo - pi*|; ``dpo`` and ``optimal``: ``{"reward", "kl"}`` on the reward-KL plane;
    ``loss`` (final), ``n_pairs``, ``beta``; ``n_unseen`` (responses in no pair) and
    ``n_unbounded`` (responses that only ever won, or only ever lost).

    Responses that never appear in a pair get no gradient (the loss sees only differences of
    logits), so DPO leaves them at their reference logits while the seen ones move. A response
    that won every pair it was in has no finite best logit: the loss keeps pushing it up for as
    long as training runs (and one that always lost, down), the overfitting that IPO (Azar et
    al., 2023) was designed against. With many pairs neither happens and DPO lands on ``pi*``;
    with few, the policy reaches ``pi*`` only as far as the data covers the space.

    The total variation to ``pi*`` shrinks as ``n_pairs`` grows; ``soft=True`` reaches ``pi*`` up
    to the optimiser's tolerance.
    """
    logp_ref, rewards = closed_form._check_space(logp_ref, rewards)
    require(logp_ref.dim() == 1, "logp_ref",
            f"must be 1-D (one prompt), got shape {tuple(logp_ref.shape)}")
    integer(n_pairs, "n_pairs", 1)
    integer(steps, "steps", 1)
    require(lr > 0, "lr", f"must be > 0, got {lr!r}")
    beta = closed_form._check_beta(beta)
    loss_fn = pluggable(loss_fn, dpo_loss, "dpo_loss")
    theta = logp_ref.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    n_unseen = n_unbounded = 0
    if not soft:
        chosen, rejected = enumerable_pairs(logp_ref, rewards, n_pairs, seed)
        wins = torch.bincount(chosen, minlength=logp_ref.numel())
        losses = torch.bincount(rejected, minlength=logp_ref.numel())
        n_unseen = int(((wins == 0) & (losses == 0)).sum())
        n_unbounded = int(((wins == 0) != (losses == 0)).sum())
    for _ in range(steps):
        logp = torch.log_softmax(theta, dim=-1)
        if soft:
            loss = _soft_label_loss(logp, logp_ref, rewards, beta)
        else:
            loss, _ = as_loss_and_stats(loss_fn(logp[chosen], logp[rejected], logp_ref[chosen],
                                                logp_ref[rejected], beta))
        opt.zero_grad()
        loss.backward()
        opt.step()
    logp_dpo = torch.log_softmax(theta.detach(), dim=-1)
    return {**_against_optimal(logp_dpo, logp_ref, rewards, beta), "loss": loss.item(),
            "n_pairs": None if soft else n_pairs, "beta": beta, "n_unseen": n_unseen,
            "n_unbounded": n_unbounded}
