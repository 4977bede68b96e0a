"""The pipeline summary's "what the hack is" section: the gold utility's parts of each policy's
replies against the SFT policy's, across the β sweep and for β = 0 (no leash at all)."""
from __future__ import annotations

from rlhf_lab.lm.evaluation import evaluate_policy
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_ppo, load_or_train_rm, load_or_train_sft
from rlhf_lab.studies import hack, sweep

__all__ = ["hack_rows", "hack_section", "gao_stage_line"]

N_PER_PROMPT = 16        # 768 replies per policy, the same seed for every policy


def hack_rows(run: RunConfig, betas, careful: sweep.SweepConfig, n_per_prompt: int = N_PER_PROMPT,
              zero_beta: bool = True) -> tuple[dict, list[dict]]:
    """The SFT policy's mean gold parts, and one row per PPO run (each sweep β, then β = 0):
    KL, gold change, the part that fell most (the exploit) and the part that rose most."""
    sft = load_or_train_sft(run).model
    rm = load_or_train_rm(run).model
    ev = lambda policy: evaluate_policy(policy, sft, None, rm, n_per_prompt,
                                        max_new_tokens=run.ppo.max_new_tokens)
    base = ev(sft)
    variants = [(b, sweep.sweep_run(run, b, careful)) for b in sorted(betas, reverse=True)]
    if zero_beta:
        variants.append((0.0, run.with_ppo(beta=0.0)))
    rows = []
    for beta, variant in variants:
        out = ev(load_or_train_ppo(variant).model)
        rows.append({"beta": beta, "kl": out["kl"], "gold_change": out["gold"] - base["gold"],
                     "proxy_change": out["proxy"] - base["proxy"],
                     "exploit": hack.dominant_exploit(out["parts"], base["parts"]),
                     "gain": hack.dominant_gain(out["parts"], base["parts"]),
                     "changes": hack.part_changes(out["parts"], base["parts"])})
    return base, rows


def hack_section(run: RunConfig, betas, careful: sweep.SweepConfig, record: dict | None = None,
                 **options) -> list[str]:
    base, rows = hack_rows(run, betas, careful, **options)
    if record is not None:
        record["hacks"] = [{k: r[k] for k in ("beta", "kl", "gold_change", "proxy_change", "exploit",
                                               "gain", "changes")} for r in rows]
    word = lambda d: "none" if d["part"] is None else f"{d['part']} {d['change']:+.2f}"
    lines = ["", "## What the hack is: the gold utility's parts against the SFT policy's", "",
             f"Each policy's {base['n']} replies (fixed seed) against the SFT policy's: the part "
             "that fell most is what the policy exploits in the proxy; the part that rose most, what "
             "it improved for real.", "",
             "| β | KL | proxy change | gold change | fell most (the exploit) | rose most |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['beta']:g} | {r['kl']:.2f} | {r['proxy_change']:+.3f} | {r['gold_change']:+.3f} "
              f"| {word(r['exploit'])} | {word(r['gain'])} |" for r in rows]
    return lines


def gao_stage_line(stages: dict) -> str:
    """One line of the PPO Gao section: the gold part that rose most up to a proxy's seed-mean
    peak, and the one that fell most after it (:func:`rlhf_lab.studies.hack.stage_changes`)."""
    word = lambda d: "no part" if d["part"] is None else f"{d['part']} ({d['change']:+.2f})"
    return (f"  - the gold's parts, seed means: on the way up {word(stages['rise_gain'])} rose most; "
            f"after the peak {word(stages['fall_exploit'])} fell most (the exploit)")
