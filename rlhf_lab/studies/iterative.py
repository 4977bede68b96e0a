"""Iterative RLHF: label pairs from the current policy, refit the reward model, run PPO again.

A reward model fit once, on pairs sampled from the SFT policy, is asked by PPO to judge replies it
never saw: the further the policy moves, the less its verdicts are worth (the offline-RL
distribution shift, here in the reward model). Iterative ("online") RLHF spends the same label
budget in rounds (Bai et al. 2022, "Training a Helpful and Harmless Assistant with RLHF", their
iterated online RLHF; Touvron et al. 2023, Llama 2, whose RLHF-V1..V5 each start from the last)::

    D_0 ← pairs from π_SFT, labelled by the simulated annotator
    for k = 0 .. K-1:
        r_k     ← Bradley-Terry fit on D_0 ∪ ... ∪ D_k      (a fresh RM from the SFT trunk)
        π_{k+1} ← PPO from π_k against r_k, maximising E[r_k] − β KL(π ‖ π_SFT)
        D_{k+1} ← pairs from π_{k+1}, labelled               (not needed after the last round)

Design choices. Each round *continues* from the previous policy (π_0 = π_SFT), so the PPO
iterations add up; the reference stays π_SFT in every round, so the KL of every round is on the
same axis as the one-round pipeline's and notebook 05's. The critic restarts from each round's
RM, with fresh optimiser state. The baseline ("one round") spends all K·n labels on π_SFT pairs,
fits one RM and runs PPO for the same K rounds of iterations, restarting its critic and optimiser
at the same boundaries: the two arms differ only in where their labels come from.

Per round, :func:`iterative_rlhf` reports the RM's held-out accuracy on fresh pairs from π_SFT
and on fresh pairs from the policy PPO produced against it (what the RM had to judge), and the
policy's gold utility, proxy reward and KL to π_SFT (:func:`rlhf_lab.lm.evaluation.evaluate_policy`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass

import torch

from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, positive, require
from rlhf_lab.core.workers import in_processes
from rlhf_lab.lm import models
from rlhf_lab.lm.evaluation import evaluate_policy
from rlhf_lab.pipeline.runs import HELDOUT_SEED, RunConfig, load_or_train_sft, stage_keys
from rlhf_lab.stages.ppo import PPOConfig, PPOResult, train_ppo
from rlhf_lab.stages.reward_model import (
    PreferenceData,
    evaluate_reward_model,
    sample_preferences,
    train_reward_model,
)

__all__ = ["IterativeConfig", "ARMS", "ppo_from", "merge_preferences", "fingerprint",
           "run_arm", "iterative_rlhf"]

ARMS = ("iterative", "one_round")
LABEL_SEED = 40_000          # seeds of the training pairs (never HELDOUT_SEED's neighbourhood)


@dataclass(frozen=True)
class IterativeConfig:
    """Iterative RLHF against the one-round baseline on the same label budget."""
    rounds: int = 3
    """K, rounds of (label, fit the RM, PPO). The baseline runs PPO for the same K rounds."""
    labels_per_round: int = 1000
    """n, new labelled pairs per round; the baseline gets K·n pairs from π_SFT at once."""
    iterations_per_round: int = 15
    """PPO iterations per round (the policy continues from one round to the next)."""
    rollouts: int = 128
    """Responses per PPO iteration (replaces the run's; must be a multiple of its minibatch)."""
    beta: float = 0.02
    """β of the KL penalty to π_SFT. Small on purpose: a fixed proxy is overoptimised (β ≤ 0.03)."""
    n_heldout: int = 500
    """Fresh pairs for each held-out RM accuracy (from π_SFT, and from each round's policy)."""
    eval_per_prompt: int = 8
    """Replies per prompt when evaluating a policy (× 48 prompts)."""
    seed: int = 0
    """Seed of the labelled pairs and of PPO (round k's PPO uses seed + k)."""

    def __post_init__(self):
        positive(self, "rounds", "labels_per_round", "iterations_per_round", "rollouts", "beta",
                 "n_heldout", "eval_per_prompt")
        for name in ("rounds", "labels_per_round", "iterations_per_round", "rollouts", "n_heldout",
                     "eval_per_prompt", "seed"):
            value = getattr(self, name)
            require(isinstance(value, int), name, f"must be an int, got {value!r}")

    def ppo(self, run: RunConfig, round_: int) -> PPOConfig:
        """The PPO config of round ``round_``: the run's, with this β, fixed, seed + round and a
        separate critic (it restarts from each round's RM, so it starts out knowing the scores)."""
        return dataclasses.replace(run.ppo, beta=self.beta, kl_target=None, critic="separate",
                                   iterations=self.iterations_per_round, rollouts=self.rollouts,
                                   seed=run.ppo.seed + self.seed + round_)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def ppo_from(cfg: PPOConfig, start_policy, reference, reward_model, tokenizer=None) -> PPOResult:
    """PPO from ``start_policy`` with the KL penalty to a *separate* frozen ``reference``:
    :func:`rlhf_lab.stages.ppo.train_ppo` with ``reference=`` (round k starts from π_k while the penalty
    stays ``−β (log π_θ − log π_SFT)``)."""
    return train_ppo(cfg, start_policy, reward_model, tokenizer, reference=reference)


def merge_preferences(*parts: PreferenceData) -> PreferenceData:
    """One preference set holding every pair of ``parts``, in order."""
    fields = ("prompts", "first", "second", "first_preferred", "gold_first", "gold_second")
    return PreferenceData(*([x for part in parts for x in getattr(part, f)] for f in fields))


def fingerprint(model) -> str:
    """A short hash of a model's parameters: equal fingerprints, equal weights."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _rm_accuracy(rm, tok, pairs: PreferenceData, max_len: int) -> dict:
    out = evaluate_reward_model(rm, tok, pairs, max_len)
    return {k: out[k] for k in ("accuracy", "gold_order_accuracy", "bayes_ceiling")}


# --------------------------------------------------------------------------------------------
# One arm: K rounds of (labels, RM, PPO)
# --------------------------------------------------------------------------------------------
def _labels_for_round(arm: str, cfg: IterativeConfig, k: int, sft, policy, tok, max_len: int):
    """The pairs newly labelled before round k: the baseline labels everything from π_SFT at
    round 0; the iterative arm labels n pairs from the current policy (π_SFT at round 0)."""
    if arm == "one_round":
        return (sample_preferences(sft, tok, cfg.rounds * cfg.labels_per_round,
                                   LABEL_SEED + cfg.seed, max_len) if k == 0 else None)
    return sample_preferences(policy, tok, cfg.labels_per_round,
                              LABEL_SEED + cfg.seed + 100 * (k + 1), max_len)


def run_arm(run: RunConfig, cfg: IterativeConfig, arm: str, root=None, threads: int | None = None) -> dict:
    """One arm (``"iterative"`` or ``"one_round"``): a row per round and the PPO history.

    ``threads``: set in a worker process (see :func:`iterative_rlhf`)."""
    require(arm in ARMS, "arm", f"must be one of {ARMS}, got {arm!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    tok = models.world_tokenizer()
    sft = load_or_train_sft(run, root).model
    max_len = run.rm.max_response_len
    heldout_sft = sample_preferences(sft, tok, cfg.n_heldout, HELDOUT_SEED, max_len)
    data, rm, policy = None, None, sft
    rows, history = [], []
    for k in range(cfg.rounds):
        start = time.perf_counter()
        # 1. label: new pairs (from the policy of this round's start, or all at once from SFT)
        new = _labels_for_round(arm, cfg, k, sft, policy, tok, max_len)
        if new is not None:
            data = new if data is None else merge_preferences(data, new)
            # 2. a fresh reward model on every label so far
            rm, _ = train_reward_model(dataclasses.replace(run.rm, n_pairs=len(data)), sft, tok,
                                       data=data)
        # 3. PPO from the current policy, KL to π_SFT
        ppo_cfg = cfg.ppo(run, k)
        out = ppo_from(ppo_cfg, policy, sft, rm, tok)
        start_print, policy = fingerprint(policy), out.policy
        # 4. evaluate: the RM on SFT pairs and on pairs of the policy it produced; the policy
        heldout_policy = sample_preferences(policy, tok, cfg.n_heldout, HELDOUT_SEED + 1 + k, max_len)
        rows.append({
            "round": k, "labels": len(data), "new_labels": 0 if new is None else len(new),
            "iterations": (k + 1) * cfg.iterations_per_round,
            "rm_sft": _rm_accuracy(rm, tok, heldout_sft, max_len),
            "rm_policy": _rm_accuracy(rm, tok, heldout_policy, max_len),
            **evaluate_policy(policy, sft, tok, rm, cfg.eval_per_prompt,
                              max_new_tokens=ppo_cfg.max_new_tokens),
            "policy_start": start_print, "policy_end": fingerprint(policy),
            "seconds": time.perf_counter() - start})
        history += [{**h, "round": k, "iteration": k * cfg.iterations_per_round + h["iteration"]}
                    for h in out.history]
    return {"rounds": rows, "history": history}


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------
def _run_arms(run: RunConfig, cfg: IterativeConfig, root, jobs: int) -> dict:
    """Both arms; with ``jobs`` ≥ 2, in two single-threaded processes at once (as sweep.py)."""
    if jobs <= 1:
        return {arm: run_arm(run, cfg, arm, root) for arm in ARMS}
    results = in_processes(run_arm, [(run, cfg, arm, root) for arm in ARMS], 2, "arms")
    return dict(zip(ARMS, results))


def iterative_rlhf(run: RunConfig = RunConfig(), cfg: IterativeConfig = IterativeConfig(),
                   root=None, jobs: int | None = None) -> dict:
    """Iterative RLHF against one round on the same label budget; plain dicts and lists.

    Returns ``config``, ``sft`` (the SFT policy's evaluation), ``arms`` (``"iterative"`` and
    ``"one_round"``, each with ``rounds``: one row per round, and ``history``: PPO's per-iteration
    proxy/gold/KL on its rollouts) and ``seconds``. Round rows hold ``labels`` (pairs the RM was
    fit on), ``rm_sft`` / ``rm_policy`` (held-out ``accuracy`` against the annotator,
    ``gold_order_accuracy`` and ``bayes_ceiling`` on pairs from π_SFT / from the round's final
    policy), the policy's ``gold``, ``proxy`` (this round's RM) and ``kl`` to π_SFT, and the
    fingerprints of the policy at the start and the end of the round.

    ``jobs``: 2 (default on a machine with 2 or more cores) runs the arms in two processes.
    Cached as ``iterative-<key>``; the SFT model comes from the pipeline's cache.
    """
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    integer(jobs, "jobs", 1)
    sft_key = stage_keys(run)["sft"]
    key = config_hash(cfg, sft_key, config_hash(run.rm), config_hash(run.ppo))

    def study():
        start = time.perf_counter()
        sft = load_or_train_sft(run, root).model              # upstream once, before any worker
        reference = evaluate_policy(sft, sft, models.world_tokenizer(), None, cfg.eval_per_prompt,
                                    max_new_tokens=run.ppo.max_new_tokens)
        arms = _run_arms(run, cfg, root, jobs)
        return {"config": config_dict(cfg), "sft": reference, "arms": arms,
                "seconds": time.perf_counter() - start}

    return cached("iterative", key, study,
                  lambda out, folder: write_json(folder / "results.json", out),
                  lambda folder: read_json(folder / "results.json"), root)
