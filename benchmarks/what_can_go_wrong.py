"""What can go wrong in RLHF, read off the kit's own cached runs (issue 24, item 7).

Prints one small table per topic of docs/what_can_go_wrong.md and draws its figures:

1. a positive mean score and a value head that starts at zero: Gao's PPO study against the proxy
   on ``--pairs`` pairs (β = 0.01, checkpoints every 4 iterations), without normalisation (80
   iterations) and with ``reward_norm="whiten"`` (60 iterations), PPO seeds ``--seeds``;
2. negative KL estimates: every cached PPO run's per-iteration k1 batch mean (``history["kl"]``),
   and, sampled here, the per-reply k1 and k3 of two cached policies against the reference;
3. entropy collapse and length drift: the pipeline's PPO runs at ``--betas`` (β = 0: no leash);
4. the EOS trick: the share of evaluated replies that end with ``<eos>``, and what the proxy
   pays for an ``<eos>`` (the same SFT replies scored with and without it);
5. (no table: the page ties topic 1's score normalisation to the per-batch advantage whitening).

    python benchmarks/what_can_go_wrong.py [--cache DIR] [--study-cache DIR] [--pairs 64000]
        [--seeds 0 1 2] [--betas 0 0.01 0.03 0.1] [--replies 512] [--no-sampling]
        [--out out/what_can_go_wrong]

It trains nothing: a run missing from the cache stops it with the run's folder. Topics 2 and 4
sample a few hundred replies from cached models (seconds on one core); ``--no-sampling`` skips
that and reads the caches only.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path

import numpy as np

from rlhf_lab.core.artifacts import artifact_folder, is_cached, read_json
from rlhf_lab.pipeline.runs import RunConfig, stage_keys
from rlhf_lab.studies.ppo_gao import PPOGaoConfig, ppo_gao_runs
from rlhf_lab.studies.sweep import sweep_run


# ---------------------------------------------------------------- pure helpers (tested)

def negative_batches(history: list[dict], key: str = "kl") -> dict:
    """The iterations whose batch estimate ``key`` is below zero: ``{"batches": n, "negative":
    [(iteration, value), ...], "min": the lowest value}``.

    >>> negative_batches([{"kl": 0.0}, {"kl": -0.01}, {"kl": 0.2}])
    {'batches': 3, 'negative': [(1, -0.01)], 'min': -0.01}
    """
    values = [row[key] for row in history]
    return {"batches": len(values), "negative": [(i, v) for i, v in enumerate(values) if v < 0],
            "min": min(values)}


def dip_before_rise(evals: list[dict]) -> dict:
    """Gold and proxy gains over the first checkpoint, and the dip: the lowest gold gain before
    the gold peak, where it happens, and the proxy gain and length there.

    >>> e = [{"iteration": 0, "gold": 1.0, "proxy": 1.0, "kl": 0.0, "length": 10.0},
    ...      {"iteration": 4, "gold": 0.8, "proxy": 1.0, "kl": 1.0, "length": 8.0},
    ...      {"iteration": 8, "gold": 1.5, "proxy": 2.0, "kl": 3.0, "length": 12.0}]
    >>> d = dip_before_rise(e); d["dip"], d["dip_iteration"], d["peak"], d["peak_kl"]
    (-0.2, 4, 0.5, 3.0)
    """
    gold = [e["gold"] - evals[0]["gold"] for e in evals]
    proxy = [e["proxy"] - evals[0]["proxy"] for e in evals]
    peak = int(np.argmax(gold))
    dip = int(np.argmin(gold[:peak + 1]))
    return {"gold": gold, "proxy": proxy, "peak": round(gold[peak], 10),
            "peak_iteration": evals[peak]["iteration"], "peak_kl": evals[peak]["kl"],
            "dip": round(gold[dip], 10), "dip_iteration": evals[dip]["iteration"],
            "dip_proxy": proxy[dip], "dip_kl": evals[dip]["kl"], "dip_length": evals[dip]["length"]}


def tail_mean(history: list[dict], key: str, tail: int = 5) -> float:
    """The mean of ``key`` over the last ``tail`` iterations (one batch is noisy).

    >>> tail_mean([{"x": 1.0}, {"x": 2.0}, {"x": 4.0}], "x", tail=2)
    3.0
    """
    return float(np.mean([row[key] for row in history[-tail:]]))


def advantages_at_zero_value(scores: list[float], lengths: list[int], lam: float = 0.95):
    """PPO's steps 3-4 for replies of ``lengths`` tokens scored ``scores``, with the value head at
    zero (V = 0), γ = 1 and no KL term: (raw GAE advantages A_t = λ^(T-1-t) · score, the same
    whitened over the batch's reply tokens as ``stages/ppo.py`` does), both (B, max length).

    >>> raw, _ = advantages_at_zero_value([2.0, 2.0], [1, 2], lam=0.5)
    >>> raw.tolist()
    [[2.0, 0.0], [1.0, 2.0]]
    """
    import torch
    from rlhf_lab.equations.masking import masked_whiten
    from rlhf_lab.equations.rl_losses import gae, shaped_rewards
    mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)            # (B, R)
    zeros = torch.zeros(mask.shape)
    rewards = shaped_rewards(torch.tensor(scores, dtype=torch.float32), zeros, zeros, mask, beta=0.0)
    adv, _ = gae(rewards, zeros, mask, gamma=1.0, lam=lam)
    return adv, masked_whiten(adv, mask)


# ---------------------------------------------------------------- reading the caches

def metrics_of(stage: str, run: RunConfig, root) -> dict:
    """A cached artifact's metrics.json; stops (never trains) if the run is not in ``root``."""
    key = stage_keys(run)[stage]
    if not is_cached(stage, key, root):
        raise SystemExit(f"not cached: {artifact_folder(stage, key, root)} (this script trains nothing)")
    return read_json(artifact_folder(stage, key, root) / "metrics.json")


def study_run(pairs: int, seed: int, reward_norm: str | None, iterations: int) -> RunConfig:
    """Gao's PPO study's run against the proxy on ``pairs`` pairs (β = 0.01, checkpoints every 4)."""
    cfg = PPOGaoConfig(pairs_grid=(pairs,), seeds=(seed,), reward_norm=reward_norm,
                       iterations=iterations)
    return ppo_gao_runs(RunConfig(), cfg)[0]


def all_ppo_histories(roots) -> dict[str, list[dict]]:
    """Every completed ``ppo-*`` run in the given cache folders, by folder name (once each)."""
    runs = {}
    for root in roots:
        for folder in sorted(glob.glob(os.path.join(str(root), "ppo-*"))):
            name = os.path.basename(folder)
            if name not in runs and os.path.exists(os.path.join(folder, "COMPLETE")):
                runs[name] = read_json(Path(folder) / "metrics.json")["history"]
    return runs


def model_of(stage: str, run: RunConfig, root):
    """A cached artifact's model (a causal LM, or the reward model for ``stage == "rm"``)."""
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel
    from rlhf_lab.lm import models
    metrics_of(stage, run, root)                                # stops if it is not cached
    cls = GPT2ForSequenceClassification if stage == "rm" else GPT2LMHeadModel
    with models.no_progress_bars():
        return cls.from_pretrained(artifact_folder(stage, stage_keys(run)[stage], root) / "model").eval()


# ---------------------------------------------------------------- sampling from cached models

def sample_replies(policy, n: int, seed: int):
    """``n`` replies of ``policy`` to prompts drawn with ``seed``: (input_ids, attention_mask,
    response_mask, prompt_len), as in PPO's rollout step."""
    import random
    import torch
    from rlhf_lab import world
    from rlhf_lab.lm import models
    from rlhf_lab.stages.ppo import PPOConfig
    from rlhf_lab.stages.rollout import generate_rollout
    rng = random.Random(seed)
    prompts = [rng.choice(world.all_prompts()) for _ in range(n)]
    with torch.no_grad():
        r = generate_rollout(policy, models.world_tokenizer(), prompts, PPOConfig(),
                             torch.Generator().manual_seed(seed))
    return r.input_ids, r.attention_mask, r.response_mask, r.input_ids.shape[1] - r.response_mask.shape[1]


def reply_kl_estimates(policy, reference, n: int, seed: int) -> dict:
    """Per-token and per-reply k1 and k3 of KL(π || π_ref) on ``n`` replies sampled from π."""
    import torch
    from rlhf_lab.equations.masking import masked_sum, response_logprobs
    from rlhf_lab.equations.rl_losses import kl_k1, kl_k3
    from rlhf_lab.lm import models
    ids, am, mask, P = sample_replies(policy, n, seed)
    with torch.no_grad():
        logp = response_logprobs(models.forward_logits(policy, ids, am), ids, P)          # (B, R)
        logp_ref = response_logprobs(models.forward_logits(reference, ids, am), ids, P)   # (B, R)
    k1, k3 = kl_k1(logp, logp_ref), kl_k3(logp, logp_ref)                                 # (B, R)
    return {"token_k1": k1[mask].numpy(), "token_k3": k3[mask].numpy(),
            "reply_k1": masked_sum(k1, mask, dim=-1).numpy(),
            "reply_k3": masked_sum(k3, mask, dim=-1).numpy()}


def eos_value(policy, reward_model, n: int, seed: int) -> dict:
    """The proxy's score of ``n`` replies of ``policy`` with their ``<eos>`` and without it (the
    same words, the last token masked out, as if generation had been cut off before it)."""
    import torch
    from rlhf_lab.lm import models
    ids, am, mask, P = sample_replies(policy, n, seed)
    eos_id = models.world_tokenizer().eos_token_id
    ended = ids[:, P:].eq(eos_id).any(-1)
    ids, am, mask = ids[ended], am[ended], mask[ended]
    last = mask.long().cumsum(-1).argmax(-1)                            # (B,) the <eos> column
    rows = torch.arange(len(ids))
    cut_ids, cut_am = ids.clone(), am.clone()
    cut_ids[rows, P + last] = models.world_tokenizer().pad_token_id
    cut_am[rows, P + last] = 0
    with torch.no_grad():
        full = models.reward_scores(reward_model, ids, am, P)
        without = models.reward_scores(reward_model, cut_ids, cut_am, P)
    return {"ended": float(ended.float().mean()), "with": full.numpy(), "without": without.numpy()}


# ---------------------------------------------------------------- the topics

def topic_dip(args, out: Path) -> None:
    """1. Without normalisation PPO first loses gold while the proxy stands still."""
    from rlhf_lab.course.plots.common import COLORS, LEGEND_FONTSIZE, save
    import matplotlib.pyplot as plt
    print(f"## 1. Positive mean score, value head at zero ({args.pairs} pairs, β = 0.01)\n")
    print("| score | PPO seed | run | gold gain after 4 / 8 it. | lowest gold gain before the peak "
          "(iteration, KL, proxy gain, length) | peak gold gain (iteration, KL) "
          "| explained variance, iterations 0-11 |")
    print("|---|---|---|---|---|---|---|")
    curves = {}
    for norm, iterations in ((None, 80), ("whiten", 60)):
        for seed in args.seeds:
            run = study_run(args.pairs, seed, norm, iterations)
            m = metrics_of("ppo", run, args.study_cache)
            d = dip_before_rise(m["evals"])
            ev = [row["explained_variance"] for row in m["history"][:12]]
            dip = ("none (never below the start)" if d["dip_iteration"] == 0 else
                   f"{d['dip']:+.3f} ({d['dip_iteration']}, {d['dip_kl']:.2f}, {d['dip_proxy']:+.3f}, "
                   f"{d['dip_length']:.1f})")
            print(f"| {norm or 'raw'} | {seed} | ppo-{stage_keys(run)['ppo']} | {d['gold'][1]:+.3f} / "
                  f"{d['gold'][2]:+.3f} | {dip} | {d['peak']:+.3f} ({d['peak_iteration']}, "
                  f"{d['peak_kl']:.2f}) "
                  f"| {min(ev):+.2f} to {max(ev):+.2f} |")
            if seed == args.seeds[0]:
                curves[norm or "raw"] = (m["evals"], d)
    print(f"\nmean proxy score of the SFT policy's replies (the first checkpoint): "
          f"{m['evals'][0]['proxy']:.3f}")
    print(f"seed {args.seeds[0]}, first checkpoints (gold gain / proxy gain / KL / length):")
    for name, (evals, d) in curves.items():
        print(f"  {name:6s}: " + "  ".join(
            f"it {e['iteration']}: {g:+.2f}/{p:+.2f}/{e['kl']:.2f}/{e['length']:.1f}"
            for e, g, p in list(zip(evals, d["gold"], d["proxy"]))[:6]))
    evals, d = curves["raw"]
    at_dip = next(e for e in evals if e["iteration"] == d["dip_iteration"])
    change = {k: at_dip["parts"][k] - evals[0]["parts"][k] for k in evals[0]["parts"]}
    print(f"raw score, seed {args.seeds[0]}: the gold parts that moved most by the dip (iteration "
          f"{d['dip_iteration']}): " + ", ".join(f"{k} {v:+.3f}" for k, v in
                                                 sorted(change.items(), key=lambda kv: -abs(kv[1]))[:3]))
    lengths = (6, 10, 14)
    score = curves["raw"][0][0]["proxy"]
    _, white = advantages_at_zero_value([score] * len(lengths), list(lengths))
    print(f"\nwhy: GAE at V = 0, λ = 0.95, every reply scored {score:.3f}, whitened over one batch of "
          f"replies of {', '.join(map(str, lengths))} tokens (first token → <eos>):")
    for row, n in zip(white, lengths):
        print(f"  {n:2d} tokens: " + " ".join(f"{a:+.2f}" for a in row[:n].tolist()))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for (name, (evals, d)), ls in zip(curves.items(), ("-", "--")):
        it = [e["iteration"] for e in evals]
        label = "raw score" if name == "raw" else "whitened score"
        axes[0].plot(it, d["gold"], ls, color=COLORS["gold"], label=f"gold, {label}")
        axes[0].plot(it, d["proxy"], ls, color=COLORS["proxy"], label=f"proxy, {label}")
        axes[1].plot(it, [e["length"] for e in evals], ls, color=COLORS["ppo"], label=label)
    shown = [v for evals, d in curves.values() for e, g, p in zip(evals, d["gold"], d["proxy"])
             if e["iteration"] <= 40 for v in (g, p)]           # scale to the 40 iterations shown
    axes[0].set_ylim(min(shown) - 0.1, max(shown) + 0.3)        # (+0.3: room for the legend)
    axes[0].axhline(0, color="#9e9e9e", lw=0.8)
    axes[0].set(xlabel="PPO iteration", ylabel="gain over the SFT policy", xlim=(0, 40),
                title="Gold and proxy gains (first 40 iterations)")
    axes[1].set(xlabel="PPO iteration", ylabel="mean reply length (tokens)", xlim=(0, 40),
                title="Reply length")
    for ax in axes:
        ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    save(fig, out / "dip_before_rise.png")


def topic_negative_kl(args, out: Path, betas_runs: dict) -> None:
    """2. The k1 batch mean is sometimes negative; per reply it often is; k3 never."""
    from rlhf_lab.course.plots.common import LEGEND_FONTSIZE, ramp, save
    import matplotlib.pyplot as plt
    print("\n## 2. Negative KL estimates (k1 batch means in history['kl'])\n")
    runs = all_ppo_histories([r for r in (args.cache, args.study_cache) if r is not None])
    found = {name: negative_batches(h) for name, h in runs.items()}
    batches = sum(f["batches"] for f in found.values())
    negative = [(name, i, v) for name, f in found.items() for i, v in f["negative"]]
    first = [h[0]["kl"] for h in runs.values()]
    second = [h[1]["kl"] for h in runs.values() if len(h) > 1]
    sizes = sorted({read_json(Path(root) / name / "config.json")["rollouts"]
                    for root in (args.cache, args.study_cache) for name in runs
                    if (Path(str(root)) / name / "config.json").exists()})
    print(f"{len(runs)} cached PPO runs, {batches} batches of {' or '.join(map(str, sizes))} replies: "
          f"{len(negative)} negative batch means")
    print(f"iteration 0 (π = π_ref): KL exactly 0 in {sum(k == 0.0 for k in first)} of {len(first)} runs")
    print(f"iteration 1: negative in {sum(k < 0 for k in second)} of {len(second)} runs; "
          f"median {np.median(second):+.4f}, lowest {min(second):+.4f}")
    for name, i, v in negative:
        print(f"  {name} iteration {i}: {v:+.4f} (β = {runs[name][i]['beta']:g})")
    if args.no_sampling:
        return
    print(f"\nper reply, {args.replies} replies sampled from each cached policy (seed {args.sample_seed}):")
    print("| policy | k1 mean | k3 mean | k1 / k3 spread over replies (sd) "
          "| sd of a 256-reply batch mean (k1) | replies with k1 < 0 | tokens with k1 < 0 "
          "| lowest reply k1 | lowest reply k3 |")
    print("|---|---|---|---|---|---|---|---|---|")
    reference = model_of("sft", RunConfig(), args.cache)
    shown = {}
    for beta in args.kl_betas:
        run = betas_runs.get(beta) or sweep_run(RunConfig(), beta)
        est = reply_kl_estimates(model_of("ppo", run, args.cache), reference, args.replies, args.sample_seed)
        shown[beta] = est
        sd1, sd3 = est["reply_k1"].std(ddof=1), est["reply_k3"].std(ddof=1)
        print(f"| PPO β = {beta:g} (ppo-{stage_keys(run)['ppo']}) | {est['reply_k1'].mean():+.4f} "
              f"| {est['reply_k3'].mean():+.4f} | {sd1:.3f} / {sd3:.3f} | {sd1 / 16:.4f} "
              f"| {np.mean(est['reply_k1'] < 0):.1%} "
              f"| {np.mean(est['token_k1'] < 0):.1%} | {est['reply_k1'].min():+.3f} "
              f"| {est['reply_k3'].min():+.4f} |")
    beta = args.kl_betas[0]
    est = shown[beta]
    fig, ax = plt.subplots(figsize=(6, 3.3))
    lo, hi = np.percentile(np.concatenate([est["reply_k1"], est["reply_k3"]]), [0.5, 99.5])
    bins = np.linspace(lo, hi, 50)
    labels = (("reply_k1", "k1 = Σ log π/π_ref"), ("reply_k3", "k3 = Σ (ρ − 1) − log ρ"))
    for (key, label), color in zip(labels, ramp(2)):
        ax.hist(est[key], bins=bins, alpha=0.55, color=color,
                label=f"{label}: mean {est[key].mean():+.3f}, {np.mean(est[key] < 0):.0%} below 0")
    ax.axvline(0, color="#9e9e9e", lw=0.8)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)                    # room for the legend
    ax.set(xlabel="KL estimate of one reply (nats)", ylabel="replies",
           title=f"Per-reply KL estimates, PPO β = {beta:g}, {args.replies} replies")
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE, loc="upper left")
    fig.tight_layout()
    save(fig, out / "kl_estimates.png")


def topic_no_leash(args, out: Path, betas_runs: dict) -> None:
    """3. Entropy, length, KL and gold of the pipeline's runs at each β."""
    from rlhf_lab.course.plots.common import LEGEND_FONTSIZE, ramp, save
    import matplotlib.pyplot as plt
    print("\n## 3. Entropy and length with no leash "
          "(the pipeline's runs; start → mean of the last 5 iterations)\n")
    print("| β | run | entropy (nats/token) | length (tokens) | shortest (iteration) | KL | proxy | gold "
          "| gold peak (iteration) |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = ("entropy", "length", "kl", "proxy", "gold")
    histories = {}
    for beta, run in betas_runs.items():
        h = metrics_of("ppo", run, args.cache)["history"]
        histories[beta] = h
        peak = int(np.argmax([row["gold"] for row in h]))
        cells = [f"{h[0][k]:.2f} → {tail_mean(h, k):.2f}" for k in keys]
        short = int(np.argmin([row["length"] for row in h]))
        cells.insert(2, f"{h[short]['length']:.2f} ({short})")
        print(f"| {beta:g} | ppo-{stage_keys(run)['ppo']} | {' | '.join(cells)} "
              f"| {h[peak]['gold']:.2f} ({peak}) |")

    fig, axes = plt.subplots(1, 4, figsize=(13, 3.1))
    for (beta, h), color in zip(histories.items(), ramp(len(histories))):
        for ax, key in zip(axes, ("entropy", "length", "kl", "gold")):
            ax.plot([row[key] for row in h], color=color, lw=1.6 if beta == 0 else 1.1,
                    label=f"β = {beta:g}")
    for ax, label in zip(axes, ("policy entropy (nats/token)", "reply length (tokens)", "KL (k1, nats)",
                                "gold utility")):
        ax.set(xlabel="PPO iteration", title=label)
    axes[0].legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    save(fig, out / "no_leash.png")


def topic_eos(args) -> None:
    """4. How often replies miss <eos>, and what the proxy pays for one."""
    print("\n## 4. The EOS trick\n")
    evals = []
    for root in (args.cache, args.study_cache):
        for folder in sorted(glob.glob(os.path.join(str(root), "ppo-*"))):
            if os.path.exists(os.path.join(folder, "COMPLETE")):
                found = read_json(Path(folder) / "metrics.json").get("evals", [])
                evals += [(os.path.basename(folder), e) for e in found]
    evals = list({(name, e["iteration"]): (name, e) for name, e in evals}.values())
    shares = np.array([e["eos"] for _, e in evals])
    name, low = min(evals, key=lambda ne: ne[1]["eos"])
    print(f"{len(evals)} checkpoint evaluations ({sum(e['n'] for _, e in evals)} replies): "
          f"share ending with <eos> {shares.min():.4f} to {shares.max():.4f}, mean {shares.mean():.4f}; "
          f"lowest {name} iteration {low['iteration']} ({round((1 - low['eos']) * low['n'])} of {low['n']} "
          f"replies without <eos>, mean length {low['length']:.1f} of 24): a penalty p moves a "
          f"checkpoint's mean score by at most {1 - shares.min():.4f} p")
    if args.no_sampling:
        return
    run = study_run(args.pairs, args.seeds[0], "whiten", 60)
    rm = model_of("rm", run, args.study_cache)
    v = eos_value(model_of("sft", run, args.study_cache), rm, args.replies, args.sample_seed)
    gap = v["with"] - v["without"]
    print(f"proxy on {args.pairs} pairs (rm-{stage_keys(run)['rm']}), {len(gap)} SFT replies that ended "
          f"({v['ended']:.1%} of {args.replies}): score with <eos> {v['with'].mean():+.3f}, the same words "
          f"without it {v['without'].mean():+.3f}; the <eos> is worth {gap.mean():+.3f} on average "
          f"(negative for {np.mean(gap < 0):.1%} of the replies); the gold utility charges 1.000 "
          f"for a missing <eos>")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="the pipeline's cache (default: the kit's)")
    parser.add_argument("--study-cache", default=None,
                        help="the cache holding Gao's PPO study (default: --cache)")
    parser.add_argument("--pairs", type=int, default=64000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.1])
    parser.add_argument("--kl-betas", type=float, nargs="+", default=[1.0, 0.01],
                        help="policies whose per-reply KL estimates are sampled (β = 1: the sweep's run)")
    parser.add_argument("--replies", type=int, default=512)
    parser.add_argument("--sample-seed", type=int, default=2024)
    parser.add_argument("--no-sampling", action="store_true")
    parser.add_argument("--out", default="out/what_can_go_wrong")
    args = parser.parse_args(argv)
    args.study_cache = args.study_cache or args.cache
    import torch
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f} at the start; torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    start = time.perf_counter()
    betas_runs = {b: RunConfig().with_ppo(beta=b) for b in args.betas}
    topic_dip(args, out)
    topic_negative_kl(args, out, betas_runs)
    topic_no_leash(args, out, betas_runs)
    topic_eos(args)
    print(f"\nfigures in {out}/; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
