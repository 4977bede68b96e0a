"""PPO on one GPU with the GPT-2 (124M) shape: time per iteration, tokens/s, peak GPU memory.

    python benchmarks/gpu_check.py                      # cuda, gpt2 shape, 4 iterations
    python benchmarks/gpu_check.py --device cpu --preset tiny --iterations 2   # a dry run

Random initialisation (no download): the point is speed and memory, not quality. The four
networks of DESIGN §3 (policy, separate critic, reference, reward model), 64 prompts, up to 32
new tokens, 4 epochs of 4 minibatches — the fixed shapes of benchmarks/bench_ppo.py, at the
gpt2 size. Fits in a few minutes on one GPU; the first iteration includes CUDA warm-up and is
reported apart.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from rlhf_lab.lm import models
from rlhf_lab.stages.ppo import PPOConfig, train_ppo
from rlhf_lab.studies import memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="gpt2", choices=sorted(models.PRESETS))
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--critic", default="separate", choices=("separate", "head"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); "
              "use --device cpu --preset tiny for a dry run", file=sys.stderr)
        return 2
    device = models.pick_device(args.device)
    tok = models.world_tokenizer()
    policy = models.new_policy(args.preset).to(device)
    rm = models.reward_model_from(policy).to(device)
    cfg = PPOConfig(iterations=args.iterations, rollouts=64, minibatch_size=16, epochs=4,
                    max_new_tokens=32, critic=args.critic, sample_every=10_000)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = train_ppo(cfg, policy, rm, tok)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    n = models.count_parameters(policy)
    print(f"device: {name}; preset {args.preset} ({n / 1e6:.1f}M parameters); critic "
          f"{args.critic}; {args.iterations} iterations in {wall:.1f} s")
    print(f"{'iteration':>9} {'total s':>8} {'generate s':>10} {'update s':>9} {'tokens':>7} {'tokens/s':>9}")
    for h in result.history:
        print(f"{h['iteration']:>9} {h['t_total']:8.2f} {h['t_generate']:10.2f} "
              f"{h.get('t_update', float('nan')):9.2f} {h['tokens']:>7} {h['tokens'] / h['t_total']:9.0f}")
    steady = result.history[1:] or result.history
    print(f"steady state (iterations 1+): {sum(h['t_total'] for h in steady) / len(steady):.2f} s "
          f"per iteration")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        print(f"peak GPU memory allocated: {peak / memory.GIB:.2f} GiB "
              f"(formula for the four networks in fp32: "
              f"{(2 * memory.network_bytes(n, True, memory.FP32) + 2 * memory.network_bytes(n, False, memory.FP32)) / memory.GIB:.2f} GiB before activations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
