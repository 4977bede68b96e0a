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

The reward models are trained, and score the pool (step 2), in two single-threaded worker
processes on a machine with two cores or more: the largest part of the study's time, about 1.4
times faster that way than with two threads in one process.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from rlhf_lab import world
from rlhf_lab.core.artifacts import cached, is_cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, non_negative, positive, require
from rlhf_lab.core.workers import in_processes
from rlhf_lab.equations.overopt_math import aggregate_ensemble, best_of_n_expected, fit_bon, kl_best_of_n
from rlhf_lab.lm import models
from rlhf_lab.lm.generation import sample_responses_pruned
from rlhf_lab.lm.sequences import decode_responses, encode_pairs, encode_prompts, response_mask_from
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_rm, load_or_train_sft, stage_keys

__all__ = ["BestOfNConfig", "Pool", "PoolSpec", "sample_pool", "load_or_sample_pool", "encode_pool",
           "score_pool",
           "n_grid", "plugin_kl_best_of_n", "best_of_n_curve", "mean_curve", "gao_summary",
           "choose_n", "choose_n_by_labels", "analyse", "overoptimisation_study"]

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
        require(isinstance(self.n_max, int) and self.n_max >= 2, "n_max",
                f"must be an int >= 2, got {self.n_max!r}")
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


# ----------------------------------------------------------------------------- 1. the pool


@dataclass
class Pool:
    """m replies to each of P prompts, and the distinct (prompt, reply) pairs among them."""
    prompts: list            # (P,) world.Prompt
    texts: list              # P lists of m reply texts
    gold: np.ndarray         # (P, m) gold utility r*(x, y)
    unique_prompts: list     # (U,) the prompt of each distinct (prompt, reply) pair
    unique_texts: list       # (U,) its reply
    index: np.ndarray        # (P, m) int: row of each sample in the unique lists
    max_new_tokens: int      # the longest reply, in tokens
    seconds: dict            # time spent sampling, decoding and computing gold


def sample_pool(policy, tokenizer, n_per_prompt: int, seed: int, max_new_tokens: int = 24,
                batch_size: int = 8192) -> Pool:
    """m = ``n_per_prompt`` replies from ``policy`` to each of the 48 world prompts, with gold.

    Sampled in large batches from one ``torch.Generator`` (same seed and batch size, same pool).
    The policy repeats its favourite replies (a quarter of 48 x 1024 samples are repeats), so
    each distinct reply is decoded and scored by the gold utility once.
    """
    require(isinstance(n_per_prompt, int) and n_per_prompt >= 1, "n_per_prompt",
            f"must be an int >= 1, got {n_per_prompt!r}")
    policy.eval()
    prompts = world.all_prompts()
    P, m = len(prompts), n_per_prompt
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)          # (P, L)
    owner = torch.arange(P).repeat_interleave(m)                          # (P*m,) prompt of each row
    generator = torch.Generator().manual_seed(seed)
    seconds, start = {}, time.perf_counter()
    ids = torch.cat([sample_responses_pruned(policy, prompt_ids[rows], prompt_mask[rows],
                                             max_new_tokens, tokenizer.eos_token_id,
                                             tokenizer.pad_token_id, generator)
                     for rows in owner.split(batch_size)])                # (P*m, R)
    seconds["sampling"], start = time.perf_counter() - start, time.perf_counter()
    # decode each distinct (prompt, token ids) once
    distinct, inverse = np.unique(torch.cat([owner[:, None], ids], 1).numpy(), axis=0,
                                  return_inverse=True)
    distinct_ids = torch.from_numpy(distinct[:, 1:])
    texts = decode_responses(tokenizer, distinct_ids,
                             response_mask_from(distinct_ids, tokenizer.eos_token_id))
    seconds["decoding"], start = time.perf_counter() - start, time.perf_counter()
    # gold utility of each distinct (prompt, text) once
    row_of: dict[tuple[int, str], int] = {}                               # (prompt, text) -> row
    text_row = np.array([row_of.setdefault((int(p), t), len(row_of))
                         for p, t in zip(distinct[:, 0], texts)])
    unique_prompts, unique_texts = [prompts[p] for p, _ in row_of], [t for _, t in row_of]
    gold_u = np.array(world.gold_utilities(unique_prompts, unique_texts))
    index = text_row[inverse.reshape(-1)].reshape(P, m)                   # (P, m)
    seconds["gold"] = time.perf_counter() - start

    return Pool(prompts, [[unique_texts[u] for u in row] for row in index.tolist()], gold_u[index],
                unique_prompts, unique_texts, index, max_new_tokens, seconds)


@dataclass(frozen=True)
class PoolSpec:
    """What identifies a pool: the cache key of :func:`load_or_sample_pool` hashes it."""
    n_per_prompt: int
    seed: int
    max_new_tokens: int
    batch_size: int


def load_or_sample_pool(run: RunConfig, n_per_prompt: int, seed: int, max_new_tokens: int = 24,
                        root=None, batch_size: int = 8192) -> Pool:
    """:func:`sample_pool` from the SFT policy of ``run``, cached as the artifact ``pool-<key>``.

    Notebook 05's closed-form estimate and notebook 06's best-of-n both read 48 × 1024 replies of
    π_SFT with the same seed: the second one loads them (about 1 s instead of 13 s). ``seconds``
    are those of the run that sampled them.
    """
    spec = PoolSpec(n_per_prompt, seed, max_new_tokens, batch_size)
    key = config_hash(spec, stage_keys(run)["sft"])

    def sample() -> Pool:
        sft = load_or_train_sft(run, root).model
        return sample_pool(sft, models.world_tokenizer(), n_per_prompt, seed, max_new_tokens,
                           batch_size)

    def save(pool: Pool, folder) -> None:
        write_json(folder / "pool.json", {
            "unique_prompts": [p.text for p in pool.unique_prompts], "unique_texts": pool.unique_texts,
            "unique_gold": _unique_gold(pool).tolist(), "index": pool.index.tolist(),
            "max_new_tokens": pool.max_new_tokens, "seconds": pool.seconds})

    def load(folder) -> Pool:
        d = read_json(folder / "pool.json")
        prompts = world.all_prompts()
        by_text = {p.text: p for p in prompts}
        unique_prompts = [by_text[t] for t in d["unique_prompts"]]
        index = np.array(d["index"], dtype=np.int64)
        gold_u = np.array(d["unique_gold"], dtype=np.float64)
        texts = [[d["unique_texts"][u] for u in row] for row in index.tolist()]
        return Pool(prompts, texts, gold_u[index], unique_prompts, d["unique_texts"], index,
                    d["max_new_tokens"], d["seconds"])

    return cached("pool", key, sample, save, load, root)


def _unique_gold(pool: Pool) -> np.ndarray:
    """The gold utility of each distinct (prompt, reply) pair, read back from the (P, m) array."""
    gold = np.empty(len(pool.unique_texts))
    gold[pool.index.reshape(-1)] = pool.gold.reshape(-1)
    return gold


# ----------------------------------------------------------------------------- 2. proxy scores


def encode_pool(tokenizer, pool: Pool):
    """The distinct (prompt, reply) pairs of ``pool`` encoded for a reward model, with their real
    lengths and the order that sorts them by length: ``(batch, lengths, order)``, the input of
    :func:`score_pool` (about 2 s for 36,000 pairs: worth doing once per pool)."""
    batch = encode_pairs(tokenizer, pool.unique_prompts, pool.unique_texts, pool.max_new_tokens)
    lengths = batch.attention_mask.sum(-1)
    return batch, lengths, torch.argsort(lengths)


@torch.no_grad()
def score_pool(rm, tokenizer, pool: Pool, batch_size: int = 4096, chunk_size: int = 512,
               encoded=None) -> np.ndarray:
    """Reward-model scores r_φ(x, y) of every sample in the pool: (P, m), or (M, P, m) for a list
    of M reward models.

    The distinct (prompt, reply) pairs are encoded once (as reward_model.score_texts does;
    ``encoded``: :func:`encode_pool`'s result, to reuse it) and sorted by length, so each batch of
    ``batch_size`` carries little padding; every model scores each pair once. A batch goes
    through the model ``chunk_size`` rows at a time: the activations of 4096 rows overflow the
    CPU's caches, and 512 rows at the batch's width give the same scores (to float rounding: bit
    for bit on some CPUs, not on others) about 1.4 times faster.
    """
    rms = list(rm) if isinstance(rm, (list, tuple)) else [rm]
    batch, lengths, order = encoded if encoded is not None else encode_pool(tokenizer, pool)
    scores = torch.empty(len(rms), len(order))                            # (M, U)
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        width = int(lengths[idx].max())
        ids, mask = batch.input_ids[idx, :width], batch.attention_mask[idx, :width]
        for j, model in enumerate(rms):
            model.eval()
            scores[j, idx] = torch.cat([models.forward_logits(model, i, m)[:, 0]
                                        for i, m in zip(ids.split(chunk_size), mask.split(chunk_size))])
    per_sample = scores.numpy().astype(np.float64)[:, pool.index]         # (M, P, m)
    return per_sample if isinstance(rm, (list, tuple)) else per_sample[0]


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


# ----------------------------------------------------------------------------- 3. BoN curves


def n_grid(n_max: int, points_per_octave: int = 2) -> list[int]:
    """n = round(2^(k / points_per_octave)) for k = 0, 1, ..., up to n_max, without repeats.

    Example: n_grid(16, 2) = [1, 2, 3, 4, 6, 8, 11, 16].
    """
    octaves = math.log2(n_max)
    raw = np.round(2.0 ** (np.arange(0, octaves * points_per_octave + 1e-9) / points_per_octave))
    return sorted({int(n) for n in raw} | {1, n_max})


def plugin_kl_best_of_n(proxy, ns) -> np.ndarray:
    """A plug-in estimate of the true KL(π_bon ‖ π_ref), to set beside the bound KL_bon(n).

    Per prompt, p̂ is the empirical distribution of the m samples over their distinct proxy
    scores s_1 < s_2 < ... (tied replies merge; BoN splits a tie in proportion to p̂, so the KL is
    unchanged). BoN with n i.i.d. draws from p̂ lands on level l with probability
    q_l = F_l^n − F_{l−1}^n, F_l = Σ_{k≤l} p̂_k, and KL_plugin(n) = Σ_l q_l log(q_l / p̂_l).
    Exact for p̂ (and below the bound when replies repeat), but it cannot exceed log m, so it
    underestimates the true KL once n nears the number of distinct replies.

    Args: proxy (P, m); ns (G,) integers >= 1. Returns: (G,) the mean over prompts.
    Example: proxy [[0, 1]] (p̂ = [½, ½]), n = 2: q = [¼, ¾], KL = 0.131 < KL_bon(2) = 0.193.
    """
    proxy = np.atleast_2d(np.asarray(proxy, dtype=np.float64))
    ns = np.asarray(ns, dtype=np.float64)[:, None]                        # (G, 1)
    kls = []
    for row in proxy:
        _, counts = np.unique(row, return_counts=True)                     # ascending levels
        cdf = np.cumsum(counts) / counts.sum()                             # F_l, ends at exactly 1
        below = np.concatenate(([0.0], cdf[:-1]))                           # F_{l-1}
        mass = cdf - below                                                 # p̂_l, (L,)
        q = cdf ** ns - below ** ns                                        # (G, L); = mass at n = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            kls.append(np.where(q > 0, q * np.log(q / mass), 0.0).sum(axis=1))
    return np.mean(kls, axis=0)


def best_of_n_curve(proxy, gold, ns) -> dict:
    """Expected gold and proxy score of the proxy's best-of-n choice, for each n in ``ns``.

    By unbiased order statistics (overopt_math.best_of_n_expected), with E[·(y)] the mean over
    all samples (the n = 1 value):
        kl_bon = log n − (n−1)/n (an upper bound on the KL), d = sqrt(kl_bon),
        gold_gain = E[r*(y_bon)] − E[r*(y)],  proxy_gain = E[r_φ(y_bon)] − E[r_φ(y)],
    and kl_plugin (:func:`plugin_kl_best_of_n`), an estimate of the true KL.

    Args: proxy, gold (P, m) scores of the same samples; ns integers in 1..m.
    Returns: a dict of lists (G,): n, kl_bon, d, kl_plugin, gold, proxy, gold_gain, proxy_gain.
    Example: proxy [[1, 2, 3]], gold [[10, 0, 5]], n = 2: gold 3.33, gold_gain 3.33 − 5 = −1.67,
    proxy_gain 2.67 − 2 = 0.67.
    """
    proxy, gold = np.atleast_2d(proxy), np.atleast_2d(gold)
    bon = best_of_n_expected(proxy, gold, ns)
    kl = kl_best_of_n(bon["n"])
    return {"n": [int(n) for n in bon["n"]], "kl_bon": kl.tolist(), "d": np.sqrt(kl).tolist(),
            "kl_plugin": plugin_kl_best_of_n(proxy, bon["n"]).tolist(),
            "gold": bon["gold"].tolist(), "proxy": bon["proxy"].tolist(),
            "gold_gain": (bon["gold"] - gold.mean()).tolist(),
            "proxy_gain": (bon["proxy"] - proxy.mean()).tolist()}


def mean_curve(curves: list[dict]) -> dict:
    """The pointwise mean of best-of-n curves on one grid of n (:func:`best_of_n_curve`): n, KL_bon
    and d are shared; the plug-in KL, the scores and the gains are averaged.
    Example: gold_gain [0, 0.2] and [0, 0.4] give [0, 0.3]."""
    require(len(curves) > 0 and all(c["n"] == curves[0]["n"] for c in curves), "curves",
            "must be a non-empty list of curves on the same grid of n")
    averaged = ("kl_plugin", "gold", "proxy", "gold_gain", "proxy_gain")
    return {**curves[0], **{k: np.mean([c[k] for c in curves], axis=0).tolist() for k in averaged}}


def gao_summary(curve: dict) -> dict:
    """Fit R_bon(d) = d(α − βd) to a curve's gold gain (Gao et al. 2023) and find its peaks.

    Returns the curve itself, the fit (alpha, beta, d_peak = α/(2β), kl_peak, gain_peak; None
    where the fit never turns down), the observed peak (n, d, gold_gain at the best n of the
    grid) and the fall from there to the largest n: ``fall = gold_gain(n_max) − gold_gain(n_peak)``.
    """
    fit = fit_bon(curve["d"], curve["gold_gain"])
    finite = lambda x: float(x) if math.isfinite(x) else None             # JSON: no peak -> null
    i = int(np.argmax(curve["gold_gain"]))
    return {"curve": curve, "fit": {"alpha": fit.alpha, "beta": fit.beta, "d_peak": finite(fit.d_peak),
                                    "kl_peak": finite(fit.kl_peak), "gain_peak": finite(fit.gain_peak)},
            "peak": {"n": curve["n"][i], "d": curve["d"][i], "gold_gain": curve["gold_gain"][i]},
            "fall": curve["gold_gain"][-1] - curve["gold_gain"][i]}


# ----------------------------------------------------------------------------- 5. choosing n without gold


def _against_gold_peak(proxy, gold, ns, i: int) -> dict:
    """The choice ``ns[i]`` next to the true peak of the proxy's best-of-n gold gain:
    ``regret = gold_gain(n_peak) − gold_gain(n*)`` (>= 0), ``octaves = log2(n* / n_peak)``."""
    gain = best_of_n_expected(proxy, gold, ns)["gold"] - np.mean(gold)
    j = int(np.argmax(gain))
    return {"n_chosen": int(ns[i]), "gold_gain_chosen": float(gain[i]),
            "n_peak": int(ns[j]), "gold_gain_peak": float(gain[j]),
            "regret": float(gain[j] - gain[i]), "octaves": float(math.log2(ns[i] / ns[j]))}


def choose_n(proxy, judge, gold, ns) -> dict:
    """Pick n without gold: n* = argmax_n E[judge(y_bon(n))], y_bon chosen by ``proxy``.

    ``judge`` is any score that the proxy was not trained to please: a held-out reward model, or
    the other ensemble members' mean − k·std. Reports n* and the gold gain there next to the true
    peak of the gold gain: ``regret = gold_gain(n_peak) − gold_gain(n*)`` (>= 0) and
    ``octaves = log2(n* / n_peak)``.
    """
    judged = best_of_n_expected(proxy, judge, ns)["gold"]                # "gold" = the 2nd score
    return {"judge_gain": (judged - np.mean(judge)).tolist(),
            **_against_gold_peak(proxy, gold, ns, int(np.argmax(judged)))}


def choose_n_by_labels(proxy, gold, ns, labels_per_n: int, seed: int) -> dict:
    """Pick n without reading the gold utility: a small human evaluation of best-of-n.

    For each n of ``ns``, ``labels_per_n`` times: a random prompt; the proxy's best of n replies
    drawn (without replacement) from that prompt's pool, against one more reply drawn at random;
    the simulated annotator (Bradley-Terry on r*, as :func:`rlhf_lab.world.annotate`) says which
    it prefers. The detector sees only these labels. Win rates are noisy (±0.03 at 300 labels),
    so rather than take the best n it fits Gao's form to the win-rate excess,
    2·win − 1 ≈ d(a − b d) with d = sqrt(KL_bon(n)), and picks the n nearest the fitted peak
    (the largest n when the fit never turns down).

    Args: proxy, gold (P, m); ns increasing integers in 1..m. Returns win rates, the fit, the
    chosen n, and (from the exact curve, for reporting only) the gold gain there and at the
    true peak, ``regret`` and ``octaves`` as :func:`choose_n`, and the number of labels used.
    """
    proxy, gold = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    P, m = proxy.shape
    rng = np.random.default_rng(seed)
    wins = []
    for n in ns:
        prompts = rng.integers(P, size=labels_per_n)
        best = np.array([rng.choice(m, size=n, replace=False) for _ in range(labels_per_n)])
        best = best[np.arange(labels_per_n), np.argmax(proxy[prompts[:, None], best], axis=1)]
        other = rng.integers(m, size=labels_per_n)
        p_best = 1.0 / (1.0 + np.exp(-(gold[prompts, best] - gold[prompts, other])))
        wins.append(float(np.mean(rng.random(labels_per_n) < p_best)))   # the annotator's labels
    wins = np.array(wins)
    d = np.sqrt(kl_best_of_n(np.asarray(ns)))
    fit = fit_bon(d, 2 * wins - 1)
    i = int(np.argmin(np.abs(d - fit.d_peak))) if math.isfinite(fit.d_peak) else len(ns) - 1
    return {"ns": [int(n) for n in ns], "win_rate": wins.tolist(),
            "win_rate_se": np.sqrt(wins * (1 - wins) / labels_per_n).tolist(),
            "fit": {"alpha": fit.alpha, "beta": fit.beta},
            **_against_gold_peak(proxy, gold, ns, i), "labels": labels_per_n * len(ns)}


# ----------------------------------------------------------------------------- the whole study


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
    require(isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1, "jobs",
            f"must be an int >= 1, got {jobs!r}")
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
    ``jobs`` single-threaded workers, the largest first; ``(timings, scores by label)``. A
    4000-pair model trains in 11.9 s with two threads, two of them at once in 15.1 s (AMD EPYC
    VM, 2026-12-01): a second process pays, a second thread hardly."""
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
