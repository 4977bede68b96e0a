"""What the hack is: the gold parts' aggregation and the exploit it names (exact values)."""
import pytest

from rlhf_lab import world
from rlhf_lab.studies import hack


def test_mean_breakdown_sums_to_the_mean_gold():
    prompts = world.all_prompts()[:3]
    replies = [f"the {p.topic} is great . <eos>" for p in prompts[:2]] + ["um um um"]
    parts = world.mean_breakdown(prompts, replies)
    gold = world.gold_utilities(prompts, replies)
    assert sum(parts.values()) == pytest.approx(sum(gold) / 3, abs=1e-12)
    assert parts["eos"] == pytest.approx(-1 / 3)                   # one reply in three never ends
    with pytest.raises(ValueError, match="prompts and responses"):
        world.mean_breakdown(prompts, replies[:2])


def test_dominant_exploit_and_gain():
    base = {"topic": 0.7, "repetition": -0.2, "eos": -0.1}
    after = {"topic": 0.9, "repetition": -0.8, "eos": 0.0}
    assert hack.part_changes(after, base) == {"topic": 0.2, "repetition": -0.6, "eos": 0.1}
    assert hack.dominant_exploit(after, base) == {"part": "repetition", "change": -0.6}
    assert hack.dominant_gain(after, base) == {"part": "topic", "change": 0.2}
    assert hack.dominant_exploit(base, base) == {"part": None, "change": 0.0}
    with pytest.raises(ValueError, match="same parts"):
        hack.part_changes({"topic": 1.0}, base)
