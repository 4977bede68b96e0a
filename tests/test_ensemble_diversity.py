"""benchmarks/ensemble_diversity.py's exact helpers: the ensembles it builds, the herding
correlations, the per-prompt curves and the paired bootstrap."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rlhf_lab.equations.bon_curves import best_of_n_curve, gao_summary
from rlhf_lab.pipeline.runs import RunConfig, stage_keys
from rlhf_lab.studies import overoptimisation

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "ensemble_diversity.py"
_spec = importlib.util.spec_from_file_location("ensemble_diversity", _PATH)
ed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ed)


def test_the_finetune_ensemble_is_the_studys_and_the_others_change_only_what_they_say():
    study = overoptimisation._reward_model_runs(RunConfig(), overoptimisation.BestOfNConfig())
    finetune = ed.member_runs("finetune", 500, (0, 1, 2, 3), (1, 2, 3, 4))
    assert [stage_keys(r)["rm"] for r in finetune] == [stage_keys(study[f"ensemble-{s}"])["rm"]
                                                       for s in (0, 1, 2, 3)]
    pretrain = ed.member_runs("pretrain", 500, (0, 1, 2, 3), (1, 2, 3, 4))
    assert [(r.rm.seed, r.rm.trunk_seed, r.rm.n_pairs) for r in pretrain] == \
        [(0, 1, 500), (1, 2, 500), (2, 3, 500), (3, 4, 500)]
    same = ed.member_runs("pretrain-same-pairs", 4000, (5, 1), (7, 8))
    assert [(r.rm.seed, r.rm.trunk_seed, r.rm.n_pairs) for r in same] == [(5, 7, 4000), (5, 8, 4000)]
    with pytest.raises(ValueError, match="kind must be one of"):
        ed.member_runs("init", 500, (0, 1), (1, 2))


def _orthonormal_within_prompts(P=3, m=8, k=3, seed=0):
    """k vectors (P, m), each with every prompt's mean 0, orthonormal as flat vectors."""
    x = ed.within_prompt(np.random.default_rng(seed).normal(size=(k, P, m)))    # (k, P·m)
    q, _ = np.linalg.qr(x.T)                                  # combinations of zero-mean vectors
    return q.T.reshape(k, P, m)


def test_errors_are_what_gold_does_not_explain_so_shared_noise_herds_and_independent_noise_does_not():
    g, n1, n2 = _orthonormal_within_prompts()
    offsets = np.array([[5.0], [-1.0], [2.0]])                # a prompt's offset never counts
    independent = np.stack([g + n1 + offsets, 3 * g + n2])
    h = ed.herding(independent, g + 7.0)
    assert h["error"] == pytest.approx(0.0, abs=1e-12)
    assert h["score"] == pytest.approx(3 / np.sqrt(2 * 10), abs=1e-12)         # (g+n1)·(3g+n2)
    assert h["gold"] == pytest.approx([1 / np.sqrt(2), 3 / np.sqrt(10)], abs=1e-12)
    shared = np.stack([2 * g + n1, g + n1 - offsets, -g + n1])
    h = ed.herding(shared, g)
    assert h["error_pairs"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    assert h["score"] < 1 and len(h["score_pairs"]) == 3
    assert np.allclose(ed.errors(np.stack([4 * g - offsets]), g), 0.0, atol=1e-12)


def test_per_prompt_gains_average_to_the_studys_curve_and_falls_are_from_the_peak():
    rng = np.random.default_rng(1)
    proxy, gold = rng.normal(size=(5, 32)), rng.normal(size=(5, 32))
    ns = [1, 2, 4, 8, 16, 32]
    gains = ed.per_prompt_gains(proxy, gold, ns)
    assert gains.shape == (5, 6) and np.allclose(gains[:, 0], 0.0, atol=1e-12)     # n = 1: a sample
    assert np.allclose(gains.mean(0), best_of_n_curve(proxy, gold, ns)["gold_gain"], atol=1e-12)
    assert ed.falls(gains.mean(0)) == pytest.approx(gao_summary(best_of_n_curve(proxy, gold, ns))["fall"])
    assert ed.falls(np.array([[0.0, 0.3, 0.1], [0.0, 0.1, 0.2]])).tolist() == pytest.approx([-0.2, 0.0])


def test_the_bootstrap_resamples_the_same_prompts_for_every_curve():
    gains = {"a": np.arange(12.0).reshape(4, 3), "b": 2 * np.arange(12.0).reshape(4, 3)}
    boot = ed.bootstrap_curves(gains, 50, seed=3)
    assert boot["a"].shape == (50, 3)
    assert np.allclose(boot["b"], 2 * boot["a"])                         # paired: the same prompts
    assert boot["a"].std(0).min() > 0                                    # and they do vary
    one = ed.bootstrap_curves({"a": np.array([[0.0, 1.0]])}, 5)
    assert np.allclose(one["a"], [[0.0, 1.0]] * 5)                        # one prompt: itself


def test_identical_members_make_every_aggregate_their_curve_with_no_difference():
    rng = np.random.default_rng(2)
    gold = rng.normal(size=(6, 16))
    r = gold + rng.normal(size=(6, 16))
    out = ed.analyse(np.stack([r, r, r]), gold, [1, 2, 4, 8, 16], ks=(1.0, 2.0), n_boot=200)
    assert list(out["aggregates"]) == ["mean", "mean_minus_std k=1", "mean_minus_std k=2", "min"]
    fall = gao_summary(best_of_n_curve(r, gold, [1, 2, 4, 8, 16]))["fall"]
    assert out["average"]["fall"] == pytest.approx(fall) and out["average"]["fall_se_members"] == 0
    for row in out["aggregates"].values():
        assert row["summary"]["fall"] == pytest.approx(fall)
        assert row["delta"] == pytest.approx(0.0, abs=1e-12) and row["delta_se"] == pytest.approx(0.0, abs=1e-12)
    assert out["herding"]["score"] == pytest.approx(1.0) and out["herding"]["error"] == pytest.approx(1.0)


def test_the_average_member_falls_by_the_mean_of_its_members_and_best_of_n_on_gold_never_falls():
    rng = np.random.default_rng(4)
    gold = rng.normal(size=(40, 64))
    good, bad = gold, gold + 3 * rng.normal(size=(40, 64))            # bad: mostly noise
    out = ed.analyse(np.stack([good, bad]), gold, [1, 2, 4, 8, 16, 32, 64], n_boot=300)
    assert out["members"][0]["summary"]["fall"] == 0.0                 # best-of-n on gold never falls
    assert out["aggregates"]["mean"]["summary"]["fall"] == pytest.approx(
        ed.falls(np.asarray(out["aggregates"]["mean"]["summary"]["curve"]["gold_gain"])))
    assert out["average"]["fall"] == pytest.approx(out["members"][1]["summary"]["fall"] / 2)


def test_herdings_closed_form_is_the_correlation_of_the_errors_and_its_bootstrap_is_paired():
    rng = np.random.default_rng(5)
    gold = rng.normal(size=(7, 20))
    scores = np.stack([gold + rng.normal(size=(7, 20)) + rng.normal(size=(7, 1)) for _ in range(3)])
    h = ed.herding(scores, gold, ed.resamples(7, 40, seed=1))
    e = ed.errors(scores, gold)
    direct = [np.corrcoef(e[i], e[j])[0, 1] for i, j in ((0, 1), (0, 2), (1, 2))]
    assert h["error_pairs"] == pytest.approx(direct, abs=1e-12)
    r = ed.within_prompt(scores)
    assert h["score_pairs"] == pytest.approx([np.corrcoef(r[i], r[j])[0, 1] for i, j in ((0, 1), (0, 2), (1, 2))])
    assert h["error_boot"].shape == (40,) and h["error_boot"].std() > 0
    counts = ed.prompt_counts(np.array([[0, 0, 2], [1, 2, 1]]), 3)
    assert counts.tolist() == [[2, 0, 1], [0, 2, 1]]
    again = ed.herding(scores, gold, ed.resamples(7, 40, seed=1))            # same draws, same values
    assert np.array_equal(again["error_boot"], h["error_boot"])
    whole = ed.herding(scores, gold, np.tile(np.arange(7), (2, 1)))          # every prompt once
    assert whole["error_boot"] == pytest.approx([h["error"]] * 2)


def test_the_verdict_needs_two_standard_errors_and_says_of_which():
    assert ed.verdict(0.5, 0.1, 0.1).endswith("delays the fall beyond 2 s.e. of both")
    assert ed.verdict(0.5, 0.2, 0.3).endswith("delays the fall beyond 2 s.e. of the prompts, not of both")
    assert ed.verdict(-0.5, 0.2, 0.0).endswith("hastens the fall beyond 2 s.e. of both")
    assert ed.verdict(0.3, 0.2, 0.0).endswith("no difference beyond 2 s.e.")
    assert "z = +2.5" in ed.verdict(0.5, 0.2, 0.0)


def test_disagreement_flags_shared_error_when_the_members_spread_where_they_overrate():
    g, shared, other = _orthonormal_within_prompts(P=4, m=16, k=3, seed=6)
    spread = np.maximum(shared, 0) + 0.01 * np.abs(other)      # the members part where they overrate
    flagged = np.stack([g + shared + spread, g + shared - spread])
    c = ed.correlations(ed.cross_products(flagged, g).sum(axis=0))
    sigma, e_mean = ed.within_prompt(flagged.std(0)), ed.within_prompt(shared)   # ē = shared exactly
    assert c["flag"] == pytest.approx(np.corrcoef(sigma, e_mean)[0, 1], abs=1e-12)
    assert c["flag"] > 0.5
    rng = np.random.default_rng(7)
    blind = np.stack([g + shared + d for d in (rng.normal(size=g.shape), -rng.normal(size=g.shape))])
    e = ed.errors(blind, g)
    want = np.corrcoef(ed.within_prompt(blind.std(0)), e.mean(0))[0, 1]        # the direct form
    assert ed.herding(blind, g)["flag"] == pytest.approx(want, abs=1e-12)


def test_the_replicate_table_averages_over_replicates(capsys):
    assert ed.mean_se([0.1, 0.3]) == "+0.200 ± 0.100" and ed.mean_se([-0.5]) == "-0.500"
    rng = np.random.default_rng(8)
    gold = rng.normal(size=(5, 64))
    ns = [1, 2, 4, 8, 16, 32, 64]

    def hacked():                         # a proxy that overrates some of the worst replies: it falls
        return gold + 0.5 * rng.normal(size=gold.shape) + 4 * (gold < -1) * (rng.random(gold.shape) < 0.5)
    results = {(kind, r): ed.analyse(np.stack([hacked() for _ in range(3)]), gold, ns, n_boot=20)
               for r in (0, 1) for kind in ("finetune", "pretrain")}
    ed.print_across_replicates(results)
    out = capsys.readouterr().out
    aggs = [results[("pretrain", r)]["aggregates"]["mean"] for r in (0, 1)]
    deltas = [a["delta"] for a in aggs]
    se_prompts = ((aggs[0]["delta_boot"] + aggs[1]["delta_boot"]) / 2).std(ddof=1)
    z = np.mean(deltas) / np.hypot(abs(deltas[0] - deltas[1]) / 2, se_prompts)   # s.e. of 2: |a − b|/2
    assert (f"| pretrain | mean | {ed.mean_se(deltas)} ({deltas[0]:+.2f}, {deltas[1]:+.2f}) "
            f"| {se_prompts:.3f} | {z:+.1f} |") in out and z != 0
    assert "2 replicate ensembles of each kind" in out and out.count("| pretrain |") == 1 + 3   # herding, then mean, mean − std, min


@pytest.mark.slow
def test_a_reward_models_scores_of_the_pool_are_cached(small_config, tmp_path, monkeypatch):
    from rlhf_lab.pipeline.pool import load_or_sample_pool, score_pool
    from rlhf_lab.pipeline.runs import load_or_train_rm
    from rlhf_lab.lm import models
    pool_args = (4, 20_000, 8)
    scores, metrics = ed.train_and_score(small_config, pool_args, tmp_path, 1)
    pool = load_or_sample_pool(small_config, *pool_args, tmp_path, ed.POOL_BATCH)
    rm = load_or_train_rm(small_config, tmp_path)
    assert np.allclose(scores, score_pool(rm.model, models.world_tokenizer(), pool), atol=1e-5)
    assert scores.shape == (48, 4) and metrics["accuracy"] == rm.metrics["accuracy"]

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored the pool again")
    monkeypatch.setattr(ed, "score_pool", no_scoring)
    again, _ = ed.train_and_score(small_config, pool_args, tmp_path, 1)
    assert np.array_equal(again, scores)
    with pytest.raises(AssertionError, match="scored the pool again"):     # another RM: its own key
        ed.train_and_score(small_config.with_rm(seed=1), pool_args, tmp_path, 1)
