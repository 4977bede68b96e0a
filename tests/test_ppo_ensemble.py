"""benchmarks/ppo_ensemble.py's exact helpers."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "ppo_ensemble.py"
_spec = importlib.util.spec_from_file_location("ppo_ensemble", _PATH)
pe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pe)


def test_gain_at_kl_interpolates_at_the_first_crossing():
    kl, gain = [0.5, 2.0, 6.0, 10.0, 7.0, 12.0], [0.1, 0.2, 0.0, -0.4, -0.2, -1.0]
    assert pe.gain_at_kl(kl, gain, 8.0) == pytest.approx(-0.2)          # halfway from 6 to 10
    assert pe.gain_at_kl(kl, gain, 6.0) == pytest.approx(0.0)
    assert pe.gain_at_kl(kl, gain, 0.2) == 0.1                           # before the first: its gain
    assert pe.gain_at_kl(kl, gain, 13.0) is None                         # never reached


def test_a_member_on_another_trunk_keeps_the_studys_proxy_otherwise():
    own, other = pe.member_run(16000, 1, 0, 60), pe.member_run(16000, 1, 0, 60, trunk_seed=2)
    assert own.rm.trunk_seed is None and other.rm.trunk_seed == 2
    assert other.rm == own.rm.__class__(**{**own.rm.__dict__, "trunk_seed": 2})
    assert (other.ppo, other.sft, other.base) == (own.ppo, own.sft, own.base)
