"""AI feedback: judges that label preference pairs in place of the (simulated) human annotator.

Constitutional AI (Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback") and RLAIF
(Lee et al. 2023, "RLAIF: Scaling Reinforcement Learning from Human Feedback with AI Feedback")
replace the human who picks the better of two replies by a model. The rest of the pipeline is
unchanged: pairs → judge's labels → Bradley-Terry RM → PPO. Two judges here:

* a **constitution**: readable rules over the world's words ("mention the prompt's topic",
  "do not hedge", ...), each a small count computed from the text alone (never from the gold
  utility). The judge prefers the reply with the higher total; ties are broken by a seeded coin.
* a **learned judge**: a reward model (or an ensemble of them) fit on a few human labels, which
  then labels many pairs: cheap labels that carry the judge's mistakes.

:func:`ai_feedback_study` measures each judge's agreement with the annotator and with the
gold-better reply, then trains an RM on N judge-labelled pairs and runs PPO against it, next to
the same pipeline on human labels. It shows the two ways the lecture's question says CAI can fail,
with one fix each:

1. a weak evaluator: a constitution missing a rule, or a judge fit on too few labels: what the
   judge does not check, the policy is free to do (fix: the missing rule; more labels);
2. narrow pairs: pairs from a low-diversity source (the SFT policy at a low temperature) rarely
   contrast the properties that matter, so the RM cannot learn them whatever the judge's quality
   (fix: pairs sampled from several policies at temperature 1).
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass

import torch

from rlhf_lab import world
from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, non_negative, positive, require
from rlhf_lab.core.workers import in_processes
from rlhf_lab.lm import models
from rlhf_lab.lm.evaluation import evaluate_policy
from rlhf_lab.lm.generation import sample_texts
from rlhf_lab.pipeline.runs import (
    HELDOUT_SEED,
    RunConfig,
    load_or_train_base,
    load_or_train_rm,
    load_or_train_sft,
    stage_keys,
)
from rlhf_lab.stages.ppo import train_ppo
from rlhf_lab.stages.reward_model import (
    PreferenceData,
    evaluate_reward_model,
    sample_preferences,
    train_reward_model,
)
from rlhf_lab.studies.judges import (
    RULE_NAMES,
    RULES,
    Constitution,
    LearnedJudge,
    SimulatedAnnotator,
    agreement,
    gold_better,
    label_pairs,
)

__all__ = ['PairSource', 'sample_pairs', 'FeedbackConfig', 'ai_feedback_study']


# --------------------------------------------------------------------------------------------
# 3. Where pairs come from
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairSource:
    """How the unlabelled pairs are sampled: the i-th pair's j-th reply comes from policy
    ``policies[(i + j) % len(policies)]`` at ``temperature``, for prompts of ``tasks``."""
    policies: tuple = ("sft",)
    temperature: float = 1.0
    tasks: tuple = tuple(world.TASKS)

    def __post_init__(self):
        require(all(p in ("sft", "base") for p in self.policies) and self.policies, "policies",
                f"must name 'sft' or 'base', got {self.policies!r}")
        positive(self, "temperature")
        require(set(self.tasks) <= set(world.TASKS) and self.tasks, "tasks",
                f"must be a non-empty subset of {world.TASKS}, got {self.tasks!r}")


SOURCES = {"sft": PairSource(), "sft_cold": PairSource(temperature=0.4),
           "sft_and_base": PairSource(policies=("sft", "base"))}


def sample_pairs(source: PairSource, policies: dict, n_pairs: int, seed: int,
                 max_response_len: int = 24):
    """``n_pairs`` unlabelled pairs (prompts, first, second) from ``source``; ``policies`` maps
    the names of ``source.policies`` to models."""
    tok = models.world_tokenizer()
    rng = random.Random(f"pairs-{seed}")
    allowed = [p for p in world.all_prompts() if p.task in source.tasks]
    prompts = [rng.choice(allowed) for _ in range(n_pairs)]
    replies = {}                                            # (pair, j) -> text
    for k, name in enumerate(source.policies):
        rows = [(i, j) for i in range(n_pairs) for j in (0, 1)
                if (i + j) % len(source.policies) == k]
        texts = sample_texts(policies[name], tok, [prompts[i] for i, _ in rows], max_response_len,
                             seed + 7919 * k, temperature=source.temperature)
        replies.update(zip(rows, texts))
    return prompts, [replies[i, 0] for i in range(n_pairs)], [replies[i, 1] for i in range(n_pairs)]


def _preference_data(prompts, first, second, labels) -> PreferenceData:
    return PreferenceData(list(prompts), list(first), list(second), list(labels),
                          world.gold_utilities(prompts, first), world.gold_utilities(prompts, second))


# --------------------------------------------------------------------------------------------
# 4. The study: judges → labels → RM → PPO → gold
# --------------------------------------------------------------------------------------------
ARMS = {                      # arm: (judge, pair source, what it shows)
    "human": ("human", "sft", "the simulated annotator labels every pair (the reference)"),
    "constitution": ("constitution", "sft", "the full constitution"),
    "missing_rule": ("constitution_missing_rule", "sft", "weak evaluator: one rule left out"),
    "few_labels": ("judge_few_labels", "sft", "weak evaluator: a judge fit on few human labels"),
    "more_labels": ("judge_more_labels", "sft", "fix: a judge fit on more human labels"),
    "narrow_pairs": ("constitution", "sft_cold", "narrow pairs: SFT at a low temperature"),
    "diverse_pairs": ("constitution", "sft_and_base", "fix: pairs from the SFT and base policies"),
}


JUDGES = ("human", "constitution", "constitution_missing_rule", "judge_few_labels",
          "judge_more_labels")


@dataclass(frozen=True)
class FeedbackConfig:
    """The AI-feedback study."""
    n_pairs: int = 2000
    """N, judge-labelled pairs each arm's reward model is fit on."""
    few_labels: int = 250
    """Human labels of the weak learned judge (the pipeline's reward model on that many pairs)."""
    more_labels: int = 4000
    """Human labels of the better learned judge, the fix (by default the pipeline's own RM)."""
    missing_rule: str = "stay_on_topic"
    """The rule the weak constitution leaves out."""
    n_eval_pairs: int = 1000
    """Fresh pairs from π_SFT on which every judge's agreement is measured."""
    beta: float = 0.01
    """β of PPO against each arm's RM (small: what the RM misses gets exploited)."""
    ppo_iterations: int = 20
    """PPO iterations per arm."""
    rollouts: int = 128
    """Responses per PPO iteration (replaces the run's; must be a multiple of its minibatch)."""
    eval_per_prompt: int = 8
    """Replies per prompt when evaluating a policy (× 48 prompts)."""
    arms: tuple = tuple(ARMS)
    """Which arms to run (names of :data:`ARMS`)."""
    seed: int = 0
    """Seed of the pairs, the labels and PPO."""

    def __post_init__(self):
        positive(self, "n_pairs", "few_labels", "more_labels", "n_eval_pairs", "beta",
                 "ppo_iterations", "rollouts", "eval_per_prompt")
        non_negative(self, "seed")
        require(self.missing_rule in RULE_NAMES, "missing_rule",
                f"must be one of {RULE_NAMES}, got {self.missing_rule!r}")
        unknown = [a for a in self.arms if a not in ARMS]
        require(len(self.arms) > 0 and not unknown, "arms",
                f"must be a non-empty subset of {tuple(ARMS)}, got unknown {unknown}")


def _judge_run(run: RunConfig, n_labels: int, seed: int) -> RunConfig:
    """The pipeline run whose reward model, fit on ``n_labels`` human labels of SFT pairs, is a
    learned judge. With the defaults these are notebook 02's 250-pair model and the pipeline's
    own 4000-pair model, so a course that got this far has them cached."""
    return run.with_rm(n_pairs=n_labels, seed=seed, batch_size=min(run.rm.batch_size, n_labels))


def _judges(run: RunConfig, cfg: FeedbackConfig, needed, root) -> dict:
    """The judges ``needed`` (names of :data:`JUDGES`)."""
    def learned(n_labels: int) -> LearnedJudge:
        rm = load_or_train_rm(_judge_run(run, n_labels, cfg.seed), root).model
        return LearnedJudge([rm], run.rm.max_response_len)

    make = {"human": lambda: SimulatedAnnotator(),
            "constitution": lambda: Constitution(),
            "constitution_missing_rule": lambda: Constitution().without(cfg.missing_rule),
            "judge_few_labels": lambda: learned(cfg.few_labels),
            "judge_more_labels": lambda: learned(cfg.more_labels)}
    return {name: make[name]() for name in JUDGES if name in needed}


def _agreements(judges: dict, sft, cfg: FeedbackConfig, max_len: int) -> dict:
    """Each judge on fresh SFT pairs: agreement with the annotator's labels (for "human": with a
    second, independent draw of the annotator) and with the gold-better reply."""
    pairs = sample_preferences(sft, models.world_tokenizer(), cfg.n_eval_pairs, HELDOUT_SEED + 50,
                               max_len)
    truth = gold_better(pairs.prompts, pairs.first, pairs.second)
    out = {}
    for name, judge in judges.items():
        labels = label_pairs(judge, pairs.prompts, pairs.first, pairs.second, cfg.seed + 99)
        out[name] = {"annotator": agreement(labels, pairs.first_preferred),
                     "gold": agreement(labels, truth)}
    out["ties_in_gold"] = sum(t is None for t in truth) / len(truth)
    return out


def _gold_parts(policy, n_per_prompt: int, max_len: int) -> dict:
    """Mean of each part of the gold utility over the policy's replies: what it gained or lost."""
    prompts = world.all_prompts() * n_per_prompt
    texts = sample_texts(policy, models.world_tokenizer(), prompts, max_len, seed=777)
    parts = [world.gold_breakdown(p, t) for p, t in zip(prompts, texts)]
    return ({k: sum(d[k] for d in parts) / len(parts) for k in parts[0]},
            [[p.text, t] for p, t in zip(prompts[::17][:6], texts[::17][:6])])


def _train_arm(run: RunConfig, cfg: FeedbackConfig, arm: str, data: PreferenceData,
               heldout: PreferenceData, root, threads: int | None = None) -> dict:
    """One arm after labelling: the RM on its pairs (measured on the ``heldout`` pairs), PPO from
    π_SFT against it, the evaluation."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    tok = models.world_tokenizer()
    sft = load_or_train_sft(run, root).model
    max_len = run.rm.max_response_len
    rm, _ = train_reward_model(dataclasses.replace(run.rm, n_pairs=len(data)), sft, tok, data=data)
    rm_eval = evaluate_reward_model(rm, tok, heldout, max_len)
    # a separate critic starts from the judge's RM (with a value head the arms came out noisier)
    ppo_cfg = dataclasses.replace(run.ppo, beta=cfg.beta, kl_target=None, critic="separate",
                                  iterations=cfg.ppo_iterations, rollouts=cfg.rollouts,
                                  seed=run.ppo.seed + cfg.seed)
    out = train_ppo(ppo_cfg, sft, rm, tok)
    parts, samples = _gold_parts(out.policy, cfg.eval_per_prompt, ppo_cfg.max_new_tokens)
    truth = gold_better(data.prompts, data.first, data.second)
    return {"arm": arm, "judge": ARMS[arm][0], "source": ARMS[arm][1], "about": ARMS[arm][2],
            "label_gold_agreement": agreement(data.first_preferred, truth),
            "identical_pairs": sum(a == b for a, b in zip(data.first, data.second)) / len(data),
            "rm_accuracy": rm_eval["accuracy"], "rm_gold_accuracy": rm_eval["gold_order_accuracy"],
            **evaluate_policy(out.policy, sft, tok, rm, cfg.eval_per_prompt,
                              max_new_tokens=ppo_cfg.max_new_tokens),
            "gold_parts": parts, "samples": samples,
            "history": [{k: h[k] for k in ("iteration", "proxy", "gold", "kl")} for h in out.history],
            "seconds": time.perf_counter() - start}


def _label_arms(run: RunConfig, cfg: FeedbackConfig, judges: dict, policies: dict) -> dict:
    """Each arm's labelled training pairs: the pairs of its source, labelled by its judge."""
    pairs, data = {}, {}
    for arm in cfg.arms:
        judge, source, _ = ARMS[arm]
        if source not in pairs:
            pairs[source] = sample_pairs(SOURCES[source], policies, cfg.n_pairs, cfg.seed + 500,
                                         run.rm.max_response_len)
        prompts, first, second = pairs[source]
        labels = label_pairs(judges[judge], prompts, first, second, cfg.seed + 600)
        data[arm] = _preference_data(prompts, first, second, labels)
    return data


def _run_arms(run: RunConfig, cfg: FeedbackConfig, data: dict, heldout: PreferenceData, root,
              jobs: int) -> dict:
    if jobs <= 1:
        return {arm: _train_arm(run, cfg, arm, data[arm], heldout, root) for arm in cfg.arms}
    results = in_processes(_train_arm, [(run, cfg, arm, data[arm], heldout, root) for arm in cfg.arms],
                           jobs, "arms")
    return dict(zip(cfg.arms, results))


def ai_feedback_study(run: RunConfig = RunConfig(), cfg: FeedbackConfig = FeedbackConfig(),
                      root=None, jobs: int | None = None) -> dict:
    """Judges against the annotator and the gold utility, and PPO on each judge's labels.

    Returns ``config``, ``rules`` (name → sentence), ``agreement`` (per judge: ``annotator`` and
    ``gold``, the fractions of pairs on which it agrees with the annotator's label and with the
    gold-better reply), ``sft`` (the SFT policy's evaluation) and ``arms`` (per arm of
    :data:`ARMS`: its judge and pair source, how often its training labels pick the gold-better
    reply, the RM's held-out accuracy, the PPO policy's ``gold``, ``proxy``, ``kl`` to π_SFT,
    mean gold parts and samples). ``jobs``: arms trained at once in separate processes (default
    2 on a machine with 2 or more cores). Cached as ``feedback-<key>``.
    """
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    integer(jobs, "jobs", 1)
    judges = [stage_keys(_judge_run(run, n, cfg.seed))["rm"] for n in (cfg.few_labels, cfg.more_labels)]
    key = config_hash(cfg, stage_keys(run)["sft"], config_hash(run.rm), config_hash(run.ppo), *judges)

    def study():
        start = time.perf_counter()
        tok = models.world_tokenizer()
        sft = load_or_train_sft(run, root).model
        policies = {"sft": sft, "base": load_or_train_base(run, root).model}
        needed = {ARMS[a][0] for a in cfg.arms} | set(JUDGES)
        judges = _judges(run, cfg, needed, root)
        agree = _agreements(judges, sft, cfg, run.rm.max_response_len)
        data = _label_arms(run, cfg, judges, policies)
        heldout = sample_preferences(sft, tok, min(cfg.n_eval_pairs, 1000), HELDOUT_SEED,
                                     run.rm.max_response_len)      # every arm's RM is measured on it
        arms = _run_arms(run, cfg, data, heldout, root, jobs)
        reference = evaluate_policy(sft, sft, tok, None, cfg.eval_per_prompt,
                                    max_new_tokens=run.ppo.max_new_tokens)
        parts, _ = _gold_parts(sft, cfg.eval_per_prompt, run.ppo.max_new_tokens)
        return {"config": config_dict(cfg), "rules": {r.name: r.text for r in RULES},
                "agreement": agree, "sft": {**reference, "gold_parts": parts}, "arms": arms,
                "seconds": time.perf_counter() - start}

    return cached("feedback", key, study,
                  lambda out, folder: write_json(folder / "results.json", out),
                  lambda folder: read_json(folder / "results.json"), root)
