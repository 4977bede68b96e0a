import math
import random

import pytest

from rlhf_lab import world
from rlhf_lab.world import Prompt, gold_breakdown, gold_utility


def test_vocabulary_is_unique_and_starts_with_special_tokens():
    vocab = world.vocabulary()
    assert len(vocab) == len(set(vocab))
    assert vocab[:5] == world.SPECIAL_TOKENS
    assert len(world.all_prompts()) == 48
    assert all(len(a) == 3 for a in world.TOPICS.values()) and len(world.TOPICS) == 16


def test_gold_of_a_good_review_by_hand():
    parts = gold_breakdown(Prompt("review", "car"), "the engine is great . the seats are lovely . <eos>")
    # 'the A and the A are J .' is a template, so 'seats are lovely' is grammatical
    assert parts["topic"] == 1.0
    assert parts["aspects"] == pytest.approx(0.6 + 0.3)
    assert parts["task_quality"] == pytest.approx(2 * (1 - math.exp(-2 / 2)))
    assert parts["grammar"] == 0.0
    assert gold_breakdown("review car", "the engine are great . <eos>")["grammar"] == 0.0  # class-level
    assert gold_breakdown("review car", "the great is engine . <eos>")["grammar"] == -3.0
    assert parts["length"] == 0.0 and parts["eos"] == 0.0 and parts["off_topic"] == 0.0
    assert gold_utility("review car", "the engine is great . the seats are lovely . <eos>") == \
        pytest.approx(sum(parts.values()))


def test_each_penalty_fires_on_its_own():
    p = Prompt("advise", "pizza")
    clean = "you should check the crust . then clean its sauce . <eos>"
    assert gold_breakdown(p, clean)["grammar"] == 0
    assert gold_breakdown(p, clean.replace(" <eos>", ""))["eos"] == -1.0
    assert gold_breakdown(p, "um " + clean)["filler"] == -0.6
    assert gold_breakdown(p, "maybe the crust is great . maybe the sauce is great . <eos>")["hedging"] == \
        pytest.approx(-0.6)
    assert gold_breakdown(p, "you should check the engine . <eos>")["off_topic"] == -0.7
    assert gold_breakdown(p, "you should check the crust . you should check the crust . <eos>")[
        "repetition"] == pytest.approx(-1.2)        # 'check' and 'crust' each repeated once
    assert gold_breakdown(p, "crust . <eos>")["length"] == pytest.approx(-0.3 * 4)
    assert gold_breakdown(p, "the the crust . <eos>")["grammar"] == -1.0


def test_text_after_eos_is_ignored():
    p = Prompt("describe", "tent")
    assert gold_utility(p, "the tent has a zipper . <eos> um um um") == \
        gold_utility(p, "the tent has a zipper . <eos>")


def test_clean_replies_are_always_grammatical():
    rng = random.Random(0)
    for p in world.all_prompts():
        for _ in range(20):
            words = world.sample_reply(p, world.random_style(rng), rng)
            assert gold_breakdown(p, " ".join(words) + " <eos>")["grammar"] == 0, words


def test_curated_style_beats_web_text_on_average():
    rng = random.Random(1)
    prompts = [rng.choice(world.all_prompts()) for _ in range(600)]
    web = [gold_utility(p, " ".join(world.web_reply(p, rng)) + " <eos>") for p in prompts]
    cur = [gold_utility(p, " ".join(world.sample_reply(p, world.CURATED_STYLE, rng)) + " <eos>")
           for p in prompts]
    assert sum(cur) / len(cur) > sum(web) / len(web) + 1.5


def test_annotator_is_bradley_terry_and_deterministic():
    p = [Prompt("review", "car")] * 4000
    good, bad = ["the engine is great . the brakes is superb . <eos>"] * 4000, ["um . <eos>"] * 4000
    labels = world.annotate(p, good, bad, seed=3)
    assert labels == world.annotate(p, good, bad, seed=3)
    expected = 1 / (1 + math.exp(-(gold_utility(p[0], good[0]) - gold_utility(p[0], bad[0]))))
    assert sum(labels) / len(labels) == pytest.approx(expected, abs=0.02)


def test_annotator_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="responses_2"):
        world.annotate([Prompt("review", "car")] * 2, ["a <eos>"] * 2, ["b <eos>"], seed=0)


def test_bayes_ceiling_exact():
    assert world.bayes_ceiling([0.0], [0.0]) == 0.5
    assert world.bayes_ceiling([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1 / (1 + math.exp(-1)))
    with pytest.raises(ValueError, match="gold_1"):
        world.bayes_ceiling([], [])


def test_parse_prompt_rejects_nonsense():
    assert world.parse_prompt("<bos> review car <sep>") == Prompt("review", "car")
    with pytest.raises(ValueError, match="prompt"):
        world.parse_prompt("sing car")


def test_the_deterministic_annotator_prefers_the_higher_gold_and_tosses_a_coin_on_ties():
    p = [Prompt("review", "car")] * 400
    good, bad = ["the engine is great . <eos>"] * 400, ["um . <eos>"] * 400
    assert world.annotate(p, good, bad, seed=1, annotator="deterministic") == [1] * 400
    assert world.annotate(p, bad, good, seed=1, annotator="deterministic") == [0] * 400
    ties = world.annotate(p, good, good, seed=1, annotator="deterministic")
    assert ties == world.annotate(p, good, good, seed=1, annotator="deterministic")
    assert 150 < sum(ties) < 250                                 # a fair coin: 200 ± 10 (one sd)


def test_the_annotator_must_be_a_known_one():
    with pytest.raises(ValueError, match="annotator must be one of"):
        world.annotate([Prompt("review", "car")], ["a <eos>"], ["b <eos>"], seed=0, annotator="oracle")


def test_a_sharper_annotator_labels_with_sigmoid_of_s_times_the_gap():
    p = [Prompt("review", "car")] * 4000
    good, bad = ["the engine is great . <eos>"] * 4000, ["the engine is great . um . <eos>"] * 4000
    gap = gold_utility(p[0], good[0]) - gold_utility(p[0], bad[0])
    assert world.annotate(p, good, bad, seed=3, sharpness=1.0) == world.annotate(p, good, bad, seed=3)
    for s in (0.5, 2.5):
        labels = world.annotate(p, good, bad, seed=3, sharpness=s)
        assert sum(labels) / len(labels) == pytest.approx(1 / (1 + math.exp(-s * gap)), abs=0.025)
    # the same uniform draws: a sharper annotator never flips a label towards the worse reply
    soft, sharp = (world.annotate(p, good, bad, seed=3, sharpness=s) for s in (1.0, 2.5))
    assert all(b >= a for a, b in zip(soft, sharp)) if gap > 0 else all(b <= a for a, b in zip(soft, sharp))


@pytest.mark.parametrize("sharpness", [0, -1.0, float("inf"), float("nan"), "2"])
def test_the_annotator_refuses_a_bad_sharpness(sharpness):
    with pytest.raises(ValueError, match="sharpness"):
        world.annotate([Prompt("review", "car")], ["a <eos>"], ["b <eos>"], seed=0, sharpness=sharpness)
