"""What the hack is: which parts of the gold utility a policy's replies win and lose.

The gold utility r*(x, y) is a sum of named parts (:func:`rlhf_lab.world.gold_breakdown`: topic,
aspects, off-topic nouns, task quality, length, repetition, grammar, hedging, filler, eos). When
optimisation against a proxy overshoots, the gold falls because some parts fall: those are what
the policy found to exploit in the proxy (Goodhart's law, part by part). :func:`part_changes`
sets a policy's mean parts against the SFT policy's; :func:`dominant_exploit` names the part
that lost most. :func:`stage_changes` splits a PPO run at its gold peak: what rose on the way
up (real improvement) and what fell after it (the exploit).
"""
from __future__ import annotations

__all__ = ["part_changes", "dominant_exploit", "dominant_gain", "mean_parts", "stage_changes"]


def part_changes(parts: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """``parts − baseline`` for every part (both from :func:`rlhf_lab.world.mean_breakdown` or
    ``evaluate_policy(...)["parts"]``); their sum is the change in mean gold.

    >>> part_changes({"topic": 0.9, "repetition": -0.8}, {"topic": 0.7, "repetition": -0.2})
    {'topic': 0.2, 'repetition': -0.6}
    """
    if set(parts) != set(baseline):
        raise ValueError(f"parts and baseline must name the same parts, got {sorted(parts)} and "
                         f"{sorted(baseline)}")
    return {k: round(parts[k] - baseline[k], 12) for k in baseline}


def dominant_exploit(parts: dict[str, float], baseline: dict[str, float]) -> dict:
    """The part whose mean fell most against ``baseline``: ``{"part", "change"}`` (change < 0),
    or ``{"part": None, "change": 0.0}`` when no part fell.

    >>> dominant_exploit({"topic": 0.9, "repetition": -0.8, "eos": 0.0},
    ...                  {"topic": 0.7, "repetition": -0.2, "eos": -0.1})
    {'part': 'repetition', 'change': -0.6}
    """
    changes = part_changes(parts, baseline)
    part = min(changes, key=changes.get)
    return {"part": part, "change": changes[part]} if changes[part] < 0 else {"part": None, "change": 0.0}


def dominant_gain(parts: dict[str, float], baseline: dict[str, float]) -> dict:
    """The part whose mean rose most: what the policy improved for real (``{"part", "change"}``)."""
    changes = part_changes(parts, baseline)
    part = max(changes, key=changes.get)
    return {"part": part, "change": changes[part]} if changes[part] > 0 else {"part": None, "change": 0.0}


def mean_parts(many: list[dict[str, float]]) -> dict[str, float]:
    """The mean of several dicts of parts (one per PPO seed) at the same checkpoint.

    >>> mean_parts([{"topic": 0.5, "grammar": -0.2}, {"topic": 0.7, "grammar": -0.4}])
    {'topic': 0.6, 'grammar': -0.3}
    """
    if not many:
        raise ValueError("many must hold at least one dict of parts")
    if any(set(parts) != set(many[0]) for parts in many):
        raise ValueError(f"every dict must name the same parts, got {[sorted(p) for p in many]}")
    return {k: round(sum(p[k] for p in many) / len(many), 12) for k in many[0]}


def stage_changes(evals: list[list[dict]], peak: int) -> dict:
    """The two stages of a PPO run against a proxy, split at checkpoint ``peak`` (the seed-mean
    gold peak): ``rise`` = parts at the peak − parts at the start (checkpoint 0, the SFT policy)
    and ``fall`` = parts at the end − parts at the peak, each averaged over seeds, with the part
    that rose most on the way up (``rise_gain``) and the one that fell most after the peak
    (``fall_exploit``).

    Args: evals: one list of checkpoint evaluations per seed (``metrics["evals"]``, each with
    ``parts``); peak: the index of the peak checkpoint.

    >>> run = [{"parts": {"task": 0.0, "grammar": 0.0}}, {"parts": {"task": 0.4, "grammar": -0.1}},
    ...        {"parts": {"task": 0.5, "grammar": -1.1}}]
    >>> out = stage_changes([run], peak=1)
    >>> out["rise"], out["fall"], out["fall_exploit"]
    ({'task': 0.4, 'grammar': -0.1}, {'task': 0.1, 'grammar': -1.0}, {'part': 'grammar', 'change': -1.0})
    """
    at = lambda i: mean_parts([seed[i]["parts"] for seed in evals])
    start, top, end = at(0), at(peak), at(-1)
    return {"rise": part_changes(top, start), "fall": part_changes(end, top),
            "rise_gain": dominant_gain(top, start), "fall_exploit": dominant_exploit(end, top)}
