"""PPO against proxy reward models of several sizes: Gao et al.'s R_RL curves, one per proxy.

Gao, Schulman & Hilton (2023, "Scaling Laws for Reward Model Overoptimization", section 3) follow
a PPO run by its checkpoints: at each one, d = sqrt(KL(π‖π_ref)) and the gold gain over the
initial policy. For RL they found the gold gain follows

    R_RL(d) = d(α − β log d),

rising, peaking at d* = exp(α/β − 1) and falling, while the proxy gain keeps rising; a larger proxy
reward model peaks later and higher. :mod:`rlhf_lab.studies.overoptimisation` draws the same picture for best-of-n;
here every PPO iteration is one point (its rollouts give KL, gold and proxy), and every
``eval_every``-th one is also a checkpoint evaluated on a fixed set of replies (see below).
:func:`ppo_gao_study`:

1. trains (or loads) the reward model on each number of pairs of the grid, in this process
   (by default with the summed head, which learned r* best, on the labels of a consistent
   annotator: ``rm_pooling``, ``rm_lr``, ``rm_sharpness``);
2. trains (or loads) PPO at a small β against each of them, once per PPO seed, its score
   whitened over the SFT policy's replies (``reward_norm``) — ordinary pipeline artifacts (with
   ``rm_pooling``, ``rm_lr``, ``rm_sharpness``, ``reward_norm`` and ``iterations`` None,
   ``eval_every`` 0 and seed 0, the run on ``run.rm.n_pairs`` pairs is the pipeline's own) — a
   few at a time in worker processes;
3. measures the SFT policy itself precisely (:func:`sft_baseline`: 256 replies per prompt,
   scored by the gold utility and by every proxy): the zero of every gain;
4. per proxy: the gains along training (:func:`gain_curve`), the R_RL fit (:func:`fit_curve`),
   the observed gold peak, its mean over a few iterations and the final gain
   (:func:`observed_peak`, :func:`smoothed_peak`); the gold parts that rose up to the seed-mean
   peak and those that fell after it (``stages``, :func:`rlhf_lab.studies.hack.stage_changes`);
   the same for the checkpoints
   (``checkpoints``).

Why checkpoints: a rollout batch is 256 replies to prompts drawn at random, so its gold mean
carries ±0.06 of noise, and the best of 60 such batches reads high. Gao et al. evaluate
checkpoints instead. Here each checkpoint samples ``eval_per_prompt`` replies to every prompt with
the same seed (``PPOConfig.eval_every``), so two checkpoints differ by what the policy changed,
to about ±0.02; the first is the SFT policy on those same seeds, the zero of the curve.

Why step 3: iteration 0's rollouts are also SFT replies, but only 256 of them, and every run
draws the same ones (same seed), so their mean is off by its own sampling error (standard error
about 0.06 gold) in the same direction for every proxy. As the zero of the gains it shifts all
curves together and bends the fit, which has no intercept. On the default run iteration 0 read
1.77 gold where 12,288 SFT replies give 1.90.

The summary is cached as ``ppo_gao-<key>``, ``key`` hashing the config and every PPO run's key.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from rlhf_lab.core.artifacts import cached, read_json, write_json
from rlhf_lab.core.config import config_dict, config_hash, integer, positive, require
from rlhf_lab.equations.overopt_math import fit_rl
from rlhf_lab.lm import models
from rlhf_lab.pipeline.pool import load_or_sample_pool, score_pool
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_ppo, load_or_train_rm, stage_keys, train_runs
from rlhf_lab.studies import hack

__all__ = ["PPOGaoConfig", "gain_curve", "fit_curve", "observed_peak", "smoothed_peak", "proxy_summary",
           "seed_mean_curve", "peak_ordering", "sft_baseline", "ppo_gao_runs", "ppo_gao_study"]


@dataclass(frozen=True)
class PPOGaoConfig:
    """The PPO overoptimisation study."""
    pairs_grid: tuple = (4000, 16000, 64000)
    """Training pairs of the proxy reward models, one Gao curve each (typical 1000-100000; Gao
    et al. trained theirs on up to 100 000 comparisons)."""
    beta: float = 0.01
    """β, the KL coefficient of every PPO run: small, so the policy travels far enough from
    π_ref for the gold gain to turn down (typical 0.003-0.03)."""
    baseline_per_prompt: int = 256
    """SFT replies per prompt for the zero of the gains (48 prompts; standard error of the gold
    mean about 1 / sqrt(48 x 256) = 0.009)."""
    baseline_seed: int = 31_000
    """Seed of those replies (not a training seed)."""
    smooth: int = 5
    """Iterations averaged for :func:`smoothed_peak`: the single best iteration is the maximum of
    many noisy batches (256 replies each, ±0.06 gold) and so reads high."""
    eval_every: int = 4
    """Iterations between checkpoint evaluations of each run (``PPOConfig.eval_every``; 0 = none)."""
    eval_per_prompt: int = 16
    """Replies per prompt at each checkpoint (48 prompts: 768 replies)."""
    rm_pooling: str | None = "sum"
    """How the proxies' head is read (``RewardConfig.pooling``); None: as ``run.rm`` says. The
    summed head (``"sum"``, with ``rm_lr`` 1e-3) learned r* best of the heads measured
    (docs/reward_model_diagnosis.md)."""
    rm_lr: float | None = 1e-3
    """The proxies' learning rate (``RewardConfig.lr``); None: ``run.rm.lr``."""
    rm_sharpness: float | None = 2.5
    """The sharpness of the annotator who labels the proxies' pairs (``RewardConfig.sharpness``);
    None: ``run.rm.sharpness``. Gao et al. labelled with their gold reward model, without noise;
    2.5 is a labeller about as consistent as InstructGPT's (see docs/reward_model_diagnosis.md)."""
    reward_norm: str | None = "whiten"
    """How every run shifts and scales its proxy's score (``PPOConfig.reward_norm``): "whiten"
    puts each proxy in units of its own spread over the SFT policy's replies, so one β means the
    same for all of them, and removes the dip that a positive mean score causes while the value
    head learns (docs/reward_model_diagnosis.md, run 4); None: as ``run.ppo`` says."""
    iterations: int | None = 60
    """PPO iterations of every run; None: ``run.ppo.iterations``. A better proxy holds longer:
    its fall comes later in KL."""
    seeds: tuple = (0, 1, 2)
    """PPO seeds (the value head's initialisation, the rollouts and the minibatch order) run
    against every proxy; with two or more, ``seed_mean`` gives the mean checkpoint curve with its
    standard error across seeds (Gao et al. report each run; one seed cannot tell a peak from
    luck)."""

    def __post_init__(self):
        grid = self.pairs_grid
        require(isinstance(grid, tuple) and len(grid) > 0
                and all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in grid)
                and list(grid) == sorted(set(grid)), "pairs_grid",
                f"must be a non-empty, strictly increasing tuple of ints > 0, got {grid!r}")
        positive(self, "beta")
        require(self.reward_norm in (None, "center", "whiten"), "reward_norm",
                f"must be None, 'center' or 'whiten', got {self.reward_norm!r}")
        require(self.rm_pooling is None or self.rm_pooling in models.POOLINGS, "rm_pooling",
                f"must be None or one of {models.POOLINGS}, got {self.rm_pooling!r}")
        for name in ("rm_lr", "rm_sharpness"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, (int, float)) and value > 0), name,
                    f"must be None or a number > 0, got {value!r}")
        require(self.iterations is None or (isinstance(self.iterations, int)
                                            and not isinstance(self.iterations, bool)
                                            and self.iterations > 0),
                "iterations", f"must be None or an int > 0, got {self.iterations!r}")
        seeds = self.seeds
        require(isinstance(seeds, tuple) and len(seeds) > 0 and len(set(seeds)) == len(seeds)
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds),
                "seeds", f"must be a non-empty tuple of distinct ints >= 0, got {seeds!r}")
        for name, low in (("baseline_per_prompt", 1), ("baseline_seed", 0), ("smooth", 1),
                          ("eval_every", 0), ("eval_per_prompt", 1)):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                    f"must be an int >= {low}, got {value!r}")


# ----------------------------------------------------------------------------- one run's curve


def gain_curve(history: list[dict], baseline: dict | None = None) -> dict:
    """Gold and proxy gain along one PPO run, against d = sqrt(KL), over the SFT policy.

        d_t = sqrt(max(KL_t, 0)),  gold_gain_t = r*_t − r*_0,  proxy_gain_t = r_φ,t − r_φ,0,

    where r*_t and r_φ,t are the mean gold utility and proxy reward of iteration t's rollouts and
    KL_t their estimated KL(π_t‖π_ref) (an estimate, which can dip below 0: clipped for d).
    r*_0 and r_φ,0 are ``baseline["gold"]`` and ``baseline["proxy"]``, the SFT policy's means
    (:func:`sft_baseline`); without a baseline, iteration 0's rollouts (SFT replies too, but few).

    Args: history: the run's ``metrics["history"]``, one dict per iteration with keys
    ``iteration``, ``kl``, ``gold``, ``proxy``; baseline: None or a dict with ``gold``, ``proxy``.
    Returns: a dict of lists: iteration, kl, d, gold_gain, proxy_gain.
    Example: kl [0, 4, −0.1], gold [1, 3, 0.5] give d [0, 2, 0], gold_gain [0, 2, −0.5]; with
    baseline gold 1.5, gold_gain [−0.5, 1.5, −1].
    """
    require(len(history) > 0, "history", "must hold at least one iteration")
    require(baseline is None or {"gold", "proxy"} <= set(baseline), "baseline",
            f"must be None or a dict with keys 'gold' and 'proxy', got {baseline!r}")
    first = history[0] if baseline is None else baseline
    gold0, proxy0 = float(first["gold"]), float(first["proxy"])
    return {"iteration": [int(h["iteration"]) for h in history],
            "kl": [float(h["kl"]) for h in history],
            "d": [math.sqrt(max(float(h["kl"]), 0.0)) for h in history],
            "gold_gain": [float(h["gold"] - gold0) for h in history],
            "proxy_gain": [float(h["proxy"] - proxy0) for h in history]}


def fit_curve(curve: dict) -> dict | None:
    """Gao's R_RL(d) = d(α − β log d) fitted to the gold gain of the points with d > 0
    (:func:`rlhf_lab.equations.overopt_math.fit_rl`; log 0 is undefined, and R_RL(0) = 0 anyway).

    Returns alpha, beta, the predicted peak d_peak = exp(α/β − 1), kl_peak = d_peak² and
    gain_peak = β·d_peak (each ``inf`` when the fit never turns down), and the number of points
    fitted; ``None`` when fewer than 2 points have d > 0.
    """
    d, gain = np.asarray(curve["d"]), np.asarray(curve["gold_gain"])
    keep = d > 0
    if keep.sum() < 2:
        return None
    fit = fit_rl(d[keep], gain[keep])
    return {"alpha": fit.alpha, "beta": fit.beta, "d_peak": fit.d_peak, "kl_peak": fit.kl_peak,
            "gain_peak": fit.gain_peak, "points": int(keep.sum())}


def _point(curve: dict, i: int) -> dict:
    """Row ``i`` of a :func:`gain_curve`: its iteration, KL, d and gains."""
    return {key: curve[key][i] for key in ("iteration", "kl", "d", "gold_gain", "proxy_gain")}


def observed_peak(curve: dict) -> dict:
    """The iteration of the highest gold gain (the first, on ties), its KL, d and gains."""
    return _point(curve, int(np.argmax(curve["gold_gain"])))


def smoothed_peak(curve: dict, window: int) -> dict:
    """The best run of ``window`` consecutive iterations by mean gold gain (all of them when the
    curve is shorter): ``first`` and ``last`` iteration, and the window's mean ``kl``,
    ``gold_gain`` and ``proxy_gain``. With ``window`` = 1 it is :func:`observed_peak`'s point.

    The maximum of single iterations is biased upwards: with 60 batches of noise ±0.06 it reads
    about two standard errors above the curve. A mean over a few iterations is not.
    Example: gold gains [0, 0.5, 1, 1, 0.2] with window 2 give means [0.25, 0.75, 1, 0.6]: the
    peak is iterations 2-3 at 1.0.
    """
    integer(window, "window", 1)
    window = min(window, len(curve["gold_gain"]))
    kernel = np.ones(window) / window
    means = {key: np.convolve(curve[key], kernel, mode="valid")
             for key in ("kl", "gold_gain", "proxy_gain")}
    i = int(np.argmax(means["gold_gain"]))
    return {"first": curve["iteration"][i], "last": curve["iteration"][i + window - 1],
            **{key: float(v[i]) for key, v in means.items()}}


def _shape(curve: dict) -> dict:
    """A gain curve with its R_RL fit, gold peak, final point and fall (final − peak, <= 0)."""
    peak, final = observed_peak(curve), _point(curve, -1)
    return {"curve": curve, "fit": fit_curve(curve), "peak": peak, "final": final,
            "fall": final["gold_gain"] - peak["gold_gain"]}


def proxy_summary(n_pairs: int, history: list[dict], rm_metrics: dict,
                  baseline: dict | None = None, window: int = 5,
                  evals: list[dict] | None = None) -> dict:
    """Everything the study reports about the PPO run against one proxy reward model, its gains
    over ``baseline`` (see :func:`gain_curve`).

    ``final`` is the last iteration; ``fall = final gold gain − peak gold gain`` (<= 0) says how
    much of the peak was lost by running on; ``smoothed_peak`` is the best mean over ``window``
    consecutive iterations (:func:`smoothed_peak`). With the run's checkpoint evaluations
    (``evals``, ``metrics["evals"]``), ``checkpoints`` holds the same curve, fit, peak, final and
    fall over them, each gain measured from the first checkpoint (the SFT policy, same seeds).
    """
    curve = gain_curve(history, baseline)
    keep = ("accuracy", "bayes_ceiling", "gold_order_accuracy", "gold_correlation")
    return {"n_pairs": n_pairs, **_shape(curve), "smoothed_peak": smoothed_peak(curve, window),
            "checkpoints": _shape(gain_curve(evals)) if evals else None,
            "reward_model": {k: rm_metrics[k] for k in keep if k in rm_metrics},
            "baseline": None if baseline is None else dict(baseline)}


def seed_mean_curve(curves: list[dict]) -> dict:
    """The mean of several runs' checkpoint curves (:func:`gain_curve` over the same iterations,
    one per PPO seed), with standard errors across seeds, and its peak and fall.

        gold_gain_t = mean_s g_{s,t},  gold_se_t = std_s(g_{s,t}) / sqrt(S)   (ddof 1),

    and the same for the proxy gain and the KL; d_t = sqrt(max(mean KL_t, 0)). The peak is the
    checkpoint of the highest mean gold gain; ``fall`` = final − peak of the mean curve, and
    ``fall_se`` the standard error of the per-seed differences g_{s,T} − g_{s,peak} (paired: the
    same seed at both checkpoints). Standard errors are None for a single seed.

    Example: gold gains [0, 0.4, 0.1] and [0, 0.2, −0.1] give the mean [0, 0.3, 0.0], the peak
    at index 1 with standard error 0.1, and a fall of −0.3 with standard error 0 (both seeds
    lose 0.3).
    """
    require(len(curves) > 0, "curves", "must hold at least one curve")
    iterations = curves[0]["iteration"]
    require(all(c["iteration"] == iterations for c in curves), "curves",
            "must share their checkpoints' iterations (the same eval_every and iterations)")
    n = len(curves)
    stack = {k: np.array([c[k] for c in curves], dtype=float) for k in ("kl", "gold_gain", "proxy_gain")}
    se = lambda a: None if n == 1 else a.std(axis=0, ddof=1) / math.sqrt(n)    # across seeds
    mean = {k: v.mean(axis=0) for k, v in stack.items()}
    gold_se = se(stack["gold_gain"])
    curve = {"iteration": list(iterations), "kl": mean["kl"].tolist(),
             "d": np.sqrt(np.maximum(mean["kl"], 0.0)).tolist(),
             "gold_gain": mean["gold_gain"].tolist(), "proxy_gain": mean["proxy_gain"].tolist(),
             "gold_se": None if gold_se is None else gold_se.tolist(),
             "proxy_se": None if n == 1 else se(stack["proxy_gain"]).tolist()}
    at = lambda j: {**_point(curve, j), "gold_se": None if gold_se is None else float(gold_se[j])}
    i = int(np.argmax(mean["gold_gain"]))
    falls = stack["gold_gain"][:, -1] - stack["gold_gain"][:, i]      # per seed, paired
    fall_se = se(falls)
    return {"seeds": n, "curve": curve, "fit": fit_curve(curve), "peak": at(i), "final": at(-1),
            "fall": float(falls.mean()), "fall_se": None if fall_se is None else float(fall_se)}


def peak_ordering(means: list[dict]) -> list[dict]:
    """Does each larger proxy's seed-mean peak (:func:`seed_mean_curve`) stand higher and later
    than the one before? For neighbours a, b of the list: ``gain_diff`` = peak gain b − a,
    ``gain_se`` = sqrt(se_a² + se_b²) (independent runs), ``z`` = diff / se (None without
    standard errors), and ``kl_diff`` = peak KL b − a.

    Example: peaks 0.1 ± 0.03 at KL 1 and 0.3 ± 0.04 at KL 8 give gain_diff 0.2, gain_se 0.05,
    z 4 and kl_diff 7.
    """
    out = []
    for a, b in zip(means, means[1:]):
        diff = b["peak"]["gold_gain"] - a["peak"]["gold_gain"]
        ses = (a["peak"].get("gold_se"), b["peak"].get("gold_se"))
        se = None if None in ses else math.sqrt(ses[0] ** 2 + ses[1] ** 2)
        out.append({"gain_diff": diff, "gain_se": se,
                    "z": None if not se else diff / se,
                    "kl_diff": b["peak"]["kl"] - a["peak"]["kl"]})
    return out


def sft_baseline(run: RunConfig, reward_models: list, n_per_prompt: int, seed: int,
                 max_new_tokens: int = 24, root=None) -> dict:
    """The SFT policy of ``run``: its mean gold utility and mean score under each reward model,
    over ``n_per_prompt`` sampled replies to each of the 48 prompts (48 x 256 by default: the
    standard error of the gold mean is about 0.009 where one PPO batch of 256 has 0.06). The
    replies are a cached pool (:func:`rlhf_lab.studies.overoptimisation.load_or_sample_pool`): sampled once per
    seed and size, loaded after that.

    Returns ``{"gold": float, "proxy": [one float per reward model], "samples": int}``.
    """
    pool = load_or_sample_pool(run, n_per_prompt, seed, max_new_tokens, root)
    scores = score_pool(list(reward_models), models.world_tokenizer(), pool)   # (M, P, m)
    return {"gold": float(pool.gold.mean()), "proxy": [float(s.mean()) for s in scores],
            "samples": int(pool.gold.size)}


# ----------------------------------------------------------------------------- the study


def ppo_gao_runs(run: RunConfig, cfg: PPOGaoConfig) -> list[RunConfig]:
    """One PPO run per proxy size and PPO seed (sizes outer, seeds inner): ``run`` with the RM on
    ``p`` pairs and PPO at ``cfg.beta`` with that seed, evaluated at checkpoints every
    ``cfg.eval_every`` iterations."""
    rm = {k: v for k, v in (("pooling", cfg.rm_pooling), ("lr", cfg.rm_lr),
                            ("sharpness", cfg.rm_sharpness)) if v is not None}
    ppo = {k: v for k, v in (("iterations", cfg.iterations), ("reward_norm", cfg.reward_norm))
           if v is not None}
    return [run.with_rm(n_pairs=p, **rm).with_ppo(beta=cfg.beta, eval_every=cfg.eval_every,
                                                  eval_per_prompt=cfg.eval_per_prompt, seed=seed,
                                                  **ppo)
            for p in cfg.pairs_grid for seed in cfg.seeds]


def _per_proxy(items: list, cfg: PPOGaoConfig) -> list[list]:
    """``items`` in the order of :func:`ppo_gao_runs` (sizes outer, seeds inner), one list per
    proxy size."""
    k = len(cfg.seeds)
    return [items[i:i + k] for i in range(0, len(items), k)]


def study_key(run: RunConfig, cfg: PPOGaoConfig) -> str:
    """The cache key of the summary: the config and the key of every PPO run (which hash their
    reward model's, SFT's and base model's keys in turn)."""
    return config_hash(cfg, *(stage_keys(r)["ppo"] for r in ppo_gao_runs(run, cfg)))


def ppo_gao_study(run: RunConfig = RunConfig(), pairs_grid=PPOGaoConfig.pairs_grid,
                  beta: float = 0.01, root=None, jobs: int | None = None, **options) -> dict:
    """PPO at ``beta`` against a proxy reward model of each size in ``pairs_grid``: the gold and
    proxy gains along training against d = sqrt(KL), Gao's R_RL fit and the observed peak.

    Returns a dict of plain lists and floats: ``config``, ``key`` and ``proxies`` (one
    :func:`proxy_summary` per size, with the run's ``ppo_key`` and ``seconds`` of training, 0
    when it was cached). ``jobs``: PPO runs trained at once in single-threaded worker processes
    (default: 2 when the machine has 2 or more cores); ``options``: other :class:`PPOGaoConfig`
    fields. ``baseline`` holds the SFT policy's means, the zero of every gain.
    """
    cfg = PPOGaoConfig(pairs_grid=tuple(pairs_grid), beta=beta, **options)
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    integer(jobs, "jobs", 1)
    runs = ppo_gao_runs(run, cfg)
    # 1. reward models here, once, before any worker could train them twice
    for same_proxy in _per_proxy(runs, cfg):
        load_or_train_rm(same_proxy[0], root)
    # 2. the PPO runs that are not cached yet, `jobs` at a time
    seconds = train_runs([("ppo", r) for r in runs], root, jobs)
    # 3. curves, fits and peaks (cached: a rerun reads one JSON file)
    key = study_key(run, cfg)
    result = cached("ppo_gao", key, lambda: _summarise(cfg, runs, key, root),
                    lambda out, folder: write_json(folder / "results.json", out),
                    lambda folder: read_json(folder / "results.json"), root)
    for row, s in zip(result["proxies"], _per_proxy(seconds, cfg)):
        row["seconds"] = sum(s)
    return result


def _summarise(cfg: PPOGaoConfig, runs: list[RunConfig], key: str, root) -> dict:
    groups = _per_proxy(runs, cfg)
    rms = [load_or_train_rm(same_proxy[0], root) for same_proxy in groups]
    base = sft_baseline(runs[0], [rm.model for rm in rms], cfg.baseline_per_prompt,
                        cfg.baseline_seed, runs[0].ppo.max_new_tokens, root)
    proxies = []
    for p, rm, proxy0, same_proxy in zip(cfg.pairs_grid, rms, base["proxy"], groups):
        ppos = [load_or_train_ppo(r, root) for r in same_proxy]
        baseline = {"gold": base["gold"], "proxy": proxy0}
        first = ppos[0]                     # the first seed's run, in full
        evals = [ppo.metrics.get("evals") for ppo in ppos]
        mean = seed_mean_curve([gain_curve(e) for e in evals]) if all(evals) else None
        proxies.append({**proxy_summary(p, first.metrics["history"], rm.metrics, baseline, cfg.smooth,
                                        evals[0]),
                        "seed_mean": mean,
                        "stages": None if mean is None else hack.stage_changes(
                            evals, mean["curve"]["iteration"].index(mean["peak"]["iteration"])),
                        "params": models.count_parameters(rm.model),
                        "ppo_key": first.key, "ppo_keys": [ppo.key for ppo in ppos], "rm_key": rm.key})
    return {"config": config_dict(cfg), "key": key, "baseline": base,
            "proxies": proxies}
