"""Why does the reward model learn less than its labels hold? One table of variants.

Every variant is trained by :func:`rlhf_lab.stages.reward_model.train_reward_model` from the
pipeline's SFT policy, on the first ``pairs`` of one set of SFT reply pairs (so the variants see
the same replies), and evaluated on one shared held-out set of Bradley-Terry-labelled pairs
(``--heldout``, seed ``SCALING_HELDOUT_SEED``): accuracy against those labels next to their Bayes
ceiling, agreement with the gold order, correlation with r*, and the training accuracy of the
last epoch (is it under- or overfitting?).

Two rows are bounds rather than reward models a course would train:

- ``labels=deterministic`` relabels the same pairs by the gold order (Gao et al.'s labelling):
  what the labels' noise costs;
- ``regress-gold`` fits r*(x, y) itself by least squares on the same replies, with the same trunk,
  pooling and schedule: what the trunk can learn when every reply carries its exact utility,
  the most a label could tell.

    python benchmarks/rm_diagnosis.py [--variants NAME ...] [--heldout 5000] [--cache DIR] [--ppo]

With ``--ppo`` each reward-model variant (not the bounds) is also the proxy of a PPO run at
β = 0.01 (:func:`ppo_curve`: the pipeline's PPO with checkpoint evaluations every 4 iterations on
16 replies per prompt), and a second table gives its gold and proxy gains over the first
checkpoint: at the first checkpoint after it, at the gold peak, and at the end, each with its KL.

Variants are named ``key=value,key=value`` over RewardConfig's fields (``n_pairs``, ``pooling``,
``lr``, ``epochs``, ``weight_decay``, ``labels``), or ``regress-gold,<fields>``; the default list
is :data:`DEFAULT_VARIANTS`. Four more keys (:data:`PROBE_KEYS`) change what the reward model
learns from, not how:

- ``sharpness=s``: the annotator labels with ``P(y1 ≻ y2) = σ(s · (r*(y1) − r*(y2)))``: ``s > 1``
  is a less noisy annotator (the held-out labels stay those of ``s = 1``, so accuracies compare);
- ``pair_temperature=T``: the training pairs are sampled from the SFT policy at temperature ``T``
  (broader replies: more of the faults that r* penalises);
- ``k=K``: K-wise comparisons (InstructGPT): ``n_pairs / C(K, 2)`` prompts, ``K`` replies each,
  every one of the ``C(K, 2)`` pairs labelled by the annotator; each step scores each reply once
  (:func:`train_kwise`), so ``n_pairs`` comparisons cost ``K / (C(K, 2) · 2)`` of the pairwise
  passes;
- ``trunk=PRESET``: the reward model starts from a GPT-2 of another preset (e.g. ``medium``),
  pretrained and fine-tuned by the pipeline like the policy (cached), then trained on the same
  pairs from the tiny SFT policy. It prints the machine and the load, since other work on the machine
stretches the seconds (never the accuracies).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

DEFAULT_VARIANTS = [
    "n_pairs=1000", "n_pairs=4000", "n_pairs=16000",
    "n_pairs=16000,pooling=sum,lr=0.001", "n_pairs=16000,pooling=mean",
    "n_pairs=16000,lr=0.001,epochs=10",
    "n_pairs=16000,labels=deterministic,lr=0.001",
    "regress-gold,n_pairs=16000,pooling=sum,lr=0.001",
    "regress-gold,n_pairs=16000,pooling=sum,lr=0.002,epochs=8",
]


PROBE_KEYS = {"sharpness": float, "pair_temperature": float, "k": int, "trunk": str}
"""Variant keys that are not RewardConfig fields (see the module docstring)."""


def parse_variant(text: str):
    """``"regress-gold,n_pairs=16000,lr=0.001"`` -> (True, {"n_pairs": 16000, "lr": 0.001}).
    Probe keys (:data:`PROBE_KEYS`) come back in the same dict; :func:`split_probe` separates them."""
    parts = [p for p in text.split(",") if p]
    regress = bool(parts) and parts[0] == "regress-gold"
    fields = {}
    for part in parts[1:] if regress else parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"variant {text!r}: {part!r} is not key=value")
        if key in PROBE_KEYS:
            fields[key] = PROBE_KEYS[key](value)
            continue
        kind = {f.name: f.type for f in dataclasses.fields(_reward_config())}.get(key)
        if kind is None:
            raise ValueError(f"variant {text!r}: RewardConfig has no field {key!r}")
        fields[key] = value if kind == "str" else (int(value) if kind == "int" else float(value))
    return regress, fields


def split_probe(fields: dict) -> tuple[dict, dict]:
    """(RewardConfig fields, probe settings with their defaults)."""
    probe = {"sharpness": 1.0, "pair_temperature": 1.0, "k": 2, "trunk": "tiny"}
    probe.update({k: v for k, v in fields.items() if k in PROBE_KEYS})
    if probe["k"] < 2:
        raise ValueError(f"k must be >= 2, got {probe['k']}")
    return {k: v for k, v in fields.items() if k not in PROBE_KEYS}, probe


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0


def sharpened_labels(gold_first, gold_second, sharpness: float, seed: int) -> list[int]:
    """Labels of an annotator with ``P(first ≻ second) = σ(sharpness · Δr*)`` (``1`` = the
    kit's Bradley-Terry annotator, large = deterministic)."""
    import random
    rng = random.Random(f"sharpness-{seed}")
    return [int(rng.random() < _sigmoid(sharpness * (a - b))) for a, b in zip(gold_first, gold_second)]


def annotator_agreement(gold_first, gold_second, sharpness: float) -> float:
    """How often two independent annotators of ``sharpness`` give a pair the same label, in
    expectation: mean of p² + (1 − p)², p = σ(sharpness · Δr*)."""
    ps = [_sigmoid(sharpness * (a - b)) for a, b in zip(gold_first, gold_second)]
    return sum(p * p + (1 - p) * (1 - p) for p in ps) / len(ps)


def probe_pairs(sft, tok, n: int, temperature: float, seed: int, max_len: int):
    """``n`` pairs of SFT replies sampled at ``temperature``, Bradley-Terry labelled."""
    import random

    from rlhf_lab import world
    from rlhf_lab.lm.generation import sample_texts
    from rlhf_lab.stages.reward_model import PreferenceData
    rng = random.Random(f"probe-pairs-{seed}")
    prompts = [rng.choice(world.all_prompts()) for _ in range(n)]
    texts = sample_texts(sft, tok, prompts + prompts, max_len, seed, temperature=temperature)
    first, second = texts[:n], texts[n:]
    g1, g2 = world.gold_utilities(prompts, first), world.gold_utilities(prompts, second)
    return PreferenceData(prompts, first, second, sharpened_labels(g1, g2, 1.0, seed), g1, g2)


def train_kwise(cfg, trunk, sft, tok, k: int, sharpness: float = 1.0):
    """A reward model on ``cfg.n_pairs`` K-wise comparisons: ``n_pairs // C(k, 2)`` prompts, ``k``
    SFT replies each, all pairs labelled; the loss is the mean Bradley-Terry loss over a step's
    pairs, and each reply is scored once per step. About 64 comparisons per step."""
    from rlhf_lab.stages.reward_model import learning_rate
    import itertools
    import random

    import torch

    from rlhf_lab import world
    from rlhf_lab.core.plug import as_loss_and_stats
    from rlhf_lab.equations.losses import bradley_terry_loss
    from rlhf_lab.lm import models
    from rlhf_lab.lm.generation import sample_texts
    from rlhf_lab.lm.sequences import encode_pairs
    per = k * (k - 1) // 2
    groups = cfg.n_pairs // per
    rng = random.Random(f"kwise-{cfg.seed}")
    prompts = [p for p in (rng.choice(world.all_prompts()) for _ in range(groups)) for _ in range(k)]
    texts = sample_texts(sft, tok, prompts, cfg.max_response_len, cfg.seed)
    gold = world.gold_utilities(prompts, texts)
    i, j = (torch.tensor(c) for c in zip(*itertools.combinations(range(k), 2)))
    g = torch.tensor(gold).view(groups, k)
    flat = sharpened_labels(g[:, i].flatten().tolist(), g[:, j].flatten().tolist(), sharpness, cfg.seed)
    i_wins = torch.tensor(flat, dtype=torch.bool).view(groups, per)
    rows = encode_pairs(tok, prompts, texts, cfg.max_response_len)
    torch.manual_seed(cfg.seed)
    rm = models.reward_model_from(trunk, seed=cfg.seed, pooling=cfg.pooling)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = torch.Generator().manual_seed(cfg.seed)
    per_step = max(1, cfg.batch_size // per)
    steps = groups // per_step
    total = cfg.epochs * steps
    rm.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(groups, generator=order)
        for s in range(steps):
            idx = perm[s * per_step:(s + 1) * per_step]
            step = epoch * steps + s
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg.lr, step, total)
            b = rows.rows((idx[:, None] * k + torch.arange(k)).reshape(-1))
            r = models.reward_scores(rm, b.input_ids, b.attention_mask, b.prompt_len).view(len(idx), k)
            wins = i_wins[idx]
            r_i, r_j = r[:, i], r[:, j]
            loss, _ = as_loss_and_stats(bradley_terry_loss(torch.where(wins, r_i, r_j).flatten(),
                                                           torch.where(wins, r_j, r_i).flatten()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
            opt.step()
    rm.eval()
    return rm, {"history": [], "params": models.count_parameters(rm), "replies": groups * k}


def _reward_config():
    from rlhf_lab.stages.reward_model import RewardConfig
    return RewardConfig


def relabel(data, annotator: str, seed: int):
    """The same pairs labelled by another annotator (:data:`rlhf_lab.world.ANNOTATORS`)."""
    from rlhf_lab import world
    labels = world.annotate(data.prompts, data.first, data.second, seed=seed, annotator=annotator)
    return dataclasses.replace(data, first_preferred=labels)


def regress_gold(cfg, sft, tok, data):
    """A reward model fitted to r* itself (least squares on both replies of every pair)."""
    from rlhf_lab.stages.reward_model import learning_rate
    import torch

    from rlhf_lab.lm import models
    from rlhf_lab.lm.sequences import encode_pairs
    torch.manual_seed(cfg.seed)
    rm = models.reward_model_from(sft, seed=cfg.seed, pooling=cfg.pooling)
    rows = encode_pairs(tok, data.prompts * 2, data.first + data.second, cfg.max_response_len)
    gold = torch.tensor(data.gold_first + data.gold_second, dtype=torch.float32)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = torch.Generator().manual_seed(cfg.seed)
    size = 2 * cfg.batch_size
    steps = len(gold) // size
    rm.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(gold), generator=order)
        for i in range(steps):
            idx = perm[i * size:(i + 1) * size]
            step = epoch * steps + i
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg.lr, step, cfg.epochs * steps)
            b = rows.rows(idx)
            pred = models.reward_scores(rm, b.input_ids, b.attention_mask, b.prompt_len)
            loss = torch.nn.functional.mse_loss(pred, gold[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
            opt.step()
    rm.eval()
    return rm, {"history": [], "params": models.count_parameters(rm)}


def ppo_curve(fields: dict, beta: float = 0.01, iterations: int = 60) -> list[dict]:
    """PPO at ``beta`` for ``iterations`` against the pipeline's reward model with ``fields``: the
    checkpoints' ``iteration``, ``kl``, and gold and proxy gains over the first checkpoint (the
    SFT policy)."""
    from rlhf_lab.pipeline.runs import RunConfig, load_or_train_ppo
    run = RunConfig().with_rm(**fields).with_ppo(beta=beta, iterations=iterations, eval_every=4,
                                                 eval_per_prompt=16)
    evals = load_or_train_ppo(run).metrics["evals"]
    return [{"iteration": e["iteration"], "kl": e["kl"], "gold": e["gold"] - evals[0]["gold"],
             "proxy": e["proxy"] - evals[0]["proxy"]} for e in evals]


def print_ppo(variants, iterations: int = 60) -> None:
    print(f"\nPPO at β = 0.01, {iterations} iterations, against each proxy (gains over the SFT "
          f"policy on the checkpoints' fixed replies):")
    print(f"{'variant':52s} {'first: gold @ KL':>17s} {'peak: gold @ KL':>16s} {'end: gold @ KL':>15s} "
          f"{'end proxy':>9s}")
    for text, regress, fields in variants:
        if regress or any(key in PROBE_KEYS for key in fields):
            continue                                  # the pipeline trains RewardConfig variants only
        curve = ppo_curve(fields, iterations=iterations)
        first, peak, end = curve[1], max(curve[1:], key=lambda c: c["gold"]), curve[-1]
        cell = lambda c: f"{c['gold']:+.3f} @ {c['kl']:5.2f}"
        print(f"{text:52s} {cell(first):>17s} {cell(peak):>16s} {cell(end):>15s} {end['proxy']:+9.3f}",
              flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--heldout", type=int, default=5000, help="shared held-out pairs")
    parser.add_argument("--cache", help="RLHF_LAB_CACHE for the base and SFT stages")
    parser.add_argument("--ppo", action="store_true", help="also run PPO against each variant")
    parser.add_argument("--ppo-iterations", type=int, default=60, help="PPO iterations (--ppo)")
    parser.add_argument("--ppo-only", action="store_true",
                        help="skip the reward-model table (the PPO runs train their own, cached)")
    args = parser.parse_args(argv)
    if args.cache:
        os.environ["RLHF_LAB_CACHE"] = args.cache
    import torch
    from report import cores, cpu_model

    from rlhf_lab.lm import models
    from rlhf_lab.pipeline.runs import SCALING_HELDOUT_SEED, RunConfig, load_or_train_sft
    from rlhf_lab.stages.reward_model import evaluate_reward_model, sample_preferences, train_reward_model

    variants = [(text, *parse_variant(text)) for text in args.variants]
    if args.ppo_only:
        print(f"{time.strftime('%Y-%m-%d %H:%M')} · {cpu_model()} · {cores()} cores")
        print_ppo(variants, args.ppo_iterations)
        return 0
    load = os.getloadavg()
    run = RunConfig()
    sft, tok = load_or_train_sft(run).model, models.world_tokenizer()
    most = max((fields.get("n_pairs", run.rm.n_pairs) for _, _, fields in variants
               if split_probe(fields)[1]["k"] == 2 and split_probe(fields)[1]["pair_temperature"] == 1.0), default=0)
    most = most if most else run.rm.n_pairs
    start = time.perf_counter()
    pairs = sample_preferences(sft, tok, most, run.rm.seed, run.rm.max_response_len)
    heldout = sample_preferences(sft, tok, args.heldout, SCALING_HELDOUT_SEED, run.rm.max_response_len)
    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {cpu_model()} · {cores()} cores · "
          f"{torch.get_num_threads()} threads · load average at start {load[0]:.2f} / {load[1]:.2f} "
          f"· {most} training pairs and {args.heldout} held-out pairs sampled in "
          f"{time.perf_counter() - start:.0f} s")
    for s in sorted({1.0} | {split_probe(f)[1]["sharpness"] for _, _, f in variants}):
        print(f"annotator of sharpness {s:g}: two of them agree on "
              f"{annotator_agreement(pairs.gold_first, pairs.gold_second, s):.3f} of the training pairs")
    head = (f"{'variant':52s} {'params':>7s} {'acc':>6s} {'ceil':>6s} {'gap':>5s} {'gold-ord':>8s} "
            f"{'corr':>6s} {'train':>6s} {'s':>5s}")
    print(head)
    print("-" * len(head))
    for text, regress, all_fields in variants:
        fields, probe = split_probe(all_fields)
        cfg = dataclasses.replace(run.rm, **fields)
        trunk = sft if probe["trunk"] == "tiny" else load_or_train_sft(
            RunConfig.for_preset(probe["trunk"])).model
        if probe["pair_temperature"] != 1.0:
            data = probe_pairs(sft, tok, cfg.n_pairs, probe["pair_temperature"], cfg.seed,
                               cfg.max_response_len)
        else:
            data = pairs if cfg.n_pairs == len(pairs) else _first(pairs, cfg.n_pairs)
        if cfg.labels != "bradley_terry":
            data = relabel(data, cfg.labels, cfg.seed)
        if probe["sharpness"] != 1.0 and probe["k"] == 2:
            data = dataclasses.replace(data, first_preferred=sharpened_labels(
                data.gold_first, data.gold_second, probe["sharpness"], cfg.seed))
        start = time.perf_counter()
        if regress:
            rm, metrics = regress_gold(cfg, trunk, tok, data)
        elif probe["k"] > 2:
            rm, metrics = train_kwise(cfg, trunk, sft, tok, probe["k"], probe["sharpness"])
        else:
            rm, metrics = train_reward_model(cfg, trunk, tok, data=data)
        seconds = time.perf_counter() - start
        m = evaluate_reward_model(rm, tok, heldout, cfg.max_response_len)
        last = metrics["history"][-(cfg.n_pairs // cfg.batch_size):]
        train = sum(h["accuracy"] for h in last) / len(last) if last else float("nan")
        print(f"{text:52s} {metrics['params']:7d} {m['accuracy']:6.3f} {m['bayes_ceiling']:6.3f} "
              f"{100 * (m['bayes_ceiling'] - m['accuracy']):5.1f} {m['gold_order_accuracy']:8.3f} "
              f"{m['gold_correlation']:6.3f} {train:6.3f} {seconds:5.0f}", flush=True)
    se = math.sqrt(0.25 / args.heldout)
    print(f"\nAn accuracy on {args.heldout} pairs has a standard error of at most {se:.3f}; 'gap' is "
          f"the ceiling minus the accuracy in points; 'train' is the last epoch's training "
          f"accuracy on the labels trained on.")
    if args.ppo or args.ppo_only:
        print_ppo(variants, args.ppo_iterations)
    print(f"Load average at the end {os.getloadavg()[0]:.2f}.")
    return 0


def _first(data, n: int):
    fields = {f.name: getattr(data, f.name)[:n] for f in dataclasses.fields(data)}
    return type(data)(**fields)


if __name__ == "__main__":
    raise SystemExit(main())
