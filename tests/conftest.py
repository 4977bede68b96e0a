import os
import tempfile

import pytest
import torch

# Tests never touch the user's cache.
os.environ.setdefault("RLHF_LAB_CACHE", tempfile.mkdtemp(prefix="rlhf_lab_test_cache_"))
os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def tok():
    from rlhf_lab.lm.models import world_tokenizer
    return world_tokenizer()
