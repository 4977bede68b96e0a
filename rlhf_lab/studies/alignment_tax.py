"""The alignment tax: what RLHF costs in abilities the reward does not look at, and PPO-ptx.

InstructGPT (Ouyang et al. 2022, section 4.2 and eq. 2) found that PPO made its models worse on
public NLP benchmarks, and called the loss an *alignment tax*. Their fix, PPO-ptx, adds a
pretraining term to the RLHF objective::

    objective(π) = E_{x, y~π}[ r_φ(x, y) − β log π(y|x) / π_SFT(y|x) ] + γ E_{x~D_pretrain}[ log π(x) ]

(``PPOConfig.ptx_coef`` = γ; :func:`rlhf_lab.equations.beyond_losses.ppo_ptx_loss`). The world has no
benchmarks, but it has the text the base model learned to predict. :func:`capability` measures,
for any model:

1. ``pretrain_nll``: the next-token NLL of held-out web text (fresh seed, never trained on; every
   real token counts, as in pretraining) — the tax is its increase over the SFT model's (and, for
   the whole post-training, over the base model's); also split by task (``_review``,
   ``_advise``, ``_describe``) and by quality (``_clean``: replies with no grammar, filler or
   repetition penalty; ``_noisy``: the corrupted rest), to show what is forgotten unevenly;
2. ``sft_nll``: the response-token NLL of held-out curated demonstrations, per task too;
3. ``grammatical``: the fraction of sampled replies without an impossible word pair, and
   ``ended``: the fraction that produced ``<eos>``.

:func:`alignment_tax_study` trains (or loads) PPO at a few β, with and without PPO-ptx, and puts
reward, KL and tax in one table (cached as ``alignment_tax-<key>``).
"""
from __future__ import annotations

import functools
import os
import statistics
from dataclasses import dataclass

import torch

from rlhf_lab import datasets, world
from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, positive, require
from rlhf_lab.equations.beyond_losses import pretraining_nll
from rlhf_lab.lm import models
from rlhf_lab.lm.evaluation import evaluate_policy
from rlhf_lab.lm.generation import sample_texts
from rlhf_lab.lm.sequences import Batch, encode_pairs
from rlhf_lab.pipeline.runs import (
    RunConfig,
    load_or_train_base,
    load_or_train_ppo,
    load_or_train_rm,
    load_or_train_sft,
    stage_keys,
    train_runs,
)
from rlhf_lab.stages.sft import heldout_loss

__all__ = ["capability", "TaxStudyConfig", "alignment_tax_study", "tax_runs", "tax_row", "HELDOUT_TEXT_SEED",
           "TAX_BETAS", "TAX_PTX_COEFS"]

HELDOUT_TEXT_SEED = 60_000
"""Seed of the held-out web text and demonstrations (not a training seed of any stage)."""
TAX_BETAS = (0.3, 0.03)
TAX_PTX_COEFS = (0.03,)
"""γ of the study's PPO-ptx run. The world's web text has the same form as the task (prompt, then
reply), so ptx pulls replies toward web quality itself: γ ≈ 0.01-0.03 removes the tax, γ ≥ 0.1
costs gold (and γ = 1 brings the policy most of the way back to the base model)."""


# ---------------------------------------------------------------------------------------------
# 1. Capability measures
# ---------------------------------------------------------------------------------------------

def _encode(tokenizer, rows, max_len: int) -> Batch:
    return encode_pairs(tokenizer, [p for p, _ in rows], [r for _, r in rows], max_len)


def _is_clean(prompt, reply: str) -> bool:
    """A web reply without a grammar, filler or repetition penalty (most corrupted replies have one)."""
    parts = world.gold_breakdown(prompt, reply)
    return parts["grammar"] == 0 and parts["filler"] == 0 and parts["repetition"] == 0


@torch.no_grad()
def _text_nll(model, data: Batch, groups: dict[str, torch.Tensor], batch_size: int = 256
              ) -> dict[str, float]:
    """Next-token NLL of every real token (:func:`pretraining_nll`), token-weighted over each
    group of rows (``groups``: name -> (N,) bool)."""
    device = next(model.parameters()).device
    sums = {name: 0.0 for name in groups}
    tokens = {name: 0 for name in groups}
    for start in range(0, len(data.input_ids), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data.input_ids)))
        batch = data.rows(idx).to(device)
        logits = models.forward_logits(model, batch.input_ids, batch.attention_mask)
        for name, member in groups.items():
            keep = member[idx].to(device)
            if not bool(keep.any()):
                continue
            mask = batch.attention_mask[keep]
            real = mask.bool()
            n = int((real[:, 1:] & real[:, :-1]).sum())             # the tokens pretraining_nll counts
            sums[name] += pretraining_nll(logits[keep], batch.input_ids[keep], mask).item() * n
            tokens[name] += n
    return {name: sums[name] / tokens[name] if tokens[name] else float("nan") for name in groups}


@functools.lru_cache(maxsize=4)
def _heldout_text(n: int, seed: int) -> tuple[list, list[bool], list]:
    """``n`` held-out web replies, whether each is clean, and ``n // 2`` held-out demonstrations
    (kept in memory: a study measures several models on the same text)."""
    web = datasets.pretraining_corpus(n, seed)
    return web, [_is_clean(p, r) for p, r in web], datasets.sft_demonstrations(n // 2, seed)


def _by_task(prompts) -> dict[str, torch.Tensor]:
    return {task: torch.tensor([p.task == task for p in prompts]) for task in world.TASKS}


def capability(model, tokenizer=None, n: int = 512, seed: int = HELDOUT_TEXT_SEED,
               samples_per_prompt: int = 4, max_len: int = 24) -> dict[str, float]:
    """What a model can still do, measured on text no stage trained on (module docstring).

    Returns python floats: ``pretrain_nll`` (nats per token of ``n`` held-out web replies) and
    ``pretrain_nll_<task>``, ``pretrain_nll_clean``, ``pretrain_nll_noisy``; ``sft_nll`` (nats per
    response token of ``n // 2`` held-out demonstrations) and ``sft_nll_<task>``;
    ``grammatical`` and ``ended`` over ``samples_per_prompt`` sampled replies per prompt.
    A model with uniform logits scores ``log V`` on every NLL. Same seed, same numbers.
    """
    integer(n, "n", 2)
    integer(samples_per_prompt, "samples_per_prompt", 1)
    tokenizer = tokenizer or models.world_tokenizer()
    model.eval()
    # 1. held-out web text: every real token, as in pretraining
    web, clean, demos = _heldout_text(n, seed)
    prompts = [p for p, _ in web]
    clean = torch.tensor(clean)
    groups = {"": torch.ones(n, dtype=torch.bool), **{f"_{t}": m for t, m in _by_task(prompts).items()},
              "_clean": clean, "_noisy": ~clean}
    out = {f"pretrain_nll{name}": v
           for name, v in _text_nll(model, _encode(tokenizer, web, max_len), groups).items()}
    # 2. held-out demonstrations: response tokens only, as in SFT
    demo_data = _encode(tokenizer, demos, max_len)
    out["sft_nll"] = heldout_loss(model, demo_data)
    for task, member in _by_task([p for p, _ in demos]).items():
        rows = member.nonzero().squeeze(-1)
        out[f"sft_nll_{task}"] = heldout_loss(model, demo_data.rows(rows)) if len(rows) else float("nan")
    # 3. behaviour: sampled replies
    sample_prompts = world.all_prompts() * samples_per_prompt
    texts = sample_texts(model, tokenizer, sample_prompts, max_len, seed)
    parts = [world.gold_breakdown(p, t) for p, t in zip(sample_prompts, texts)]
    out["grammatical"] = statistics.fmean(float(b["grammar"] == 0) for b in parts)
    out["ended"] = statistics.fmean(float(b["eos"] == 0) for b in parts)
    return out


# ---------------------------------------------------------------------------------------------
# 2. The study: PPO at a few β, with and without PPO-ptx
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaxStudyConfig:
    """The alignment-tax study: which PPO runs, and how they are measured."""
    betas: tuple = TAX_BETAS
    """β of the plain PPO runs (γ = 0)."""
    ptx_coefs: tuple = TAX_PTX_COEFS
    """γ > 0 of the PPO-ptx runs, each trained at the smallest β (where the tax is largest)."""
    iterations: int | None = 30
    """PPO iterations of every run (None keeps ``run.ppo.iterations``). The study's runs are
    smaller than the pipeline's default PPO run so that a notebook trains them in about a minute."""
    rollouts: int | None = 128
    """Responses per iteration (None keeps ``run.ppo.rollouts``)."""
    minibatch_size: int | None = 32
    """Responses per gradient step (None keeps ``run.ppo.minibatch_size``)."""
    critic: str | None = "head"
    """"head" (a value head on the policy: faster) or "separate"; None keeps ``run.ppo.critic``."""
    n_text: int = 512
    """Held-out web replies for the NLLs (half as many demonstrations)."""
    n_per_prompt: int = 8
    """Replies per prompt for gold, proxy and KL (:func:`rlhf_lab.lm.evaluation.evaluate_policy`)."""
    seed: int = HELDOUT_TEXT_SEED
    """Seed of the held-out text and of the evaluation samples."""

    def __post_init__(self):
        require(len(self.betas) > 0 and all(b > 0 for b in self.betas), "betas",
                f"must be a non-empty tuple of numbers > 0, got {self.betas!r}")
        require(all(c > 0 for c in self.ptx_coefs), "ptx_coefs",
                f"must be numbers > 0 (γ = 0 runs at every β anyway), got {self.ptx_coefs!r}")
        for name in ("iterations", "rollouts", "minibatch_size"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value > 0), name,
                    f"must be an int > 0 or None, got {value!r}")
        require(self.critic in (None, "head", "separate"), "critic",
                f"must be 'head', 'separate' or None, got {self.critic!r}")
        positive(self, "n_text", "n_per_prompt")


def tax_runs(run: RunConfig, cfg: TaxStudyConfig) -> list[RunConfig]:
    """The PPO runs of the study: every β with γ = 0, then every γ at the smallest β."""
    changes = {name: getattr(cfg, name) for name in ("iterations", "rollouts", "minibatch_size", "critic")
               if getattr(cfg, name) is not None}
    run = run.with_ppo(**changes)
    plain = [run.with_ppo(beta=b, ptx_coef=0.0) for b in cfg.betas]
    ptx = [run.with_ppo(beta=min(cfg.betas), ptx_coef=c) for c in cfg.ptx_coefs]
    return plain + ptx


def alignment_tax_study(run: RunConfig = RunConfig(), betas=TAX_BETAS, ptx_coefs=TAX_PTX_COEFS,
                        root=None, jobs: int | None = None, **options) -> dict:
    """Train (or load) the study's PPO runs and measure each one's reward, KL and tax.

    Returns ``{"config", "rows"}``; ``rows`` holds the base model, the SFT model, then one row per
    PPO run, each with ``model``, ``beta``, ``ptx_coef``, ``gold``, ``proxy``, ``kl`` (sequence KL
    to the SFT model, on the model's own samples), every key of :func:`capability`, ``tax``
    (``pretrain_nll`` minus the SFT model's), ``tax_vs_base`` (minus the base model's),
    ``sft_nll_change`` and ``seconds`` (training time, 0-ish when cached). ``jobs``: runs
    trained at once in single-threaded processes (default 2 on 2+ cores). ``options``: other
    fields of :class:`TaxStudyConfig`.
    """
    cfg = TaxStudyConfig(betas=tuple(float(b) for b in betas),
                         ptx_coefs=tuple(float(c) for c in ptx_coefs), **options)
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    integer(jobs, "jobs", 1)
    runs = tax_runs(run, cfg)
    load_or_train_rm(run, root)                    # upstream stages once, before any worker
    order = sorted(range(len(runs)), key=lambda i: -runs[i].ppo.ptx_coef)   # slowest (ptx) first
    trained = train_runs([("ppo", runs[i]) for i in order], root, jobs)
    seconds = [trained[order.index(i)] for i in range(len(runs))]
    key = config_hash(cfg, stage_keys(run)["rm"], *(stage_keys(r)["ppo"] for r in runs))
    result = cached("alignment_tax", key, lambda: _measure(run, cfg, runs, root),
                    lambda out, folder: write_json(folder / "results.json", out),
                    lambda folder: read_json(folder / "results.json"), root)
    for row, s in zip(result["rows"][2:], seconds):
        row["seconds"] = s
    return result


def tax_row(name: str, model, study: dict, run: RunConfig = RunConfig(), root=None,
            **extra) -> dict:
    """One more row for a study's table, for any policy (a student's PPO-ptx run, DPO, GRPO ...):
    gold, proxy, KL and the capability measures, measured like the study's own rows, with
    ``tax``, ``tax_vs_base`` and ``sft_nll_change`` against the study's base and SFT rows."""
    cfg = TaxStudyConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in study["config"].items() if k != "stage"})
    sft = load_or_train_sft(run, root).model
    rm = load_or_train_rm(run, root).model
    row = _row(name, model, sft, rm, cfg, run.ppo.max_new_tokens, **extra)
    base_row, sft_row = study["rows"][0], study["rows"][1]
    row.update(tax=row["pretrain_nll"] - sft_row["pretrain_nll"],
               tax_vs_base=row["pretrain_nll"] - base_row["pretrain_nll"],
               sft_nll_change=row["sft_nll"] - sft_row["sft_nll"], seconds=0.0)
    return row


def _row(name: str, model, sft_model, rm_model, cfg: TaxStudyConfig, max_len: int, **extra) -> dict:
    tok = models.world_tokenizer()
    ev = evaluate_policy(model, sft_model, tok, rm_model, cfg.n_per_prompt, cfg.seed, max_len)
    return {"model": name, **extra, "gold": ev["gold"], "proxy": ev["proxy"], "kl": ev["kl"],
            "length": ev["length"], **capability(model, tok, cfg.n_text, cfg.seed, max_len=max_len)}


def _measure(run: RunConfig, cfg: TaxStudyConfig, runs: list[RunConfig], root) -> dict:
    base = load_or_train_base(run, root).model
    sft = load_or_train_sft(run, root).model
    rm = load_or_train_rm(run, root).model
    L = run.ppo.max_new_tokens
    rows = [_row("base", base, sft, rm, cfg, L, beta=None, ptx_coef=None),
            _row("sft", sft, sft, rm, cfg, L, beta=None, ptx_coef=None)]
    for r in runs:
        policy = load_or_train_ppo(r, root).model
        rows.append(_row("ppo", policy, sft, rm, cfg, L, beta=r.ppo.beta, ptx_coef=r.ppo.ptx_coef))
    base_row, sft_row = rows[0], rows[1]
    for row in rows:
        row["tax"] = row["pretrain_nll"] - sft_row["pretrain_nll"]
        row["tax_vs_base"] = row["pretrain_nll"] - base_row["pretrain_nll"]
        row["sft_nll_change"] = row["sft_nll"] - sft_row["sft_nll"]
        row["seconds"] = 0.0
    return {"config": config_dict(cfg), "ppo": config_dict(runs[0].ppo), "rows": rows}
