"""Any causal LM and tokenizer: a GPT-2-shaped checkpoint with a byte-level BPE tokenizer, saved
and loaded like any Hugging Face model, runs SFT -> RM -> PPO; presets and device choice."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_lab import world
from rlhf_lab.lm import models
from rlhf_lab.lm.sequences import decode_responses, encode_pairs
from rlhf_lab.stages.ppo import PPOConfig, train_ppo
from rlhf_lab.stages.reward_model import RewardConfig, score_texts, train_reward_model
from rlhf_lab.stages.sft import SFTConfig, train_sft

TEXTS = ["the engine is great . <eos>", "um you should check the tent", "<eos>"]


@pytest.fixture(scope="module")
def bpe():
    return models.bpe_tokenizer(vocab_size=320, corpus_size=400)


def _tiny_gpt2(tok, seed=0) -> GPT2LMHeadModel:
    """A GPT-2 with the real architecture at toy sizes, sized to ``tok``."""
    config = GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2, n_positions=64,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def test_bpe_tokenizer_splits_words_and_round_trips_world_text(bpe):
    """Words take several tokens, yet decoded replies read exactly as the world wrote them."""
    assert len(bpe) == 320 and bpe.pad_token_id != bpe.eos_token_id
    assert len({bpe.pad_token_id, bpe.bos_token_id, bpe.eos_token_id, bpe.sep_token_id}) == 4
    prompts = [world.Prompt("review", "car"), world.Prompt("advise", "tent"), world.Prompt("describe", "phone")]
    batch = encode_pairs(bpe, prompts, TEXTS, max_response_len=40)
    P = batch.prompt_len
    lengths = batch.response_mask.sum(-1).tolist()
    assert lengths[0] > 6 and lengths[2] == 1                     # BPE pieces; <eos> is one token
    assert batch.input_ids[0, P + lengths[0] - 1].item() == bpe.eos_token_id
    assert batch.input_ids[2, P].item() == bpe.eos_token_id
    assert decode_responses(bpe, batch.input_ids[:, P:], batch.response_mask[:, P:]) == TEXTS


@pytest.mark.slow
def test_local_checkpoint_with_bpe_runs_sft_rm_ppo(tmp_path, bpe):
    """save_pretrained -> from_pretrained gives the same logits; then SFT, RM and PPO run on it."""
    model = _tiny_gpt2(bpe)
    model.save_pretrained(tmp_path)
    bpe.save_pretrained(tmp_path)
    tok, loaded = models.load_pretrained(tmp_path)
    assert tok.pad_token_id == bpe.pad_token_id and tok.eos_token_id == bpe.eos_token_id
    assert len(tok) == len(bpe)
    ids = encode_pairs(tok, [world.Prompt("review", "car")], TEXTS[:1], 24).input_ids
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)

    sft, sft_metrics = train_sft(SFTConfig(n_demonstrations=60, steps=3, batch_size=8), loaded, tok,
                                 max_response_len=48)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in sft_metrics["history"])
    rm, rm_metrics = train_reward_model(RewardConfig(n_pairs=16, epochs=1, batch_size=8, n_heldout=8,
                                                     max_response_len=12), sft, tok)
    assert len(rm_metrics["history"]) == 2
    scores = score_texts(rm, tok, [world.Prompt("review", "car")] * 2, TEXTS[:2], 48)
    assert scores.shape == (2,) and torch.isfinite(scores).all()

    cfg = PPOConfig(iterations=2, rollouts=8, minibatch_size=4, epochs=1, max_new_tokens=12)
    result = train_ppo(cfg, sft, rm, tok)
    assert result.stopped is None and len(result.history) == 2
    for row in result.history:
        assert all(torch.isfinite(torch.tensor(float(row[k]))) for k in ("proxy", "gold", "kl", "pg_loss"))
    for sample in result.samples:                   # world text: words, <eos> only at the end
        words = sample["text"].split()
        assert "<eos>" not in words[:-1] and all("Ġ" not in w for w in words)
        assert sample["gold"] == pytest.approx(world.gold_utility(sample["prompt"], sample["text"]))
    assert isinstance(result.policy, GPT2LMHeadModel)


def test_batch_rows_keep_a_long_reply_after_a_short_left_padded_prompt(bpe):
    # BPE prompts differ in length, so the short one is left-padded; its long reply must survive
    # the cut to the rows' width (a cut at the count of real tokens once dropped its tail).
    batch = encode_pairs(bpe, ["review car", "review the very long phone with many words"],
                         ["it is good and fine and nice and a long reply here", "ok"], 24)
    rows = batch.rows(torch.tensor([0, 1]))
    assert torch.equal(rows.input_ids, batch.input_ids[:, :rows.input_ids.shape[1]])
    assert rows.response_mask.sum(-1).tolist() == batch.response_mask.sum(-1).tolist()
    assert rows.attention_mask.sum(-1).tolist() == batch.attention_mask.sum(-1).tolist()
    assert rows.attention_mask[:, -1].any()                   # and nothing but padding is cut


def test_load_pretrained_gives_a_tokenizer_a_pad_of_its_own(tmp_path, bpe):
    """A tokenizer that pads with its end-of-sequence token gets a distinct <pad>: a new token and
    embedding row if the vocabulary lacks one, else the one it has."""
    import copy

    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast
    core = Tokenizer(WordLevel({"<|endoftext|>": 0, "the": 1, "car": 2, "?": 3}, unk_token="?"))
    core.pre_tokenizer = WhitespaceSplit()
    gpt2_like = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", unk_token="?")
    bpe_eos_pad = copy.deepcopy(bpe)
    bpe_eos_pad.pad_token = bpe_eos_pad.eos_token
    for tok, rows in ((gpt2_like, 5), (bpe_eos_pad, len(bpe))):
        folder = tmp_path / str(rows)
        config = GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=8, n_head=1, n_positions=16)
        GPT2LMHeadModel(config).save_pretrained(folder)
        tok.save_pretrained(folder)
        tok2, model = models.load_pretrained(folder)
        assert tok2.pad_token_id != tok2.eos_token_id and tok2.pad_token == world.PAD
        assert model.get_input_embeddings().weight.shape[0] == len(tok2) == rows
        assert model.config.pad_token_id == tok2.pad_token_id


def test_load_pretrained_without_network_says_how_to_get_the_weights(tmp_path):
    with pytest.raises(OSError, match="download"):
        models.load_pretrained(tmp_path / "no-such-checkpoint")


def test_presets_have_the_advertised_sizes():
    """tiny ~0.1M, small a few million, gpt2 the 124M shape (counted on the meta device)."""
    assert models.count_parameters(models.new_policy("tiny")) < 150_000
    assert 1_000_000 < models.count_parameters(models.new_policy("small")) < 10_000_000
    config = models.gpt2_config("gpt2")
    config.vocab_size = 50257                       # GPT-2's own tokenizer
    with torch.device("meta"):
        assert models.count_parameters(GPT2LMHeadModel(config)) == 124_439_808


def test_pick_device_is_automatic_and_overridable():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert models.pick_device().type == expected
    assert models.pick_device("cpu") == torch.device("cpu")
    assert models.pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        models.pick_device("tpu")
    for kind, present in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())):
        if not present:
            with pytest.raises(ValueError, match="device"):
                models.pick_device(kind)


def test_autocast_does_nothing_on_cpu():
    a = torch.randn(4, 4)
    with models.autocast("cpu"):
        assert (a @ a).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stages_run_on_cuda_with_bf16_autocast(bpe):
    device = models.pick_device()
    assert device.type == "cuda"
    with models.autocast(device):
        a = torch.randn(4, 4, device=device)
        assert (a @ a).dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    model = _tiny_gpt2(bpe).to(device)
    sft, metrics = train_sft(SFTConfig(n_demonstrations=60, steps=3, batch_size=8), model, bpe,
                             max_response_len=48)
    assert next(sft.parameters()).device.type == "cuda"
    assert torch.isfinite(torch.tensor(metrics["heldout_loss_after"]))
    rm, _ = train_reward_model(RewardConfig(n_pairs=16, epochs=1, batch_size=8, n_heldout=8,
                                            max_response_len=12), sft, bpe)
    cfg = PPOConfig(iterations=2, rollouts=8, minibatch_size=4, epochs=1, max_new_tokens=12)
    result = train_ppo(cfg, sft, rm, bpe)
    assert result.stopped is None and len(result.history) == 2


def test_best_of_n_and_the_closed_form_estimate_run_on_a_bpe_model(bpe):
    """The analysis sees only world text and scores: best-of-n pools and the importance-sampled
    closed form work unchanged with another tokenizer."""
    from rlhf_lab.equations import bon_curves, closed_form
    from rlhf_lab.pipeline.pool import sample_pool, score_pool
    policy = _tiny_gpt2(bpe, seed=1)
    rm = models.reward_model_from(policy, seed=1)
    pool = sample_pool(policy, bpe, n_per_prompt=4, seed=0, max_new_tokens=12)
    assert pool.gold.shape == (len(world.all_prompts()), 4)
    assert all(isinstance(t, str) for row in pool.texts for t in row)
    proxy = score_pool(rm, bpe, pool)
    assert proxy.shape == pool.gold.shape
    # the pool's scores equal score_texts of the same replies, encoded the same way
    first = [row[0] for row in pool.texts]
    direct = score_texts(rm, bpe, pool.prompts, first, max_response_len=12)
    assert torch.allclose(torch.as_tensor(proxy[:, 0], dtype=torch.float32), direct, atol=1e-5)
    curve = bon_curves.best_of_n_curve(proxy, pool.gold, [1, 2, 4])
    assert curve["gold_gain"][0] == pytest.approx(0.0, abs=1e-12)
    est = closed_form.boltzmann_estimate(torch.as_tensor(proxy), beta=1.0, warn=False)
    assert est.ess.shape == (len(world.all_prompts()),) and bool((est.kl >= -1e-9).all())


def test_batch_sizes_per_preset():
    from rlhf_lab.pipeline.runs import RunConfig, stage_keys
    assert RunConfig.for_preset("tiny") == RunConfig()              # the course default, same keys
    assert stage_keys(RunConfig.for_preset("tiny")) == stage_keys(RunConfig())
    small, gpt2 = RunConfig.for_preset("small"), RunConfig.for_preset("gpt2")
    assert small.base.preset == "small" and gpt2.base.preset == "gpt2"
    assert gpt2.sft.batch_size < small.sft.batch_size < RunConfig().sft.batch_size
    assert gpt2.ppo.rollouts % gpt2.ppo.minibatch_size == 0           # validated by PPOConfig too
    with pytest.raises(ValueError, match="preset"):
        RunConfig.for_preset("gpt3")


@pytest.mark.slow
def test_the_small_preset_runs_through_the_cached_pipeline(tmp_path):
    """for_preset("small") end to end through load_or_train_* at toy step counts."""
    import dataclasses

    from rlhf_lab.pipeline import runs
    run = runs.RunConfig.for_preset("small")
    run = dataclasses.replace(
        run, base=dataclasses.replace(run.base, corpus_size=300, steps=3),
        sft=dataclasses.replace(run.sft, n_demonstrations=100, steps=2),
        rm=dataclasses.replace(run.rm, n_pairs=64, epochs=1, n_heldout=32))
    run = run.with_ppo(iterations=1, rollouts=32, minibatch_size=32, epochs=1, max_new_tokens=8)
    ppo = runs.load_or_train_ppo(run, root=tmp_path)
    assert models.count_parameters(ppo.model) > 1_000_000
    assert len(ppo.metrics["history"]) == 1 and ppo.path.name.startswith("ppo-")
