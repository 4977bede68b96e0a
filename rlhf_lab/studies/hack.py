"""What the hack is: which parts of the gold utility a policy's replies win and lose.

The gold utility r*(x, y) is a sum of named parts (:func:`rlhf_lab.world.gold_breakdown`: topic,
aspects, off-topic nouns, task quality, length, repetition, grammar, hedging, filler, eos). When
optimisation against a proxy overshoots, the gold falls because some parts fall: those are what
the policy found to exploit in the proxy (Goodhart's law, part by part). :func:`part_changes`
sets a policy's mean parts against the SFT policy's; :func:`dominant_exploit` names the part
that lost most.
"""
from __future__ import annotations

__all__ = ["part_changes", "dominant_exploit", "dominant_gain"]


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
