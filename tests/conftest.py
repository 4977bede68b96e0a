import os
import tempfile

import pytest
import torch

# Tests never touch the user's cache.
os.environ.setdefault("RLHF_LAB_CACHE", tempfile.mkdtemp(prefix="rlhf_lab_test_cache_"))
os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def small_config():
    """A pipeline small enough to train base, SFT and RM in seconds (the tests' default run)."""
    from rlhf_lab.pipeline.runs import RunConfig
    from rlhf_lab.stages.reward_model import RewardConfig
    from rlhf_lab.stages.sft import PretrainConfig, SFTConfig
    return RunConfig(base=PretrainConfig(corpus_size=2000, steps=60, batch_size=64),
                     sft=SFTConfig(n_demonstrations=300, steps=40, batch_size=32),
                     rm=RewardConfig(n_pairs=256, epochs=1, batch_size=32, n_heldout=128))


@pytest.fixture(scope="session")
def fast_ppo():
    """PPO settings for a run of a few seconds: ``small_config.with_ppo(**fast_ppo)``."""
    return dict(iterations=2, rollouts=32, minibatch_size=16, epochs=2, max_new_tokens=12)


@pytest.fixture
def tok():
    from rlhf_lab.lm.models import world_tokenizer
    return world_tokenizer()
