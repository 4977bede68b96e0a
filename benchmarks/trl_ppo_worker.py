"""TRL 1.12's PPOTrainer at the fixed shapes of bench_ppo.py, one iteration timed at a time.

Run by ``benchmarks/vs_trl.py`` with the Python of a separate venv that has ``trl==1.12.0``
(the last TRL with ``trl.experimental.ppo``); it must not import ``rlhf_lab``, which that venv
lacks. It prints one line ``RESULT {json}`` on stdout: per iteration, the seconds of the whole
iteration and of its phases, plus the versions, thread count and sanity checks (reply length,
optimiser steps per iteration) that show the work matches ours.

    <venv>/bin/python benchmarks/trl_ppo_worker.py --iterations 4 --threads 2

How an iteration is timed, without changing TRL's code: ``train()`` runs ``1 + iterations`` PPO
batches; a TrainerCallback's ``on_step_end`` closes each one (its total is the time between two
of them), and two module-level functions of ``ppo_trainer`` that ``train()`` looks up by name are
wrapped to mark the phases: ``batch_generation`` (generate) and ``forward`` (its first call on the
trained policy+value wrapper, rather than the reference, opens the update). So:

* generate: ``batch_generation`` (HF ``generate`` with ``output_scores``);
* score: log-probs from the kept logits, the reference, value and reward forwards, rewards, GAE;
* update: 4 epochs x 4 minibatches of forward + backward + AdamW, then the metrics and the log;
* other: the rest (TRL's ``gc.collect()`` / ``empty_cache()`` between batches, the dataloader);
* gc: of all these, the seconds in ``gc.collect()`` (``ppo_trainer.gc`` is wrapped too): one call
  ends scoring, one follows each iteration.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import types

import torch

# The fixed shapes of benchmarks/bench_ppo.py (fixed_shape_models, bench); keep them equal.
PROMPTS, PROMPT_LEN, RESPONSE_LEN = 64, 16, 32
MINIBATCHES, EPOCHS = 4, 4
SHAPE = dict(vocab_size=512, n_layer=4, n_embd=128, n_head=4, n_positions=64, resid_pdrop=0.0,
             embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu", bos_token_id=1,
             eos_token_id=2, pad_token_id=0)


def tokenizer():
    """A 512-token word-level tokenizer (``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2): TRL wants a
    processing class for its pad / eos ids and its padding collator; no text is ever encoded."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{f"t{i}": i for i in range(3, SHAPE["vocab_size"])}}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<pad>")),
                                   pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")


def networks():
    """Policy, reference, reward model and value model: the configs of bench_ppo.fixed_shape_models
    (same seed); the value model starts as a copy of the reward model, as our separate critic does."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(**SHAPE))
    reward_model = GPT2ForSequenceClassification(GPT2Config(num_labels=1, **SHAPE)).eval()
    return policy, copy.deepcopy(policy).eval(), reward_model, copy.deepcopy(reward_model)


class Clock:
    """Time stamps of the current iteration and the finished iterations' rows."""

    def __init__(self):
        self.rows, self.reply_lengths, self.stop_ids, self.optimizer_steps = [], [], set(), 0
        self.gc = 0.0                                  # seconds in gc.collect() this iteration
        self.start = self.gen_start = self.gen_end = self.update_start = None

    def row(self, now: float) -> dict:
        total = now - self.start
        gen, score, update = (self.gen_end - self.gen_start, self.update_start - self.gen_end,
                              now - self.update_start)
        return {"total": total, "generate": gen, "score": score, "update": update,
                "other": total - gen - score - update, "gc": self.gc, "optimizer_steps": self.optimizer_steps}


def instrument(ppo_module, clock: Clock, reference) -> None:
    """Wrap ppo_trainer's ``batch_generation`` and ``forward`` to stamp the phases (see the top),
    and its ``gc.collect`` to add up the seconds it takes."""
    generation, forward, collect = ppo_module.batch_generation, ppo_module.forward, ppo_module.gc.collect

    def timed_generation(model, queries, local_batch, pad_id, generation_config):
        clock.stop_ids |= {generation_config.eos_token_id, model.generation_config.eos_token_id}
        clock.gen_start = time.perf_counter()
        query_responses, logits = generation(model, queries, local_batch, pad_id, generation_config)
        clock.gen_end = time.perf_counter()
        clock.reply_lengths.append(query_responses.shape[1] - queries.shape[1])
        return query_responses, logits

    def timed_forward(model, *args, **kwargs):
        if model is not reference and clock.update_start is None:
            clock.update_start = time.perf_counter()
        return forward(model, *args, **kwargs)

    def timed_collect(*args):
        t0 = time.perf_counter()
        found = collect(*args)
        clock.gc += time.perf_counter() - t0
        return found

    ppo_module.batch_generation, ppo_module.forward = timed_generation, timed_forward
    ppo_module.gc = types.SimpleNamespace(collect=timed_collect)   # train() calls gc.collect()


def run(iterations: int, threads: int) -> dict:
    import datasets
    import transformers
    import trl
    import trl.experimental.ppo.ppo_trainer as ppo_module
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(threads)
    policy, reference, reward_model, value_model = networks()
    prompts = torch.randint(3, SHAPE["vocab_size"], (PROMPTS, PROMPT_LEN),
                            generator=torch.Generator().manual_seed(0))
    clock = Clock()

    class StepClock(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            clock.rows.append(clock.row(now))
            clock.start, clock.update_start, clock.optimizer_steps, clock.gc = now, None, 0, 0.0

    with tempfile.TemporaryDirectory() as out:
        # One PPO batch = the 64 prompts; per_device_train_batch_size is the rollout batch (with no
        # gradient accumulation), num_mini_batches splits it into 4 minibatches of 16, each one
        # optimiser step. (Accumulating 4 micro-batches of 16 instead would make accelerate step
        # the optimiser once per 4 minibatches: less work than ours.)
        config = PPOConfig(
            output_dir=out, report_to=[], save_strategy="no", eval_strategy="no", use_cpu=True,
            bf16=False, fp16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0,
            per_device_train_batch_size=PROMPTS, gradient_accumulation_steps=1,
            num_mini_batches=MINIBATCHES, num_ppo_epochs=EPOCHS, local_rollout_forward_batch_size=PROMPTS,
            total_episodes=PROMPTS * (1 + iterations), response_length=RESPONSE_LEN, temperature=1.0,
            stop_token=None, stop_token_id=None, missing_eos_penalty=None, num_sample_generations=0,
            kl_coef=0.05, logging_steps=1)
        trainer = PPOTrainer(
            args=config, processing_class=tokenizer(), model=policy, ref_model=reference,
            reward_model=reward_model, value_model=value_model, callbacks=[StepClock()],
            train_dataset=datasets.Dataset.from_dict({"input_ids": prompts.tolist()}))
        trainer.remove_callback(transformers.PrinterCallback)      # no log line per iteration
        inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)   # under accelerate's wrapper
        inner.register_step_post_hook(lambda *_: setattr(clock, "optimizer_steps", clock.optimizer_steps + 1))
        instrument(ppo_module, clock, trainer.ref_model)
        trainer.train()

    return {"iterations": clock.rows, "reply_lengths": clock.reply_lengths,
            "stop_ids": sorted(clock.stop_ids, key=str), "threads": torch.get_num_threads(),
            "optimizer": type(inner).__name__, "torch": torch.__version__, "trl": trl.__version__,
            "transformers": transformers.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations after one warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error(f"--iterations must be at least 1, got {args.iterations}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    print("RESULT " + json.dumps(run(args.iterations, args.threads)), flush=True)


if __name__ == "__main__":
    main()
