"""The pipeline command end to end on small settings: every figure and the summary are written."""
import json

import matplotlib
import pytest

matplotlib.use("Agg")


from rlhf_lab.course.report import BEYOND_ARMS, run_pipeline, time_section  # noqa: E402
from rlhf_lab.studies.feedback import FeedbackConfig  # noqa: E402
from rlhf_lab.studies.iterative import IterativeConfig  # noqa: E402

BON = dict(pairs_grid=(128, 256), n_max=32, ensemble_seeds=(0, 1), ensemble_pairs=128,
           heldout_pairs=128, proxy_seeds=2)
GAO = dict(pairs_grid=(128, 256), seeds=(0, 1), rm_pooling=None, rm_lr=None, rm_sharpness=None, iterations=None,
           eval_every=2)
SWEEP = dict(n_samples=32, tail=2, frontier_points=5, jobs=1, min_ess=10)
BEYOND = dict(pair_counts=(50, 200),
              tax=dict(iterations=2, rollouts=16, minibatch_size=8, n_text=32, n_per_prompt=1, jobs=1),
              grpo=dict(iterations=2, prompts_per_iteration=4, group_size=4, minibatch_size=8,
                        max_new_tokens=12),
              iterative_cfg=IterativeConfig(rounds=2, labels_per_round=64, iterations_per_round=2,
                                            rollouts=16, n_heldout=32, eval_per_prompt=1),
              feedback_cfg=FeedbackConfig(n_pairs=64, few_labels=64, more_labels=64,
                                          n_eval_pairs=32, ppo_iterations=2, rollouts=16,
                                          eval_per_prompt=1, arms=BEYOND_ARMS))


@pytest.mark.slow
def test_pipeline_writes_summary_and_figures(fast_ppo, small_config, tmp_path):
    summary = run_pipeline(tmp_path, small_config.with_ppo(**{**fast_ppo, "iterations": 4}), rm_pairs=(128, 256), rm_heldout=200,
                           betas=(0.3, 0.01),
                           bon=BON, sweep_options=SWEEP, beyond=BEYOND, gao=GAO)
    text = summary.read_text()
    for heading in ("Stages 0-1", "Stage 2", "Stage 3", "The β sweep", "Overoptimisation",
                    "Beyond vanilla RLHF"):
        assert heading in text
    assert "| 256 |" in text and "200 shared held-out pairs" in text and "β=0.01" in text and "oracle" in text
    # β = 0.3 is above the sweep's threshold: trained carefully, and the summary says how
    assert "β = 0.3 at lr 3.33e-05 for 6 iterations, separate critic" in text
    assert "| β=0.3 | 3.33e-05, 6, separate |" in text and "| β=0.01 | 5e-05, 4, head |" in text
    assert "R_RL(d)" in text and "mean_minus_std" in text and "held-out RM" in text
    assert text.count("  - checkpoints (768 replies every 2 iterations") == 2      # one per proxy
    assert text.count("  - mean of 2 PPO seeds") == 2 and "128 → 256 pairs: peak gain" in text
    assert text.count("  - the gold's parts, seed means: on the way up") == 2
    assert "| dpo |" in text and "| grpo |" in text and "Iterative RLHF" in text
    assert "arm missing_rule" in text and "judge constitution" in text
    assert "| 128, mean of 2 seeds |" in text and "| 256, mean of 2 seeds |" in text
    record = json.loads((tmp_path / "summary.json").read_text())       # the same numbers, typed
    assert [r["pairs"] for r in record["reward_models"]] == [128, 256]
    assert "| 256 | " in text and f"{record['reward_models'][1]['accuracy']:.3f}" in text
    assert [r["pairs"] for r in record["bon"]] == [128, 256] and all(r["seeds"] == 2 for r in record["bon"])
    assert [r["pairs"] for r in record["ppo_gao"]] == [128, 256]
    assert all(r["seeds"] == 2 and r["peak_gain_se"] is not None for r in record["ppo_gao"])
    assert all({"rose_most", "fell_most"} <= set(r) for r in record["ppo_gao"])
    assert {r["beta"] for r in record["sweep"]} == {0.3, 0.01}
    assert set(record["ensembles"]["aggregates"]) == {"mean", "min", "mean_minus_std"}
    assert isinstance(record["oracle_ppo_gain"], float)
    assert len(record["timings"]) == 7 and "Gao's PPO study" in record["timings"]
    assert "## Where the time went" in text
    assert [r["beta"] for r in record["hacks"]] == [0.3, 0.01, 0.0] and "What the hack is" in text
    for r in record["hacks"]:                       # the parts' changes add up to the gold change
        assert sum(r["changes"].values()) == pytest.approx(r["gold_change"], abs=1e-9)
    figures = {p.name for p in tmp_path.glob("*.png")}
    assert figures == {"sft_loss.png", "sft_gold.png", "rm_accuracy.png", "rm_calibration.png",
                       "ppo_curves.png", "ppo_gold_vs_proxy.png", "beta_sweep.png",
                       "bon_gao_curves.png", "bon_ensemble.png", "bon_seed_average.png",
                       "bon_peak_detection.png",
                       "ppo_gao_curve.png", "ppo_gao_curves.png", "dpo_vs_boltzmann.png",
                       "reward_kl_plane.png",
                       "alignment_tax.png", "iterative_rlhf.png", "ai_feedback.png"}


def test_time_section_gives_each_part_its_seconds_and_share():
    lines = time_section({"a": 30.0, "b": 90.0})
    assert "2.0 min in all (a part found in the cache takes about 0 s)." in lines
    assert lines[-2:] == ["| a | 30 | 25% |", "| b | 90 | 75% |"]
    assert time_section({"cached": 0.0})[-1] == "| cached | 0 | 0% |"


def test_pipeline_command_refuses_no_gao_seeds(capsys):
    from rlhf_lab.__main__ import main
    with pytest.raises(SystemExit):
        main(["pipeline", "--gao-seeds", "0", "--out", "/nonexistent/never"])
    assert "--gao-seeds must be >= 1, got 0" in capsys.readouterr().err


def test_gao_goals_say_met_or_not_from_the_numbers():
    from rlhf_lab.course.report_gao import _gao_goals
    best = {"peak": {"gold_gain": 0.35, "gold_se": 0.05}, "fall": -0.25, "fall_se": 0.1}
    lines = _gao_goals(best, 64000, oracle=0.6)
    assert "+0.350 ± 0.050, at least +0.3 and half the oracle's gain (+0.300): met" in lines[3]
    assert lines[4].endswith("two standard errors above zero: met")
    assert lines[5] == "- falls at least 0.3 below its peak: -0.250 ± 0.100: NOT met"
    low = _gao_goals({**best, "peak": {"gold_gain": 0.35, "gold_se": 0.2}}, 64000, oracle=0.8)
    assert low[3].endswith("NOT met") and low[4].endswith("NOT met")      # 0.35 < 0.8 / 2; z < 2
    assert "oracle" not in _gao_goals(best, 64000, oracle=None)[3]
    assert len(lines) == 6                                    # without orderings, no ordering line
    orders = [{"z": 4.2, "kl_diff": 3.8}, {"z": 1.5, "kl_diff": 0.4}]
    assert _gao_goals(best, 64000, 0.6, orders)[6] == (
        "- each larger proxy peaks higher by two standard errors (z = +4.2, +1.5): NOT met; "
        "and later (peak KL +3.80, +0.40): met")
    assert _gao_goals(best, 64000, 0.6, orders[:1])[6].endswith("(z = +4.2): met; and later (peak KL +3.80): met")
