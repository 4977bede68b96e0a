"""summary.json's builders: exact values on small hand-made study results."""
import math

import pytest

from rlhf_lab.course import summary_json


def test_seed_mean_peak_reads_every_seed_at_the_mean_curves_peak():
    out = summary_json.seed_mean_peak([[0.0, 0.4, 0.1], [0.0, 0.2, -0.1]])
    assert out["index"] == 1                                  # mean curve 0, 0.3, 0.0
    assert out["peak_gain"] == pytest.approx(0.3) and out["fall"] == pytest.approx(-0.3)
    assert out["peak_gain_se"] == pytest.approx(0.1)          # std 0.1414 / sqrt 2
    assert out["fall_se"] == pytest.approx(0.0)               # both seeds fall by 0.3


def test_one_seed_has_no_standard_error_and_bad_shapes_are_named():
    assert summary_json.seed_mean_peak([[0.0, 1.0]])["peak_gain_se"] is None
    with pytest.raises(ValueError, match="per_seed_gains"):
        summary_json.seed_mean_peak([0.0, 1.0])


def test_bon_rows_take_n_from_the_grid_and_params_by_pairs():
    seed_average = [{"n_pairs": 500, "seeds": 2, "per_seed": [{"gold_gain": [0, 0.2, 0.1]},
                                                              {"gold_gain": [0, 0.4, 0.3]}]}]
    (row,) = summary_json.bon_rows(seed_average, [1, 4, 16], {500: 1234})
    assert row["pairs"] == 500 and row["params"] == 1234 and row["peak_n"] == 4
    assert row["peak_gain"] == pytest.approx(0.3) and row["fall"] == pytest.approx(-0.1)
    assert row["fall_se"] == pytest.approx(0.0) and row["peak_gain_se"] == pytest.approx(0.1)


def test_ensemble_summary_sets_aggregates_beside_the_members_mean():
    ens = {"n_pairs": 500, "members": [{"fall": -0.2}, {"fall": -0.6}],
           "aggregates": {"min": {"peak": {"n": 8, "gold_gain": 0.3}, "fall": -0.1}}}
    out = summary_json.ensemble_summary(ens)
    assert out["member_mean_fall"] == pytest.approx(-0.4) and out["members"] == 2
    assert out["aggregates"] == {"min": {"peak_n": 8, "peak_gain": 0.3, "fall": -0.1}}


def test_ppo_gao_rows_prefer_checkpoints_and_sweep_rows_keep_trust():
    point = lambda g, kl: {"gold_gain": g, "kl": kl}
    gao = {"proxies": [{"n_pairs": 4000, "peak": point(0.1, 1.0), "final": point(-0.2, 5.0), "fall": -0.3,
                        "checkpoints": {"peak": point(0.05, 0.5), "final": point(-0.3, 6.0), "fall": -0.35}},
                       {"n_pairs": 16000, "peak": point(0.2, 2.0), "final": point(0.0, 4.0), "fall": -0.2}]}
    a, b = summary_json.ppo_gao_rows(gao, {4000: 10})
    assert (a["source"], a["peak_gain"], a["final_kl"], a["params"]) == ("checkpoints", 0.05, 6.0, 10)
    assert (a["fall"], a["fall_se"], a["seeds"]) == (-0.35, None, 1)
    assert (b["source"], b["peak_gain"], b["params"], b["peak_gain_se"]) == ("batches", 0.2, None, None)
    seeded = {**gao["proxies"][0], "seed_mean": {
        "seeds": 3, "peak": {**point(0.3, 2.0), "gold_se": 0.04}, "final": {**point(-0.1, 9.0), "gold_se": 0.05},
        "fall": -0.4, "fall_se": 0.06},
        "stages": {"rise_gain": {"part": "task_quality", "change": 0.3},
                   "fall_exploit": {"part": "grammar", "change": -0.9}}}
    c, = summary_json.ppo_gao_rows({"proxies": [seeded]}, {4000: 10})
    assert c["rose_most"] == {"part": "task_quality", "change": 0.3} and a["rose_most"] is None
    assert c["fell_most"] == {"part": "grammar", "change": -0.9} and a["fell_most"] is None
    assert (c["seeds"], c["peak_gain"], c["peak_gain_se"], c["peak_kl"]) == (3, 0.3, 0.04, 2.0)
    assert (c["final_gain"], c["fall"], c["fall_se"], c["source"]) == (-0.1, -0.4, 0.06, "checkpoints")
    rows = summary_json.sweep_rows({"rows": [{"beta": 1, "ratio": 0.98, "gain_fraction": 0.7,
                                              "trustworthy": True, "kl": 0.03}]})
    assert rows == [{"beta": 1.0, "ratio": 0.98, "share": 0.7, "trusted": True, "kl": 0.03}]
    assert not math.isnan(rows[0]["ratio"])
