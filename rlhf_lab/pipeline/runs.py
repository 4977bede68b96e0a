"""The pipeline: base -> SFT -> reward model(s) -> ..., each stage a cached artifact.

Notebooks and the CLI ask for what they need (``load_or_train_sft(run)``); whatever is missing
upstream is trained first and cached, so every notebook runs on its own and re-runs are instant.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlhf_lab.core.artifacts import artifact_folder, cached, is_cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, require
from rlhf_lab.core.plug import pluggable
from rlhf_lab.core.workers import in_processes
from rlhf_lab.equations.beyond_losses import dpo_loss, group_advantages
from rlhf_lab.equations.losses import bradley_terry_loss, sft_loss
from rlhf_lab.lm import models
from rlhf_lab.stages.dpo import DPOConfig, train_dpo
from rlhf_lab.stages.grpo import GRPOConfig, train_grpo
from rlhf_lab.stages.ppo import PPOConfig, PPOLosses, train_ppo
from rlhf_lab.stages.reward_model import (
    RewardConfig,
    evaluate_reward_model,
    sample_preferences,
    train_reward_model,
    training_pairs,
)
from rlhf_lab.stages.sft import PretrainConfig, SFTConfig, evaluate_gold, pretrain, train_sft

__all__ = ["RunConfig", "Artifact", "load_or_train_base", "load_or_train_sft", "load_or_train_rm",
           "load_or_train_ppo", "load_or_train_grpo", "load_or_train_dpo", "load_metrics", "train_runs",
           "reward_model_scaling", "stage_keys", "code_key", "HELDOUT_SEED", "SCALING_HELDOUT_SEED"]

HELDOUT_SEED = 10_000   # seed of the held-out preference pairs (never a training seed)
SCALING_HELDOUT_SEED = 10_900   # the larger held-out set that compares reward models of all sizes
EVAL_SAMPLES_PER_PROMPT = 8


def code_key(*functions) -> str | None:
    """A short hash of the source code of ``functions`` (a student's losses), or None when the
    source of one of them cannot be read (then the run is not cached).

    A run with custom functions is cached under the stage key plus this hash: re-running a
    notebook with the same code loads the result (same code, same seed, same numbers), while
    editing a function trains again. Only the function's own source is hashed, not the helpers
    it calls."""
    digest = hashlib.sha1()
    for fn in functions:
        try:
            digest.update(inspect.getsource(fn).encode())
        except (OSError, TypeError):
            return None
    return digest.hexdigest()[:10]


def _custom(stage: str, key: str, functions, train, save, load, root):
    """Train with custom functions; cache under their source hash when it can be read.

    ``functions`` are :func:`~rlhf_lab.core.plug.pluggable` wrappers. When every one of them fell
    back to the reference (none is written yet, and a stub raises at its first call), the run was
    the reference run: it is also cached under the stage's own key, so that the next notebook,
    which asks for the reference run, loads it instead of training it again."""
    code = code_key(*functions)
    trained = []

    def train_and_keep():
        trained.append(train())
        return trained[-1]

    if code is None:
        model, metrics, _ = train()
        return Artifact(model, metrics, Path(), key + "-custom")
    artifact = cached(stage, f"{key}-custom-{code}", train_and_keep, save, load, root)
    if trained and all(fn.fell_back() for fn in functions):
        cached(stage, key, lambda: trained[-1], save, load, root)
    return artifact


@dataclass(frozen=True)
class RunConfig:
    """Every stage's config in one place. ``dataclasses.replace`` makes a variant."""
    base: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rm: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)

    @classmethod
    def for_preset(cls, preset: str = "tiny") -> "RunConfig":
        """The default run at another model size, with that preset's batch sizes
        (:data:`rlhf_lab.lm.models.PRESET_BATCH_SIZES`); ``for_preset("tiny")`` is ``RunConfig()``."""
        if preset not in models.PRESET_BATCH_SIZES:
            raise ValueError(f"preset must be one of {sorted(models.PRESET_BATCH_SIZES)}, "
                             f"got {preset!r}")
        b, run = models.PRESET_BATCH_SIZES[preset], cls()
        return cls(base=dataclasses.replace(run.base, preset=preset, batch_size=b["pretrain"]),
                   sft=dataclasses.replace(run.sft, batch_size=b["sft"]),
                   rm=dataclasses.replace(run.rm, batch_size=b["rm"]),
                   ppo=dataclasses.replace(run.ppo, rollouts=b["ppo_rollouts"],
                                           minibatch_size=b["ppo_minibatch"]),
                   grpo=dataclasses.replace(
                       run.grpo, prompts_per_iteration=b["ppo_rollouts"] // run.grpo.group_size,
                       minibatch_size=b["ppo_minibatch"]))

    def with_rm(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, rm=dataclasses.replace(self.rm, **changes))

    def with_ppo(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, ppo=dataclasses.replace(self.ppo, **changes))

    def with_grpo(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, grpo=dataclasses.replace(self.grpo, **changes))

    def with_dpo(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, dpo=dataclasses.replace(self.dpo, **changes))


@dataclass
class Artifact:
    """A trained model, its metrics and where it is stored."""
    model: torch.nn.Module
    metrics: dict
    path: Path
    key: str


def stage_keys(run: RunConfig) -> dict[str, str]:
    """Cache keys: each hashes its own config and the key of the stage it was trained from."""
    base = config_hash(run.base)
    sft = config_hash(run.sft, base)
    rm = config_hash(run.rm, sft)
    return {"base": base, "sft": sft, "rm": rm, "ppo": config_hash(run.ppo, rm),
            "grpo": config_hash(run.grpo, rm),
            "dpo": config_hash(run.dpo, sft, rm)}     # the RM's pairs (and its RM for evaluation)


def _saver(extra: dict | None = None):
    def save(obj, folder: Path):
        model, metrics, config = obj
        with models.no_progress_bars():
            model.save_pretrained(folder / "model")
        models.world_tokenizer().save_pretrained(folder / "model")
        write_json(folder / "metrics.json", metrics)
        write_json(folder / "config.json", config)
    return save


def _loader(model_cls, key):
    def load(folder: Path) -> Artifact:
        with models.no_progress_bars():
            model = model_cls.from_pretrained(folder / "model")
        model.eval()
        return Artifact(model, read_json(folder / "metrics.json"), folder, key)
    return load


def load_or_train_base(run: RunConfig = RunConfig(), root=None) -> Artifact:
    """Stage 0: the base model pretrained on the web corpus."""
    from transformers import GPT2LMHeadModel
    key = stage_keys(run)["base"]

    def train():
        model, metrics = pretrain(run.base)
        _, _, gold = evaluate_gold(model, models.world_tokenizer(), EVAL_SAMPLES_PER_PROMPT,
                                   seed=run.base.seed + 1)
        metrics["gold_samples"] = gold
        metrics["gold_mean"] = statistics.fmean(gold)
        return model, metrics, config_dict(run.base)

    return cached("base", key, train, _saver(), _loader(GPT2LMHeadModel, key), root)


def load_or_train_sft(run: RunConfig = RunConfig(), root=None, loss_fn=None) -> Artifact:
    """Stage 1: SFT on curated demonstrations. A custom ``loss_fn`` is cached under the hash of
    its source (:func:`code_key`)."""
    from transformers import GPT2LMHeadModel
    key = stage_keys(run)["sft"]
    base = load_or_train_base(run, root)

    def train():
        kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
        model, metrics = train_sft(run.sft, base.model, **kwargs)
        tok = models.world_tokenizer()
        prompts, texts, gold = evaluate_gold(model, tok, EVAL_SAMPLES_PER_PROMPT, seed=run.sft.seed + 1)
        metrics.update(gold_samples=gold, gold_mean=statistics.fmean(gold),
                       gold_std=statistics.pstdev(gold), base_gold_mean=base.metrics["gold_mean"],
                       samples=[[p.text, t] for p, t in zip(prompts[:12], texts[:12])])
        return model, metrics, config_dict(run.sft)

    if loss_fn is not None:
        loss_fn = pluggable(loss_fn, sft_loss, "sft_loss")
        return _custom("sft", key, [loss_fn], train, _saver(), _loader(GPT2LMHeadModel, key), root)
    return cached("sft", key, train, _saver(), _loader(GPT2LMHeadModel, key), root)


def load_or_train_rm(run: RunConfig = RunConfig(), root=None, loss_fn=None) -> Artifact:
    """Stage 2: a reward model on ``run.rm.n_pairs`` pairs sampled from the SFT policy, evaluated
    on 1000 fresh held-out pairs; its trunk is that SFT model unless ``run.rm.trunk_seed`` is set."""
    from transformers import GPT2ForSequenceClassification
    key = stage_keys(run)["rm"]
    sft = load_or_train_sft(run, root)

    def train():
        tok = models.world_tokenizer()
        kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
        trunk = sft.model if run.rm.trunk_seed is None else load_or_train_sft(
            dataclasses.replace(run, base=run.rm.trunk_pretraining(run.base)), root).model
        model, metrics = train_reward_model(run.rm, trunk, tok,
                                            data=training_pairs(run.rm, sft.model, tok), **kwargs)
        heldout = sample_preferences(sft.model, tok, run.rm.n_heldout, HELDOUT_SEED,
                                     run.rm.max_response_len)
        metrics.update(evaluate_reward_model(model, tok, heldout, run.rm.max_response_len))
        return model, metrics, config_dict(run.rm)

    if loss_fn is not None:
        loss_fn = pluggable(loss_fn, bradley_terry_loss, "bradley_terry_loss")
        return _custom("rm", key, [loss_fn], train, _saver(),
                       _loader(GPT2ForSequenceClassification, key), root)
    return cached("rm", key, train, _saver(), _loader(GPT2ForSequenceClassification, key), root)


def reward_model_scaling(run: RunConfig = RunConfig(), pair_counts=(250, 1000, 4000, 16000),
                         n_heldout: int = 5000, root=None) -> list[dict]:
    """The reward model of ``run`` trained on each of ``pair_counts`` pairs (cached artifacts),
    all measured on one shared set of ``n_heldout`` fresh pairs from the SFT policy.

    Each artifact keeps its own 1000-pair held-out accuracy, whose standard error
    sqrt(p(1 − p)/n) is 1.6 points: as large as the gain from doubling the pairs, so neighbouring
    sizes cannot be told apart on it. The shared 5000 pairs bring it to 0.7 points, and the same
    pairs for every model remove the set-to-set variation from the comparison.

    Returns one row per size: ``n_pairs``, ``seconds`` (to train, or to load when cached), the
    metrics of :func:`~rlhf_lab.stages.reward_model.evaluate_reward_model` on the shared set (``accuracy``,
    ``bayes_ceiling``, ``gold_order_accuracy``, ``gold_correlation``), ``n_heldout`` and
    ``accuracy_own`` (on the artifact's own held-out pairs).
    """
    require(len(pair_counts) > 0 and all(isinstance(n, int) and n > 0 for n in pair_counts),
            "pair_counts", f"must be a non-empty sequence of ints > 0, got {pair_counts!r}")
    integer(n_heldout, "n_heldout", 1)
    tok = models.world_tokenizer()
    sft = load_or_train_sft(run, root).model
    heldout = sample_preferences(sft, tok, n_heldout, SCALING_HELDOUT_SEED, run.rm.max_response_len)
    rows = []
    for n_pairs in pair_counts:
        start = time.perf_counter()
        rm = load_or_train_rm(run.with_rm(n_pairs=n_pairs), root)
        seconds = time.perf_counter() - start
        shared = evaluate_reward_model(rm.model, tok, heldout, run.rm.max_response_len)
        rows.append({"n_pairs": n_pairs, "seconds": seconds, "n_heldout": n_heldout,
                     **{k: v for k, v in shared.items() if k != "calibration"},
                     "accuracy_own": rm.metrics["accuracy"]})
    return rows


def load_or_train_ppo(run: RunConfig = RunConfig(), root=None, losses: PPOLosses | None = None) -> Artifact:
    """Stage 3: PPO from the SFT policy against the reward model of ``run.rm`` (or the gold
    utility when ``run.ppo.reward == "gold"``). Custom ``losses`` are cached under the hash of
    their source (:func:`code_key`)."""
    from transformers import GPT2LMHeadModel
    key = stage_keys(run)["ppo"]
    sft = load_or_train_sft(run, root)
    rm = load_or_train_rm(run, root) if run.ppo.reward == "proxy" else None

    def train():
        result = train_ppo(run.ppo, sft.model, rm.model if rm else None, models.world_tokenizer(),
                           **({"losses": losses} if losses is not None else {}))
        metrics = {"history": result.history, "samples": result.samples, "stopped": result.stopped}
        if result.evals:                             # run.ppo.eval_every > 0
            metrics["evals"] = result.evals
        if run.ppo.reward_norm is not None:
            metrics["reward_norm"] = list(result.reward_norm)
        return result.policy, metrics, config_dict(run.ppo)

    if losses is not None:
        reference = PPOLosses()
        losses = losses.pluggable()
        custom = [fn for name, fn in vars(losses).items() if fn is not getattr(reference, name)]
        return _custom("ppo", key, custom, train, _saver(), _loader(GPT2LMHeadModel, key), root)
    return cached("ppo", key, train, _saver(), _loader(GPT2LMHeadModel, key), root)


def load_or_train_grpo(run: RunConfig = RunConfig(), root=None, advantage_fn=None) -> Artifact:
    """GRPO (:mod:`rlhf_lab.stages.grpo`) from the SFT policy against the reward model of ``run.rm``
    (or the gold utility when ``run.grpo.reward == "gold"``), evaluated with
    :func:`~rlhf_lab.lm.evaluation.evaluate_policy` (metrics ``evaluation``). A custom
    ``advantage_fn`` (a student's ``group_advantages``) is cached under its source hash."""
    from transformers import GPT2LMHeadModel

    from rlhf_lab.lm.evaluation import evaluate_policy
    key = stage_keys(run)["grpo"]
    sft = load_or_train_sft(run, root)
    rm = load_or_train_rm(run, root) if run.grpo.reward == "proxy" else None

    def train():
        tok = models.world_tokenizer()
        kwargs = {"advantage_fn": advantage_fn} if advantage_fn is not None else {}
        result = train_grpo(run.grpo, sft.model, rm.model if rm else None, tok, **kwargs)
        evaluation = evaluate_policy(result.policy, sft.model, tok,
                                     reward_model=rm.model if rm else None)
        metrics = {"history": result.history, "samples": result.samples,
                   "stopped": result.stopped, "evaluation": evaluation}
        return result.policy, metrics, config_dict(run.grpo)

    if advantage_fn is not None:
        advantage_fn = pluggable(advantage_fn, group_advantages, "group_advantages")
        return _custom("grpo", key, [advantage_fn], train, _saver(), _loader(GPT2LMHeadModel, key),
                       root)
    return cached("grpo", key, train, _saver(), _loader(GPT2LMHeadModel, key), root)


def load_or_train_dpo(run: RunConfig = RunConfig(), root=None, loss_fn=None) -> Artifact:
    """DPO (:mod:`rlhf_lab.stages.dpo`) from the SFT policy on exactly the ``run.rm.n_pairs`` pairs the
    reward model of ``run.rm`` was trained on, evaluated like every other policy with
    :func:`~rlhf_lab.lm.evaluation.evaluate_policy` against the SFT reference and that reward model
    (metrics ``evaluation``: gold, proxy, kl, ...). A custom ``loss_fn`` (a student's
    ``dpo_loss``) is cached under the hash of its source (:func:`code_key`)."""
    from transformers import GPT2LMHeadModel

    from rlhf_lab.lm.evaluation import evaluate_policy
    key = stage_keys(run)["dpo"]
    sft = load_or_train_sft(run, root)
    rm = load_or_train_rm(run, root)

    def train():
        tok = models.world_tokenizer()
        data = training_pairs(run.rm, sft.model, tok)                # the pairs the RM learned from
        kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
        policy, metrics = train_dpo(run.dpo, sft.model, tok, data, **kwargs)
        metrics["evaluation"] = evaluate_policy(policy, sft.model, tok, reward_model=rm.model)
        return policy, metrics, config_dict(run.dpo)

    if loss_fn is not None:
        loss_fn = pluggable(loss_fn, dpo_loss, "dpo_loss")
        return _custom("dpo", key, [loss_fn], train, _saver(), _loader(GPT2LMHeadModel, key), root)
    return cached("dpo", key, train, _saver(), _loader(GPT2LMHeadModel, key), root)


def _stage_loaders() -> dict:
    """Each stage's ``load_or_train_*`` function, by stage name."""
    return {"base": load_or_train_base, "sft": load_or_train_sft, "rm": load_or_train_rm,
            "ppo": load_or_train_ppo, "grpo": load_or_train_grpo, "dpo": load_or_train_dpo}


def load_metrics(stage: str, run: RunConfig = RunConfig(), root=None) -> dict:
    """The metrics of ``stage``'s artifact for ``run`` (training histories, evaluations), trained
    first if it is missing. The model is not loaded: reading cached results needs no
    transformers, so a notebook that only plots them starts seconds sooner."""
    stages = _stage_loaders()
    require(stage in stages, "stage", f"must be one of {sorted(stages)}, got {stage!r}")
    key = stage_keys(run)[stage]
    if not is_cached(stage, key, root):
        stages[stage](run, root)
    return read_json(artifact_folder(stage, key, root) / "metrics.json")


def _train_one(stage: str, run: RunConfig, root, threads: int | None = None) -> float:
    """Train (or load) one PPO or GRPO run; its seconds. ``threads``: set in a worker process."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    _stage_loaders()[stage](run, root)
    return time.perf_counter() - start


def train_runs(tasks: list[tuple[str, RunConfig]], root=None, jobs: int = 1) -> list[float]:
    """Train the runs of ``tasks`` (``(stage, run)`` pairs, stage ``"ppo"`` or ``"grpo"``) that are
    not cached yet; return each task's training seconds (0 for one that was cached, or that
    repeats an earlier task's artifact: it is trained once).

    With ``jobs`` > 1 they train ``jobs`` at a time in single-threaded worker processes: the tiny
    models gain little from a second thread, a lot from a second process. A worker takes the next
    task in the order given, so list the longest first. Upstream stages (base, SFT, RM) must be
    cached before, or every worker would train them again.
    """
    require(all(stage in ("ppo", "grpo") for stage, _ in tasks), "tasks",
            f"stages must be 'ppo' or 'grpo', got {sorted({stage for stage, _ in tasks})}")
    todo, seen = [], set()
    for i, (stage, run) in enumerate(tasks):
        key = stage_keys(run)[stage]
        if (stage, key) not in seen and not is_cached(stage, key, root):
            todo.append(i)
        seen.add((stage, key))
    seconds = [0.0] * len(tasks)
    if jobs <= 1 or len(todo) <= 1:
        for i in todo:
            seconds[i] = _train_one(*tasks[i], root)
    else:
        calls = [(*tasks[i], root) for i in todo]
        for i, s in zip(todo, in_processes(_train_one, calls, jobs, "PPO/GRPO runs")):
            seconds[i] = s
    return seconds
