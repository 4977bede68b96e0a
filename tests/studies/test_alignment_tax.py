"""The alignment tax and PPO-ptx: capability measures, the ptx term in the PPO loop, the study."""
import dataclasses
import math

import pytest
import torch

from rlhf_lab.course.plots import beyond as beyond_plots
from rlhf_lab.equations.beyond_losses import ppo_ptx_loss
from rlhf_lab.lm import models
from rlhf_lab.pipeline import runs
from rlhf_lab.stages import ppo
from rlhf_lab.stages.ppo import PPOConfig, PPOLosses, train_ppo
from rlhf_lab.studies import alignment_tax
from rlhf_lab.studies.alignment_tax import TaxStudyConfig, alignment_tax_study, capability

STRIP = ("t_", "ptx_nll", "policy_loss")


def _strip(history):
    return [{k: v for k, v in row.items() if not k.startswith(STRIP)} for row in history]


@pytest.fixture(scope="module")
def trained(small_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return (runs.load_or_train_sft(small_config, root=root).model,
            runs.load_or_train_rm(small_config, root=root).model, root)


@pytest.fixture(scope="module")
def uniform():
    """A model whose logits are exactly 0 (tied embeddings set to 0): every next token has
    probability 1/V."""
    model = models.new_policy("tiny")
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
    return model


# --- configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("ptx_coef", -0.1), ("ptx_batch_size", 0),
                                         ("ptx_batch_size", 2.5), ("ptx_corpus_size", 0)])
def test_bad_ptx_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        PPOConfig(**{field: value})


@pytest.mark.parametrize("field,value", [("betas", ()), ("betas", (0.1, 0.0)), ("ptx_coefs", (0.0,)),
                                         ("iterations", 0), ("rollouts", 2.5), ("critic", "twin"),
                                         ("n_text", 0), ("n_per_prompt", 0)])
def test_bad_study_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        TaxStudyConfig(**{field: value})


def test_ptx_loss_is_pluggable():
    assert PPOLosses().ppo_ptx_loss is ppo_ptx_loss
    assert PPOLosses().pluggable().ppo_ptx_loss is ppo_ptx_loss


# --- capability ------------------------------------------------------------------------------

def test_uniform_model_scores_log_v_everywhere(uniform, tok):
    out = capability(uniform, tok, n=32, samples_per_prompt=1)
    log_v = math.log(uniform.config.vocab_size)
    for key, value in out.items():
        if "nll" in key:
            assert value == pytest.approx(log_v, abs=1e-5), key
    assert 0 <= out["grammatical"] <= 1 and 0 <= out["ended"] <= 1


@pytest.mark.slow
def test_capability_is_deterministic_and_parts_bracket_the_whole(trained, tok):
    sft, _, _ = trained
    a, b = capability(sft, tok, n=64, samples_per_prompt=1), capability(sft, tok, n=64, samples_per_prompt=1)
    assert a == b
    # the total is a token-weighted mean of its parts, so it lies between them
    for parts in (("review", "advise", "describe"), ("clean", "noisy")):
        values = [a[f"pretrain_nll_{p}"] for p in parts]
        assert min(values) - 1e-6 <= a["pretrain_nll"] <= max(values) + 1e-6, parts
    # SFT was trained on curated replies: its clean web text is easier than the corrupted rest
    assert a["pretrain_nll_clean"] < a["pretrain_nll_noisy"]
    # another seed, other text
    assert capability(sft, tok, n=64, seed=1, samples_per_prompt=1)["pretrain_nll"] != a["pretrain_nll"]


def test_capability_rejects_bad_sizes(uniform):
    with pytest.raises(ValueError, match="^n"):
        capability(uniform, n=1)
    with pytest.raises(ValueError, match="^samples_per_prompt"):
        capability(uniform, n=8, samples_per_prompt=0)


# --- PPO-ptx in the loop ----------------------------------------------------------------------

@pytest.mark.slow
def test_ptx_zero_never_builds_the_pretraining_batch(fast_ppo, trained, monkeypatch):
    sft, rm, _ = trained

    def never(*args, **kwargs):
        raise AssertionError("the pretraining text was used with ptx_coef = 0")

    monkeypatch.setattr(ppo, "pretraining_text", never)
    result = train_ppo(PPOConfig(**fast_ppo), sft, rm, losses=PPOLosses(ppo_ptx_loss=never))
    assert len(result.history) == fast_ppo["iterations"]
    assert all("ptx_nll" not in row for row in result.history)


@pytest.mark.slow
@pytest.mark.parametrize("critic", ["separate", "head"])
def test_ptx_batches_change_nothing_but_the_loss(fast_ppo, trained, critic):
    """With a ptx loss that drops its term, PPO-ptx must train exactly like plain PPO: drawing the
    web-text batches uses its own generator and touches no other state."""
    sft, rm, _ = trained

    def without_ptx(pg_loss, logits_ptx, input_ids, attention_mask, ptx_coef):
        return pg_loss, {}

    cfg = PPOConfig(critic=critic, **fast_ppo)
    plain = train_ppo(cfg, sft, rm)
    dropped = train_ppo(dataclasses.replace(cfg, ptx_coef=1.0), sft, rm,
                        losses=PPOLosses(ppo_ptx_loss=without_ptx))
    assert _strip(plain.history) == _strip(dropped.history)
    assert all(row["ptx_nll"] > 0 for row in dropped.history)
    for (name, a), b in zip(plain.policy.state_dict().items(), dropped.policy.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_ptx_pulls_the_policy_back_to_web_text(fast_ppo, trained, tok):
    """Same seed, same rollouts at first: the ptx run ends with a lower held-out web-text NLL."""
    sft, rm, _ = trained
    cfg = PPOConfig(**{**fast_ppo, "iterations": 3}, lr=1e-3, beta=0.01, critic="head")
    plain = train_ppo(cfg, sft, rm)
    ptx = train_ppo(dataclasses.replace(cfg, ptx_coef=1.0, ptx_batch_size=32), sft, rm)
    nll = {name: capability(r.policy, tok, n=128, samples_per_prompt=1)["pretrain_nll"]
           for name, r in (("plain", plain), ("ptx", ptx))}
    start = capability(sft, tok, n=128, samples_per_prompt=1)["pretrain_nll"]
    assert nll["ptx"] < nll["plain"] - 0.1, (start, nll)
    assert nll["ptx"] < start, (start, nll)          # γ = 1 here: web text outweighs the reward
    assert ptx.history[-1]["policy_loss"] > ptx.history[-1]["pg_loss"]     # + γ NLL > 0


# --- the study ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_study_table_cache_and_plot(fast_ppo, small_config, trained):
    _, _, root = trained                              # base, SFT and RM are cached there
    run = small_config.with_ppo(**fast_ppo)
    kwargs = dict(betas=(1.0, 0.01), ptx_coefs=(0.5,), jobs=1, root=root, n_text=48,
                  n_per_prompt=1, iterations=fast_ppo["iterations"], rollouts=fast_ppo["rollouts"],
                  minibatch_size=fast_ppo["minibatch_size"], critic=None)
    result = alignment_tax_study(run, **kwargs)
    rows = result["rows"]
    assert [r["model"] for r in rows] == ["base", "sft", "ppo", "ppo", "ppo"]
    assert [(r["beta"], r["ptx_coef"]) for r in rows[2:]] == [(1.0, 0.0), (0.01, 0.0), (0.01, 0.5)]
    sft = rows[1]
    assert sft["tax"] == 0 and sft["kl"] == pytest.approx(0, abs=1e-5)
    for r in rows:
        assert r["tax"] == pytest.approx(r["pretrain_nll"] - sft["pretrain_nll"])
        assert r["tax_vs_base"] == pytest.approx(r["pretrain_nll"] - rows[0]["pretrain_nll"])
        assert r["proxy"] is not None and r["gold"] == r["gold"]
    study = {k: kwargs[k] for k in ("betas", "ptx_coefs", "iterations", "rollouts", "minibatch_size",
                                    "critic")}
    variants = alignment_tax.tax_runs(run, TaxStudyConfig(**study))
    ppo_rows = [runs.load_or_train_ppo(r, root=root).metrics for r in variants]
    assert "ptx_nll" in ppo_rows[2]["history"][-1] and "ptx_nll" not in ppo_rows[0]["history"][-1]
    again = alignment_tax_study(run, **kwargs)
    assert [r["tax"] for r in again["rows"]] == [r["tax"] for r in rows]
    beyond_plots.alignment_tax(result)
    beyond_plots.alignment_tax(rows)


def test_study_runs_and_overrides(small_config):
    variants = alignment_tax.tax_runs(small_config, TaxStudyConfig(iterations=7, betas=(0.3, 0.03), ptx_coefs=(0.1, 1.0)))
    assert [(r.ppo.beta, r.ppo.ptx_coef, r.ppo.iterations) for r in variants] == [
        (0.3, 0.0, 7), (0.03, 0.0, 7), (0.03, 0.1, 7), (0.03, 1.0, 7)]
    assert {(r.ppo.rollouts, r.ppo.minibatch_size, r.ppo.critic) for r in variants} == {(128, 32, "head")}
    kept = alignment_tax.tax_runs(small_config, TaxStudyConfig(iterations=None, rollouts=None,
                                                        minibatch_size=None, critic=None))
    assert all(dataclasses.replace(r.ppo, beta=small_config.ppo.beta, ptx_coef=0.0) == small_config.ppo for r in kept)
    with pytest.raises(ValueError, match="jobs"):
        alignment_tax_study(small_config, jobs=0)
