"""Our PPO iteration against TRL 1.12's PPOTrainer at the same fixed shapes (issue #23).

    python benchmarks/vs_trl.py                          # 3 rounds, 3 timed iterations a side
    python benchmarks/vs_trl.py --rounds 1 --repeats 1   # a quick look

A benchmark, not a test: CI does not run it, and nothing else needs TRL. TRL lives in a venv of
its own (default ``~/.cache/rlhf-lab/trl-1.12``, ``--venv``), built on first use with
``torch==2.13.0`` (the CPU wheel), our transformers version, ``trl==1.12.0`` (the last release with
``trl.experimental.ppo``; 1.13 dropped PPO) and the accelerate / datasets versions it was tried
with; that takes a few minutes once, and later runs reuse it while ``trl`` imports.

Shapes (those of bench_ppo.py): 64 prompts of 16 tokens, 32-token replies that never stop early,
4 epochs x 4 minibatches of 16, one optimiser step per minibatch, GPT-2 with 4 layers, width 128,
4 heads, vocabulary 512, dropout 0, temperature 1, fp32 on the CPU, the same torch threads on
both sides. Each round runs TRL (``benchmarks/trl_ppo_worker.py`` with the venv's Python: one
warm-up iteration, then ``--repeats`` timed ones), then ours with a value head and with a
separate critic (``bench_ppo.bench``: the same, plus each iteration's floor). Each cell is the
best iteration; the overall line takes the best of all rounds. Goals (#23): ours >= 2x faster
than TRL with a separate critic, >= 3x with a value head, and <= 1.1x its own floor.

The work is the same, not the code. What differs, so that a ratio is read fairly:

* TRL always trains a separate value model (a GPT-2 of the policy's size) beside the policy, in
  one AdamW over both; so TRL's row is one row, compared with both of ours.
* TRL samples with HF ``generate(output_scores=True)`` and takes the old log-probs from the kept
  scores, so its scoring skips the policy forward that ours makes there (for the log-probs and
  the entropy); we sample with our own KV-cache loop.
* TRL's forwards also return every layer's hidden states (``output_hidden_states``); both sides
  compute logits over the vocabulary at every position and keep the reply's.
* TRL logs about 15 metrics (each a ``.item()``) per iteration and calls ``gc.collect()``
  between iterations ("other" in its row); it clips no gradients, we clip to a norm of 1.
* TRL treats a sampled ``<pad>`` token as padding from there on (masks only, the shapes and the
  FLOPs stay the same); our replies have no pad.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

WORKER = HERE / "trl_ppo_worker.py"
DEFAULT_VENV = Path.home() / ".cache" / "rlhf-lab" / "trl-1.12"
TRL_VERSION = "1.12.0"
# torch pinned exactly: that resolves to the CPU wheel (a looser spec may pull a multi-GB CUDA build);
# accelerate and datasets at the versions this benchmark was tried with.
PINS = ["torch==2.13.0", f"trl=={TRL_VERSION}", "accelerate==1.16.0", "datasets==5.2.0"]
GOALS = {"separate": 2.0, "head": 3.0, "floor": 1.1}     # TRL / ours >= ..., ours / floor <= ...
PHASES = ("generate", "score", "update")
TOKENS = 64 * 32                                          # generated tokens per iteration


# ---------------------------------------------------------------- the TRL venv

def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def trl_version(python: Path) -> str | None:
    """The TRL version that ``python`` imports (with ``trl.experimental.ppo``), or None."""
    if not python.exists():
        return None
    probe = "import trl, trl.experimental.ppo; print(trl.__version__)"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_venv(venv: Path, install: bool) -> Path:
    """The Python of a venv at ``venv`` that imports TRL 1.12, built (or rebuilt) if needed."""
    python = venv_python(venv)
    found = trl_version(python)
    if found == TRL_VERSION:
        return python
    why = "has no venv" if not python.exists() else f"imports trl {found or '(none, or broken)'}"
    if not install:
        sys.exit(f"--venv {venv} {why}, and --skip-install forbids building it; "
                 f"drop --skip-install or point --venv at a venv with trl=={TRL_VERSION}")
    if venv.exists() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").exists():
        sys.exit(f"--venv {venv} is a folder that is not a venv; give an empty or new path")
    pins = PINS + [f"transformers=={version('transformers')}"]
    print(f"building the TRL venv at {venv} ({why}): {' '.join(pins)}; this takes a few minutes, "
          f"once ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins])
    found = trl_version(python)
    if done.returncode != 0 or found != TRL_VERSION:
        sys.exit(f"installing {' '.join(pins)} into --venv {venv} failed (pip exit {done.returncode}, "
                 f"trl {found}); see pip's output above")
    return python


# ---------------------------------------------------------------- the two sides

def best_iteration(rows: list[dict]) -> dict:
    """The fastest of the timed iterations (the first row is the warm-up and is left out)."""
    if len(rows) < 2:
        raise ValueError(f"need a warm-up and at least one timed iteration, got {len(rows)} rows")
    return min(rows[1:], key=lambda row: row["total"])


def work_mismatch(result: dict) -> str | None:
    """What makes the worker's iterations differ from ours (None if nothing): every batch of
    replies 32 tokens wide with no stop token, and 16 optimiser steps in every iteration."""
    problems = []
    if set(result["reply_lengths"]) != {32}:
        problems.append(f"reply lengths {sorted(set(result['reply_lengths']))} (want 32)")
    if result["stop_ids"] != [None]:
        problems.append(f"stop token ids {result['stop_ids']} (want none)")
    steps = sorted({row["optimizer_steps"] for row in result["iterations"]})
    if steps != [16]:
        problems.append(f"optimiser steps per iteration {steps} (want 16)")
    return "; ".join(problems) or None


def run_trl(python: Path, repeats: int, threads: int) -> dict:
    """TRL's best iteration (its phases and TRL's sanity checks), from the worker in the TRL venv."""
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)                           # the venv must not see rlhf_lab
    done = subprocess.run([str(python), str(WORKER), "--iterations", str(repeats), "--threads", str(threads)],
                          capture_output=True, text=True, env=env, cwd=HERE)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"the TRL worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    best = best_iteration(result["iterations"])
    problem = work_mismatch(result)
    if problem:
        sys.exit(f"TRL did different work from ours: {problem}")
    return {**best, "meta": {k: v for k, v in result.items() if k not in ("iterations", "reply_lengths")}}


def run_ours(critic: str, repeats: int) -> dict:
    import bench_ppo
    return bench_ppo.bench(critic, repeats)


# ---------------------------------------------------------------- ratios and tables

def ratios(trl: dict, head: dict, separate: dict) -> dict:
    """TRL's seconds over ours, ours over its floor, and whether each meets its goal (GOALS)."""
    r = {"trl/separate": trl["total"] / separate["total"], "trl/head": trl["total"] / head["total"],
         "separate/floor": separate["total"] / separate["floor"], "head/floor": head["total"] / head["floor"]}
    r["met"] = {"trl/separate": r["trl/separate"] >= GOALS["separate"],
                "trl/head": r["trl/head"] >= GOALS["head"],
                "separate/floor": r["separate/floor"] <= GOALS["floor"],
                "head/floor": r["head/floor"] <= GOALS["floor"]}
    return r


def best_of(runs: list[dict]) -> dict:
    """Each quantity's best (smallest) value over rounds, as bench_ppo.bench does over repeats."""
    return {k: min(run[k] for run in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}


def table(title: str, trl: dict, head: dict, separate: dict) -> str:
    """One block: seconds per iteration by phase for the three rows, then the ratios."""
    def cell(row, key):
        return f"{row[key]:>9.2f}" if key in row else f"{'-':>9}"

    lines = [f"{title:<34}" + "".join(f"{k:>9}" for k in (*PHASES, "other", "total", "floor", "tok/s"))]
    for name, row in (("TRL 1.12 PPOTrainer (value model)", trl), ("ours, separate critic", separate),
                      ("ours, value head", head)):
        lines.append(f"{name:<34}" + "".join(cell(row, k) for k in (*PHASES, "other", "total", "floor"))
                     + f"{TOKENS / row['total']:>9.0f}")
    if "gc" in trl:
        lines.append(f"  of TRL's iteration, {trl['gc']:.2f} s in gc.collect() (within score and other)")
    r = ratios(trl, head, separate)
    mark = {True: "met", False: "NOT met"}
    lines.append(f"  TRL / ours: separate critic {r['trl/separate']:.2f}x (goal >= {GOALS['separate']:g}: "
                 f"{mark[r['met']['trl/separate']]}), value head {r['trl/head']:.2f}x (goal >= "
                 f"{GOALS['head']:g}: {mark[r['met']['trl/head']]})")
    lines.append(f"  ours / floor: separate critic {r['separate/floor']:.2f}x, value head "
                 f"{r['head/floor']:.2f}x (goal <= {GOALS['floor']:g}: {mark[r['met']['separate/floor']]} / "
                 f"{mark[r['met']['head/floor']]})")
    return "\n".join(lines)


def header(load, threads: int, meta: dict) -> str:
    from report import cpu_model                   # benchmarks/ is on sys.path (see above)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{time.strftime('%Y-%m-%d %H:%M')} · {cpu_model()} · {cores} cores · Python "
            f"{platform.python_version()} · load average at start {load[0]:.2f} / {load[1]:.2f} / "
            f"{load[2]:.2f} (1 / 5 / 15 min)\n"
            f"ours: torch {version('torch')}, transformers {version('transformers')}, {threads} threads · "
            f"TRL {meta['trl']}: torch {meta['torch']}, transformers {meta['transformers']}, "
            f"{meta['threads']} threads, {meta['optimizer']}\n"
            f"fixed shapes: 64 prompts x (16 + 32) tokens, 4 epochs x 4 minibatches of 16, GPT-2 4 layers "
            f"/ 128 wide / 4 heads / vocab 512; seconds per iteration, best iteration")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of TRL, ours (head), ours (separate)")
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations per side per round, "
                        "after one warm-up")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"the TRL venv (default {DEFAULT_VENV})")
    parser.add_argument("--skip-install", action="store_true", help="never build the venv: fail if it "
                        "lacks trl " + TRL_VERSION)
    args = parser.parse_args(argv)
    for name in ("rounds", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    python = ensure_venv(args.venv.expanduser(), install=not args.skip_install)

    import torch
    threads = torch.get_num_threads()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    runs = {"trl": [], "head": [], "separate": []}
    blocks = []
    for rnd in range(1, args.rounds + 1):
        for side in runs:
            what = "TRL 1.12 PPOTrainer" if side == "trl" else f"ours ({side})"
            print(f"round {rnd}/{args.rounds}: {what}, 1 warm-up + {args.repeats} iterations ...",
                  file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            runs[side].append(run_trl(python, args.repeats, threads) if side == "trl"
                              else run_ours(side, args.repeats))
            print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        blocks.append(table(f"round {rnd}", runs["trl"][-1], runs["head"][-1], runs["separate"][-1]))

    print(header(load, threads, runs["trl"][0]["meta"]))
    for block in blocks:
        print(block)
    print(table(f"best of {args.rounds} round{'s' * (args.rounds > 1)}", *(best_of(runs[s]) for s in ("trl", "head", "separate"))))
    print(f"load average (1 min) at the end {os.getloadavg()[0]:.2f}; TRL's 'other' = its gc.collect() and "
          f"dataloader between iterations; floor = our passes done bare (bench_ppo.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
