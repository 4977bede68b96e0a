"""The world's data sets, made from a seed, and their JSONL export to ``data/``.

* pretraining corpus: mixed-quality 'web' replies to random prompts (stage 0);
* SFT demonstrations: the best 15 % of a larger pool of web replies by gold utility, the way a
  curation team keeps only good examples (stage 1);
* preference pairs: two replies to one prompt, labelled by the simulated annotator (a teaching
  set; the pipeline's reward model is trained on pairs sampled from the SFT policy instead);
* a small sports league table (:func:`league_table`), for fitting Bradley-Terry strengths by hand.

``python -m rlhf_lab data`` writes them; the same seed always writes the same bytes.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from rlhf_lab import world

__all__ = ["pretraining_corpus", "sft_demonstrations", "world_preference_pairs", "write_data",
           "DATA_SIZES", "league_table"]

DATA_SIZES = {"pretrain": 6000, "sft": 1500, "preferences": 2000}


def _text(words: list[str]) -> str:
    return " ".join(words + [world.EOS])


def pretraining_corpus(n: int, seed: int) -> list[tuple[world.Prompt, str]]:
    """``n`` (prompt, reply) pairs of mixed-quality web text."""
    rng = random.Random(f"pretrain-{seed}")
    prompts = world.all_prompts()
    return [(p, _text(world.web_reply(p, rng))) for p in (rng.choice(prompts) for _ in range(n))]


def sft_demonstrations(n: int, seed: int, keep_fraction: float = 0.15) -> list[tuple[world.Prompt, str]]:
    """``n`` curated demonstrations: the top ``keep_fraction`` of web replies by gold utility."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must lie in (0, 1], got {keep_fraction}")
    rng = random.Random(f"sft-{seed}")
    prompts = world.all_prompts()
    pool = [(p, _text(world.web_reply(p, rng)))
            for p in (rng.choice(prompts) for _ in range(int(n / keep_fraction) + 1))]
    pool.sort(key=lambda pr: -world.gold_utility(*pr))
    kept = pool[:n]
    rng.shuffle(kept)
    return kept


def world_preference_pairs(n: int, seed: int) -> list[dict]:
    """``n`` labelled pairs of web replies to the same prompt: {prompt, chosen, rejected, ...}."""
    rng = random.Random(f"pairs-{seed}")
    prompts = [rng.choice(world.all_prompts()) for _ in range(n)]
    first = [_text(world.sample_reply(p, world.random_style(rng), rng)) for p in prompts]
    second = [_text(world.sample_reply(p, world.random_style(rng), rng)) for p in prompts]
    labels = world.annotate(prompts, first, second, seed=seed)
    rows = []
    for p, a, b, first_wins in zip(prompts, first, second, labels):
        chosen, rejected = (a, b) if first_wins else (b, a)
        rows.append({"prompt": p.text, "chosen": chosen, "rejected": rejected,
                     "gold_chosen": round(world.gold_utility(p, chosen), 4),
                     "gold_rejected": round(world.gold_utility(p, rejected), 4)})
    return rows


def league_table():
    """A season of a six-team league, every pair meeting 10 times: ``(teams, wins)``.

    ``wins[i, j]`` (a (6, 6) float tensor) counts the games ``teams[i]`` won against ``teams[j]``.
    The results were drawn once from Bradley-Terry with strengths 1.0, 0.6, 0.2, -0.1, -0.6, -1.1
    (in this order), so a fit should find roughly those, centred.
    """
    import torch
    teams = ["Ravens", "Otters", "Badgers", "Herons", "Foxes", "Lynxes"]
    wins = torch.tensor([[0, 7, 6, 9, 10, 9],
                         [3, 0, 4, 7, 6, 9],
                         [4, 6, 0, 6, 8, 7],
                         [1, 3, 4, 0, 8, 7],
                         [0, 4, 2, 2, 0, 6],
                         [1, 1, 3, 3, 4, 0]], dtype=torch.float64)
    return teams, wins


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def write_data(out_dir: str | Path, seed: int = 0) -> dict[str, int]:
    """Write prompts, pretraining, SFT and preference JSONL files; returns rows per file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "prompts.jsonl": [{"prompt": p.text, "task": p.task, "topic": p.topic}
                          for p in world.all_prompts()],
        "pretrain.jsonl": [{"prompt": p.text, "response": r}
                           for p, r in pretraining_corpus(DATA_SIZES["pretrain"], seed)],
        "sft.jsonl": [{"prompt": p.text, "response": r}
                      for p, r in sft_demonstrations(DATA_SIZES["sft"], seed)],
        "preferences.jsonl": world_preference_pairs(DATA_SIZES["preferences"], seed),
    }
    for name, rows in files.items():
        _write_jsonl(out / name, rows)
    return {name: len(rows) for name, rows in files.items()}
