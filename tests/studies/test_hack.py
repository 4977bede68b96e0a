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


def test_stage_changes_split_two_seeds_at_the_peak():
    """Two seeds, three checkpoints; the peak is checkpoint 1. The rise is the seed mean at the
    peak minus the start, the fall the seed mean at the end minus the peak."""
    seed_a = [{"parts": {"task": 0.0, "grammar": -0.1}}, {"parts": {"task": 0.4, "grammar": -0.1}},
              {"parts": {"task": 0.6, "grammar": -1.1}}]
    seed_b = [{"parts": {"task": 0.2, "grammar": -0.1}}, {"parts": {"task": 0.4, "grammar": -0.3}},
              {"parts": {"task": 0.4, "grammar": -0.7}}]
    out = hack.stage_changes([seed_a, seed_b], peak=1)
    assert out["rise"] == {"task": 0.3, "grammar": -0.1}
    assert out["fall"] == {"task": 0.1, "grammar": -0.7}
    assert out["rise_gain"] == {"part": "task", "change": 0.3}
    assert out["fall_exploit"] == {"part": "grammar", "change": -0.7}
    whole = {k: out["rise"][k] + out["fall"][k] for k in out["rise"]}   # start -> end
    assert whole == pytest.approx({"task": 0.5 - 0.1, "grammar": -0.9 - (-0.1)})


def test_mean_parts_refuses_mismatched_or_missing_parts():
    with pytest.raises(ValueError, match="same parts"):
        hack.mean_parts([{"task": 1.0}, {"grammar": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        hack.mean_parts([])
