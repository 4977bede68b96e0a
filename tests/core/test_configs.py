import pytest

from rlhf_lab.stages.reward_model import RewardConfig
from rlhf_lab.stages.sft import PretrainConfig, SFTConfig


@pytest.mark.parametrize("cls,field,value", [
    (PretrainConfig, "lr", -1e-3), (PretrainConfig, "batch_size", 0), (PretrainConfig, "preset", "huge"),
    (PretrainConfig, "steps", 0), (SFTConfig, "lr", -1.0), (SFTConfig, "batch_size", 0),
    (SFTConfig, "heldout_fraction", 1.5), (RewardConfig, "n_pairs", -5), (RewardConfig, "lr", 0.0),
    (RewardConfig, "batch_size", 0),
])
def test_nonsense_values_raise_naming_the_field(cls, field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        cls(**{field: value})


def test_configs_are_frozen():
    cfg = SFTConfig()
    with pytest.raises(Exception):
        cfg.lr = 1.0


def test_options_added_later_keep_old_cache_keys_at_their_default():
    import dataclasses

    from rlhf_lab.core.config import LATER, config_dict, config_hash

    @dataclasses.dataclass(frozen=True)
    class Old:
        a: int = 1

    @dataclasses.dataclass(frozen=True)
    class New:
        a: int = 1
        b: float = dataclasses.field(default=0.0, metadata=LATER)

    New.__name__ = Old.__name__ = "Stage"
    assert config_hash(New()) == config_hash(Old())
    assert "b" not in config_dict(New()) and config_dict(New(b=0.5))["b"] == 0.5
    assert config_hash(New(b=0.5)) != config_hash(Old())
