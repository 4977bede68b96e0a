"""The memory formula against the bytes the tiny networks really hold."""
import pytest
import torch

from rlhf_lab.lm.models import count_parameters, new_policy
from rlhf_lab.studies import memory


def test_the_formula_matches_a_trained_and_a_frozen_tiny_network():
    torch.manual_seed(0)
    policy = new_policy("tiny")
    n = count_parameters(policy)
    assert memory.measured_bytes(policy) == memory.network_bytes(n, False, memory.FP32)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    ids = torch.randint(3, 100, (2, 8))
    policy(input_ids=ids).logits.square().mean().backward()
    optimizer.step()
    assert memory.measured_bytes(policy, optimizer) == memory.network_bytes(n, True, memory.FP32)


def test_seven_billion_parameters_in_mixed_precision():
    rows = {r["network"]: r for r in memory.rlhf_memory(7_000_000_000)}
    assert rows["policy"]["bytes"] == 16 * 7e9 and rows["reference"]["bytes"] == 2 * 7e9
    assert rows["total"]["bytes"] == (16 + 16 + 2 + 2) * 7e9          # 252 GB before activations
    dpo = memory.rlhf_memory(7_000_000_000, networks=("policy", "reference"))
    assert dpo[-1]["bytes"] == 18 * 7e9
    with pytest.raises(ValueError, match="networks"):
        memory.rlhf_memory(10, networks=("policy", "value net"))
    with pytest.raises(ValueError, match="n_params"):
        memory.network_bytes(-1, True)


def test_the_formula_matches_the_larger_cpu_preset_too():
    torch.manual_seed(0)
    policy = new_policy("small")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy(input_ids=torch.randint(3, 100, (1, 4))).logits.square().mean().backward()
    optimizer.step()
    n = count_parameters(policy)
    assert memory.measured_bytes(policy, optimizer) == memory.network_bytes(n, True, memory.FP32)


def test_memory_table_rows_and_orders():
    rows = memory.memory_table()
    assert len(rows) == 9 and {r["precision"] for r in rows} == {"fp32", "fp16", "bf16-pure"}
    seven = {r["precision"]: r for r in rows if r["params"] == 7_000_000_000}
    assert seven["fp16"]["total_GiB"] == pytest.approx(36 * 7e9 / memory.GIB)
    assert seven["bf16-pure"]["total_GiB"] < seven["fp16"]["total_GiB"] < seven["fp32"]["total_GiB"]
