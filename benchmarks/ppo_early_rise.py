"""Does PPO's gold rise before it falls? The first iterations of ``ppo_gao``'s runs, evaluated
precisely.

``ppo_gao`` evaluates its β = 0.01 runs every 2 iterations on 16 replies per prompt (±0.02 gold),
and their checkpoint curves peak a few hundredths above the SFT policy after 2 iterations. Is
that more than the evaluation's noise, and more than the luck of taking the best of many
checkpoints? This script trains the same runs (the proxy on each number of pairs, each PPO seed)
for only ``--iterations`` iterations — the learning rate is constant, so they are the first
iterations of the full runs — and evaluates them every ``--every`` iterations on
``--per-prompt`` replies to each of the 48 prompts, with the same seeds at every checkpoint. It
prints the gold gain over the SFT policy (the first checkpoint, on the same seeds) and the KL at
each checkpoint, one row per run, then the gains at the first checkpoint after iteration 0.

    python benchmarks/ppo_early_rise.py [--pairs 500 4000 16000] [--seeds 0 1 2]
        [--iterations 8] [--every 2] [--per-prompt 256] [--eval-seed 12345] [--cache DIR]

The runs are pipeline artifacts, cached in ``RLHF_LAB_CACHE`` (or ``--cache``); 9 runs of 8
iterations take about 5 minutes on 2 cores from a cache holding the reward models. The results
of 2026-12-02 are in RESULTS.md section 5.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=_positive, nargs="+", default=[500, 4000, 16000],
                        help="training pairs of each proxy reward model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="PPO seeds")
    parser.add_argument("--beta", type=float, default=0.01, help="KL coefficient (default 0.01)")
    parser.add_argument("--iterations", type=_positive, default=8, help="PPO iterations (default 8)")
    parser.add_argument("--every", type=_positive, default=2,
                        help="iterations between checkpoint evaluations (default 2)")
    parser.add_argument("--per-prompt", type=_positive, default=256,
                        help="replies per prompt at each checkpoint (default 256)")
    parser.add_argument("--eval-seed", type=int, default=12_345, help="seed of the evaluations")
    parser.add_argument("--threads", type=_positive, default=2, help="torch threads (default 2)")
    parser.add_argument("--cache", default=None, help="cache folder (default: RLHF_LAB_CACHE)")
    args = parser.parse_args()
    if args.cache:
        os.environ["RLHF_LAB_CACHE"] = args.cache

    import numpy as np
    import torch

    from rlhf_lab import world
    from rlhf_lab.pipeline.runs import RunConfig, load_metrics
    from rlhf_lab.studies.ppo_gao import gain_curve
    torch.set_num_threads(args.threads)

    first = []                                  # each run's gain at its first checkpoint after 0
    print(f"gold gain over the SFT policy (KL) at each checkpoint; "
          f"{len(world.all_prompts()) * args.per_prompt} replies each, evaluation seed "
          f"{args.eval_seed}, β = {args.beta:g}")
    for pairs in args.pairs:
        for seed in args.seeds:
            run = RunConfig().with_rm(n_pairs=pairs).with_ppo(
                beta=args.beta, iterations=args.iterations, seed=seed, eval_every=args.every,
                eval_per_prompt=args.per_prompt, eval_seed=args.eval_seed)
            start = time.perf_counter()
            curve = gain_curve(load_metrics("ppo", run)["evals"])     # trains the run if missing
            cells = "  ".join(f"it {i:>2}: {g:+.3f} ({kl:.2f})" for i, g, kl in
                              zip(curve["iteration"][1:], curve["gold_gain"][1:], curve["kl"][1:]))
            print(f"{pairs:>6} pairs, seed {seed}: {cells}   [{time.perf_counter() - start:.0f} s]",
                  flush=True)
            first.append(curve["gold_gain"][1])
    gains = np.array(first)
    print(f"\nfirst checkpoint after iteration 0: positive in {int((gains > 0).sum())} of "
          f"{len(first)} runs, mean {gains.mean():+.3f}, range {gains.min():+.3f} to {gains.max():+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
