"""Best-of-n against proxy reward models: Gao et al.'s overoptimisation curves, and mitigations.

Best-of-n (BoN) draws n replies from the SFT policy π_ref and keeps the one the proxy reward model
r_φ scores highest. Gao, Schulman & Hilton (2023, "Scaling Laws for Reward Model Overoptimization")
plot the *gold* gain of that choice against d = sqrt(KL_bon), KL_bon = log n − (n−1)/n, and fit
R_bon(d) = d(α − βd): the gold rises, peaks and falls while the proxy keeps rising. Here the
world's gold utility r*(x, y) plays Gao's gold reward model. :func:`overoptimisation_study`:

1. sample a pool of m replies to each of the 48 prompts from π_ref, with their gold utility;
2. score the pool with every reward model (each distinct reply once);
3. per proxy size, the BoN curve for n = 1..m by the unbiased order-statistics estimator, the fit
   d(α − βd) and the observed peak; the oracle is BoN on gold itself; and each size's curve
   averaged over several proxy seeds (one seed's peak n is noisy where its curve is flat);
4. an ensemble (Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization"): BoN
   against the mean, the min and mean − k·std of the members;
5. choosing n without gold: judge each proxy's choice by a held-out reward model trained on other
   labels (or by the other ensemble members, penalised by their disagreement).

The reward models are trained, and score the pool (step 2), in single-threaded worker
processes (``jobs``), the largest part of the study's time.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from rlhf_lab.core.artifacts import cached, is_cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, non_negative, positive, require
from rlhf_lab.core.workers import in_processes
from rlhf_lab.equations.bon_curves import (
    best_of_n_curve,
    choose_n,
    choose_n_by_labels,
    gao_summary,
    mean_curve,
    n_grid,
)
from rlhf_lab.equations.overopt_math import aggregate_ensemble, best_of_n_expected
from rlhf_lab.lm import models
from rlhf_lab.pipeline.pool import encode_pool, load_or_sample_pool, score_pool
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_rm, stage_keys

__all__ = ['BestOfNConfig', 'overoptimisation_study', 'analyse']


AGGREGATES = ("mean", "min", "mean_minus_std")


@dataclass(frozen=True)
class BestOfNConfig:
    """The best-of-n overoptimisation study."""
    pairs_grid: tuple = (500, 4000, 16000)
    """Training pairs of the proxy reward models, one Gao curve each (typical 250-32000)."""
    proxy_seeds: int = 3
    """Proxies per size, with seeds ``run.rm.seed``, ``run.rm.seed + 1``, ...: one seed's peak n
    is noisy where its curve is flat, so ``seed_average`` averages each size's curves over them.
    The first seed's proxy is the one of ``proxies``, the ensemble comparison and the detectors."""
    n_max: int = 1024
    """m, replies sampled per prompt; the curves run n = 1..m (KL_bon(1024) = 5.9 nats)."""
    points_per_octave: int = 2
    """Values of n per doubling on the curve (2: n = 1, 2, 3, 4, 6, 8, 11, 16, ...)."""
    ensemble_pairs: int = 500
    """Training pairs of each ensemble member (the smallest proxy overoptimises most)."""
    ensemble_seeds: tuple = (0, 1, 2, 3)
    """One member per seed; a seed draws its own pairs, labels, head and batch order."""
    ensemble_k: float = 1.0
    """k in the conservative aggregate mean − k·std (typical 0.5-2)."""
    heldout_pairs: int = 2000
    """Training pairs of the held-out reward model that picks n without gold."""
    heldout_seed: int = 100
    """Seed of the held-out reward model: other labels than every proxy's."""
    pool_seed: int = 20_000
    """Seed of the pool of replies (never a reward model's seed). The β sweep's closed form reads
    the same pool (``sweep.SweepConfig.pool_seed``), cached once."""
    max_new_tokens: int = 24
    """Longest sampled reply, in tokens."""
    eval_labels_per_n: int = 300
    """Fresh human labels per n (on the octave grid n = 1, 2, 4, ...) for the gold-free peak
    detector that compares best-of-n with a plain sample (typical 50-500)."""
    eval_seed: int = 40_000
    """Seed of that small human evaluation (its draws and its labels)."""

    def __post_init__(self):
        grid = self.pairs_grid
        require(isinstance(grid, tuple) and len(grid) > 0 and all(isinstance(p, int) and p > 0
                                                                  for p in grid)
                and list(grid) == sorted(set(grid)), "pairs_grid",
                f"must be a non-empty, strictly increasing tuple of ints > 0, got {grid!r}")
        integer(self.n_max, "n_max", 2)
        positive(self, "points_per_octave", "ensemble_pairs", "heldout_pairs", "max_new_tokens",
                 "eval_labels_per_n", "proxy_seeds")
        require(isinstance(self.proxy_seeds, int), "proxy_seeds",
                f"must be an int >= 1, got {self.proxy_seeds!r}")
        require(isinstance(self.ensemble_seeds, tuple) and len(self.ensemble_seeds) >= 2
                and len(set(self.ensemble_seeds)) == len(self.ensemble_seeds), "ensemble_seeds",
                f"must be a tuple of >= 2 distinct seeds, got {self.ensemble_seeds!r}")
        non_negative(self, "ensemble_k")
        require(self.heldout_seed not in self.ensemble_seeds, "heldout_seed",
                f"must differ from every ensemble seed {self.ensemble_seeds}, got {self.heldout_seed}")


_WORKER_POOL: dict = {}


"""In a worker process: the pool it scores and its encoding, loaded once for all its tasks."""


def _train_and_score(run: RunConfig, pool_args: tuple, root, threads: int) -> tuple:
    """In a worker: train (or load) the reward model of ``run``, then score the pool
    ``load_or_sample_pool(run, *pool_args)`` (cached before the workers start) with it.
    Returns ``(scores (P, m), training seconds, scoring seconds)``."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    rm = load_or_train_rm(run, root)
    trained = time.perf_counter() - start
    key = (stage_keys(run)["sft"], *pool_args, str(root))
    if key not in _WORKER_POOL:
        _WORKER_POOL.clear()
        pool = load_or_sample_pool(run, *pool_args, root)
        _WORKER_POOL[key] = pool, encode_pool(models.world_tokenizer(), pool)
    pool, encoded = _WORKER_POOL[key]
    scores = score_pool(rm.model, models.world_tokenizer(), pool, encoded=encoded)
    return scores, trained, time.perf_counter() - start - trained


def _reward_model_runs(run: RunConfig, cfg: BestOfNConfig) -> dict[str, RunConfig]:
    """Every reward model of the study: ``proxy-<pairs>`` (the Gao grid, seed ``run.rm.seed``),
    ``proxy-<pairs>-<k>`` (seed ``run.rm.seed + k``, k = 1 .. proxy_seeds − 1),
    ``ensemble-<seed>`` and ``heldout``. Equal configs share one cached artifact."""
    seeds = range(run.rm.seed, run.rm.seed + cfg.proxy_seeds)
    require(cfg.heldout_seed not in seeds, "heldout_seed",
            f"must differ from the proxies' seeds {list(seeds)} (run.rm.seed + 0 .. proxy_seeds - 1)")
    runs = {f"proxy-{p}": run.with_rm(n_pairs=p) for p in cfg.pairs_grid}
    runs.update({f"proxy-{p}-{k}": run.with_rm(n_pairs=p, seed=run.rm.seed + k)
                 for p in cfg.pairs_grid for k in range(1, cfg.proxy_seeds)})
    runs.update({f"ensemble-{s}": run.with_rm(n_pairs=cfg.ensemble_pairs, seed=s)
                 for s in cfg.ensemble_seeds})
    runs["heldout"] = run.with_rm(n_pairs=cfg.heldout_pairs, seed=cfg.heldout_seed)
    return runs


def overoptimisation_study(run: RunConfig = RunConfig(), pairs_grid=(500, 4000, 16000),
                           n_max: int = 1024, ensemble_seeds=(0, 1, 2, 3), root=None,
                           jobs: int | None = None, **options) -> dict:
    """Best-of-n against proxy reward models of several sizes, an RM ensemble and a gold-free
    peak detector; a plain dict of lists and floats (see the module docstring for the steps).

    ``options`` are the other fields of :class:`BestOfNConfig`. Missing upstream artifacts (SFT,
    reward models) are trained first; the results are cached as the artifact ``bon-<key>``,
    ``key`` hashing the config and the keys of the SFT policy and every reward model, so a
    rerun is instant (its ``timings`` are those of the run that computed it). ``jobs``: reward
    models trained and scoring the pool at once, each in a single-threaded worker process, the
    largest first (default: 2 when the machine has 2 or more cores; 1: all here, one after
    another, with this process's threads). Single-threaded sums round differently, so the
    numbers depend on ``jobs`` as well as on the seeds.
    """
    cfg = BestOfNConfig(pairs_grid=tuple(pairs_grid), n_max=n_max,
                        ensemble_seeds=tuple(ensemble_seeds), **options)
    runs = _reward_model_runs(run, cfg)
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    integer(jobs, "jobs", 1)
    key = config_hash(cfg, stage_keys(run)["sft"], *(stage_keys(r)["rm"] for r in runs.values()))
    if jobs > 1 and not is_cached("bon", key, root):
        timings, scores = _train_and_score_in_workers(run, cfg, runs, root, jobs)
    else:
        timings, scores = {}, None
    return cached("bon", key, lambda: _study(run, cfg, runs, root, timings, scores),
                  lambda results, folder: write_json(folder / "results.json", results),
                  lambda folder: read_json(folder / "results.json"), root)


def _train_and_score_in_workers(run: RunConfig, cfg: BestOfNConfig, runs: dict, root,
                                jobs: int) -> tuple[dict, dict]:
    """Every distinct reward model of ``runs`` trained (or loaded) and scoring the pool in
    ``jobs`` single-threaded workers, the largest first; ``(timings, scores by label)``. On a small model a
    second thread hardly pays and a second process nearly doubles the throughput
    (benchmarks/bench_overopt.py prints both)."""
    wall = time.perf_counter()
    pool_args = (cfg.n_max, cfg.pool_seed, cfg.max_new_tokens)
    load_or_sample_pool(run, *pool_args, root)      # upstream (base, SFT) and the pool, once
    distinct = {}                                   # rm key -> (labels, run)
    for label, r in runs.items():
        distinct.setdefault(stage_keys(r)["rm"], ([], r))[0].append(label)
    tasks = sorted(distinct.values(), key=lambda item: -item[1].rm.n_pairs)
    results = in_processes(_train_and_score, [(r, pool_args, root) for _, r in tasks], jobs,
                           "reward models")
    timings, scores = {}, {}
    for (labels, _), (score, trained, scoring) in zip(tasks, results):
        timings[f"reward model {labels[0]} (worker)"] = {"wall_s": trained + scoring,
                                                         "train_s": trained, "score_s": scoring}
        scores.update({label: score for label in labels})
    timings[f"reward models and scores, {jobs} at a time"] = {"wall_s": time.perf_counter() - wall}
    return timings, scores


def _timed(timings: dict, name: str, fn, *args):
    """Call ``fn(*args)``; record its wall-clock and CPU seconds (all threads) under ``name``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    timings[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    return out


def _study(run: RunConfig, cfg: BestOfNConfig, runs: dict, root, timings: dict,
           scores: dict | None) -> dict:
    """The study; ``timings`` and ``scores`` (by label, or None) are those computed in workers
    before it (:func:`_train_and_score_in_workers`)."""
    timings = dict(timings)
    wall, cpu = time.perf_counter(), time.process_time()
    tok = models.world_tokenizer()
    # 0. the reward models (loaded, or trained once and cached; the pool below loads the SFT policy)
    rms = {label: _timed(timings, f"reward model {label}", load_or_train_rm, r, root)
           for label, r in runs.items()}
    # 1. the pool: m replies per prompt from π_ref, with gold
    pool = _timed(timings, "pool", load_or_sample_pool, run, cfg.n_max, cfg.pool_seed,
                  cfg.max_new_tokens, root)
    timings.update({f"pool: {part}": {"wall_s": s} for part, s in pool.seconds.items()})
    # 2. every reward model scores the pool (unless the workers did)
    if scores is None:
        scores = dict(zip(rms, _timed(timings, "reward model scores", score_pool,
                                      [a.model for a in rms.values()], tok, pool)))
    # 3.-5. curves, fits, the ensemble, choosing n without gold
    results = _timed(timings, "curves and fits", analyse, scores, pool.gold, cfg)
    timings["total"] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    keep = ("accuracy", "bayes_ceiling", "gold_order_accuracy", "gold_correlation")
    return {"config": config_dict(cfg), **results,
            "pool": {"m": cfg.n_max, "prompts": len(pool.prompts),
                     "distinct_fraction": len(pool.unique_texts) / pool.gold.size,
                     "gold_mean": float(pool.gold.mean()), "gold_std": float(pool.gold.std())},
            "reward_models": {label: {"key": a.key, **{k: a.metrics[k] for k in keep}}
                              for label, a in rms.items()},
            "timings": timings}


def analyse(scores: dict, gold: np.ndarray, cfg: BestOfNConfig) -> dict:
    """Steps 3-5 of the study from the scores of the pool: ``scores`` maps ``proxy-<pairs>``,
    ``proxy-<pairs>-<k>`` (k = 1 .. proxy_seeds − 1), ``ensemble-<seed>`` and ``heldout`` to
    (P, m) arrays, as :func:`_reward_model_runs` labels them; ``gold`` is (P, m)."""
    ns = n_grid(cfg.n_max, cfg.points_per_octave)
    octaves = n_grid(cfg.n_max, 1)
    bon = lambda proxy: gao_summary(best_of_n_curve(proxy, gold, ns))
    # 3. Gao curves: per proxy size, the first seed's curve and the mean over its seeds; the
    #    oracle (best-of-n on gold itself) is added below
    proxies, seed_average = [], []
    for p in cfg.pairs_grid:
        labels = [f"proxy-{p}"] + [f"proxy-{p}-{k}" for k in range(1, cfg.proxy_seeds)]
        curves = [best_of_n_curve(scores[label], gold, ns) for label in labels]
        summaries = [gao_summary(c) for c in curves]          # each curve computed and fitted once
        proxies.append({"n_pairs": p, **summaries[0]})
        seed_average.append({"n_pairs": p, "seeds": len(curves), **gao_summary(mean_curve(curves)),
                             "per_seed": [{"gold_gain": s["curve"]["gold_gain"], "peak": s["peak"],
                                           "fall": s["fall"]} for s in summaries]})
    # 4. the ensemble, aggregated three ways (Coste et al. 2024)
    members = np.stack([scores[f"ensemble-{s}"] for s in cfg.ensemble_seeds])   # (M, P, m)
    ensemble = {
        "n_pairs": cfg.ensemble_pairs, "seeds": list(cfg.ensemble_seeds), "k": cfg.ensemble_k,
        "members": [{"seed": s, **bon(r)} for s, r in zip(cfg.ensemble_seeds, members)],
        "aggregates": {how: bon(aggregate_ensemble(members, how, cfg.ensemble_k))
                       for how in AGGREGATES},
        # E[std of the members' scores] of the reply that member 0 alone picks, per n
        "disagreement": best_of_n_expected(members[0], members.std(0), ns)["gold"].tolist(),
        "same_labels_n_pairs": next((p for p in cfg.pairs_grid
                                     if p == len(members) * cfg.ensemble_pairs), None)}
    # 5. choosing n without gold: a held-out RM, or the other members penalised by their spread
    others = aggregate_ensemble(members[1:], "mean_minus_std", cfg.ensemble_k)
    detection = {
        "heldout": {"n_pairs": cfg.heldout_pairs, "seed": cfg.heldout_seed, "per_proxy": [
            {"n_pairs": p, **choose_n(scores[f"proxy-{p}"], scores["heldout"], gold, ns)}
            for p in cfg.pairs_grid]},
        "ensemble_others": {"proxy_seed": cfg.ensemble_seeds[0],
                            **choose_n(members[0], others, gold, ns)},
        "labels": {"labels_per_n": cfg.eval_labels_per_n, "per_proxy": [
            {"n_pairs": p, **choose_n_by_labels(scores[f"proxy-{p}"], gold, octaves,
                                                cfg.eval_labels_per_n, cfg.eval_seed + k)}
            for k, p in enumerate(cfg.pairs_grid)]}}
    return {"ns": ns, "oracle": bon(gold), "proxies": proxies, "seed_average": seed_average,
            "ensemble": ensemble, "detection": detection}
