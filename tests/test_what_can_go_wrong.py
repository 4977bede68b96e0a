"""benchmarks/what_can_go_wrong.py's pure helpers, on made-up histories with known answers."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "what_can_go_wrong.py"
_spec = importlib.util.spec_from_file_location("what_can_go_wrong", _PATH)
what_can_go_wrong = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(what_can_go_wrong)


def test_negative_batches_lists_exactly_the_batches_below_zero():
    history = [{"kl": 0.0}, {"kl": -0.01}, {"kl": 0.2}, {"kl": -0.3}, {"kl": 1e-9}]
    found = what_can_go_wrong.negative_batches(history)
    assert found == {"batches": 5, "negative": [(1, -0.01), (3, -0.3)], "min": -0.3}
    assert what_can_go_wrong.negative_batches([{"kl": 0.0}])["negative"] == []     # 0 is not < 0


def test_dip_before_rise_finds_the_lowest_gold_before_the_peak_not_after():
    evals = [{"iteration": 4 * i, "gold": g, "proxy": p, "kl": float(i), "length": 10.0 - i}
             for i, (g, p) in enumerate([(1.0, 1.0), (0.9, 1.0), (0.7, 1.1), (1.5, 2.0), (0.0, 3.0)])]
    d = what_can_go_wrong.dip_before_rise(evals)
    assert (d["dip"], d["dip_iteration"], d["dip_kl"], d["dip_length"]) == (-0.3, 8, 2.0, 8.0)
    assert d["dip_proxy"] == pytest.approx(0.1)
    assert (d["peak"], d["peak_iteration"], d["peak_kl"]) == (0.5, 12, 3.0)   # the fall to 0 comes later


def test_tail_mean_averages_the_last_iterations_only():
    assert what_can_go_wrong.tail_mean([{"x": 100.0}] + [{"x": float(i)} for i in range(5)], "x") == 2.0


def test_advantages_at_zero_value_decay_by_lambda_towards_the_start_of_a_reply():
    raw, white = what_can_go_wrong.advantages_at_zero_value([2.0, 2.0], [1, 3], lam=0.5)
    assert raw.tolist() == [[2.0, 0.0, 0.0], [0.5, 1.0, 2.0]]       # A_t = λ^(T-1-t) · score
    kept = [white[0, 0].item(), *white[1].tolist()]
    assert sum(kept) == pytest.approx(0.0, abs=1e-6)                 # whitened over the 4 kept tokens
    assert sum(a * a for a in kept) / 4 == pytest.approx(1.0, abs=1e-6)
    assert white[0, 1].item() == white[0, 2].item() == 0.0           # masked positions stay 0
    # every <eos> gets the same advantage; the first token of the longer reply the lowest
    assert white[1, 2].item() == white[0, 0].item() > white[1, 0].item()
