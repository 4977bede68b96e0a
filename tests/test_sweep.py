"""The β sweep: PPO's objective against the importance-sampled closed-form optimum."""
import math

import pytest

from rlhf_lab import plots, sweep
from test_pipeline import SMALL
from test_ppo import FAST


def test_compare_with_optimum_exact_values():
    out = sweep.compare_with_optimum(proxy=1.5, kl=2.0, beta=0.25, optimum=1.25, reference=0.5)
    assert out["objective"] == 1.0                                   # 1.5 - 0.25 * 2
    assert out["ratio"] == pytest.approx(0.8)
    assert out["gain_fraction"] == pytest.approx(0.5 / 0.75)
    # shifting every reward by a constant shifts J, β log Z and J_ref alike: the gain fraction
    # stays, the ratio does not (Bradley-Terry rewards have no fixed offset)
    shifted = sweep.compare_with_optimum(proxy=11.5, kl=2.0, beta=0.25, optimum=11.25,
                                         reference=10.5)
    assert shifted["gain_fraction"] == pytest.approx(out["gain_fraction"])
    assert shifted["ratio"] != pytest.approx(out["ratio"])
    assert math.isnan(sweep.compare_with_optimum(1.0, 0.0, 0.1, 1.0, 1.0)["gain_fraction"])


def test_sweep_rows_frontier_and_cache(tmp_path):
    run = SMALL.with_ppo(**FAST)
    kwargs = dict(betas=(1.0, 0.01), jobs=1, root=tmp_path, n_samples=64, tail=2,
                  frontier_points=6, min_ess=20)
    result = sweep.beta_sweep(run, **kwargs)
    rows = result["rows"]
    assert [r["beta"] for r in rows] == [1.0, 0.01]
    for r in rows:
        assert r["objective"] == pytest.approx(r["proxy"] - r["beta"] * r["kl"])
        assert 1 <= r["min_ess"] <= 64 and r["optimal_kl"] <= math.log(64) + 1e-9
        assert len(r["history"]) == FAST["iterations"]
    # large β: π* ≈ π_ref, many effective samples; tiny β: a few samples carry all the weight
    assert rows[0]["trustworthy"] and rows[0]["optimal_kl"] < rows[1]["optimal_kl"]
    assert rows[1]["min_ess"] < rows[0]["min_ess"]
    front = result["frontier"]
    assert len(front["beta"]) == 6 and all(len(front[k]) == 6 for k in ("kl", "expected_gold"))
    assert all(a <= b + 1e-9 for a, b in zip(front["kl"], front["kl"][1:]))   # β falls, KL grows
    again = sweep.beta_sweep(run, **kwargs)
    assert [r["objective"] for r in again["rows"]] == [r["objective"] for r in rows]
    plots.beta_sweep(result)


def test_bad_sweep_arguments_name_the_argument():
    with pytest.raises(ValueError, match="betas"):
        sweep.SweepConfig(betas=(0.1, -1.0))
    with pytest.raises(ValueError, match="jobs"):
        sweep.beta_sweep(SMALL, jobs=0)
