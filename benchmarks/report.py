"""The performance report (issue #7): one table of rates for the CPU presets, plus grading and notebooks.

    python benchmarks/report.py                                  # about 3-5 min on 2 cores
    python benchmarks/report.py --notebooks-json nb.json         # with bench_notebooks.py's table
    python benchmarks/report.py --grade-json grade.json          # bench_grade.py's table, not rerun

For each preset of ``rlhf_lab.lm.models.PRESETS`` named in ``--presets`` (default tiny and small), in a
fresh process of its own (so that its peak memory is its own), it measures at fixed shapes:

* SFT training steps (``sft.train_next_token`` on curated demonstrations): time per step, tokens/s;
* reward-model training steps (``reward_model.train_reward_model`` on the world's labelled pairs);
* generation with the KV cache (``generation.sample_responses``) and, for comparison, the same
  sampling loop re-reading the whole sequence at every step (no cache);
* one PPO iteration next to its floor (``bench_ppo.bench`` at the preset's shape);
* DPO training steps (``dpo.train_dpo``) and one GRPO iteration (``grpo.train_grpo``, 16 prompts ×
  8 replies), with the bytes PPO's and GRPO's networks hold (``grpo.held_bytes``);
* the peak resident memory of that process (``resource.getrusage``).

Then grading (``bench_grade.measure``, fewer copies by default) and, when a JSON file from
``bench_notebooks.py --json`` is given, the per-notebook times (that benchmark takes many minutes,
so this report never runs it). The runs are short: the point is rates, not training. Time is
wall-clock and best-of-a-few where a phase repeats; a busy machine (see the load in the header)
stretches every figure, and with two torch threads on two cores that are busy with other work,
small ops wait on each other: the same run took 103 s at a load average near 1.5 and 653 s near 4.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

# Fixed, short runs per preset: (SFT steps, RM steps, generation prompts, PPO critics, PPO repeats).
PLAN = {"tiny": dict(sft_steps=40, rm_steps=20, gen_prompts=256, critics=("head", "separate"), ppo_repeats=2),
        "small": dict(sft_steps=8, rm_steps=6, gen_prompts=128, critics=("head",), ppo_repeats=1)}
BATCH = 64            # SFT sequences / RM pairs per step, as in the default configs
NEW_TOKENS = 24       # generated tokens per prompt (the pipeline's max_response_len); never stops early


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# ---------------------------------------------------------------- per preset (in a worker process)

def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def bench_sft(preset: str, steps: int) -> dict:
    import torch

    from rlhf_lab import datasets
    from rlhf_lab.lm import models
    from rlhf_lab.lm.sequences import encode_pairs
    from rlhf_lab.stages.sft import train_next_token
    tok = models.world_tokenizer()
    demos = datasets.sft_demonstrations(1000, seed=0)
    data = encode_pairs(tok, [p for p, _ in demos], [r for _, r in demos], 24)
    model = models.new_policy(preset, seed=0, tokenizer=tok)
    train_next_token(model, data, data.response_mask, 2, BATCH, 1e-3, seed=1, desc="warm-up")
    seconds, _ = _timed(train_next_token, model, data, data.response_mask, steps, BATCH, 1e-3, seed=0,
                        desc="sft")
    tokens_per_row = data.attention_mask.sum().item() / len(data.input_ids)   # real tokens, mean
    return {"params": models.count_parameters(model), "steps": steps, "seconds": seconds,
            "tokens_per_row": tokens_per_row,
            "tokens_per_s": steps * BATCH * tokens_per_row / seconds, "threads": torch.get_num_threads()}


def bench_rm(preset: str, steps: int) -> dict:
    from rlhf_lab import datasets, world
    from rlhf_lab.lm import models
    from rlhf_lab.stages.reward_model import PreferenceData, RewardConfig, train_reward_model
    tok = models.world_tokenizer()
    n = steps * BATCH
    rows = datasets.world_preference_pairs(n, seed=0)
    data = PreferenceData([world.parse_prompt(r["prompt"]) for r in rows], [r["chosen"] for r in rows],
                          [r["rejected"] for r in rows], [1] * n, [r["gold_chosen"] for r in rows],
                          [r["gold_rejected"] for r in rows])
    sft = models.new_policy(preset, seed=0, tokenizer=tok)
    warm = PreferenceData(*(getattr(data, f)[:2 * BATCH] for f in
                            ("prompts", "first", "second", "first_preferred", "gold_first", "gold_second")))
    train_reward_model(RewardConfig(n_pairs=2 * BATCH, epochs=1, batch_size=BATCH), sft, tok, data=warm)
    seconds, _ = _timed(train_reward_model, RewardConfig(n_pairs=n, epochs=1, batch_size=BATCH), sft, tok,
                        data=data)
    from rlhf_lab.lm.sequences import encode_pairs
    encoding, enc = _timed(encode_pairs, tok, data.prompts * 2, data.chosen + data.rejected, 24)
    seconds -= encoding                            # train_reward_model encodes the same pairs first
    tokens = enc.attention_mask.sum().item()                 # both replies of every pair, once
    return {"steps": steps, "seconds": seconds, "encoding": encoding, "tokens_per_s": tokens / seconds}


def _sample_without_cache(model, prompt_ids, prompt_mask, max_new_tokens, generator):
    """The loop of ``sample_responses`` with no KV cache: the whole sequence is re-read at every
    step (for comparison only; never stops early, like the timed cached run with ``eos_id=-1``)."""
    import torch

    from rlhf_lab.lm.sequences import position_ids
    ids, mask = prompt_ids, prompt_mask.long()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask),
                           use_cache=False).logits
            token = torch.multinomial(torch.softmax(logits[:, -1].float(), -1), 1, generator=generator)
            ids = torch.cat([ids, token], 1)
            mask = torch.cat([mask, torch.ones_like(token)], 1)
    return ids[:, prompt_ids.shape[1]:]


def bench_generation(preset: str, n_prompts: int) -> dict:
    import torch

    from rlhf_lab import world
    from rlhf_lab.lm import models
    from rlhf_lab.lm.generation import sample_responses
    from rlhf_lab.lm.sequences import encode_prompts
    tok = models.world_tokenizer()
    model = models.new_policy(preset, seed=0, tokenizer=tok).eval()
    prompts = (world.all_prompts() * (n_prompts // len(world.all_prompts()) + 1))[:n_prompts]
    ids, mask = encode_prompts(tok, prompts)
    gen = lambda: torch.Generator().manual_seed(0)
    sample_responses(model, ids[:8], mask[:8], 4, eos_id=-1, pad_id=tok.pad_token_id, generator=gen())
    cached = min(_timed(sample_responses, model, ids, mask, NEW_TOKENS, eos_id=-1, pad_id=tok.pad_token_id,
                        generator=gen())[0] for _ in range(2))
    uncached = _timed(_sample_without_cache, model, ids, mask, NEW_TOKENS, gen())[0]
    tokens = n_prompts * NEW_TOKENS
    return {"prompts": n_prompts, "prompt_len": ids.shape[1], "cached": cached, "uncached": uncached,
            "cached_tokens_per_s": tokens / cached, "uncached_tokens_per_s": tokens / uncached}


def _pairs(n: int):
    from rlhf_lab import world
    from rlhf_lab.datasets import world_preference_pairs
    from rlhf_lab.stages.reward_model import PreferenceData
    rows = world_preference_pairs(n, seed=0)
    return PreferenceData([world.parse_prompt(r["prompt"]) for r in rows], [r["chosen"] for r in rows],
                          [r["rejected"] for r in rows], [1] * n, [r["gold_chosen"] for r in rows],
                          [r["gold_rejected"] for r in rows])


def bench_dpo(preset: str, steps: int) -> dict:
    from rlhf_lab.lm import models
    from rlhf_lab.stages.dpo import DPOConfig, train_dpo
    tok = models.world_tokenizer()
    sft = models.new_policy(preset, seed=0, tokenizer=tok)
    train_dpo(DPOConfig(epochs=1), sft, tok, _pairs(2 * BATCH))                 # warm-up
    seconds, (_, metrics) = _timed(train_dpo, DPOConfig(epochs=1), sft, tok, _pairs(steps * BATCH))
    return {"steps": len(metrics["history"]), "seconds": seconds}


def bench_grpo(preset: str) -> dict:
    from rlhf_lab.lm import models
    from rlhf_lab.stages.grpo import GRPOConfig, train_grpo
    from rlhf_lab.stages.ppo import PPOConfig
    from rlhf_lab.studies.method_cost import held_bytes
    tok = models.world_tokenizer()
    sft = models.new_policy(preset, seed=0, tokenizer=tok)
    rm = models.reward_model_from(sft, seed=0)
    cfg = GRPOConfig(iterations=3, prompts_per_iteration=16, group_size=8, minibatch_size=32)
    history = train_grpo(cfg, sft, rm, tok).history
    best = min(history[1:], key=lambda h: h["t_total"])
    return {"rollouts": cfg.rollouts, "seconds": best["t_total"], "generate": best["t_generate"],
            "grpo_bytes": held_bytes(cfg, sft, rm)["total"],
            "ppo_bytes": held_bytes(PPOConfig(critic="separate"), sft, rm)["total"],
            "ppo_head_bytes": held_bytes(PPOConfig(critic="head"), sft, rm)["total"]}


def bench_ppo_preset(preset: str, critics, repeats: int) -> dict:
    import bench_ppo

    from rlhf_lab.lm import models
    shape = {k: v for k, v in models.PRESETS[preset].items() if k in ("n_layer", "n_embd", "n_head")}
    shape["vocab_size"] = len(models.world_tokenizer())
    return {critic: bench_ppo.bench(critic, repeats, **shape) for critic in critics}


def worker(preset: str) -> dict:
    """Every measurement of one preset, in this process; returns them (the parent prints the table)."""
    import torch
    plan = PLAN.get(preset, PLAN["small"])
    out = {"preset": preset, "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, fn, args in [("sft", bench_sft, (preset, plan["sft_steps"])),
                           ("rm", bench_rm, (preset, plan["rm_steps"])),
                           ("generation", bench_generation, (preset, plan["gen_prompts"])),
                           ("ppo", bench_ppo_preset, (preset, plan["critics"], plan["ppo_repeats"])),
                           ("dpo", bench_dpo, (preset, plan["rm_steps"])),
                           ("grpo", bench_grpo, (preset,))]:
        out[name] = fn(*args)
        print(f"  {preset}: {name} done", file=sys.stderr, flush=True)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ---------------------------------------------------------------- the table

def run_worker(preset: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", preset], stdout=subprocess.PIPE,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def preset_rows(r: dict) -> list[tuple]:
    p, sft, rm, gen = r["preset"], r["sft"], r["rm"], r["generation"]
    name = f"{p} ({sft['params'] / 1e6:.2f}M)"
    rows = [(name, "SFT training step", f"{BATCH} seq. × {sft['tokens_per_row']:.0f} tok, {sft['steps']} steps",
             f"{1000 * sft['seconds'] / sft['steps']:.0f} ms/step", f"{sft['tokens_per_s']:,.0f} tok/s", ""),
            (name, "RM training step", f"{BATCH} pairs, {rm['steps']} steps",
             f"{1000 * rm['seconds'] / rm['steps']:.0f} ms/step", f"{rm['tokens_per_s']:,.0f} tok/s",
             f"chosen + rejected in one pass; encoding ({rm['encoding']:.2f} s) left out"),
            (name, "generation, KV cache", f"{gen['prompts']} prompts × {NEW_TOKENS} new tok",
             f"{gen['cached']:.2f} s", f"{gen['cached_tokens_per_s']:,.0f} tok/s",
             f"{gen['uncached'] / gen['cached']:.1f}× faster than no cache"),
            (name, "generation, no cache", "same", f"{gen['uncached']:.2f} s",
             f"{gen['uncached_tokens_per_s']:,.0f} tok/s", "whole sequence re-read per token")]
    for critic, b in r["ppo"].items():
        rows.append((name, f"PPO iteration ({critic} critic)", "64 × (16 + 32) tok, 4 epochs × 4 mb",
                     f"{b['total']:.2f} s", f"{64 * 32 / b['total']:,.0f} tok/s",
                     f"floor {b['floor']:.2f} s, ratio {b['total'] / b['floor']:.2f} (goal ≤ 1.5); "
                     f"gen {b['generate']:.2f} / score {b['score']:.2f} / update {b['update']:.2f} s"))
    d, g = r["dpo"], r["grpo"]
    rows.append((name, "DPO training step", f"{BATCH} pairs, {d['steps']} steps",
                 f"{1000 * d['seconds'] / d['steps']:.0f} ms/step", "",
                 "policy + reference forward; reference log-probs once per run (included)"))
    rows.append((name, "GRPO iteration (no critic)", "16 prompts × 8 replies, 4 epochs",
                 f"{g['seconds']:.2f} s", f"{g['rollouts'] / g['seconds']:,.0f} replies/s",
                 f"gen {g['generate']:.2f} s; networks hold {g['grpo_bytes'] / 2 ** 20:.1f} MiB vs "
                 f"PPO's {g['ppo_bytes'] / 2 ** 20:.1f} MiB with a separate critic "
                 f"({g['ppo_head_bytes'] / 2 ** 20:.1f} MiB with a value head)"))
    rows.append((name, "peak RSS", "whole process", "", "", f"{r['peak_rss_mb']:,.0f} MiB"))
    return rows


def grade_rows(g: dict, source: str) -> list[tuple]:
    return [("grading", f"{g['copies']} copies of solutions/", f"jobs {g['jobs'] or 'auto'}, {source}",
             f"{g['seconds']:.1f} s", f"{g['copies'] / g['seconds']:.2f} subm./s",
             f"{g['cpu'] / g['copies']:.2f} CPU s/subm.; load {g['load']:.1f} at the end; points {g['points']}/{g['max_points']}; "
             f"30 copies budget 120 s")]


def notebook_rows(nb: dict | None, path: str | None) -> list[tuple]:
    if nb is None:
        return [("notebooks", "not measured", "", "", "",
                 "run benchmarks/bench_notebooks.py --json nb.json, then report.py --notebooks-json nb.json")]
    rows = [("notebooks", r["notebook"], "cold / warm cache", f"{r['cold']:.1f} / {r['warm']:.1f} s", "",
             f"budget cold {r['budget']} s{'' if r['cold'] <= r['budget'] else ' (OVER)'}")
            for r in nb["rows"]]
    measured = (f"measured {nb.get('date', '?')}, {nb.get('cores', '?')} cores, "
                f"load {nb.get('load') or float('nan'):.1f} (from {Path(path).name})")
    if nb.get("course_notebooks"):
        rows.append(("notebooks", "00-06", "cold / warm cache",
                     f"{nb['course_cold']:.1f} / {nb['course_warm']:.1f} s", "", f"budget 600 / 60 s; {measured}"))
    rows.append(("notebooks", "all run", "cold / warm cache", f"{nb['total_cold']:.1f} / {nb['total_warm']:.1f} s",
                 "", measured))
    return rows


def print_table(rows: list[tuple]) -> None:
    head = ("preset", "measurement", "shape", "time", "rate", "notes")
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="*", default=["tiny", "small"])
    parser.add_argument("--grade-copies", type=int, default=30,
                        help="copies of solutions/ to grade (default 30, as bench_grade.py; 0 skips grading)")
    parser.add_argument("--grade-json", metavar="PATH", help="read grading from bench_grade.py --json PATH")
    parser.add_argument("--notebooks-json", metavar="PATH",
                        help="read per-notebook times from bench_notebooks.py --json PATH")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return 0

    start = time.perf_counter()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    results = []
    for preset in args.presets:
        print(f"measuring {preset} ...", file=sys.stderr, flush=True)
        results.append(run_worker(preset))
    rows = [row for r in results for row in preset_rows(r)]
    if args.grade_json:
        rows += grade_rows(json.loads(Path(args.grade_json).read_text()), f"from {Path(args.grade_json).name}")
    elif args.grade_copies > 0:
        print("grading ...", file=sys.stderr, flush=True)
        import bench_grade
        rows += grade_rows(bench_grade.measure(args.grade_copies), "measured now")
    nb = json.loads(Path(args.notebooks_json).read_text()) if args.notebooks_json else None
    rows += notebook_rows(nb, args.notebooks_json)

    threads = results[0]["threads"] if results else "?"
    from importlib.metadata import version
    torch_version = results[0]["torch"] if results else version("torch")
    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {cpu_model()} · {cores()} cores · torch {torch_version}, "
          f"{threads} threads · Python {platform.python_version()} · load average at start "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)")
    print()
    print_table(rows)
    print()
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"total {time.perf_counter() - start:.0f} s; load average (1 min) at the end {end_load:.2f}. "
          f"Times are wall-clock; tok/s counts real (non-pad) tokens for training, generated tokens "
          f"for generation and PPO (64 × 32 per iteration); PPO is best of repeats after a warm-up "
          f"iteration, floor = the same passes done bare (bench_ppo.py).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
