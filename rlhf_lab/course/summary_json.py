"""``summary.json``: the pipeline's headline numbers in a machine-readable form.

The schema is documented in ``docs/summary_json.md``. Every number comes from a study's result;
standard errors are across seeds where a study has several (``None`` where it has one), so a
reader never has to parse ``summary.md``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["SCHEMA_VERSION", "reward_model_rows", "bon_rows", "ensemble_summary", "ppo_gao_rows",
           "sweep_rows", "seed_mean_peak"]

SCHEMA_VERSION = 1


def _se(values) -> float | None:
    """Standard error of the mean of ``values`` (ddof = 1); None for fewer than two."""
    v = np.asarray(values, dtype=float)
    return None if v.size < 2 else float(v.std(ddof=1) / math.sqrt(v.size))


def reward_model_rows(rows: list[dict], params: dict[int, int], seed: int) -> list[dict]:
    """One entry per reward model of :func:`rlhf_lab.pipeline.runs.reward_model_scaling`'s rows;
    ``params`` maps its pairs to its parameter count."""
    keys = ("accuracy", "bayes_ceiling", "gold_order_accuracy", "gold_correlation")
    return [{"pairs": r["n_pairs"], "params": params[r["n_pairs"]], "seed": seed,
             "n_heldout": r["n_heldout"], **{k: float(r[k]) for k in keys}} for r in rows]


def seed_mean_peak(per_seed_gains) -> dict:
    """The peak of the seed-mean curve and the fall from it to the last n, with standard errors
    across seeds (each seed read at the mean curve's peak n).

    >>> out = seed_mean_peak([[0.0, 0.4, 0.1], [0.0, 0.2, -0.1]])
    >>> out["index"], round(out["peak_gain"], 3), round(out["peak_gain_se"], 3), round(out["fall"], 3)
    (1, 0.3, 0.1, -0.3)
    """
    g = np.asarray(per_seed_gains, dtype=float)                      # (S, len(ns))
    if g.ndim != 2 or g.shape[1] == 0:
        raise ValueError(f"per_seed_gains must be (seeds, n points), got shape {g.shape}")
    i = int(np.argmax(g.mean(0)))
    falls = g[:, -1] - g[:, i]
    return {"index": i, "peak_gain": float(g[:, i].mean()), "peak_gain_se": _se(g[:, i]),
            "fall": float(falls.mean()), "fall_se": _se(falls)}


def bon_rows(seed_average: list[dict], ns, params: dict[int, int]) -> list[dict]:
    """Best-of-n per proxy size from the study's ``seed_average``: peak and fall of the seed-mean
    curve, with standard errors across reward-model seeds."""
    out = []
    for row in seed_average:
        peak = seed_mean_peak([s["gold_gain"] for s in row["per_seed"]])
        out.append({"pairs": row["n_pairs"], "params": params[row["n_pairs"]], "seeds": row["seeds"],
                    "peak_n": int(ns[peak["index"]]), **{k: v for k, v in peak.items() if k != "index"}})
    return out


def ensemble_summary(ensemble: dict) -> dict:
    """Each aggregate's best-of-n fall next to its members' (a fall closer to 0 is later or none)."""
    members = [float(m["fall"]) for m in ensemble["members"]]
    return {"pairs_per_member": ensemble["n_pairs"], "members": len(members),
            "member_falls": members, "member_mean_fall": float(np.mean(members)),
            "aggregates": {how: {"peak_n": int(a["peak"]["n"]), "peak_gain": float(a["peak"]["gold_gain"]),
                                 "fall": float(a["fall"])} for how, a in ensemble["aggregates"].items()}}


def ppo_gao_rows(gao: dict, params: dict[int, int]) -> list[dict]:
    """PPO against each proxy size: the seed-mean checkpoint curve's peak and final gain with
    standard errors across PPO seeds where the study ran several, else one run's checkpoint
    evaluations, else its rollout batches' (one seed: no standard error)."""
    out = []
    for p in gao["proxies"]:
        mean = p.get("seed_mean")
        src = mean or p.get("checkpoints") or p
        se = lambda key: None if not mean else mean[key]
        out.append({"pairs": p["n_pairs"], "params": p.get("params", params.get(p["n_pairs"])),
                    "seeds": mean["seeds"] if mean else 1,
                    "source": "checkpoints" if p.get("checkpoints") else "batches",
                    "peak_gain": float(src["peak"]["gold_gain"]),
                    "peak_gain_se": src["peak"].get("gold_se") if mean else None,
                    "peak_kl": float(src["peak"]["kl"]), "final_gain": float(src["final"]["gold_gain"]),
                    "final_kl": float(src["final"]["kl"]), "fall": float(src["fall"]),
                    "fall_se": se("fall_se"),
                    "rose_most": (p.get("stages") or {}).get("rise_gain"),
                    "fell_most": (p.get("stages") or {}).get("fall_exploit"),
                    "reward_model": {k: float(v) for k, v in p.get("reward_model", {}).items()}})
    return out


def sweep_rows(result: dict) -> list[dict]:
    """The β sweep: PPO's J over β log Ẑ, its share of the achievable gain, whether trusted."""
    return [{"beta": float(r["beta"]), "ratio": float(r["ratio"]), "share": float(r["gain_fraction"]),
             "trusted": bool(r["trustworthy"]), "kl": float(r["kl"])} for r in result["rows"]]
