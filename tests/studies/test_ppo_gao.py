"""Gao et al.'s R_RL curves for PPO against proxy reward models of several sizes."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rlhf_lab.core.artifacts import is_cached  # noqa: E402
from rlhf_lab.course.plots import overoptimisation as overoptimisation_plots  # noqa: E402
from rlhf_lab.lm import models
from rlhf_lab.pipeline import runs
from rlhf_lab.pipeline.pool import sample_pool
from rlhf_lab.studies.overoptimisation import score_pool  # noqa: E402
from rlhf_lab.studies.ppo_gao import (  # noqa: E402
    PPOGaoConfig,
    fit_curve,
    gain_curve,
    observed_peak,
    ppo_gao_study,
    proxy_summary,
    seed_mean_curve,
    sft_baseline,
    smoothed_peak,
    peak_ordering,
    ppo_gao_runs,
    study_key,
)


def _history(kl, gold, proxy):
    return [{"iteration": t, "kl": k, "gold": g, "proxy": p}
            for t, (k, g, p) in enumerate(zip(kl, gold, proxy))]


def _rl_history(alpha, beta, ds, gold0=1.0):
    """A history whose gold gain is exactly d(α − β log d) at each d (d = 0 first)."""
    gain = [0.0] + [d * (alpha - beta * math.log(d)) for d in ds[1:]]
    return _history([d * d for d in ds], [gold0 + g for g in gain], [0.5 + d for d in ds])


def test_gain_curve_docstring_example():
    curve = gain_curve(_history(kl=[0.0, 4.0, -0.1], gold=[1.0, 3.0, 0.5], proxy=[2.0, 2.5, 3.0]))
    assert curve["iteration"] == [0, 1, 2]
    assert curve["d"] == [0.0, 2.0, 0.0]                       # sqrt(max(KL, 0))
    assert curve["gold_gain"] == [0.0, 2.0, -0.5]              # relative to iteration 0
    assert curve["proxy_gain"] == [0.0, 0.5, 1.0]
    assert curve["kl"] == [0.0, 4.0, -0.1]                     # the estimate itself is kept
    shifted = gain_curve(_history(kl=[0.0, 4.0, -0.1], gold=[1.0, 3.0, 0.5], proxy=[2.0, 2.5, 3.0]),
                         baseline={"gold": 1.5, "proxy": 1.0})
    assert shifted["gold_gain"] == [-0.5, 1.5, -1.0]           # over the SFT policy's mean
    assert shifted["proxy_gain"] == [1.0, 1.5, 2.0] and shifted["d"] == curve["d"]
    with pytest.raises(ValueError, match="baseline"):
        gain_curve(_history([0.0], [1.0], [1.0]), baseline={"gold": 1.0})


def test_fit_recovers_alpha_beta_and_the_peak_of_a_synthetic_r_rl_curve():
    ds = [0.0] + list(np.linspace(0.2, 5.0, 25))
    fit = fit_curve(gain_curve(_rl_history(1.0, 0.5, ds)))
    assert fit["alpha"] == pytest.approx(1.0, abs=1e-9) and fit["beta"] == pytest.approx(0.5, abs=1e-9)
    assert fit["points"] == 25                                 # the d = 0 point is left out
    assert fit["d_peak"] == pytest.approx(math.e)              # exp(α/β − 1)
    assert fit["kl_peak"] == pytest.approx(math.e ** 2)
    assert fit["gain_peak"] == pytest.approx(0.5 * math.e)     # β d*


def test_fit_without_a_downturn_and_with_too_few_points():
    rising = fit_curve(gain_curve(_rl_history(1.0, -0.2, [0.0, 0.5, 1.0, 2.0])))
    assert rising["beta"] < 0 and math.isinf(rising["d_peak"]) and math.isinf(rising["gain_peak"])
    assert fit_curve(gain_curve(_history([0.0, 1.0], [0.0, 1.0], [0.0, 1.0]))) is None


def test_observed_peak_final_and_fall():
    history = _history(kl=[0.0, 1.0, 4.0, 9.0, 16.0], gold=[1.0, 1.5, 2.0, 2.0, 1.2],
                       proxy=[0.0, 1.0, 2.0, 3.0, 4.0])
    peak = observed_peak(gain_curve(history))
    assert peak["iteration"] == 2 and peak["kl"] == 4.0 and peak["d"] == 2.0   # first of the tie
    assert peak["gold_gain"] == 1.0 and peak["proxy_gain"] == 2.0
    out = proxy_summary(500, history, {"accuracy": 0.7, "history": [1, 2]})
    assert out["n_pairs"] == 500 and out["reward_model"] == {"accuracy": 0.7}
    assert out["final"]["iteration"] == 4 and out["final"]["gold_gain"] == pytest.approx(0.2)
    assert out["fall"] == pytest.approx(0.2 - 1.0)
    assert out["smoothed_peak"]["first"] == 0 and out["smoothed_peak"]["last"] == 4   # window 5


def test_smoothed_peak_exact_values():
    history = _history(kl=[0.0, 1.0, 4.0, 9.0, 16.0], gold=[1.0, 1.5, 2.0, 2.0, 1.2],
                       proxy=[0.0, 1.0, 2.0, 3.0, 4.0])
    curve = gain_curve(history)
    two = smoothed_peak(curve, 2)               # means of the gains [0.25, 0.75, 1.0, 0.6]
    assert (two["first"], two["last"]) == (2, 3)
    assert two["gold_gain"] == pytest.approx(1.0) and two["kl"] == pytest.approx(6.5)
    assert two["proxy_gain"] == pytest.approx(2.5)
    one = smoothed_peak(curve, 1)               # a window of one is the observed peak
    peak = observed_peak(curve)
    assert (one["first"], one["gold_gain"], one["kl"]) == (peak["iteration"], peak["gold_gain"], peak["kl"])
    whole = smoothed_peak(curve, 10)            # longer than the run: the mean of all of it
    assert (whole["first"], whole["last"]) == (0, 4) and whole["gold_gain"] == pytest.approx(0.54)
    with pytest.raises(ValueError, match="window"):
        smoothed_peak(curve, 0)


def test_seed_mean_curve_docstring_example():
    one = gain_curve(_history(kl=[0.0, 1.0, 4.0], gold=[1.0, 1.4, 1.1], proxy=[0.0, 0.5, 1.0]))
    two = gain_curve(_history(kl=[0.0, 3.0, 4.0], gold=[2.0, 2.2, 1.9], proxy=[0.0, 0.3, 0.6]))
    out = seed_mean_curve([one, two])
    assert out["seeds"] == 2
    assert out["curve"]["gold_gain"] == pytest.approx([0.0, 0.3, 0.0])
    assert out["curve"]["kl"] == pytest.approx([0.0, 2.0, 4.0])
    assert out["curve"]["d"] == pytest.approx([0.0, math.sqrt(2.0), 2.0])
    assert out["curve"]["gold_se"] == pytest.approx([0.0, 0.1, 0.1])     # std(ddof 1) / sqrt(2)
    assert out["curve"]["proxy_gain"] == pytest.approx([0.0, 0.4, 0.8])
    assert out["peak"]["iteration"] == 1 and out["peak"]["gold_gain"] == pytest.approx(0.3)
    assert out["peak"]["gold_se"] == pytest.approx(0.1)
    assert out["final"]["gold_gain"] == pytest.approx(0.0)
    assert out["fall"] == pytest.approx(-0.3) and out["fall_se"] == pytest.approx(0.0)


def test_seed_mean_curve_of_one_seed_is_that_curve_without_errors():
    curve = gain_curve(_history(kl=[0.0, 1.0, 4.0], gold=[1.0, 1.4, 1.1], proxy=[0.0, 0.5, 1.0]))
    out = seed_mean_curve([curve])
    assert out["curve"]["gold_gain"] == pytest.approx(curve["gold_gain"])
    assert out["peak"] == {**observed_peak(curve), "gold_se": None}
    assert out["curve"]["gold_se"] is None and out["fall_se"] is None
    assert out["fall"] == pytest.approx(0.1 - 0.4)


def test_peak_ordering_docstring_example():
    means = [{"peak": {"gold_gain": 0.1, "gold_se": 0.03, "kl": 1.0}},
             {"peak": {"gold_gain": 0.3, "gold_se": 0.04, "kl": 8.0}},
             {"peak": {"gold_gain": 0.2, "gold_se": None, "kl": 5.0}}]
    first, second = peak_ordering(means)
    assert first["gain_diff"] == pytest.approx(0.2) and first["gain_se"] == pytest.approx(0.05)
    assert first["z"] == pytest.approx(4.0) and first["kl_diff"] == pytest.approx(7.0)
    assert second["gain_diff"] == pytest.approx(-0.1) and second["z"] is None and second["gain_se"] is None
    assert peak_ordering(means[:1]) == []


def test_seed_mean_curve_refuses_misaligned_or_no_curves():
    a = gain_curve(_history(kl=[0.0, 1.0], gold=[1.0, 1.4], proxy=[0.0, 0.5]))
    b = gain_curve(_history(kl=[0.0, 1.0, 2.0], gold=[1.0, 1.4, 1.2], proxy=[0.0, 0.5, 0.6]))
    with pytest.raises(ValueError, match="curves"):
        seed_mean_curve([a, b])
    with pytest.raises(ValueError, match="curves"):
        seed_mean_curve([])


@pytest.mark.parametrize("kwargs,name", [(dict(pairs_grid=(2000, 500)), "pairs_grid"),
                                         (dict(pairs_grid=(500, 500)), "pairs_grid"),
                                         (dict(pairs_grid=()), "pairs_grid"),
                                         (dict(pairs_grid=(0, 10)), "pairs_grid"),
                                         (dict(pairs_grid=(1.5,)), "pairs_grid"),
                                         (dict(beta=0.0), "beta"), (dict(beta=-0.01), "beta"),
                                         (dict(baseline_per_prompt=0), "baseline_per_prompt"),
                                         (dict(baseline_per_prompt=2.5), "baseline_per_prompt"),
                                         (dict(baseline_seed=-1), "baseline_seed"),
                                         (dict(smooth=0), "smooth"),
                                         (dict(eval_every=-1), "eval_every"),
                                         (dict(eval_per_prompt=0), "eval_per_prompt"),
                                         (dict(seeds=()), "seeds"), (dict(seeds=(0, 0)), "seeds"),
                                         (dict(seeds=(-1,)), "seeds"), (dict(seeds=[0, 1]), "seeds"),
                                         (dict(rm_pooling="max"), "rm_pooling"), (dict(rm_lr=0.0), "rm_lr"),
                                         (dict(iterations=0), "iterations"),
                                         (dict(iterations=2.5), "iterations"),
                                         (dict(rm_sharpness=0), "rm_sharpness"),
                                         (dict(reward_norm="zscore"), "reward_norm")])
def test_bad_config_names_the_field(small_config, kwargs, name):
    with pytest.raises(ValueError, match=name):
        PPOGaoConfig(**kwargs)
    with pytest.raises(ValueError, match=name):
        ppo_gao_study(small_config, **kwargs, jobs=1)


@pytest.mark.parametrize("jobs", [0, -1, 1.5])
def test_bad_jobs_is_refused_before_any_training(small_config, jobs, tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        ppo_gao_study(small_config, pairs_grid=(128,), jobs=jobs, root=tmp_path)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_cache_key_follows_beta_the_grid_and_the_runs(small_config):
    cfg = PPOGaoConfig(pairs_grid=(128, 256), beta=0.01)
    key = study_key(small_config, cfg)
    assert study_key(small_config, PPOGaoConfig(pairs_grid=(128, 256), beta=0.01)) == key
    assert study_key(small_config, PPOGaoConfig(pairs_grid=(128, 256), beta=0.02)) != key
    assert study_key(small_config, PPOGaoConfig(pairs_grid=(128, 512), beta=0.01)) != key
    assert study_key(small_config.with_ppo(lr=1e-4), cfg) != key
    assert study_key(small_config, PPOGaoConfig(pairs_grid=(128, 256), beta=0.01, seeds=(0, 1))) != key


def test_runs_cover_every_proxy_and_seed_with_the_study_settings(small_config):
    cfg = PPOGaoConfig(pairs_grid=(128, 256), beta=0.02, seeds=(0, 5), iterations=7, rm_lr=2e-3)
    out = ppo_gao_runs(small_config, cfg)
    assert [(r.rm.n_pairs, r.ppo.seed) for r in out] == [(128, 0), (128, 5), (256, 0), (256, 5)]
    assert {(r.rm.pooling, r.rm.lr, r.ppo.iterations, r.ppo.beta, r.ppo.eval_every, r.ppo.reward_norm)
            for r in out} == {("sum", 2e-3, 7, 0.02, cfg.eval_every, "whiten")}
    own = ppo_gao_runs(small_config, PPOGaoConfig(pairs_grid=(128,), rm_pooling=None, rm_lr=None,
                                                  reward_norm=None, iterations=None, seeds=(0,)))[0]
    assert (own.rm.pooling, own.rm.lr, own.ppo.iterations, own.ppo.reward_norm) == (
        small_config.rm.pooling, small_config.rm.lr, small_config.ppo.iterations, None)


PIPELINE_OWN = dict(rm_pooling=None, rm_lr=None, rm_sharpness=None, reward_norm=None, iterations=None,
                    eval_every=2)
"""The study on the run's own reward models and PPO length: its seed-0 runs are the pipeline's."""


@pytest.fixture(scope="module")
def tiny_study(fast_ppo, small_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo_gao")
    run = small_config.with_ppo(**{**fast_ppo, "iterations": 4})
    return run, root, ppo_gao_study(run, pairs_grid=(128, 256), beta=0.05, root=root, jobs=1,
                                    **PIPELINE_OWN, baseline_per_prompt=8, eval_per_prompt=2,
                                    seeds=(0, 1))


@pytest.mark.slow
def test_smoke_study_shares_the_pipeline_runs_and_is_cached(tiny_study):
    run, root, study = tiny_study
    assert study["config"] == {"stage": "PPOGaoConfig", "pairs_grid": [128, 256], "beta": 0.05,
                               "baseline_per_prompt": 8, "baseline_seed": 31_000, "smooth": 5,
                               "eval_every": 2, "eval_per_prompt": 2, "rm_pooling": None,
                               "rm_lr": None, "rm_sharpness": None, "reward_norm": None,
                               "iterations": None, "seeds": [0, 1]}
    assert [p["n_pairs"] for p in study["proxies"]] == [128, 256]
    assert all(p["seconds"] > 0 for p in study["proxies"])               # trained here
    # the 256-pair proxy is SMALL's own RM: its PPO run is the pipeline's artifact at that β,
    # with checkpoint evaluations
    own = runs.load_or_train_ppo(run.with_ppo(beta=0.05, eval_every=2, eval_per_prompt=2), root)
    p256 = study["proxies"][1]
    assert p256["ppo_key"] == own.key
    history = own.metrics["history"]
    # the zero of the gains: the SFT policy's means over 48 x 8 replies, one proxy per RM
    rms = [runs.load_or_train_rm(run.with_rm(n_pairs=p), root).model for p in (128, 256)]
    base = sft_baseline(run, rms, n_per_prompt=8, seed=31_000, max_new_tokens=run.ppo.max_new_tokens,
                        root=root)
    assert study["baseline"] == base and base["samples"] == 48 * 8
    fresh = sample_pool(runs.load_or_train_sft(run, root).model, models.world_tokenizer(), 8,
                        31_000, run.ppo.max_new_tokens)                # what the cached pool holds
    assert base["gold"] == float(fresh.gold.mean())
    assert base["proxy"] == [float(s.mean()) for s in score_pool(rms, models.world_tokenizer(), fresh)]
    assert p256["baseline"] == {"gold": base["gold"], "proxy": base["proxy"][1]}
    assert p256["curve"]["gold_gain"] == pytest.approx([h["gold"] - base["gold"] for h in history])
    assert p256["curve"]["proxy_gain"] == pytest.approx([h["proxy"] - base["proxy"][1]
                                                         for h in history])
    # the checkpoints: after 0, 2 and 4 iterations, gains from the first (the SFT policy)
    evals = own.metrics["evals"]
    points = p256["checkpoints"]
    assert points["curve"]["iteration"] == [0, 2, 4] == [e["iteration"] for e in evals]
    assert points["curve"]["gold_gain"] == pytest.approx([e["gold"] - evals[0]["gold"] for e in evals])
    assert points["curve"]["gold_gain"][0] == 0 and points["curve"]["kl"][0] == 0
    assert points["peak"]["gold_gain"] == max(points["curve"]["gold_gain"])
    assert points["fall"] == points["final"]["gold_gain"] - points["peak"]["gold_gain"] <= 0
    # the second PPO seed against the same proxy, and the mean of the two checkpoint curves
    other = runs.load_or_train_ppo(run.with_ppo(beta=0.05, eval_every=2, eval_per_prompt=2, seed=1),
                                   root)
    assert p256["ppo_keys"] == [own.key, other.key] and other.key != own.key
    gains = np.array([[e["gold"] - r.metrics["evals"][0]["gold"] for e in r.metrics["evals"]]
                      for r in (own, other)])
    mean = p256["seed_mean"]
    assert mean["seeds"] == 2 and mean["curve"]["gold_gain"] == pytest.approx(gains.mean(0).tolist())
    assert mean["curve"]["gold_se"] == pytest.approx((gains.std(0, ddof=1) / math.sqrt(2)).tolist())
    # the gold's parts add up to the gold: the rise and fall over all parts are the seed-mean
    # curve's gain at its peak and its fall after it
    stages = p256["stages"]
    assert sum(stages["rise"].values()) == pytest.approx(mean["peak"]["gold_gain"], abs=1e-9)
    assert sum(stages["fall"].values()) == pytest.approx(mean["fall"], abs=1e-9)
    for p in study["proxies"]:
        curve = p["curve"]
        assert len(curve["iteration"]) == 4 and all(d >= 0 for d in curve["d"])
        assert p["fit"] is None or p["fit"]["points"] == sum(d > 0 for d in curve["d"])
        assert p["peak"]["gold_gain"] == max(curve["gold_gain"]) and p["fall"] <= 0
        assert 0 <= p["reward_model"]["accuracy"] <= 1
    assert is_cached("ppo_gao", study["key"], root)
    again = ppo_gao_study(run, pairs_grid=(128, 256), beta=0.05, root=root, jobs=1, **PIPELINE_OWN,
                          baseline_per_prompt=8, eval_per_prompt=2, seeds=(0, 1))
    assert [p["seconds"] for p in again["proxies"]] == [0.0, 0.0]        # nothing retrained
    assert [p["curve"] for p in again["proxies"]] == [p["curve"] for p in study["proxies"]]


@pytest.mark.slow
def test_figure_of_several_seeds_draws_each_proxys_mean_with_its_band(tiny_study):
    _, _, study = tiny_study
    fig = overoptimisation_plots.ppo_gao_curves(study)          # two seeds: the seed-mean figure
    ax, whole = fig.axes
    texts = [t.get_text() for t in whole.get_legend().get_texts()]
    assert any("128 pairs" in t for t in texts) and "gold gain, mean of 2 seeds" in texts
    for axis in (ax, whole):                  # per proxy: gold, proxy, star; the zero line
        assert len(axis.lines) == 3 * len(study["proxies"]) + 1
        assert len(axis.collections) == len(study["proxies"])              # the bands
    for line, p in zip(whole.lines[::3], study["proxies"]):
        assert list(line.get_ydata()) == p["seed_mean"]["curve"]["gold_gain"]
    band = whole.collections[0].get_paths()[0].vertices[:, 1]
    mean = study["proxies"][0]["seed_mean"]["curve"]
    low = np.array(mean["gold_gain"]) - 2 * np.array(mean["gold_se"])
    assert min(band) == pytest.approx(min(low))


@pytest.mark.slow
def test_figure_draws_every_proxy(tiny_study):
    _, _, study = tiny_study
    study = {**study, "proxies": [{**p, "seed_mean": None} for p in study["proxies"]]}   # one seed
    fig = overoptimisation_plots.ppo_gao_curves(study)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("128 pairs" in t for t in texts) and any("256 pairs" in t for t in texts)
    assert "gold peak (checkpoints)" in texts and "gold, each rollout batch" in texts
    fits = sum(p["checkpoints"]["fit"] is not None for p in study["proxies"])
    # per proxy: batches, checkpoint gold, proxy, star; the fits; the zero line
    assert len(ax.lines) == 4 * len(study["proxies"]) + fits + 1
    zoom = fig.axes[1]                                        # the checkpoints with d <= 1, per proxy
    assert len(zoom.lines) == len(study["proxies"]) + 1
    for line, p in zip(zoom.lines, study["proxies"]):
        curve = p["checkpoints"]["curve"]
        kept = [i for i, d in enumerate(curve["d"]) if d <= 1]
        assert list(line.get_xdata()) == [curve["d"][i] for i in kept]
        assert list(line.get_ydata()) == [curve["gold_gain"][i] for i in kept]
    far = {**study, "proxies": [{**p, "checkpoints": {**p["checkpoints"], "curve": {
        **p["checkpoints"]["curve"], "d": [0.0, 0.9] + [1.5] * (len(p["checkpoints"]["curve"]["d"]) - 2)}}}
        for p in study["proxies"]]}                           # checkpoints beyond d = 1 are left out
    for line in overoptimisation_plots.ppo_gao_curves(far).axes[1].lines[:-1]:
        assert list(line.get_xdata()) == [0.0, 0.9]
    plain = {**study, "proxies": [{**p, "checkpoints": None} for p in study["proxies"]]}
    fig = overoptimisation_plots.ppo_gao_curves(plain)                         # runs without checkpoints: one panel
    ax, = fig.axes
    assert "observed gold peak" in [t.get_text() for t in ax.get_legend().get_texts()]
    fits = sum(p["fit"] is not None for p in study["proxies"])
    assert len(ax.lines) == 3 * len(study["proxies"]) + fits + 1      # gold, proxy, star; fits; zero
