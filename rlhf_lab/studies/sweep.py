"""The β sweep: PPO at several β against the closed-form optimum of the same objective.

For each β, PPO maximises J_β(π) = E_π[r_φ] − β KL(π‖π_ref) over the policy. The Boltzmann
closed form (:mod:`rlhf_lab.equations.closed_form`) says the best value is β log Z, Z = E_{π_ref}[exp(r_φ/β)];
with N samples of π_ref per prompt it is estimated by self-normalised importance sampling,
trustworthy while the effective sample size stays large (large β). :func:`beta_sweep`:

1. trains (or loads) PPO at each β of the grid (:func:`sweep_run`) — every run a cached pipeline
   artifact, the same ones ``python -m rlhf_lab pipeline`` uses — optionally two at a time in
   separate processes;
2. samples N replies per prompt from the SFT policy, scores them with the same reward model and
   with the gold utility, and estimates the frontier E_{π*}[r_φ], E_{π*}[r*], KL and β log Z
   over a dense β grid;
3. compares each PPO run's final objective (averaged over its last iterations) with the
   estimated optimum, as a ratio J_PPO / β log Ẑ and as the share of the achievable improvement
   over the SFT policy, (J_PPO − J_ref) / (β log Ẑ − J_ref), which unlike the ratio does not
   depend on the reward model's arbitrary offset (notebook 02: Bradley–Terry cannot see it).

Large β needs careful training. The optimal policy's log-ratio log π*/π_ref = r_φ/β − log Z
shrinks like 1/β, and so does the whole achievable gain over the SFT policy (a few hundredths
at β = 1). PPO's steps do not shrink with it: the advantages are whitened and Adam normalises
the gradient, so each update has about the same size whatever β, and the part of it that is
batch noise costs KL, which at β = 1 costs a full unit of objective per nat. With the default
settings PPO at β = 1 ends *below* the SFT policy's objective. Above ``careful_above`` the sweep
therefore scales the step size by careful_above/β, trains ``careful_length`` times as many
iterations to make up for the shorter steps, and uses the separate critic (initialised from
the reward model, so its values are right from the first iteration, and not sharing the
policy's trunk, whose value-loss gradients are more noise in the policy). The pipeline summary
prints J / β log Ẑ and the share of the gain at each β, so the effect can be read there.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, positive, require
from rlhf_lab.equations import closed_form
from rlhf_lab.lm import models
from rlhf_lab.pipeline.pool import load_or_sample_pool, score_pool
from rlhf_lab.pipeline.runs import (
    RunConfig,
    load_metrics,
    load_or_train_ppo,
    load_or_train_rm,
    stage_keys,
    train_runs,
)

__all__ = ["SweepConfig", "SWEEP_BETAS", "beta_sweep", "sweep_run", "compare_with_optimum"]

SWEEP_BETAS = (1.0, 0.3, 0.1, 0.03, 0.01)


@dataclass(frozen=True)
class SweepConfig:
    """The β sweep."""
    betas: tuple = SWEEP_BETAS
    """β of the PPO runs (each one a cached pipeline artifact)."""
    n_samples: int = 1024
    """N, replies of π_ref per prompt for the importance-sampled closed form."""
    tail: int = 10
    """A run's final proxy, gold and KL: the mean over its last ``tail`` iterations."""
    min_ess: float = 100.0
    """The closed-form estimate at a β is trusted when every prompt's ESS reaches this."""
    frontier_points: int = 60
    """β values of the dense frontier curve, log-spaced from 10 down to 0.003."""
    pool_seed: int = 20_000
    """Seed of the π_ref samples (not a training seed). The same as the best-of-n study's
    (``overopt.BestOfNConfig.pool_seed``): with ``n_samples`` = its ``n_max``, one cached pool
    serves both."""
    careful_above: float | None = 0.2
    """β above which a run is trained carefully (:func:`sweep_run`); None: every run with the
    pipeline's default PPO settings."""
    careful_length: float = 1.5
    """A careful run's iterations, as a multiple of ``run.ppo.iterations`` (rounded; >= 1)."""
    careful_critic: str = "separate"
    """A careful run's critic (``PPOConfig.critic``)."""

    def __post_init__(self):
        positive(self, "n_samples", "tail", "min_ess", "frontier_points")
        require(len(self.betas) > 0 and all(b > 0 for b in self.betas), "betas",
                f"must be a non-empty tuple of numbers > 0, got {self.betas!r}")
        require(self.careful_above is None or self.careful_above > 0, "careful_above",
                f"must be > 0 or None, got {self.careful_above!r}")
        require(self.careful_length >= 1, "careful_length",
                f"must be >= 1 (a careful run is never shorter), got {self.careful_length!r}")
        require(self.careful_critic in ("separate", "head"), "careful_critic",
                f"must be 'separate' or 'head', got {self.careful_critic!r}")


def sweep_run(run: RunConfig, beta: float, cfg: SweepConfig = SweepConfig()) -> RunConfig:
    """The sweep's PPO run at ``beta``: ``run.with_ppo(beta=beta)`` (the pipeline's own run) up
    to ``cfg.careful_above``; above it, with step size lr·careful_above/β, ``careful_length``
    times the iterations and ``careful_critic`` (see the module docstring for why).

    Example: with the defaults (lr 5e-5, 60 iterations, above 0.2), β = 1 trains at lr 1e-5 for
    90 iterations with the separate critic, β = 0.3 at lr 3.33e-5, and β = 0.1 is the plain run.
    """
    if cfg.careful_above is None or beta <= cfg.careful_above:
        return run.with_ppo(beta=beta)
    return run.with_ppo(beta=beta, lr=run.ppo.lr * cfg.careful_above / beta,
                        iterations=max(1, round(run.ppo.iterations * cfg.careful_length)),
                        critic=cfg.careful_critic)


def _final(history: list[dict], tail: int) -> dict:
    rows = history[-tail:]
    return {key: float(np.mean([h[key] for h in rows])) for key in ("proxy", "gold", "kl")}


def compare_with_optimum(proxy: float, kl: float, beta: float, optimum: float,
                         reference: float) -> dict:
    """A policy's objective J = proxy − β·KL against the optimum β log Z and the reference
    policy's J_ref = E_{π_ref}[r] (its KL is 0)."""
    objective = proxy - beta * kl
    room = optimum - reference
    return {"objective": objective, "ratio": objective / optimum if optimum else math.nan,
            "gain_fraction": (objective - reference) / room if room > 0 else math.nan}


def beta_sweep(run: RunConfig = RunConfig(), betas=SWEEP_BETAS, jobs: int | None = None,
               root=None, **options) -> dict:
    """PPO at each β against the estimated closed-form optimum; a dict of plain lists/floats
    with ``rows`` (one per β), ``frontier`` (the dense estimated curve) and ``reference``.

    ``jobs``: PPO runs trained at once, in separate single-threaded processes (default: 2 when
    the machine has 2 or more cores). ``options``: other fields of :class:`SweepConfig`. The
    PPO runs are pipeline artifacts; the analysis is cached as ``sweep-<key>``.
    """
    cfg = SweepConfig(betas=tuple(float(b) for b in betas), **options)
    runs = [sweep_run(run, b, cfg) for b in cfg.betas]
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    integer(jobs, "jobs", 1)
    load_metrics("rm", run, root)                   # upstream stages once, before any worker
    seconds = train_runs([("ppo", r) for r in runs], root, jobs)
    key = config_hash(cfg, stage_keys(run)["rm"], *(stage_keys(r)["ppo"] for r in runs))
    result = cached("sweep", key, lambda: _analyse(run, cfg, runs, root),
                    lambda out, folder: write_json(folder / "results.json", out),
                    lambda folder: read_json(folder / "results.json"), root)
    for row, s in zip(result["rows"], seconds):
        row["seconds"] = s                           # 0-ish when the runs were cached
    return result


def _analyse(run: RunConfig, cfg: SweepConfig, runs: list[RunConfig], root) -> dict:
    tok = models.world_tokenizer()
    rm = load_or_train_rm(run, root)
    pool = load_or_sample_pool(run, cfg.n_samples, cfg.pool_seed, run.ppo.max_new_tokens, root)
    proxy = torch.as_tensor(score_pool(rm.model, tok, pool))              # (P, N)
    gold = torch.as_tensor(pool.gold, dtype=torch.float64)                 # (P, N)
    reference = {"proxy": float(proxy.mean()), "gold": float(gold.mean())}

    dense = np.geomspace(10.0, 0.003, cfg.frontier_points).tolist()
    with warnings.catch_warnings():             # the trust flags below say it, point by point
        warnings.simplefilter("ignore", closed_form.LowESSWarning)
        front = closed_form.estimated_frontier(proxy, dense, cfg.min_ess, gold=gold)
    frontier = {"beta": dense, **{k: front[k].mean(-1).tolist() for k in
                                  ("expected_reward", "expected_gold", "kl", "objective")},
                "min_ess": front["ess"].min(-1).values.tolist(),
                "trustworthy": front["trustworthy"].all(-1).tolist()}

    rows = []
    for r in runs:
        beta = r.ppo.beta
        history = load_or_train_ppo(r, root).metrics["history"]
        final = _final(history, cfg.tail)
        est = closed_form.boltzmann_estimate(proxy, beta, cfg.min_ess, warn=False)
        optimum = float(est.objective.mean())
        rows.append({"beta": beta, **final,
                     "lr": r.ppo.lr, "iterations": r.ppo.iterations, "critic": r.ppo.critic,
                     "optimum": optimum, "optimal_kl": float(est.kl.mean()),
                     "optimal_proxy": float(est.expected_reward.mean()),
                     "optimal_gold": float((est.weights * gold).sum(-1).mean()),
                     "min_ess": float(est.ess.min()),
                     "trustworthy": bool(est.trustworthy.all()),
                     **compare_with_optimum(final["proxy"], final["kl"], beta, optimum,
                                            reference["proxy"]),
                     "history": [{k: h[k] for k in ("iteration", "proxy", "gold", "kl")}
                                 for h in history]})
    return {"config": config_dict(cfg), "rows": rows, "frontier": frontier,
            "reference": reference, "n_samples": cfg.n_samples, "prompts": len(pool.prompts)}
