"""Do ensemble members that differ in their pretraining share fewer errors? (issue 22, item 5)

Eisenstein et al. (2023, "Helping or Herding? Reward Model Ensembles Mitigate but do not
Eliminate Reward Hacking") found that reward models differing only in their fine-tuning seed
share their errors ("herd"), so an ensemble of them hides little of what a policy exploits;
members pretrained with different seeds share fewer. Here best-of-n on the overoptimisation
study's pool (:class:`rlhf_lab.studies.overoptimisation.BestOfNConfig`'s m replies per prompt
from the SFT policy, the same unbiased order-statistics curve), for ensembles of reward models
on ``--pairs`` pairs each:

- ``finetune``: the run's own SFT trunk, RM seeds ``--rm-seeds`` (each its own pairs, labels,
  head and batch order): the study's ensemble;
- ``pretrain``: RM seed i on the trunk of base seed ``--trunk-seeds[i]``
  (``RewardConfig.trunk_seed``): member i has finetune member i's pairs and another pretraining;
- ``pretrain-same-pairs``: the trunks of ``--trunk-seeds``, all on RM seed ``--rm-seeds[0]``'s
  pairs, head and batch order: only the pretraining differs.

For each ensemble it prints every member's held-out accuracy and correlation with gold, its
best-of-n peak (gain over a plain sample, at which n) and the fall from there to n = m; the
average member; and the aggregates ``mean``, ``mean_minus_std`` (each ``--k``) and ``min``
(:func:`rlhf_lab.equations.overopt_math.aggregate_ensemble`), each with its fall's difference
from the average member's. An aggregate "delays the fall" when it loses less gold from its peak
to n = m than its members do on average.

Standard errors: ``(prompts)`` resamples the pool's prompts (a paired bootstrap: every curve of a
resample uses the same prompts), the pool's own noise; ``(members)`` is the spread of the members'
falls over sqrt(M), the noise of training a reward model. An aggregate is one draw of its
members, so its own training noise is not measured by one ensemble: ``--replicates R`` builds R
ensembles of each kind on disjoint members (every seed shifted by r·M in replicate r) and prints
each measure's mean ± s.e. over them, which counts that noise.

Herding, per ensemble, the mean over pairs of members of two correlations on the pool, within
prompts (each prompt's mean taken out, as best-of-n compares replies to one prompt only):
``score`` corr(r_i, r_j), and ``error`` corr(e_i, e_j) with e_i the part of r_i that r* does not
explain (the residual of r_i regressed on r*; r_i − r* itself would mix each model's scale into
its error). Independent errors give an error correlation of 0; shared ones herd. And
corr(σ, ē), the members' spread against their mean error: what mean − k·σ needs to be positive.

    python benchmarks/ensemble_diversity.py [--pairs 500] [--rm-seeds 0 1 2 3]
        [--trunk-seeds 1 2 3 4] [--replicates 1] [--ensembles finetune pretrain pretrain-same-pairs]
        [--k 1] [--bootstrap 2000] [--cache DIR] [--jobs 2]

Base models, SFT models and reward models are cached pipeline artifacts (a new trunk costs one
pretraining and one SFT), and so is each reward model's scores of the pool (``pool_scores-<key>``):
a rerun only computes the tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import time
from datetime import datetime

import numpy as np
import torch

from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_hash
from rlhf_lab.core.workers import in_processes
from rlhf_lab.equations.bon_curves import best_of_n_curve, gao_summary, n_grid
from rlhf_lab.equations.overopt_math import aggregate_ensemble, best_of_n_expected
from rlhf_lab.lm import models
from rlhf_lab.pipeline.pool import PoolSpec, encode_pool, load_or_sample_pool, score_pool
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_rm, load_or_train_sft, stage_keys
from rlhf_lab.studies.overoptimisation import BestOfNConfig

ENSEMBLES = ("finetune", "pretrain", "pretrain-same-pairs")


def member_runs(kind: str, pairs: int, rm_seeds, trunk_seeds, run: RunConfig = RunConfig()) -> list:
    """The runs of one ensemble's reward models (see the module docstring)."""
    if kind == "finetune":
        return [run.with_rm(n_pairs=pairs, seed=s) for s in rm_seeds]
    if kind == "pretrain":
        return [run.with_rm(n_pairs=pairs, seed=s, trunk_seed=t) for s, t in zip(rm_seeds, trunk_seeds)]
    if kind == "pretrain-same-pairs":
        return [run.with_rm(n_pairs=pairs, seed=rm_seeds[0], trunk_seed=t) for t in trunk_seeds]
    raise ValueError(f"kind must be one of {ENSEMBLES}, got {kind!r}")


def pretrain_trunk(run: RunConfig, root, threads: int) -> float:
    """In a worker: the SFT model under ``run``'s reward model (and its base), trained or loaded."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    load_or_train_sft(dataclasses.replace(run, base=run.rm.trunk_pretraining(run.base)), root)
    return time.perf_counter() - start


_POOL: dict = {}
POOL_BATCH = 8192                                  # load_or_sample_pool's default batch size


def train_and_score(run: RunConfig, pool_args: tuple, root, threads: int) -> tuple:
    """In a worker: the reward model of ``run`` (trained or loaded) scoring the pool, cached as the
    artifact ``pool_scores-<key>`` (the pool's and the reward model's keys), so that a rerun
    only reads them; ``(scores (P, m), held-out metrics)``."""
    torch.set_num_threads(threads)
    keys = stage_keys(run)
    key = config_hash(PoolSpec(*pool_args, POOL_BATCH), keys["sft"], keys["rm"])

    def score() -> tuple:
        rm = load_or_train_rm(run, root)
        if not _POOL:
            pool = load_or_sample_pool(run, *pool_args, root, POOL_BATCH)
            _POOL["pool"] = pool, encode_pool(models.world_tokenizer(), pool)
        pool, encoded = _POOL["pool"]
        keep = ("accuracy", "gold_correlation", "gold_order_accuracy")
        return (score_pool(rm.model, models.world_tokenizer(), pool, encoded=encoded),
                {k: rm.metrics[k] for k in keep})

    def save(obj, folder) -> None:
        np.save(folder / "scores.npy", obj[0])
        write_json(folder / "metrics.json", obj[1])

    return cached("pool_scores", key, score, save,
                  lambda folder: (np.load(folder / "scores.npy"), read_json(folder / "metrics.json")), root)


def per_prompt_gains(proxy, gold, ns) -> np.ndarray:
    """(P, G): each prompt's expected gold of the proxy's best of n, minus that prompt's mean
    gold; its mean over prompts is :func:`~rlhf_lab.equations.bon_curves.best_of_n_curve`'s
    ``gold_gain`` (every prompt has the same m replies)."""
    proxy, gold = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    return np.stack([best_of_n_expected(proxy[p:p + 1], gold[p:p + 1], ns)["gold"] - gold[p].mean()
                     for p in range(len(gold))])


def falls(gains: np.ndarray) -> np.ndarray:
    """The fall of each curve, ``gain(n_max) − max_n gain(n)`` (<= 0), over the last axis."""
    return gains[..., -1] - gains.max(axis=-1)


def resamples(P: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, P): prompts drawn with replacement; one seed, the same draws everywhere."""
    return np.random.default_rng(seed).integers(P, size=(n_boot, P))


def bootstrap_curves(gains: dict, n_boot: int, seed: int = 0) -> dict:
    """``{name: (n_boot, G)}``: the mean curve over prompts resampled with replacement, the same
    resamples for every name (paired), from ``gains`` ``{name: (P, G)}``."""
    idx = resamples(next(iter(gains.values())).shape[0], n_boot, seed)
    return {name: g[idx].mean(axis=1) for name, g in gains.items()}


def within_prompt(x: np.ndarray) -> np.ndarray:
    """``x`` (..., P, m) with each prompt's mean taken out, flattened to (..., P·m)."""
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(axis=-1, keepdims=True)).reshape(*x.shape[:-2], -1)


def errors(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(M, P·m): each member's within-prompt score minus its least-squares fit a_i·r* (within
    prompts): the part of r_i that gold does not explain."""
    r, g = within_prompt(scores), within_prompt(gold)
    slope = r @ g / (g @ g)                                                  # (M,)
    return r - slope[:, None] * g


def cross_products(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(P, M+2, M+2): per prompt, Z Zᵀ of the within-prompt centred rows Z = [r_1 .. r_M, σ, r*]
    (each (m,); σ the members' population std, what mean − k·std subtracts); summed over any
    multiset of prompts they give every herding correlation."""
    scores = np.asarray(scores, dtype=np.float64)
    z = np.concatenate([scores, scores.std(axis=0)[None], np.asarray(gold, dtype=np.float64)[None]])
    z = z - z.mean(axis=-1, keepdims=True)                                   # (M+2, P, m)
    return np.einsum("ipk,jpk->pij", z, z)


def correlations(s: np.ndarray) -> dict:
    """From summed cross products ``s`` (..., M+2, M+2) of [r_1 .. r_M, σ, r*]: ``score``
    corr(r_i, r_j), ``error`` corr(e_i, e_j) (e_i = r_i − (s_ig / s_gg) r*, whose cross products
    are s_ij − s_ig s_jg / s_gg), both (..., pairs) for i < j; ``gold`` corr(r_i, r*) (..., M); and
    ``flag`` corr(σ, ē), ē the members' mean error: > 0 when the members disagree most where
    they overrate together, so that subtracting k·σ removes shared error."""
    M = s.shape[-1] - 2
    r, rg, gg = s[..., :M, :M], s[..., :M, -1], s[..., -1, -1]
    e = r - rg[..., :, None] * rg[..., None, :] / gg[..., None, None]
    diag = lambda c: np.einsum("...ii->...i", c)
    corr = lambda c: c / np.sqrt(diag(c)[..., :, None] * diag(c)[..., None, :])
    w = np.concatenate([np.full(s.shape[:-2] + (M,), 1.0 / M), np.zeros(s.shape[:-2] + (1,)),
                        -(rg / gg[..., None]).mean(axis=-1, keepdims=True)], axis=-1)  # ē = w·z
    sw = np.einsum("...ij,...j->...i", s, w)
    i, j = np.triu_indices(M, 1)
    with np.errstate(divide="ignore", invalid="ignore"):                 # a member equal to r*: NaN
        return {"score": corr(r)[..., i, j], "error": corr(e)[..., i, j],
                "gold": rg / np.sqrt(diag(r) * gg[..., None]),
                "flag": sw[..., M] / np.sqrt(s[..., M, M] * np.einsum("...i,...i->...", w, sw))}


def prompt_counts(idx: np.ndarray, P: int) -> np.ndarray:
    """(B, P): how often each prompt is drawn in each resample of ``idx`` (B, P)."""
    counts = np.zeros((len(idx), P))
    np.add.at(counts, (np.arange(len(idx))[:, None], idx), 1.0)
    return counts


def herding(scores: np.ndarray, gold: np.ndarray, idx: np.ndarray | None = None) -> dict:
    """Within-prompt correlations of an ensemble's members (M, P, m) on the pool: ``score`` and
    ``error`` between members (the mean over pairs, and ``*_pairs`` each pair's), ``gold`` each
    member's with r*, ``flag`` corr(σ, ē) (:func:`correlations`); with ``idx`` (B, P) resampled
    prompts, ``score_boot``, ``error_boot`` (the pair means) and ``flag_boot`` (B,) of each
    resample."""
    per_prompt = cross_products(scores, gold)
    c = correlations(per_prompt.sum(axis=0))
    out = {"score": float(c["score"].mean()), "score_pairs": c["score"].tolist(),
           "error": float(c["error"].mean()), "error_pairs": c["error"].tolist(),
           "gold": c["gold"].tolist(), "flag": float(c["flag"])}
    if idx is not None:
        boot = correlations(np.einsum("bp,pij->bij", prompt_counts(idx, len(per_prompt)), per_prompt))
        out.update(score_boot=boot["score"].mean(axis=-1), error_boot=boot["error"].mean(axis=-1),
                   flag_boot=boot["flag"])
    return out


def analyse(members: np.ndarray, gold: np.ndarray, ns, ks=(1.0,), n_boot: int = 2000,
            seed: int = 0) -> dict:
    """Best-of-n of each member (M, P, m) and of each aggregate, with bootstrap standard errors
    over prompts; see the module docstring. Rows: ``members``, ``aggregates`` (name -> row), each
    row's ``summary`` (:func:`~rlhf_lab.equations.bon_curves.gao_summary`) and ``fall_se``; an
    aggregate's ``delta`` = its fall − the average member's, with ``delta_se`` (paired)."""
    curves = {f"member {i}": r for i, r in enumerate(members)}
    curves["mean"] = aggregate_ensemble(members, "mean")
    curves.update({f"mean_minus_std k={k:g}": aggregate_ensemble(members, "mean_minus_std", k)
                   for k in ks})
    curves["min"] = aggregate_ensemble(members, "min")
    gains = {name: per_prompt_gains(r, gold, ns) for name, r in curves.items()}
    boot = {name: falls(c) for name, c in bootstrap_curves(gains, n_boot, seed).items()}
    member_boot = np.mean([boot[f"member {i}"] for i in range(len(members))], axis=0)
    rows = {name: {"summary": gao_summary(best_of_n_curve(r, gold, ns)),
                   "fall_se": float(boot[name].std(ddof=1))} for name, r in curves.items()}
    member_falls = [rows[f"member {i}"]["summary"]["fall"] for i in range(len(members))]
    average = {"fall": float(np.mean(member_falls)), "fall_se": float(member_boot.std(ddof=1)),
               "fall_se_members": float(np.std(member_falls, ddof=1) / np.sqrt(len(members))),
               "peak": float(np.mean([rows[f"member {i}"]["summary"]["peak"]["gold_gain"]
                                      for i in range(len(members))])),
               "final": float(np.mean([rows[f"member {i}"]["summary"]["curve"]["gold_gain"][-1]
                                       for i in range(len(members))]))}
    aggregates = {}
    for name in list(curves)[len(members):]:
        row = rows[name]
        row["delta"] = row["summary"]["fall"] - average["fall"]
        row["delta_boot"] = boot[name] - member_boot
        row["delta_se"] = float(row["delta_boot"].std(ddof=1))
        aggregates[name] = row
    return {"members": [rows[f"member {i}"] for i in range(len(members))], "average": average,
            "aggregates": aggregates, "herding": herding(members, gold, resamples(len(gold), n_boot, seed))}


def print_ensemble(kind: str, runs: list, metrics: list, result: dict, base_seed: int) -> None:
    """One ensemble's table (markdown) and its herding line."""
    print(f"\n### {kind}\n")
    print("| reward | trunk: base seed | RM seed | held-out acc | gold corr (held-out) | peak gain "
          "| peak n | gain at n_max | fall (± s.e. prompts) | Δ fall vs average member (± s.e.) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run, m, row in zip(runs, metrics, result["members"]):
        s = row["summary"]
        trunk = base_seed if run.rm.trunk_seed is None else run.rm.trunk_seed
        print(f"| member | {trunk} | {run.rm.seed} | {m['accuracy']:.3f} | {m['gold_correlation']:.3f} "
              f"| {s['peak']['gold_gain']:+.3f} | {s['peak']['n']} | {s['curve']['gold_gain'][-1]:+.3f} "
              f"| {s['fall']:+.3f} ± {row['fall_se']:.3f} | |")
    a = result["average"]
    print(f"| average member | | | {np.mean([m['accuracy'] for m in metrics]):.3f} "
          f"| {np.mean([m['gold_correlation'] for m in metrics]):.3f} | {a['peak']:+.3f} | "
          f"| {a['final']:+.3f} | {a['fall']:+.3f} ± {a['fall_se']:.3f} (members ± "
          f"{a['fall_se_members']:.3f}) | |")
    for name, row in result["aggregates"].items():
        s = row["summary"]
        print(f"| {name} | | | | | {s['peak']['gold_gain']:+.3f} | {s['peak']['n']} "
              f"| {s['curve']['gold_gain'][-1]:+.3f} | {s['fall']:+.3f} ± {row['fall_se']:.3f} "
              f"| {row['delta']:+.3f} ± {row['delta_se']:.3f} |")
    h = result["herding"]
    print(f"\nherding (within prompts, mean over {len(h['score_pairs'])} pairs of members; ± s.e. prompts): "
          f"score corr {h['score']:.3f} ± {h['score_boot'].std(ddof=1):.3f} "
          f"(pairs {', '.join(f'{c:.2f}' for c in h['score_pairs'])}); "
          f"error corr {h['error']:.3f} ± {h['error_boot'].std(ddof=1):.3f} "
          f"(pairs {', '.join(f'{c:.2f}' for c in h['error_pairs'])}); "
          f"members' corr with r* on the pool {', '.join(f'{c:.3f}' for c in h['gold'])}; "
          f"disagreement flags shared error, corr(σ, ē) {h['flag']:+.3f} ± {h['flag_boot'].std(ddof=1):.3f}")
    for name, row in result["aggregates"].items():
        print(f"- {name}: fall {row['summary']['fall']:+.3f} against the average member's "
              f"{a['fall']:+.3f}: {verdict(row['delta'], row['delta_se'], a['fall_se_members'])}")


def verdict(delta: float, se_prompts: float, se_members: float) -> str:
    """Δ with both standard errors, and whether it clears 2 of them: of the prompts alone, or of
    the prompts and the members' spread together (sqrt of the sum of squares)."""
    z = lambda se: delta / se if se > 0 else math.copysign(math.inf, delta) if delta else 0.0
    z_prompts, z_both = z(se_prompts), z(math.hypot(se_prompts, se_members))
    word = "delays the fall" if delta > 0 else "hastens the fall"
    if abs(z_both) > 2:
        said = f"{word} beyond 2 s.e. of both"
    elif abs(z_prompts) > 2:
        said = f"{word} beyond 2 s.e. of the prompts, not of both"
    else:
        said = "no difference beyond 2 s.e."
    return (f"Δ {delta:+.3f} ± {se_prompts:.3f} (prompts, z = {z_prompts:+.1f}), ± "
            f"{math.hypot(se_prompts, se_members):.3f} with the members' spread (z = {z_both:+.1f}): {said}")


def mean_se(values) -> str:
    """``mean ± s.e.`` over ``values`` (the s.e. left out for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():+.3f}" + (f" ± {v.std(ddof=1) / math.sqrt(len(v)):.3f}" if len(v) > 1 else "")


def print_replicate_summary(summary: list) -> None:
    """One replicate's ensembles side by side: herding and each aggregate's Δ fall."""
    first, base = summary[0][0], summary[0][1]["herding"]
    names = list(summary[0][1]["aggregates"])
    print(f"\n| ensemble | score corr | error corr | error corr − {first}'s | corr(σ, ē) "
          f"| average member's fall | " + " | ".join(f"{name}: Δ fall" for name in names) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(names))
    for kind, result in summary:
        a, h = result["average"], result["herding"]
        diff = "" if kind == first else (f"{h['error'] - base['error']:+.3f} ± "
                                         f"{(h['error_boot'] - base['error_boot']).std(ddof=1):.3f}")
        print(f"| {kind} | {h['score']:.3f} | {h['error']:.3f} | {diff} | {h['flag']:+.3f} "
              f"| {a['fall']:+.3f} ± {a['fall_se_members']:.3f} | " + " | ".join(
                  f"{row['delta']:+.3f} ± {row['delta_se']:.3f}" for row in result["aggregates"].values()) + " |")
    print("\n(± after a Δ fall: s.e. over the prompts, paired; after the average member's fall: the "
          "members' spread over sqrt(M); after an error corr difference: s.e. over the prompts, paired)")


def print_across_replicates(results: dict) -> None:
    """Mean ± s.e. over the replicate ensembles (disjoint members) of each kind, each replicate's
    value in brackets: the herding measures and the average member's fall; then each aggregate's
    Δ fall and Δ gain at n_max. The replicates' s.e. counts the training of the members and of
    the aggregates; the pool is shared by all, so its noise is the prompts' s.e. of the mean
    over replicates (the same resamples for every replicate), printed beside it; z divides by
    both (the square root of the sum of their squares)."""
    kinds = list(dict.fromkeys(kind for kind, _ in results))
    reps = sorted({r for _, r in results})
    first = kinds[0]
    listed = lambda v: f"{mean_se(v)} ({', '.join(f'{x:+.2f}' for x in v)})"
    print(f"\n{len(reps)} replicate ensembles of each kind, mean ± s.e. over replicates "
          f"(each replicate's value in brackets):\n")
    print(f"| ensemble | error corr | error corr − {first}'s (± s.e. prompts) | corr(σ, ē) "
          f"| average member's fall |")
    print("|---|---|---|---|---|")
    for kind in kinds:
        rows = [results[(kind, r)]["herding"] for r in reps]
        base = [results[(first, r)]["herding"] for r in reps]
        diffs = [h["error"] - b["error"] for h, b in zip(rows, base)]
        prompts = np.mean([h["error_boot"] - b["error_boot"] for h, b in zip(rows, base)], axis=0)
        diff = "" if kind == first else f"{listed(diffs)} (± {prompts.std(ddof=1):.3f})"
        print(f"| {kind} | {listed([h['error'] for h in rows])} | {diff} | "
              f"{listed([h['flag'] for h in rows])} | "
              f"{listed([results[(kind, r)]['average']['fall'] for r in reps])} |")
    print("\n| ensemble | aggregate | Δ fall vs average member | ± s.e. prompts | z (both) "
          "| Δ gain at n_max |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        for name in results[(kind, reps[0])]["aggregates"]:
            aggs = [results[(kind, r)]["aggregates"][name] for r in reps]
            deltas = np.array([a["delta"] for a in aggs])
            se_rep = deltas.std(ddof=1) / math.sqrt(len(deltas)) if len(deltas) > 1 else 0.0
            se_prompts = float(np.mean([a["delta_boot"] for a in aggs], axis=0).std(ddof=1))
            both = math.hypot(se_rep, se_prompts)
            finals = [a["summary"]["curve"]["gold_gain"][-1] - results[(kind, r)]["average"]["final"]
                      for a, r in zip(aggs, reps)]
            print(f"| {kind} | {name} | {listed(deltas)} | {se_prompts:.3f} "
                  f"| {deltas.mean() / both if both > 0 else 0.0:+.1f} | {listed(finals)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=BestOfNConfig().ensemble_pairs)
    parser.add_argument("--rm-seeds", type=int, nargs="+", default=list(BestOfNConfig().ensemble_seeds))
    parser.add_argument("--trunk-seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--replicates", type=int, default=1,
                        help="ensembles of each kind on disjoint members: replicate r adds r·M to every seed")
    parser.add_argument("--ensembles", nargs="+", choices=ENSEMBLES, default=list(ENSEMBLES))
    parser.add_argument("--k", type=float, nargs="+", default=[BestOfNConfig().ensemble_k])
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    M = len(args.rm_seeds)
    if len(args.trunk_seeds) != M or M < 2 or args.replicates < 1:
        parser.error("--rm-seeds and --trunk-seeds must be of one length >= 2, --replicates >= 1")
    run, cfg = RunConfig(), BestOfNConfig()
    from report import cpu_model                   # benchmarks/ is on sys.path as a script
    print(f"{datetime.now():%Y-%m-%d %H:%M} · {cpu_model()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start; torch {torch.__version__}")
    start = time.perf_counter()
    pool_args = (cfg.n_max, cfg.pool_seed, cfg.max_new_tokens)
    pool = load_or_sample_pool(run, *pool_args, args.cache, POOL_BATCH)  # and base, SFT: before the workers
    ensembles = {(kind, r): member_runs(kind, args.pairs, [s + r * M for s in args.rm_seeds],
                                        [t + r * M for t in args.trunk_seeds], run)
                 for r in range(args.replicates) for kind in args.ensembles}
    distinct = {}                                                        # rm key -> run
    for r in itertools.chain(*ensembles.values()):
        distinct.setdefault(stage_keys(r)["rm"], r)
    trunks = {r.rm.trunk_seed: r for r in distinct.values() if r.rm.trunk_seed is not None}
    if trunks:                                                           # each trunk once
        in_processes(pretrain_trunk, [(r, args.cache) for r in trunks.values()], args.jobs, "trunks")
    done = dict(zip(distinct, in_processes(train_and_score, [(r, pool_args, args.cache)
                                                             for r in distinct.values()],
                                           args.jobs, "reward models")))
    print(f"{len(distinct)} reward models on {args.pairs} pairs ({len(trunks)} other trunks) trained "
          f"and scoring {pool.gold.shape[0]} prompts × {pool.gold.shape[1]} replies (or loaded) in "
          f"{time.perf_counter() - start:.0f} s; {args.bootstrap} bootstrap resamples of the prompts")
    ns = n_grid(cfg.n_max, cfg.points_per_octave)
    results = {}
    for (kind, r), runs in ensembles.items():
        keys = [stage_keys(x)["rm"] for x in runs]
        results[(kind, r)] = analyse(np.stack([done[k][0] for k in keys]), pool.gold, ns,
                                     tuple(args.k), args.bootstrap)
        print_ensemble(f"{kind}, replicate {r} (RM seeds {[x.rm.seed for x in runs]})", runs,
                       [done[k][1] for k in keys], results[(kind, r)], run.base.seed)
        if kind == args.ensembles[-1]:
            print_replicate_summary([(k, results[(k, r)]) for k in args.ensembles])
    if args.replicates > 1:
        print_across_replicates(results)


if __name__ == "__main__":
    main()
