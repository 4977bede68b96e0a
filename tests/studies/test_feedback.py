"""AI feedback: constitution rules, judges' labels, agreement, pair sources, the study."""
import pytest

from rlhf_lab import world
from rlhf_lab.course.plots import beyond as beyond_plots
from rlhf_lab.lm import models
from rlhf_lab.pipeline import runs
from rlhf_lab.studies import feedback
from rlhf_lab.studies.feedback import FeedbackConfig, PairSource
from rlhf_lab.studies.judges import (
    Constitution,
    LearnedJudge,
    SimulatedAnnotator,
    agreement,
    gold_better,
    label_pairs,
    rule_scores,
)

CAR = world.Prompt("review", "car")
GOOD = "the engine is great . the brakes are superb . i like the seats . <eos>"
SHORT = "the engine is great . <eos>"
BAD = "maybe the pizza is um great great . the car"


def test_rules_exact_values_on_hand_written_replies():
    assert rule_scores(CAR, GOOD) == {"topic": 1.0, "stay_on_topic": 0.0, "do_the_task": 2.0,
                                      "no_hedging": 0.0, "no_filler": 0.0, "no_repetition": 0.0,
                                      "finish": 0.0, "length": 0.0}
    assert rule_scores(CAR, SHORT)["length"] == -1.0 and sum(rule_scores(CAR, SHORT).values()) == 1.0
    # pizza: another topic; maybe: a hedge; um: filler; great twice; no <eos>; 10 words
    assert rule_scores(CAR, BAD) == {"topic": 1.0, "stay_on_topic": -1.0, "do_the_task": 2.0,
                                     "no_hedging": -1.0, "no_filler": -1.0, "no_repetition": -1.0,
                                     "finish": -1.0, "length": 0.0}
    # the task rule counts what each task asks for, capped at 3; text after <eos> is ignored
    assert rule_scores("advise car", "check the engine . test the brakes . <eos>")["do_the_task"] == 2.0
    assert rule_scores("describe car", "the car has a engine and a seats .")["do_the_task"] == 2.0
    assert rule_scores(CAR, "great superb lovely solid <eos> pizza")["do_the_task"] == 3.0
    assert rule_scores(CAR, "great superb lovely solid <eos> pizza")["stay_on_topic"] == 0.0


def test_constitution_sums_its_rules_and_can_leave_one_out():
    c = Constitution()
    assert c.scores([CAR, CAR, CAR], [GOOD, SHORT, BAD]) == [3.0, 1.0, -2.0]
    weak = c.without("stay_on_topic")
    assert "stay_on_topic" not in weak.rules and len(weak.rules) == len(c.rules) - 1
    assert weak.scores([CAR], [BAD]) == [-1.0]
    with pytest.raises(ValueError, match="rules"):
        Constitution(("topic", "be_nice"))
    with pytest.raises(ValueError, match="rules"):
        Constitution(())


def test_label_pairs_prefers_the_higher_score_and_breaks_ties_by_a_seeded_coin():
    prompts = [CAR] * 40
    first, second = [GOOD, BAD] + [SHORT] * 38, [BAD, GOOD] + [SHORT] * 38
    labels = label_pairs(Constitution(), prompts, first, second, seed=3)
    assert len(labels) == 40 and set(labels) <= {0, 1}
    assert labels[:2] == [1, 0]
    assert set(labels[2:]) == {0, 1}                              # ties: both outcomes occur
    assert label_pairs(Constitution(), prompts, first, second, seed=3) == labels
    assert label_pairs(Constitution(), prompts, first, second, seed=4) != labels
    with pytest.raises(ValueError, match="prompts"):
        label_pairs(Constitution(), prompts[:3], first, second, seed=0)


def test_the_annotator_as_a_judge_agrees_with_its_own_labels():
    prompts = world.all_prompts()[:20]
    first, second = [GOOD] * 10 + [BAD] * 10, [BAD] * 10 + [SHORT] * 10
    own = world.annotate(prompts, first, second, seed=11)
    labels = label_pairs(SimulatedAnnotator(), prompts, first, second, seed=11)
    assert labels == own and agreement(labels, own) == 1.0
    assert agreement([1 - x for x in own], own) == 0.0


def test_gold_better_and_agreement_skip_ties():
    truth = gold_better([CAR] * 3, [GOOD, BAD, SHORT], [BAD, GOOD, SHORT])
    assert truth == [1, 0, None]
    assert agreement([1, 1, 0], truth) == 0.5
    with pytest.raises(ValueError, match="reference"):
        agreement([1], [None])


def test_learned_judge_labels_by_its_reward_model(tok):
    rm = models.reward_model_from(models.new_policy("tiny", seed=1), seed=1)
    judge = LearnedJudge([rm, rm], sample=False)
    prompts = [CAR, CAR]
    s_good, s_bad = judge.scores(prompts, [GOOD, BAD])
    assert LearnedJudge([rm]).scores(prompts, [GOOD, BAD]) == pytest.approx([s_good, s_bad])
    assert label_pairs(judge, prompts, [GOOD, BAD], [BAD, GOOD], seed=0) == \
        [int(s_good > s_bad), int(s_bad > s_good)]
    # sampling: P(first) = σ(s1 − s2) = 1/2 on identical replies; seeded
    sampler = LearnedJudge([rm])
    labels = label_pairs(sampler, [CAR] * 60, [GOOD] * 60, [GOOD] * 60, seed=2)
    assert 15 < sum(labels) < 45 and labels == label_pairs(sampler, [CAR] * 60, [GOOD] * 60,
                                                            [GOOD] * 60, seed=2)


def test_sample_pairs_from_two_policies_is_deterministic():
    policies = {"sft": models.new_policy("tiny", seed=1), "base": models.new_policy("tiny", seed=2)}
    source = PairSource(policies=("sft", "base"), temperature=0.7, tasks=("advise",))
    a = feedback.sample_pairs(source, policies, 6, seed=5, max_response_len=6)
    b = feedback.sample_pairs(source, policies, 6, seed=5, max_response_len=6)
    assert a == b and len(a[0]) == len(a[1]) == len(a[2]) == 6
    assert all(p.task == "advise" for p in a[0])


@pytest.mark.parametrize("field,value", [("n_pairs", 0), ("beta", -1.0), ("missing_rule", "be_nice"),
                                         ("arms", ("human", "telepathy")), ("arms", ()),
                                         ("rollouts", 0), ("few_labels", 0), ("seed", -1)])
def test_feedback_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        FeedbackConfig(**{field: value})


@pytest.mark.parametrize("field,value", [("policies", ("gpt4",)), ("temperature", 0.0),
                                         ("tasks", ("sing",))])
def test_pair_source_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PairSource(**{field: value})


@pytest.mark.slow
def test_study_smoke_and_cache(fast_ppo, small_config, tmp_path):
    run = small_config.with_ppo(**{k: v for k, v in fast_ppo.items() if k not in ("iterations", "rollouts")})
    cfg = FeedbackConfig(n_pairs=64, few_labels=32, more_labels=64, n_eval_pairs=48,
                         ppo_iterations=1, rollouts=32, eval_per_prompt=1,
                         arms=("human", "missing_rule", "narrow_pairs"))
    result = feedback.ai_feedback_study(run, cfg, root=tmp_path, jobs=1)
    assert set(result["agreement"]) == set(feedback.JUDGES) | {"ties_in_gold"}
    for name in feedback.JUDGES:
        assert 0 <= result["agreement"][name]["gold"] <= 1
    assert set(result["arms"]) == set(cfg.arms)
    for arm in cfg.arms:
        row = result["arms"][arm]
        assert row["judge"] == feedback.ARMS[arm][0] and len(row["history"]) == 1
        assert 0 <= row["label_gold_agreement"] <= 1 and row["n"] == 48
    assert result["arms"]["human"]["identical_pairs"] <= result["arms"]["narrow_pairs"]["identical_pairs"]
    assert feedback.ai_feedback_study(run, cfg, root=tmp_path, jobs=1) == result
    assert sum(p.name.startswith("feedback-") for p in tmp_path.iterdir()) == 1
    # the learned judges are the pipeline's reward models on 32 and 64 pairs, cached as such
    for n in (32, 64):
        assert runs.stage_keys(run.with_rm(n_pairs=n, batch_size=min(run.rm.batch_size, n)))["rm"] \
            in {p.name.removeprefix("rm-") for p in tmp_path.iterdir()}
    beyond_plots.ai_feedback(result)


def test_the_better_learned_judge_is_the_pipelines_own_reward_model():
    run = runs.RunConfig()
    assert feedback._judge_run(run, FeedbackConfig().more_labels, FeedbackConfig().seed) == run
