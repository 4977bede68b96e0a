import subprocess
import sys

import pytest
import torch

from rlhf_lab import world
from rlhf_lab.core.paths import REPO
from rlhf_lab.lm import models
from rlhf_lab.lm.sequences import (
    decode_responses,
    encode_pairs,
    encode_prompts,
    position_ids,
    response_mask_from,
)
from rlhf_lab.stages.reward_model import score_texts


def test_tokenizer_has_distinct_special_tokens(tok):
    ids = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.sep_token_id}
    assert len(ids) == 5 and tok.pad_token_id != tok.eos_token_id
    assert len(tok) == len(world.vocabulary())
    assert tok.convert_ids_to_tokens(tok("the engine is great .")["input_ids"]) == \
        ["the", "engine", "is", "great", "."]
    assert tok("zebra")["input_ids"] == [tok.unk_token_id]


def test_presets_and_unknown_preset():
    assert models.count_parameters(models.new_policy("tiny")) < 150_000
    assert models.gpt2_config("gpt2").n_layer == 12 and models.gpt2_config("gpt2").n_embd == 768
    with pytest.raises(ValueError, match="preset"):
        models.gpt2_config("huge")


def test_layout_of_an_encoded_batch(tok):
    prompts = [world.Prompt("review", "car"), world.Prompt("advise", "tent")]
    batch = encode_pairs(tok, prompts, ["the engine is great . <eos>", "um"], max_response_len=24)
    assert batch.prompt_len == 4
    assert batch.response_mask.sum(-1).tolist() == [6, 1]
    assert batch.input_ids[0, 9].item() == tok.eos_token_id
    assert batch.input_ids[1, 5:].eq(tok.pad_token_id).all()
    assert decode_responses(tok, batch.input_ids[:, 4:], batch.response_mask[:, 4:]) == \
        ["the engine is great . <eos>", "um"]


def test_response_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]])
    assert response_mask_from(ids, eos_id=2).tolist() == [[True, True, False, False], [True] * 4]


def test_left_padding_changes_nothing(tok):
    torch.manual_seed(0)
    model = models.new_policy("tiny").eval()
    ids, mask = encode_prompts(tok, [world.Prompt("review", "car")])
    padded_ids = torch.cat([torch.full((1, 3), tok.pad_token_id), ids], 1)
    padded_mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), mask], 1)
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits[:, -1]
        b = model(input_ids=padded_ids, attention_mask=padded_mask,
                  position_ids=position_ids(padded_mask)).logits[:, -1]
    assert torch.allclose(a, b, atol=1e-5)


def test_forward_logits_is_the_float32_forward_with_positions_of_real_tokens(tok):
    model = models.new_policy("tiny", seed=3).eval()
    ids, mask = encode_prompts(tok, [world.Prompt("review", "car"), world.Prompt("advise", "phone")])
    with torch.no_grad():
        got = models.forward_logits(model, ids, mask)
        plain = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
    assert got.dtype == torch.float32 and torch.equal(got, plain.float())
    padded_ids = torch.cat([torch.full((2, 2), tok.pad_token_id), ids], 1)
    padded_mask = torch.cat([torch.zeros(2, 2, dtype=torch.long), mask], 1)
    with torch.no_grad():
        padded = models.forward_logits(model, padded_ids, padded_mask)
    assert torch.allclose(padded[:, 2:][mask.bool()], got[mask.bool()], atol=1e-5)


def test_reward_model_score_ignores_padding(tok):
    policy = models.new_policy("tiny", seed=1)
    rm = models.reward_model_from(policy, seed=2).eval()
    prompts = [world.Prompt("review", "car")] * 2
    short, long = "the engine is great . <eos>", "the engine of the car is very great . <eos>"
    together = score_texts(rm, tok, prompts, [short, long])       # short gets 4 pads
    alone = score_texts(rm, tok, prompts[:1], [short])             # no padding
    assert together[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    assert together[0].item() != pytest.approx(together[1].item())


def test_save_and_load_round_trip(tmp_path, tok):
    policy = models.new_policy("tiny", seed=3)
    rm = models.reward_model_from(policy, seed=4)
    policy.save_pretrained(tmp_path / "p")
    rm.save_pretrained(tmp_path / "r")
    ids = torch.tensor([[1, 5, 8, 3, 20]])
    from transformers import GPT2ForSequenceClassification
    with torch.no_grad():
        assert torch.equal(policy(input_ids=ids).logits, models.load_policy(tmp_path / "p")(input_ids=ids).logits)
        rm2 = GPT2ForSequenceClassification.from_pretrained(tmp_path / "r")
        assert torch.equal(rm.eval()(input_ids=ids).logits, rm2.eval()(input_ids=ids).logits)


@pytest.mark.slow
def test_reading_results_imports_no_transformers():
    # transformers is imported where a model or tokenizer is built, so a notebook that only
    # plots cached results never pays for it
    code = ("import sys; import rlhf_lab.pipeline.runs, rlhf_lab.studies.sweep, rlhf_lab.studies.overoptimisation, rlhf_lab.studies.ppo_gao, "
            "rlhf_lab.course.plots, rlhf_lab.course.checks, rlhf_lab.core.plug; "
            "print(sorted(m for m in ('transformers', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_no_progress_bars_turns_them_off_inside_and_restores_them():
    from transformers.utils import logging as hf_logging
    assert hf_logging.is_progress_bar_enabled()
    with models.no_progress_bars():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    with pytest.raises(RuntimeError), models.no_progress_bars():
        raise RuntimeError("a failed load")
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()                  # switched off by the user: stays off
    try:
        with models.no_progress_bars():
            pass
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


def test_critic_from_reward_model_copies_trunk_and_head():
    rm = models.reward_model_from(models.new_policy("tiny", seed=1), seed=2).eval()
    critic = models.critic_from(rm).eval()
    ids = torch.tensor([[1, 5, 8, 3, 20, 2]])
    with torch.no_grad():
        # the RM's head has no bias, so the critic's value at the last token is the RM's score
        assert torch.allclose(critic(input_ids=ids).logits[0, -1, 0], rm(input_ids=ids).logits[0, 0],
                              atol=1e-5)


def test_pick_device_respects_override():
    assert models.pick_device("cpu").type == "cpu"
    assert models.pick_device().type in ("cpu", "cuda", "mps")
