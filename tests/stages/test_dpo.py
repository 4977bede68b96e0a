"""DPO: the exact optimum on an enumerable space, the training loop on a tiny model, the cached
pipeline stage and the figures."""
import dataclasses
import math

import matplotlib
import numpy as np
import pytest
import torch

from rlhf_lab.core.plug import FallbackWarning
from rlhf_lab.equations import beyond_losses, closed_form
from rlhf_lab.equations.enumerable_space import enumerable_space
from rlhf_lab.lm import models
from rlhf_lab.lm.sequences import encode_pairs
from rlhf_lab.pipeline import runs
from rlhf_lab.stages.dpo import DPOConfig, dpo_enumerable, enumerable_pairs, sequence_logprob, train_dpo
from rlhf_lab.stages.reward_model import RewardConfig, sample_preferences
from rlhf_lab.stages.sft import PretrainConfig, SFTConfig

matplotlib.use("Agg")

TINY = DPOConfig(beta=0.1, epochs=3, batch_size=16, lr=1e-3, max_response_len=8)


@pytest.fixture(scope="module")
def space():
    """30 responses (2 words, length 1-4); every one has pi_ref >= 8e-4."""
    return enumerable_space(vocab_size=2, max_len=4, seed=0)


@pytest.fixture(scope="module")
def policy():
    return models.new_policy("tiny", seed=0)


@pytest.fixture(scope="module")
def pairs(policy):
    return sample_preferences(policy, models.world_tokenizer(), 64, seed=0, max_response_len=8)


# --- config ----------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("beta", 0.0), ("beta", -0.1), ("beta", math.inf),
                                         ("epochs", 0), ("epochs", 1.5), ("batch_size", 0),
                                         ("lr", 0.0), ("max_response_len", 0), ("seed", 0.5)])
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        DPOConfig(**{field: value})


def test_batch_larger_than_the_data_names_the_field(policy, pairs):
    with pytest.raises(ValueError, match="^batch_size"):
        train_dpo(dataclasses.replace(TINY, batch_size=65), policy, models.world_tokenizer(), pairs)


# --- the enumerable space: DPO against the exact pi* ------------------------------------------

@pytest.mark.slow
def test_soft_labels_and_infinite_data_give_exactly_the_boltzmann_policy(space):
    for beta in (1.0, 0.5):
        out = dpo_enumerable(space.logp_ref, space.rewards, beta, soft=True)
        assert out["tv"] < 1e-6 and abs(out["kl_to_optimal"]) < 1e-9
        assert torch.allclose(out["logp_star"], closed_form.boltzmann_policy(space.logp_ref,
                                                                         space.rewards, beta))
        assert out["dpo"]["kl"] == pytest.approx(out["optimal"]["kl"], abs=1e-6)
        assert out["dpo"]["reward"] == pytest.approx(out["optimal"]["reward"], abs=1e-6)


@pytest.fixture(scope="module")
def sampled(space):
    """DPO at beta = 1 with (n_pairs, Adam steps at lr 0.3) of sampled pairs."""
    return {(n, steps): dpo_enumerable(space.logp_ref, space.rewards, 1.0, n_pairs=n, steps=steps,
                                       lr=0.3)
            for n, steps in ((100, 100), (100, 400), (1000, 100), (1000, 200), (20_000, 100))}


@pytest.mark.slow
def test_many_pairs_land_near_the_boltzmann_policy_few_do_not(sampled):
    # measured: TV 0.005 (20k pairs), 0.056 (1k), 0.39 (100: 8 responses only won or only lost)
    tv = {n: sampled[n, 100]["tv"] for n in (100, 1000, 20_000)}
    assert tv[20_000] < 0.02 < tv[1000] < 0.2 < tv[100]
    assert sampled[20_000, 100]["n_unbounded"] == sampled[20_000, 100]["n_unseen"] == 0


@pytest.mark.slow
def test_a_response_that_only_ever_wins_keeps_rising_with_more_steps(sampled):
    assert sampled[100, 100]["n_unbounded"] > 0
    assert sampled[100, 400]["tv"] > sampled[100, 100]["tv"] + 0.2    # overfits, never converges
    assert sampled[1000, 100]["n_unbounded"] == 0
    assert sampled[1000, 200]["tv"] == pytest.approx(sampled[1000, 100]["tv"], abs=1e-3)


def test_responses_in_no_pair_keep_their_reference_logits(space):
    out = dpo_enumerable(space.logp_ref, space.rewards, 1.0, n_pairs=20, steps=100)
    chosen, rejected = enumerable_pairs(space.logp_ref, space.rewards, 20, seed=0)
    seen = torch.zeros(len(space.sequences), dtype=torch.bool)
    seen[chosen] = seen[rejected] = True
    shift = (out["logp_dpo"] - space.logp_ref)[~seen]                 # only the normaliser moved
    assert out["n_unseen"] == int((~seen).sum()) > 0
    assert torch.allclose(shift, shift[0].expand_as(shift), atol=1e-9)


def test_pairs_follow_bradley_terry_with_the_true_rewards():
    logp_ref = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    rewards = torch.tensor([1.0, 0.0], dtype=torch.float64)
    chosen, rejected = enumerable_pairs(logp_ref, rewards, 40_000, seed=3)
    distinct = chosen != rejected
    assert distinct.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert (chosen[distinct] == 0).float().mean().item() == pytest.approx(torch.sigmoid(
        torch.tensor(1.0)).item(), abs=0.01)
    again = enumerable_pairs(logp_ref, rewards, 40_000, seed=3)
    assert torch.equal(again[0], chosen) and torch.equal(again[1], rejected)


# --- the training loop on a tiny random model ------------------------------------------------

def test_sequence_logprob_ignores_padding(policy, tok):
    prompts, replies = ["review pizza", "review pizza"], ["the pizza is good <eos>", "good <eos>"]
    both = encode_pairs(tok, prompts, replies, 8)                    # row 1 is padded
    alone = encode_pairs(tok, prompts[1:], replies[1:], 8)
    with torch.no_grad():
        assert sequence_logprob(policy, both)[1].item() == pytest.approx(
            sequence_logprob(policy, alone)[0].item(), abs=1e-5)


@pytest.mark.slow
def test_smoke_loss_starts_at_log2_and_goes_down_deterministically(policy, pairs, tok):
    trained, metrics = train_dpo(TINY, policy, tok, pairs)
    history = metrics["history"]
    assert len(history) == TINY.epochs * (64 // TINY.batch_size) and metrics["n_pairs"] == 64
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)   # policy == reference
    assert history[0]["margin"] == pytest.approx(0.0, abs=1e-5)
    assert history[-1]["loss"] < math.log(2) - 0.05 and history[-1]["accuracy"] > 0.7
    assert trained is not policy and not torch.equal(trained.transformer.wte.weight,
                                                     policy.transformer.wte.weight)
    _, again = train_dpo(TINY, policy, tok, pairs)
    assert again["history"] == history


@pytest.mark.slow
def test_a_dpo_loss_not_written_falls_back_with_a_warning(policy, pairs, tok):
    def dpo_loss(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected, beta):
        raise NotImplementedError

    cfg = dataclasses.replace(TINY, epochs=1)
    with pytest.warns(FallbackWarning, match="dpo_loss"):
        _, student = train_dpo(cfg, policy, tok, pairs, loss_fn=dpo_loss)
    _, reference = train_dpo(cfg, policy, tok, pairs)
    assert student["history"] == reference["history"]


@pytest.mark.slow
def test_a_loss_without_stats_is_accepted_and_a_nan_loss_is_named(policy, pairs, tok):
    def loss_only(*args):
        return beyond_losses.dpo_loss(*args)[0]

    cfg = dataclasses.replace(TINY, epochs=1)
    _, metrics = train_dpo(cfg, policy, tok, pairs, loss_fn=loss_only)
    _, reference = train_dpo(cfg, policy, tok, pairs)
    assert metrics["history"] == reference["history"]

    def nan_loss(*args):
        return loss_only(*args) * float("nan")

    with pytest.raises(FloatingPointError, match="dpo_loss.*step 0"):
        train_dpo(cfg, policy, tok, pairs, loss_fn=nan_loss)


# --- the cached pipeline stage ---------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    run = runs.RunConfig(base=PretrainConfig(corpus_size=500, steps=20, batch_size=32),
                             sft=SFTConfig(n_demonstrations=100, steps=10, batch_size=16),
                             rm=RewardConfig(n_pairs=64, epochs=1, batch_size=16, n_heldout=32),
                             dpo=dataclasses.replace(TINY, epochs=1))
    return run, root


@pytest.mark.slow
def test_load_or_train_dpo_is_cached_and_evaluated(small_run):
    run, root = small_run
    first = runs.load_or_train_dpo(run, root)
    assert first.path.name == f"dpo-{runs.stage_keys(run)['dpo']}"
    assert first.metrics["n_pairs"] == run.rm.n_pairs                 # exactly the RM's pairs
    assert {"gold", "proxy", "kl", "n"} <= set(first.metrics["evaluation"])
    again = runs.load_or_train_dpo(run, root)
    assert again.path == first.path and again.metrics == first.metrics


def test_the_dpo_key_follows_its_inputs_and_no_other_key_follows_it(small_run):
    run, _ = small_run
    keys = runs.stage_keys(run)
    other = runs.stage_keys(run.with_dpo(beta=0.3))
    assert other["dpo"] != keys["dpo"]
    assert all(other[k] == keys[k] for k in keys if k != "dpo")
    assert runs.stage_keys(run.with_rm(n_pairs=128))["dpo"] != keys["dpo"]
    assert runs.stage_keys(run.with_ppo(beta=0.3))["dpo"] == keys["dpo"]


@pytest.mark.slow
def test_a_student_dpo_loss_is_cached_under_its_source(small_run):
    run, root = small_run

    def mine(logp_chosen, logp_rejected, logp_ref_chosen, logp_ref_rejected, beta):
        return beyond_losses.dpo_loss(logp_chosen, logp_rejected, logp_ref_chosen,
                                      logp_ref_rejected, beta)

    first = runs.load_or_train_dpo(run, root, loss_fn=mine)
    assert "custom" in first.path.name
    assert runs.load_or_train_dpo(run, root, loss_fn=mine).path == first.path
    assert first.metrics["history"] == runs.load_or_train_dpo(run, root).metrics["history"]


# --- the figures draw from plain results -----------------------------------------------------

@pytest.mark.slow
def test_figures(space, policy, tok):
    from rlhf_lab.course.plots import beyond as beyond_plots
    out = dpo_enumerable(space.logp_ref, space.rewards, 1.0, n_pairs=1000, steps=50)
    fig = beyond_plots.dpo_vs_boltzmann(out)
    (ax,) = fig.axes                             # π_ref as bars, π* and π_DPO as two lines
    assert [len(line.get_xdata()) for line in ax.lines] == [len(out["rewards"])] * 2
    order = np.argsort(out["rewards"].numpy())                 # sorted by reward, as the x axis says
    assert np.allclose(ax.lines[0].get_ydata(), out["logp_star"].exp().numpy()[order])
    assert np.allclose(ax.lines[1].get_ydata(), out["logp_dpo"].exp().numpy()[order])
    point = {"method": "DPO", "beta": 0.1, "kl": 0.0, "gold": 2.0, "proxy": None}
    points = [{"method": "PPO", "beta": b, "kl": k, "gold": g, "proxy": p}
              for b, k, g, p in ((0.3, 0.3, 2.1, 0.85), (0.1, 1.2, 2.1, 1.0))]
    fig = beyond_plots.reward_kl_plane(points + [point], frontier={"kl": [0, 1, 2],
                                                            "expected_gold": [1.9, 2.1, 2.2]})
    assert len(fig.axes) == 2
