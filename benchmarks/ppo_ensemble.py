"""Does a conservative reward-model ensemble delay PPO's overoptimisation? (issue 22, item 5)

The members are proxies of Gao's PPO study (:class:`rlhf_lab.studies.ppo_gao.PPOGaoConfig`: the
summed head on ``--pairs`` pairs from the consistent annotator), one per RM seed (each seed draws
its own pairs and its own initial head); with ``--trunk-seeds``, member i also starts from the SFT
model of a base pretrained with the i-th of them (``RewardConfig.trunk_seed``; the pairs still
come from the policy's own SFT model). PPO runs as in that study (β = 0.01, the score whitened
over the SFT policy's replies, checkpoints every 4 iterations on 16 replies per prompt):

- against each member alone, one PPO seed each;
- against the members' aggregate (:class:`rlhf_lab.lm.ensemble.RewardEnsemble`: ``min``,
  ``mean_minus_std`` with k = 1, ``mean``), ``--ppo-seeds`` PPO seeds each.

It prints each run's checkpoint curve (gold gain over the first checkpoint, KL) and a table: the
gold peak, the KL at the peak, the final gain and the fall (final − peak), the aggregates' as a
mean over PPO seeds ± one standard error, beside the members' mean, and each run's gain where its
KL first reaches ``--at-kl`` (a conservative reward also slows the policy down, so a smaller fall
per iteration need not be a smaller fall per nat). An aggregate "delays the fall" when it loses
less gold by the last checkpoint than the members do on average.

    python benchmarks/ppo_ensemble.py [--pairs 16000] [--rm-seeds 0 1 2] [--trunk-seeds 1 2 3]
        [--ppo-seeds 0 1] [--aggregates min mean_minus_std mean] [--iterations 60] [--at-kl 8]
        [--cache DIR] [--jobs 2]

Reward models are cached pipeline artifacts (the study's own proxy is seed 0); the PPO runs
against an ensemble are not cached.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch

from rlhf_lab.core.workers import in_processes
from rlhf_lab.lm import models
from rlhf_lab.lm.ensemble import RewardEnsemble
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_rm, load_or_train_sft
from rlhf_lab.stages.ppo import train_ppo
from rlhf_lab.studies.ppo_gao import PPOGaoConfig, gain_curve, observed_peak, ppo_gao_runs


def member_run(pairs: int, rm_seed: int, ppo_seed: int, iterations: int,
               trunk_seed: int | None = None) -> RunConfig:
    """The study's run against the proxy on ``pairs`` pairs, with the RM's and PPO's seeds (and
    the RM's trunk: None, the policy's own SFT model)."""
    run = ppo_gao_runs(RunConfig(), PPOGaoConfig(pairs_grid=(pairs,), seeds=(ppo_seed,),
                                                 iterations=iterations))[0]
    return run.with_rm(seed=rm_seed, trunk_seed=trunk_seed)


def one_run(pairs: int, rm_seeds: tuple, how: str | None, ppo_seed: int, iterations: int,
            root, trunk_seeds: tuple, threads: int) -> list[dict]:
    """Train one PPO run (in a worker) against one member (``how`` None: ``rm_seeds[0]``, on the
    trunk ``trunk_seeds[0]``) or the members' aggregate; return its checkpoint evaluations."""
    torch.set_num_threads(threads)
    runs = [member_run(pairs, s, ppo_seed, iterations, t) for s, t in zip(rm_seeds, trunk_seeds)]
    members = [load_or_train_rm(r, root).model for r in runs]
    reward = members[0] if how is None else RewardEnsemble(members, how, k=1.0)
    sft = load_or_train_sft(runs[0], root).model
    with models.no_progress_bars():
        return train_ppo(runs[0].ppo, sft, reward, models.world_tokenizer()).evals


def shape(evals: list[dict]) -> dict:
    """Gains over the first checkpoint (:func:`~rlhf_lab.studies.ppo_gao.gain_curve`): the curve,
    its peak (:func:`~rlhf_lab.studies.ppo_gao.observed_peak`), the final gain and the fall."""
    curve = gain_curve(evals)
    peak, gain = observed_peak(curve), curve["gold_gain"]
    return {"gain": gain, "kl": curve["kl"], "peak": peak["gold_gain"], "peak_kl": peak["kl"],
            "final": gain[-1], "final_kl": curve["kl"][-1], "fall": gain[-1] - peak["gold_gain"]}


def gain_at_kl(kl: list[float], gain: list[float], at: float) -> float | None:
    """The gain where the KL first reaches ``at``, linear between the two checkpoints around it
    (the first checkpoint's gain if it starts beyond ``at``); None if the KL never reaches it."""
    j = next((i for i, x in enumerate(kl) if x >= at), None)
    if j is None or j == 0:
        return None if j is None else gain[0]
    w = (at - kl[j - 1]) / (kl[j] - kl[j - 1])
    return gain[j - 1] + w * (gain[j] - gain[j - 1])


def mean_se(values: list[float]) -> str:
    m = float(np.mean(values))
    if len(values) < 2:
        return f"{m:+.3f}"
    return f"{m:+.3f} ± {float(np.std(values, ddof=1)) / math.sqrt(len(values)):.3f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16000)
    parser.add_argument("--rm-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trunk-seeds", type=int, nargs="+", default=None,
                        help="one pretraining seed per RM seed (default: the policy's own trunk)")
    parser.add_argument("--ppo-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--aggregates", nargs="+", default=["min", "mean_minus_std", "mean"])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--at-kl", type=float, default=8.0,
                        help="each run's gold gain where its KL first reaches this (interpolated)")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    trunks = tuple(args.trunk_seeds or [None] * len(args.rm_seeds))
    if len(trunks) != len(args.rm_seeds):
        parser.error("--trunk-seeds must name one seed per RM seed")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f} at the start; torch {torch.__version__}")
    start = time.perf_counter()
    for s, t in zip(args.rm_seeds, trunks):      # reward models here, once, before the workers
        load_or_train_rm(member_run(args.pairs, s, 0, args.iterations, t), args.cache)
    rm_seeds = tuple(args.rm_seeds)
    calls = [(args.pairs, (s,), None, s, args.iterations, args.cache, (t,))
             for s, t in zip(rm_seeds, trunks)]
    calls += [(args.pairs, rm_seeds, how, p, args.iterations, args.cache, trunks)
              for how in args.aggregates for p in args.ppo_seeds]
    results = [shape(e) for e in in_processes(one_run, calls, args.jobs, "PPO runs")]
    print(f"{len(calls)} PPO runs of {args.iterations} iterations in {time.perf_counter() - start:.0f} s\n")
    for (pairs, seeds, how, p, _, _, trunk), r in zip(calls, results):
        name = f"member rm seed {seeds[0]}" if how is None else f"{how}, ppo seed {p}"
        name += f", trunk {trunk[0]}" if how is None and trunk[0] is not None else ""
        print(f"{name}: KL   {[round(x, 1) for x in r['kl']]}")
        print(f"{' ' * len(name)}  gold {[round(x, 2) for x in r['gain']]}")
    print("\n| reward | runs | gold peak | KL at peak | final gain | final KL | fall (final − peak) "
          f"| gold at KL {args.at_kl:g} (each run) |")
    print("|---|---|---|---|---|---|---|---|")
    groups = [("members (each alone)", results[:len(rm_seeds)])]
    groups += [(how, results[len(rm_seeds) + i * len(args.ppo_seeds):][:len(args.ppo_seeds)])
               for i, how in enumerate(args.aggregates)]
    for name, rows in groups:
        col = lambda key: mean_se([r[key] for r in rows])
        print(f"| {name} | {len(rows)} | {col('peak')} | {np.mean([r['peak_kl'] for r in rows]):.2f} "
              f"| {col('final')} | {np.mean([r['final_kl'] for r in rows]):.1f} | {col('fall')} | "
              + ", ".join("—" if g is None else f"{g:+.2f}"
                          for g in (gain_at_kl(r["kl"], r["gain"], args.at_kl) for r in rows)) + " |")


if __name__ == "__main__":
    main()
