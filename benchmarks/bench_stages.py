"""Time every stage of the default pipeline from an empty cache and print a table.

    python benchmarks/bench_stages.py            # base, SFT, RM (4k pairs), PPO (beta = 0.03)

Uses a fresh temporary cache, so nothing is reused; then times a warm (cached) rerun.
"""
from __future__ import annotations

import os
import tempfile
import time


def main():
    os.environ["RLHF_LAB_CACHE"] = tempfile.mkdtemp(prefix="rlhf_lab_bench_")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    from rlhf_lab.pipeline import runs
    run = runs.RunConfig()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cache {os.environ['RLHF_LAB_CACHE']}")
    print(f"{'stage':<28}{'seconds':>9}  result")
    steps = [("pretrain (base)", runs.load_or_train_base, lambda a: f"gold of samples {a.metrics['gold_mean']:.2f}"),
             ("SFT", runs.load_or_train_sft, lambda a: f"gold of samples {a.metrics['gold_mean']:.2f}"),
             (f"RM ({run.rm.n_pairs} pairs, incl. sampling)", runs.load_or_train_rm,
              lambda a: f"held-out acc {a.metrics['accuracy']:.3f} (ceiling {a.metrics['bayes_ceiling']:.3f})"),
             (f"PPO ({run.ppo.iterations} it., β={run.ppo.beta:g})", runs.load_or_train_ppo,
              lambda a: "gold {:.2f} -> {:.2f}, KL {:.2f}".format(a.metrics["history"][0]["gold"],
                                                                 a.metrics["history"][-1]["gold"],
                                                                 a.metrics["history"][-1]["kl"]))]
    for name, fn, describe in steps:
        start = time.perf_counter()
        art = fn(run)
        print(f"{name:<28}{time.perf_counter() - start:>9.1f}  {describe(art)}", flush=True)
    start = time.perf_counter()
    runs.load_or_train_ppo(run)
    print(f"{'warm rerun (all cached)':<28}{time.perf_counter() - start:>9.1f}")


if __name__ == "__main__":
    main()
