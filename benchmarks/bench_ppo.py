"""Time one PPO iteration by phase, next to its floor, and at fixed shapes.

    python benchmarks/bench_ppo.py

The floor is the same work done bare: the same sampling loop, the same no-grad forwards of the
policy, reference, critic and reward model, and the same number of forward+backward passes and
optimiser steps with a trivial loss. PPO's own overhead (masking, GAE, the loss functions, the
bookkeeping) is the rest. Fixed shapes: 64 prompts of 16 tokens, 32-token responses (no early
stop), 4 epochs x 4 minibatches of 16, GPT-2 with 4 layers, width 128, vocab 512.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lab.lm.generation import sample_responses
from rlhf_lab.lm.sequences import position_ids
from rlhf_lab.stages.ppo import PPOConfig, PPOLosses, Rollout, build_networks, ppo_step


def fixed_shape_models(seed: int = 0, **overrides):
    """Policy and reward model of the fixed shape; ``overrides`` change it (``n_layer``, ``n_embd``,
    ``n_head``, ``vocab_size``, e.g. a preset of ``rlhf_lab.lm.models.PRESETS``)."""
    shape = dict(vocab_size=512, n_layer=4, n_embd=128, n_head=4, n_positions=64, resid_pdrop=0.0,
                 embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu", bos_token_id=1,
                 eos_token_id=2, pad_token_id=0)
    shape.update(overrides)
    torch.manual_seed(seed)
    policy = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    return policy, GPT2ForSequenceClassification(GPT2Config(num_labels=1, **shape)).eval()


def make_rollout(lm, prompts, cfg, generator) -> Rollout:
    mask = torch.ones_like(prompts)
    response, _ = sample_responses(lm, prompts, mask, cfg.max_new_tokens, eos_id=-1, pad_id=0,
                                   temperature=cfg.temperature, generator=generator)   # never stops early
    full = torch.ones_like(response, dtype=torch.bool)
    return Rollout(torch.cat([prompts, response], 1), torch.cat([mask, full.long()], 1), full,
                   prompts=[None] * len(prompts), texts=None)


def floor(lm, critic, reference, rm, rollout, cfg, optimizers) -> dict:
    """The bare passes one PPO iteration must make."""
    ids, am = rollout.input_ids, rollout.attention_mask
    pos = position_ids(am)
    t0 = time.perf_counter()
    with torch.no_grad():
        for net in [lm, reference, rm] + ([critic] if critic is not None else []):
            net(input_ids=ids, attention_mask=am, position_ids=pos)
    t1 = time.perf_counter()
    for _ in range(cfg.epochs):
        for idx in torch.arange(len(ids)).split(cfg.minibatch_size):
            for net, opt in zip([lm] + ([critic] if critic is not None else []), optimizers):
                out = net(input_ids=ids[idx], attention_mask=am[idx], position_ids=pos[idx]).logits
                opt.zero_grad()
                out.float().mean().backward()
                opt.step()
    return {"t_score": t1 - t0, "t_update": time.perf_counter() - t1}


def bench(critic: str, repeats: int, **shape) -> dict:
    """Seconds of one PPO iteration by phase and of its floor (best of ``repeats`` after one warm-up
    iteration) at the fixed shapes; ``shape`` overrides the model shape (see fixed_shape_models)."""
    cfg = PPOConfig(rollouts=64, minibatch_size=16, epochs=4, max_new_tokens=32, critic=critic)
    lm0, rm = fixed_shape_models(**shape)
    policy, lm, critic_net, reference, rm, optimizers = build_networks(cfg, lm0, rm)
    prompts = torch.randint(3, lm0.config.vocab_size, (64, 16), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for r in range(repeats + 1):                              # the first one warms up
        t0 = time.perf_counter()
        rollout = make_rollout(lm, prompts, cfg, generator)
        t_gen = time.perf_counter() - t0
        stats = ppo_step(rollout, policy, reference, critic_net, rm, optimizers, cfg, PPOLosses(), 0.05,
                         generator)
        t_ppo = time.perf_counter() - t0
        if r:                                                 # (no floor for the warm-up)
            f = floor(lm, critic_net if critic == "separate" else None, reference, rm, rollout, cfg,
                      optimizers)
            rows.append({"generate": t_gen, "score": stats["t_score"], "update": stats["t_update"],
                         "total": t_ppo, "floor_score": f["t_score"], "floor_update": f["t_update"],
                         "floor": t_gen + f["t_score"] + f["t_update"]})
    return {k: min(row[k] for row in rows) for k in rows[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fixed shapes: 64 prompts x "
          f"16 + 32 tokens, 4 epochs x 4 minibatches of 16, GPT-2 4 layers / 128 wide / vocab 512")
    print(f"{'critic':<10}{'generate':>10}{'score':>8}{'update':>8}{'total':>8}{'floor':>8}"
          f"{'ratio':>7}{'tokens/s':>10}")
    for critic in ("head", "separate"):
        r = bench(critic, args.repeats)
        tokens = 64 * 32
        print(f"{critic:<10}{r['generate']:>10.2f}{r['score']:>8.2f}{r['update']:>8.2f}{r['total']:>8.2f}"
              f"{r['floor']:>8.2f}{r['total'] / r['floor']:>7.2f}{tokens / r['total']:>10.0f}")
    print("seconds per iteration (best of repeats); ratio = total / floor (goal <= 1.5)")


if __name__ == "__main__":
    main()
