"""Smoke runs of the stages with small configs, the cache, and determinism."""
import dataclasses

import pytest

from rlhf_lab.core import artifacts
from rlhf_lab.pipeline import runs


@pytest.mark.slow
def test_stages_train_cache_and_reload(small_config, tmp_path):
    rm = runs.load_or_train_rm(small_config, root=tmp_path)
    folders = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert folders == ["base", "rm", "sft"]
    correct = rm.metrics["accuracy"] * small_config.rm.n_heldout       # a count of held-out pairs
    assert abs(correct - round(correct)) < 1e-6 and 0.5 < rm.metrics["bayes_ceiling"] < 1
    assert sum(r["count"] for r in rm.metrics["calibration"]) == small_config.rm.n_heldout
    sft = runs.load_or_train_sft(small_config, root=tmp_path)
    assert sft.metrics["heldout_loss_after"] < sft.metrics["heldout_loss_before"]
    again = runs.load_or_train_rm(small_config, root=tmp_path)     # from the cache: same numbers
    assert again.metrics == rm.metrics and again.path == rm.path


@pytest.mark.slow
def test_load_metrics_trains_what_is_missing_then_reads_without_loading_a_model(small_config, tmp_path,
                                                                              monkeypatch):
    metrics = runs.load_metrics("rm", small_config, root=tmp_path)          # trains base, SFT, RM
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["base", "rm", "sft"]
    assert metrics == runs.load_or_train_rm(small_config, root=tmp_path).metrics

    def no_loading(*args, **kwargs):
        raise AssertionError("load_metrics loaded a model")
    monkeypatch.setattr(runs, "load_or_train_rm", no_loading)
    monkeypatch.setattr(runs, "load_or_train_sft", no_loading)
    assert runs.load_metrics("rm", small_config, root=tmp_path) == metrics
    assert runs.load_metrics("sft", small_config, root=tmp_path)["history"]
    with pytest.raises(ValueError, match="stage"):
        runs.load_metrics("critic", small_config, root=tmp_path)


@pytest.mark.slow
def test_same_seed_same_numbers(small_config, tmp_path):
    run = dataclasses.replace(small_config, base=dataclasses.replace(small_config.base, steps=20))
    a = runs.load_or_train_sft(run, root=tmp_path / "a").metrics
    b = runs.load_or_train_sft(run, root=tmp_path / "b").metrics
    assert a["history"] == b["history"] and a["gold_samples"] == b["gold_samples"]


def test_changed_config_changes_every_downstream_key(small_config):
    keys = runs.stage_keys(small_config)
    other = runs.stage_keys(dataclasses.replace(small_config, base=dataclasses.replace(small_config.base, lr=1e-3)))
    assert all(keys[k] != other[k] for k in keys)
    assert runs.stage_keys(small_config.with_rm(n_pairs=512))["sft"] == keys["sft"]


def test_a_trunk_seed_keeps_the_default_keys_and_changes_only_the_reward_model_and_after():
    default = runs.stage_keys(runs.RunConfig())
    assert default["rm"] == "516049069851"        # the default pipeline's reward model, as cached for RESULTS.md
    assert runs.stage_keys(runs.RunConfig().with_rm(trunk_seed=None)) == default
    one, two = (runs.stage_keys(runs.RunConfig().with_rm(trunk_seed=t)) for t in (1, 2))
    assert (one["base"], one["sft"]) == (default["base"], default["sft"])      # the policy's own stages
    assert all(one[k] != default[k] and one[k] != two[k] for k in ("rm", "ppo", "grpo", "dpo"))


@pytest.mark.slow
def test_a_trunk_seed_starts_the_reward_model_from_another_pretraining(small_config, tmp_path, monkeypatch):
    import torch

    from rlhf_lab.lm import models
    from rlhf_lab.stages.reward_model import training_pairs
    handed = []                                   # (trunk, pairs) of each reward model trained
    real = runs.train_reward_model

    def spy(cfg, trunk, tokenizer, data=None, **kwargs):
        handed.append((trunk, data))
        return real(cfg, trunk, tokenizer, data=data, **kwargs)
    monkeypatch.setattr(runs, "train_reward_model", spy)
    run = small_config.with_rm(trunk_seed=7)
    runs.load_or_train_rm(run, root=tmp_path)
    runs.load_or_train_rm(small_config, root=tmp_path)                     # the default, beside it
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["base", "base", "rm", "rm", "sft", "sft"]
    own = runs.load_or_train_sft(small_config, root=tmp_path).model
    other = runs.load_or_train_sft(
        dataclasses.replace(small_config, base=dataclasses.replace(small_config.base, seed=7)), root=tmp_path).model
    same = lambda a, b: all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    (trunk, pairs), (default_trunk, default_pairs) = handed
    assert same(trunk, other) and not same(trunk, own) and same(default_trunk, own)
    start = lambda t: models.reward_model_from(t, seed=run.rm.seed).base_model     # before training
    assert not same(start(trunk), start(default_trunk))
    want = training_pairs(run.rm, own, models.world_tokenizer())           # the policy's pairs, both
    for got in (pairs, default_pairs):
        assert (got.prompts, got.first, got.second, got.first_preferred) == \
               (want.prompts, want.first, want.second, want.first_preferred)


def test_interrupted_training_leaves_no_artifact(tmp_path):
    def train():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifacts.cached("stage", "k", train, lambda obj, folder: None, lambda folder: folder, tmp_path)
    assert list(tmp_path.iterdir()) == []

    def save_half(obj, folder):
        (folder / "weights").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        artifacts.cached("stage", "k", lambda: 1, save_half, lambda folder: folder, tmp_path)
    assert list(tmp_path.iterdir()) == []
    path = artifacts.cached("stage", "k", lambda: 1, lambda o, f: (f / "w").write_text("ok"),
                            lambda folder: folder, tmp_path)
    assert (path / "w").read_text() == "ok" and (path / artifacts.COMPLETE).exists()


@pytest.mark.slow
def test_student_loss_that_is_not_written_falls_back_with_a_warning(small_config, tmp_path):
    from rlhf_lab.core.plug import FallbackWarning

    def student_sft_loss(logits, input_ids, response_mask):
        raise NotImplementedError

    with pytest.warns(FallbackWarning, match="sft_loss"):
        art = runs.load_or_train_sft(small_config, root=tmp_path, loss_fn=student_sft_loss)
    assert art.metrics["heldout_loss_after"] < art.metrics["heldout_loss_before"]


@pytest.mark.slow
def test_a_wrong_student_loss_is_used_as_written(small_config, tmp_path):
    def wrong(logits, input_ids, response_mask):           # ignores the data: trains nothing useful
        return logits.sum() * 0.0

    art = runs.load_or_train_sft(small_config, root=tmp_path, loss_fn=wrong)
    # only weight decay moves the weights: the held-out loss stays where it was
    assert art.metrics["heldout_loss_after"] == pytest.approx(art.metrics["heldout_loss_before"], abs=0.01)


def test_code_key_follows_the_source_and_sees_through_the_fallback_wrapper():
    from rlhf_lab.core.plug import pluggable
    from rlhf_lab.equations.losses import sft_loss

    def mine(logits, input_ids, response_mask):
        return sft_loss(logits, input_ids, response_mask)

    def other(logits, input_ids, response_mask):
        return 2 * sft_loss(logits, input_ids, response_mask)

    assert runs.code_key(mine) == runs.code_key(mine) != runs.code_key(other)
    assert runs.code_key(pluggable(mine, sft_loss, "sft_loss")) == runs.code_key(mine)
    assert runs.code_key(len) is None                  # no source: the run is not cached


@pytest.mark.slow
def test_a_student_run_is_cached_under_its_source(small_config, tmp_path):
    from rlhf_lab.equations.losses import sft_loss

    def mine(logits, input_ids, response_mask):
        return sft_loss(logits, input_ids, response_mask)

    first = runs.load_or_train_sft(small_config, root=tmp_path, loss_fn=mine)
    again = runs.load_or_train_sft(small_config, root=tmp_path, loss_fn=mine)
    assert again.path == first.path and "custom" in first.path.name
    assert again.metrics == first.metrics
    reference = runs.load_or_train_sft(small_config, root=tmp_path)
    assert reference.path != first.path
    assert reference.metrics["history"] == first.metrics["history"]   # same math, same numbers


@pytest.mark.slow
def test_reward_model_scaling_measures_every_size_on_one_shared_set(small_config, tmp_path):
    rows = runs.reward_model_scaling(small_config, pair_counts=(64, 128), n_heldout=300, root=tmp_path)
    assert [r["n_pairs"] for r in rows] == [64, 128] and all(r["n_heldout"] == 300 for r in rows)
    assert rows[0]["bayes_ceiling"] == rows[1]["bayes_ceiling"]        # the same pairs for both
    for r in rows:                                                     # own 128-pair set vs shared
        own = runs.load_or_train_rm(small_config.with_rm(n_pairs=r["n_pairs"]), root=tmp_path).metrics
        assert r["accuracy_own"] == own["accuracy"]
        correct = r["accuracy"] * 300                                  # a count of the 300 pairs
        assert abs(correct - round(correct)) < 1e-3
    again = runs.reward_model_scaling(small_config, pair_counts=(64, 128), n_heldout=300, root=tmp_path)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]  # same seed, same set


@pytest.mark.parametrize("kwargs, name", [({"pair_counts": ()}, "pair_counts"),
                                          ({"pair_counts": (0,)}, "pair_counts"),
                                          ({"n_heldout": 0}, "n_heldout")])
def test_reward_model_scaling_rejects_bad_arguments(small_config, kwargs, name):
    with pytest.raises(ValueError, match=name):
        runs.reward_model_scaling(small_config, **kwargs)


@pytest.mark.slow
def test_train_runs_trains_a_repeated_run_once(small_config, tmp_path, monkeypatch):
    """Two tasks with one artifact: trained once (the second reads 0 s), and nothing on a rerun."""
    runs.load_metrics("rm", small_config, root=tmp_path)
    calls = []
    monkeypatch.setattr(runs, "_train_one", lambda stage, run, root: calls.append(run) or 1.0)
    run = small_config.with_ppo(beta=0.5)
    assert runs.train_runs([("ppo", run), ("ppo", run), ("ppo", run.with_ppo(beta=0.6))],
                               tmp_path) == [1.0, 0.0, 1.0]
    assert calls == [run, run.with_ppo(beta=0.6)]
    with pytest.raises(ValueError, match="tasks"):
        runs.train_runs([("rm", run)], tmp_path)


def test_a_run_whose_functions_all_fell_back_is_cached_as_the_reference_run_too(tmp_path):
    """#26: notebook 01 run with sft_loss unwritten trained the reference run under the stub's
    hash only, and notebook 02, asking for the reference run, trained it again."""
    from rlhf_lab.core.artifacts import is_cached
    from rlhf_lab.core.plug import FallbackWarning, pluggable

    def stub(x):
        raise NotImplementedError

    def reference(x):
        return 2 * x

    def written(x):
        return 3 * x

    def save(value, folder):
        (folder / "value").write_text(str(value))

    def load(folder):
        return int((folder / "value").read_text())

    def run(stage, functions):              # the stage calls every function once, as training does
        return runs._custom(stage, "key", functions, lambda: sum(fn(7) for fn in functions),
                            save, load, tmp_path)

    with pytest.warns(FallbackWarning):
        assert run("sft", [pluggable(stub, reference, "f")]) == 14
    assert is_cached("sft", "key", tmp_path) and load(tmp_path / "sft-key") == 14
    with pytest.warns(FallbackWarning):         # one written, one not: not the reference run
        assert run("ppo", [pluggable(stub, reference, "f"), pluggable(written, reference, "g")]) == 35
    assert run("rm", [pluggable(written, reference, "g")]) == 21
    assert not is_cached("ppo", "key", tmp_path) and not is_cached("rm", "key", tmp_path)


@pytest.mark.slow
def test_an_unwritten_sft_loss_trains_the_run_the_next_notebook_loads(small_config, tmp_path,
                                                                      monkeypatch):
    """#26: notebook 01 with `sft_loss` still a stub, then notebook 02 asking for the SFT model."""
    from rlhf_lab.core.plug import FallbackWarning

    def sft_loss(logits, input_ids, response_mask):
        raise NotImplementedError

    with pytest.warns(FallbackWarning):
        mine = runs.load_or_train_sft(small_config, root=tmp_path, loss_fn=sft_loss)
    monkeypatch.setattr(runs, "train_sft", lambda *a, **k: pytest.fail("SFT trained again"))
    reference = runs.load_or_train_sft(small_config, root=tmp_path)
    assert reference.metrics == mine.metrics and "custom" not in reference.path.name
