"""Tests of rlhf_lab.studies.overoptimisation: the pool, the best-of-n curves, the ensemble, the cached study."""
import json
import math
import os

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from rlhf_lab import world  # noqa: E402
from rlhf_lab.course.plots import overoptimisation as overoptimisation_plots
from rlhf_lab.equations import bon_curves
from rlhf_lab.equations.overopt_math import aggregate_ensemble, kl_best_of_n, kl_exact_best_of_n  # noqa: E402
from rlhf_lab.lm import models
from rlhf_lab.lm.generation import sample_responses, sample_responses_pruned  # noqa: E402
from rlhf_lab.lm.sequences import encode_prompts, response_mask_from  # noqa: E402
from rlhf_lab.pipeline import runs
from rlhf_lab.pipeline.pool import load_or_sample_pool, sample_pool, score_pool
from rlhf_lab.pipeline.runs import RunConfig  # noqa: E402
from rlhf_lab.stages.reward_model import RewardConfig, score_texts  # noqa: E402
from rlhf_lab.stages.sft import PretrainConfig, SFTConfig  # noqa: E402
from rlhf_lab.studies import overoptimisation
from rlhf_lab.studies.sweep import SweepConfig  # noqa: E402

TINY = RunConfig(base=PretrainConfig(corpus_size=2000, steps=60, batch_size=64),
                 sft=SFTConfig(n_demonstrations=300, steps=40, batch_size=32),
                 rm=RewardConfig(n_pairs=256, epochs=1, batch_size=32, n_heldout=128))
STUDY = dict(pairs_grid=(64, 128), n_max=32, ensemble_seeds=(0, 1), ensemble_pairs=64,
             heldout_pairs=64, proxy_seeds=2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("overopt_cache")


@pytest.fixture(scope="module")
def study(root):
    return overoptimisation.overoptimisation_study(TINY, root=root, **STUDY)


@pytest.fixture(scope="module")
def sft(root):
    return runs.load_or_train_sft(TINY, root=root).model


# ----------------------------------------------------------------------------- exact values


def test_n_grid_example():
    assert bon_curves.n_grid(16, 2) == [1, 2, 3, 4, 6, 8, 11, 16]
    assert bon_curves.n_grid(1024, 1) == [2 ** k for k in range(11)]
    assert bon_curves.n_grid(40, 1)[-1] == 40


def test_best_of_n_curve_docstring_example():
    curve = bon_curves.best_of_n_curve([[1, 2, 3]], [[10, 0, 5]], [1, 2])
    assert curve["n"] == [1, 2] and curve["kl_bon"][0] == 0.0
    assert curve["gold"][1] == pytest.approx(10 / 3)
    assert curve["gold_gain"][1] == pytest.approx(10 / 3 - 5)
    assert curve["proxy_gain"][1] == pytest.approx(8 / 3 - 2)
    assert curve["d"][1] == pytest.approx(math.sqrt(math.log(2) - 0.5))


def test_plugin_kl_matches_the_exact_best_of_n_kl_of_the_empirical_distribution():
    rng = np.random.default_rng(0)
    proxy = rng.integers(0, 6, size=(3, 40)).astype(float)             # many repeated replies
    ns = [1, 2, 5, 40]
    expected = []
    for row in proxy:
        levels, counts = np.unique(row, return_counts=True)
        expected.append([kl_exact_best_of_n(counts / counts.sum(), levels, n) for n in ns])
    got = bon_curves.plugin_kl_best_of_n(proxy, ns)
    assert np.allclose(got, np.mean(expected, axis=0))
    assert got[0] == 0 and np.all(got <= kl_best_of_n(np.array(ns)) + 1e-12)


def test_gao_summary_recovers_a_known_curve():
    ns = bon_curves.n_grid(1024, 2)
    d = np.sqrt(kl_best_of_n(np.array(ns)))
    gain = d * (0.8 - 0.4 * d)                                          # peak at d* = 1, gain 0.4
    curve = {"n": ns, "d": d.tolist(), "gold_gain": gain.tolist(), "proxy_gain": d.tolist()}
    summary = bon_curves.gao_summary(curve)
    fit = summary["fit"]
    assert fit["alpha"] == pytest.approx(0.8) and fit["beta"] == pytest.approx(0.4)
    assert fit["d_peak"] == pytest.approx(1.0) and fit["gain_peak"] == pytest.approx(0.4)
    assert summary["curve"] is curve
    i = int(np.argmax(gain))
    assert summary["peak"]["n"] == ns[i] and summary["fall"] == pytest.approx(gain[-1] - gain[i])
    assert summary["fall"] < 0


def test_choose_n_with_gold_as_judge_finds_the_true_peak():
    rng = np.random.default_rng(1)
    gold = rng.normal(size=(5, 64))
    proxy = gold + rng.normal(scale=2.0, size=gold.shape) + 3 * (gold < -1.5)   # a hackable proxy
    row = bon_curves.choose_n(proxy, gold, gold, bon_curves.n_grid(64))
    assert row["n_chosen"] == row["n_peak"] and row["regret"] == 0 and row["octaves"] == 0


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_curve_properties(seed):
    """Zero gain at n = 1; the proxy gain never falls with n; the oracle's gold gain bounds
    every proxy's; the plug-in KL stays below the bound and below log m."""
    rng = np.random.default_rng(seed)
    gold = rng.normal(size=(6, 128)).round(1)                           # ties, as in the world
    proxy = gold + rng.normal(scale=1.5, size=gold.shape)
    ns = bon_curves.n_grid(128, 3)
    curve = bon_curves.best_of_n_curve(proxy, gold, ns)
    oracle = bon_curves.best_of_n_curve(gold, gold, ns)
    assert curve["gold_gain"][0] == pytest.approx(0, abs=1e-9)
    assert curve["proxy_gain"][0] == pytest.approx(0, abs=1e-9)
    assert np.all(np.diff(curve["proxy_gain"]) >= -1e-9)
    assert np.all(np.array(oracle["gold_gain"]) >= np.array(curve["gold_gain"]) - 1e-9)
    assert np.all(np.array(curve["kl_plugin"]) <= np.array(curve["kl_bon"]) + 1e-9)
    assert max(curve["kl_plugin"]) <= math.log(128) + 1e-9


# ----------------------------------------------------------------------------- the pool


@pytest.mark.slow
def test_pool_shapes_gold_and_determinism(sft, tok):
    pool = sample_pool(sft, tok, 8, seed=3)
    assert len(pool.prompts) == 48 and pool.gold.shape == (48, 8) and pool.index.shape == (48, 8)
    assert len(pool.texts) == 48 and all(len(row) == 8 for row in pool.texts)
    for i in (0, 17, 47):
        assert pool.gold[i].tolist() == [world.gold_utility(pool.prompts[i], t) for t in pool.texts[i]]
        assert [pool.unique_texts[u] for u in pool.index[i]] == pool.texts[i]
        assert {pool.unique_prompts[u] for u in pool.index[i]} == {pool.prompts[i]}
    assert len(set(zip(pool.unique_prompts, pool.unique_texts))) == len(pool.unique_texts)
    again = sample_pool(sft, tok, 8, seed=3)
    assert again.texts == pool.texts and np.array_equal(again.gold, pool.gold)
    assert sample_pool(sft, tok, 8, seed=4).texts != pool.texts


def _sample_without_pruning(model, ids, mask, eos_id, pad_id, temperature, generator):
    """The plain loop: every row stays in the model until the last step."""
    attention_mask = mask.long()
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attention_mask, position_ids=pos, use_cache=True)
    next_pos, done, tokens = pos[:, -1:] + 1, torch.zeros(len(ids), dtype=torch.bool), []
    for _ in range(24):
        probs = torch.softmax(out.logits[:, -1].float() / temperature, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        tokens.append(torch.where(done, torch.full_like(token, pad_id), token))
        done = done | (tokens[-1] == eos_id)
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = model(input_ids=tokens[-1][:, None], attention_mask=attention_mask,
                    position_ids=next_pos, cache=out.cache, use_cache=True)
        next_pos = next_pos + 1
    return torch.stack(tokens, dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_ended_rows_leave_the_model_without_changing_a_sample(sft, tok, temperature):
    prompts = [world.all_prompts()[i % 48] for i in range(96)]
    ids, mask = encode_prompts(tok, prompts)
    rows_seen = []
    hook = sft.register_forward_pre_hook(lambda m, a, kw: rows_seen.append(len(kw["input_ids"])),
                                         with_kwargs=True)
    try:
        got, got_mask = sample_responses(sft, ids, mask, 24, tok.eos_token_id, tok.pad_token_id,
                                         temperature, torch.Generator().manual_seed(11))
    finally:
        hook.remove()
    assert min(rows_seen) < 96                                  # rows did leave the batch
    ref = _sample_without_pruning(sft, ids, mask, tok.eos_token_id, tok.pad_token_id, temperature,
                                  torch.Generator().manual_seed(11))
    assert torch.equal(got, ref)
    assert torch.equal(got_mask, response_mask_from(ref, tok.eos_token_id))


@pytest.mark.slow
def test_pool_sampler_matches_the_reference_sampler_row_by_row(sft, tok):
    """One row at a time nothing is dropped, so the generator's draws line up exactly."""
    for prompt, seed in [(world.all_prompts()[0], 0), (world.all_prompts()[30], 5)]:
        ids, mask = encode_prompts(tok, [prompt])
        ref, _ = sample_responses(sft, ids, mask, 24, tok.eos_token_id, tok.pad_token_id,
                                  generator=torch.Generator().manual_seed(seed))
        got = sample_responses_pruned(sft, ids, mask, 24, tok.eos_token_id, tok.pad_token_id,
                                      torch.Generator().manual_seed(seed))
        assert torch.equal(got[:, :ref.shape[1]], ref)
        assert bool((got[:, ref.shape[1]:] == tok.pad_token_id).all())


@pytest.mark.slow
def test_cached_pool_is_the_sampled_pool_and_the_sweep_shares_it(root, sft, tok):
    pools = lambda: {p.name for p in root.iterdir() if p.name.startswith("pool-")}
    before = pools()
    fresh = sample_pool(sft, tok, 6, seed=9)
    first = load_or_sample_pool(TINY, 6, 9, root=root)            # samples and saves
    again = load_or_sample_pool(TINY, 6, 9, root=root)            # loads the artifact
    for pool in (first, again):
        assert pool.texts == fresh.texts and np.array_equal(pool.gold, fresh.gold)
        assert pool.unique_texts == fresh.unique_texts and np.array_equal(pool.index, fresh.index)
        assert pool.unique_prompts == fresh.unique_prompts and pool.prompts == fresh.prompts
    assert len(pools() - before) == 1
    assert load_or_sample_pool(TINY, 6, 10, root=root).texts != fresh.texts
    # notebook 05's closed form and notebook 06's best-of-n read one pool
    bon = overoptimisation.BestOfNConfig()
    assert (SweepConfig().pool_seed, SweepConfig().n_samples) == (bon.pool_seed, bon.n_max)


@pytest.mark.slow
def test_score_pool_matches_score_texts(root, sft, tok):
    rms = [runs.load_or_train_rm(TINY.with_rm(n_pairs=64, seed=s), root=root).model for s in (0, 1)]
    pool = sample_pool(sft, tok, 4, seed=0)
    one = score_pool(rms[0], tok, pool)
    both = score_pool(rms, tok, pool, batch_size=50)
    assert one.shape == (48, 4) and both.shape == (2, 48, 4)
    assert np.allclose(both[0], one, atol=1e-5)
    prompts = [p for p in pool.prompts for _ in range(4)]
    texts = [t for row in pool.texts for t in row]
    reference = score_texts(rms[1], tok, prompts, texts).numpy().reshape(48, 4)
    assert np.allclose(both[1], reference, atol=1e-5)
    # rows are independent at one width: scoring in chunks of 7 rows gives the same scores (the
    # matrix-product kernels may round differently for another number of rows, so not always bits)
    chunked = score_pool(rms, tok, pool, chunk_size=7)
    assert np.allclose(chunked, score_pool(rms, tok, pool), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- the study


def test_config_validation_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="n_max"):
        overoptimisation.BestOfNConfig(n_max=1)
    with pytest.raises(ValueError, match="pairs_grid"):
        overoptimisation.BestOfNConfig(pairs_grid=(2000, 500))
    with pytest.raises(ValueError, match="ensemble_seeds"):
        overoptimisation.BestOfNConfig(ensemble_seeds=(1,))
    with pytest.raises(ValueError, match="heldout_seed"):
        overoptimisation.BestOfNConfig(ensemble_seeds=(0, 1), heldout_seed=1)
    with pytest.raises(ValueError, match="heldout_seed"):           # raised before any training
        overoptimisation.overoptimisation_study(TINY.with_rm(seed=100), root=tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="ensemble_k"):
        overoptimisation.BestOfNConfig(ensemble_k=-1.0)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="proxy_seeds"):
            overoptimisation.BestOfNConfig(proxy_seeds=bad)
    with pytest.raises(ValueError, match="heldout_seed"):           # seed 2 = run.rm.seed + 2
        overoptimisation.overoptimisation_study(TINY, root=tmp_path, heldout_seed=2, proxy_seeds=3,
                                       ensemble_seeds=(0, 1))
    assert list(tmp_path.iterdir()) == []


def test_mean_curve_averages_the_gains_and_keeps_the_grid():
    ns = [1, 2, 4]
    a = bon_curves.best_of_n_curve([[0.0, 1.0, 2.0, 3.0]], [[1.0, 0.0, 3.0, 2.0]], ns)
    b = bon_curves.best_of_n_curve([[3.0, 2.0, 1.0, 0.0]], [[1.0, 0.0, 3.0, 2.0]], ns)
    mean = bon_curves.mean_curve([a, b])
    assert mean["n"] == ns and mean["d"] == a["d"] and mean["kl_bon"] == a["kl_bon"]
    for key in ("gold", "proxy", "gold_gain", "proxy_gain", "kl_plugin"):
        assert np.allclose(mean[key], (np.array(a[key]) + np.array(b[key])) / 2), key
    # best-of-4 takes the top proxy score: gold 2 for a, 1 for b; the mean gold is 1.5
    assert a["gold"][-1] == pytest.approx(2.0) and b["gold"][-1] == pytest.approx(1.0)
    assert mean["gold_gain"][-1] == pytest.approx(1.5 - 1.5)
    assert bon_curves.mean_curve([a]) == a
    with pytest.raises(ValueError, match="curves"):
        bon_curves.mean_curve([a, bon_curves.best_of_n_curve([[0.0, 1.0, 2.0, 3.0]], [[1.0, 0.0, 3.0, 2.0]], [1, 2])])
    with pytest.raises(ValueError, match="curves"):
        bon_curves.mean_curve([])


@pytest.mark.slow
def test_study_shapes_and_properties(study):
    ns = study["ns"]
    assert ns[0] == 1 and ns[-1] == STUDY["n_max"]
    assert [p["n_pairs"] for p in study["proxies"]] == list(STUDY["pairs_grid"])
    oracle = np.array(study["oracle"]["curve"]["gold_gain"])
    curves = [p["curve"] for p in study["proxies"]] + [m["curve"] for m in study["ensemble"]["members"]]
    curves += [a["curve"] for a in study["ensemble"]["aggregates"].values()]
    for curve in curves:
        assert curve["n"] == ns and len(curve["gold_gain"]) == len(ns)
        assert curve["gold_gain"][0] == pytest.approx(0, abs=1e-9)
        assert np.all(np.diff(curve["proxy_gain"]) >= -1e-9)
        assert np.all(oracle >= np.array(curve["gold_gain"]) - 1e-9)
    assert study["ensemble"]["same_labels_n_pairs"] == 128
    for row in study["detection"]["heldout"]["per_proxy"] + [study["detection"]["ensemble_others"]]:
        assert row["n_chosen"] in ns and row["n_peak"] in ns and row["regret"] >= -1e-12
    json.dumps(study, allow_nan=False)                                  # plain JSON


@pytest.mark.slow
def test_study_ensemble_is_wired_to_the_members(study, root, sft, tok):
    """Recompute the members' scores and every aggregate's curve outside the study."""
    cfg = overoptimisation.BestOfNConfig(**STUDY)
    pool = sample_pool(sft, tok, cfg.n_max, cfg.pool_seed, cfg.max_new_tokens)
    rms = [runs.load_or_train_rm(TINY.with_rm(n_pairs=cfg.ensemble_pairs, seed=s), root=root).model
           for s in cfg.ensemble_seeds]
    members = score_pool(rms, tok, pool)
    for how, agg in study["ensemble"]["aggregates"].items():
        expected = bon_curves.best_of_n_curve(aggregate_ensemble(members, how, cfg.ensemble_k),
                                           pool.gold, study["ns"])
        assert np.allclose(agg["curve"]["gold_gain"], expected["gold_gain"], atol=1e-6), how
    member0 = bon_curves.best_of_n_curve(members[0], pool.gold, study["ns"])
    assert np.allclose(study["ensemble"]["members"][0]["curve"]["gold_gain"], member0["gold_gain"], atol=1e-6)
    assert np.allclose(study["proxies"][0]["curve"]["gold_gain"], member0["gold_gain"], atol=1e-6)
    assert study["ensemble"]["members"][1]["curve"] != study["ensemble"]["members"][0]["curve"]


@pytest.mark.slow
def test_seed_average_is_the_mean_of_each_sizes_seeds(study, root, sft, tok):
    """Recompute every proxy seed's curve outside the study: the first is the proxy's own, the
    mean is what ``seed_average`` fits and peaks on."""
    cfg = overoptimisation.BestOfNConfig(**STUDY)
    pool = sample_pool(sft, tok, cfg.n_max, cfg.pool_seed, cfg.max_new_tokens)
    assert [row["n_pairs"] for row in study["seed_average"]] == list(cfg.pairs_grid)
    for row, proxy in zip(study["seed_average"], study["proxies"]):
        rms = [runs.load_or_train_rm(TINY.with_rm(n_pairs=row["n_pairs"], seed=s), root=root).model
               for s in range(cfg.proxy_seeds)]
        gains = [bon_curves.best_of_n_curve(scores, pool.gold, study["ns"])["gold_gain"]
                 for scores in score_pool(rms, tok, pool)]
        assert row["seeds"] == len(row["per_seed"]) == cfg.proxy_seeds
        assert np.allclose(row["per_seed"][0]["gold_gain"], proxy["curve"]["gold_gain"], atol=1e-12)
        for seed, expected in zip(row["per_seed"], gains):
            assert np.allclose(seed["gold_gain"], expected, atol=1e-6)
        assert np.allclose(row["curve"]["gold_gain"], np.mean(gains, axis=0), atol=1e-6)
        i = int(np.argmax(row["curve"]["gold_gain"]))
        assert row["peak"]["n"] == study["ns"][i]
        assert row["fall"] == pytest.approx(row["curve"]["gold_gain"][-1] - row["curve"]["gold_gain"][i])
    assert study["seed_average"][0]["per_seed"][0] != study["seed_average"][0]["per_seed"][1]


@pytest.mark.slow
def test_study_is_cached_and_reloads_identical(study, root):
    folders = [p.name for p in root.iterdir() if p.name.startswith("bon-")]
    assert len(folders) == 1
    again = overoptimisation.overoptimisation_study(TINY, root=root, **STUDY)
    assert again == study
    other = overoptimisation.overoptimisation_study(TINY, root=root, **{**STUDY, "n_max": 16})
    assert other["ns"][-1] == 16 and len([p for p in root.iterdir() if p.name.startswith("bon-")]) == 2


# ----------------------------------------------------------------------------- figures


def _lines(ax):
    return len(ax.get_lines())


@pytest.mark.slow
def test_figures_have_the_expected_axes_and_lines(study):
    G = len(study["proxies"])
    fig = overoptimisation_plots.bon_gao_curves(study)
    gold_ax, proxy_ax = fig.axes
    assert _lines(gold_ax) == 2 * G + 1 + 1          # data + fit per RM, the oracle, zero line
    assert _lines(proxy_ax) == G
    fig = overoptimisation_plots.bon_seed_average(study)
    S = STUDY["proxy_seeds"]
    assert _lines(fig.axes[0]) == G * (S + 2 + 1) + 1   # seeds, mean + fit, star per size; zero line
    fig = overoptimisation_plots.bon_ensemble(study)
    gold_ax, spread_ax = fig.axes
    M = len(study["ensemble"]["members"])
    assert _lines(gold_ax) == M + 3 + 1 + 1          # members, 3 aggregates, same-label RM, zero line
    assert _lines(spread_ax) == 1
    fig = overoptimisation_plots.bon_peak_detection(study)
    assert len(fig.axes) == G and all(_lines(ax) == 6 for ax in fig.axes)   # gold, judge, labels, 3 picks
    for f in matplotlib.pyplot.get_fignums():
        matplotlib.pyplot.close(f)


def _hackable_pool(seed=0, P=48, m=1024, hack=0.03):
    """Gold ~ N(0, 1); the proxy is gold + noise, except on a few 'hacks': low gold, top proxy."""
    rng = np.random.default_rng(seed)
    gold = rng.normal(size=(P, m))
    proxy = gold + 0.3 * rng.normal(size=(P, m))
    hacks = rng.random((P, m)) < hack
    gold[hacks], proxy[hacks] = -1.5, 4.5 + 0.1 * rng.normal(size=hacks.sum())
    return proxy, gold


def test_label_based_detector_lands_near_the_true_peak_with_few_labels():
    proxy, gold = _hackable_pool()
    ns = bon_curves.n_grid(1024, 1)
    out = bon_curves.choose_n_by_labels(proxy, gold, ns, labels_per_n=100, seed=1)
    assert out["labels"] == 100 * len(ns) and len(out["win_rate"]) == len(ns)
    assert 4 <= out["n_peak"] <= 64                       # the pool's gold peaks, then falls
    assert abs(out["octaves"]) <= 2 and out["regret"] < 0.25 * out["gold_gain_peak"]
    again = bon_curves.choose_n_by_labels(proxy, gold, ns, labels_per_n=100, seed=1)
    assert again == out                                   # same seed, same labels


def test_label_based_detector_picks_the_largest_n_when_gold_never_turns():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(16, 256))
    out = bon_curves.choose_n_by_labels(gold, gold, bon_curves.n_grid(256, 1), 200, seed=0)
    assert out["n_peak"] == 256 and out["n_chosen"] >= 64


# ----------------------------------------------------------------------------- reward models in workers


@pytest.mark.slow
def test_a_worker_scores_the_pool_with_its_reward_model(root, study):
    """What a worker returns is the cached reward model's score of every sample of the pool."""
    run = TINY.with_rm(n_pairs=64, seed=1)
    pool_args = (STUDY["n_max"], overoptimisation.BestOfNConfig().pool_seed, overoptimisation.BestOfNConfig().max_new_tokens)
    scores, trained, scoring = overoptimisation._train_and_score(run, pool_args, root, torch.get_num_threads())
    pool = load_or_sample_pool(TINY, *pool_args, root)
    rm = runs.load_or_train_rm(run, root).model
    assert scores.shape == pool.gold.shape and trained >= 0 and scoring > 0
    assert np.allclose(scores, score_pool(rm, models.world_tokenizer(), pool), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_study_trains_and_scores_in_workers(study):
    """The fixture's study ran with the default jobs: on two or more cores every distinct reward
    model was trained and scored in a worker, once, and the study itself only loaded them."""
    if min(2, os.cpu_count() or 1) < 2:
        pytest.skip("one core: the reward models train in the notebook's process")
    timings = study["timings"]
    assert "reward models and scores, 2 at a time" in timings and "reward model scores" not in timings
    workers = {k for k in timings if k.endswith("(worker)")}
    # proxy-64 = ensemble-0 and proxy-64-1 = ensemble-1 (the same configs): 2 sizes x 2 seeds + held-out
    assert workers == {f"reward model {label} (worker)" for label in
                       ("proxy-64", "proxy-64-1", "proxy-128", "proxy-128-1", "heldout")}


def test_study_rejects_bad_jobs(tmp_path):
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="jobs"):
            overoptimisation.overoptimisation_study(TINY, root=tmp_path, jobs=bad, **STUDY)
    assert list(tmp_path.iterdir()) == []
