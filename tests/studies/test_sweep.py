"""The β sweep: PPO's objective against the importance-sampled closed-form optimum."""
import math

import pytest

from rlhf_lab.course.plots import ppo as ppo_plots
from rlhf_lab.pipeline.runs import RunConfig
from rlhf_lab.studies import sweep


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


def test_sweep_run_is_the_plain_run_up_to_the_threshold_and_careful_above():
    run = RunConfig()                                        # lr 5e-5, 60 iterations, value head
    for beta in (0.01, 0.1, 0.2):
        assert sweep.sweep_run(run, beta) == run.with_ppo(beta=beta)     # the pipeline's own run
    one = sweep.sweep_run(run, 1.0).ppo
    assert (one.beta, one.lr, one.iterations, one.critic) == (1.0, pytest.approx(1e-5), 90, "separate")
    third = sweep.sweep_run(run, 0.3).ppo
    assert third.lr == pytest.approx(5e-5 * 0.2 / 0.3) and third.iterations == 90
    # the rule scales the run it is given, and can be switched off
    short = sweep.sweep_run(run.with_ppo(lr=1e-4, iterations=7), 0.4,
                            sweep.SweepConfig(careful_above=0.1, careful_length=2.0,
                                              careful_critic="head")).ppo
    assert (short.lr, short.iterations, short.critic) == (pytest.approx(2.5e-5), 14, "head")
    assert sweep.sweep_run(run, 1.0, sweep.SweepConfig(careful_above=None)) == run.with_ppo(beta=1.0)


@pytest.mark.slow
def test_sweep_rows_frontier_and_cache(fast_ppo, small_config, tmp_path):
    run = small_config.with_ppo(**fast_ppo)
    kwargs = dict(betas=(1.0, 0.01), jobs=1, root=tmp_path, n_samples=64, tail=2,
                  frontier_points=6, min_ess=20)
    result = sweep.beta_sweep(run, **kwargs)
    rows = result["rows"]
    assert [r["beta"] for r in rows] == [1.0, 0.01]
    for r in rows:
        assert r["objective"] == pytest.approx(r["proxy"] - r["beta"] * r["kl"])
        assert 1 <= r["min_ess"] <= 64 and r["optimal_kl"] <= math.log(64) + 1e-9
    # β = 1 is trained carefully (sweep_run), β = 0.01 is the plain run
    careful = round(fast_ppo["iterations"] * 1.5)
    assert (rows[0]["critic"], rows[0]["iterations"], len(rows[0]["history"])) == ("separate", careful, careful)
    assert rows[0]["lr"] == pytest.approx(run.ppo.lr * 0.2)
    assert (rows[1]["critic"], rows[1]["lr"], len(rows[1]["history"])) == (run.ppo.critic, run.ppo.lr,
                                                                           fast_ppo["iterations"])
    # large β: π* ≈ π_ref, many effective samples; tiny β: a few samples carry all the weight
    assert rows[0]["trustworthy"] and rows[0]["optimal_kl"] < rows[1]["optimal_kl"]
    assert rows[1]["min_ess"] < rows[0]["min_ess"]
    front = result["frontier"]
    assert len(front["beta"]) == 6 and all(len(front[k]) == 6 for k in ("kl", "expected_gold"))
    assert all(a <= b + 1e-9 for a, b in zip(front["kl"], front["kl"][1:]))   # β falls, KL grows
    again = sweep.beta_sweep(run, **kwargs)
    assert [r["objective"] for r in again["rows"]] == [r["objective"] for r in rows]
    ppo_plots.beta_sweep(result)


def test_bad_sweep_arguments_name_the_argument(small_config):
    with pytest.raises(ValueError, match="betas"):
        sweep.SweepConfig(betas=(0.1, -1.0))
    for field, value in (("careful_above", 0.0), ("careful_length", 0.5), ("careful_critic", "none")):
        with pytest.raises(ValueError, match=field):
            sweep.SweepConfig(**{field: value})
    with pytest.raises(ValueError, match="jobs"):
        sweep.beta_sweep(small_config, jobs=0)
