"""How much memory RLHF's networks take: a formula, and a measurement to check it against.

PPO for RLHF holds four networks (DESIGN §3): the policy and the critic are trained, the
reference policy and the reward model are frozen. Their memory, before activations:

    trained network:  P · (w + g + s)      w, g: bytes of a weight and of its gradient,
    frozen network:   P · w                s: optimiser state per parameter

With Adam, s holds two moments per parameter. In mixed precision (the usual recipe for large
models: Rajbhandari et al. 2020, "ZeRO", §3.1) weights and gradients are FP16 (2 + 2 bytes) and
the optimiser keeps an FP32 master copy plus both moments in FP32 (4 + 4 + 4 = 12 bytes): 16
bytes per trained parameter, 2 per frozen one. In plain FP32 (the tiny models of this course):
4 + 4 + 8 = 16 bytes per trained parameter, 4 per frozen one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Precision", "FP32", "MIXED_FP16", "MIXED_BF16", "PURE_BF16", "PRECISIONS",
           "network_bytes", "rlhf_memory", "memory_table", "measured_bytes", "GIB"]

GIB = 1024 ** 3


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each kind of state."""
    name: str
    weight: int            # a weight used in the forward pass
    grad: int              # its gradient
    optimizer: int         # Adam's state per parameter (two moments, plus a master copy if any)


FP32 = Precision("fp32", weight=4, grad=4, optimizer=8)
MIXED_FP16 = Precision("fp16 mixed precision", weight=2, grad=2, optimizer=12)
MIXED_BF16 = Precision("bf16 mixed precision", weight=2, grad=2, optimizer=12)
PURE_BF16 = Precision("pure bf16 (no fp32 master copy)", weight=2, grad=2, optimizer=4)
PRECISIONS = {"fp32": FP32, "fp16": MIXED_FP16, "bf16": MIXED_BF16, "bf16-pure": PURE_BF16}


def memory_table(sizes=(124_000_000, 1_500_000_000, 7_000_000_000),
                 precisions=("fp32", "fp16", "bf16-pure")) -> list[dict]:
    """PPO's four networks for several model sizes and precisions: one row per (size, precision)
    with the GiB of the trained pair (policy + critic), the frozen pair and the total."""
    rows = []
    for n in sizes:
        for name in precisions:
            p = PRECISIONS[name]
            trained, frozen = 2 * network_bytes(n, True, p), 2 * network_bytes(n, False, p)
            rows.append({"params": n, "precision": name, "trained_GiB": trained / GIB,
                         "frozen_GiB": frozen / GIB, "total_GiB": (trained + frozen) / GIB})
    return rows


def network_bytes(n_params: int, trained: bool, precision: Precision = MIXED_FP16) -> int:
    """Bytes of one network's weights, plus its gradients and Adam state if it is trained."""
    if not (isinstance(n_params, int) and n_params >= 0):
        raise ValueError(f"n_params must be an int >= 0, got {n_params!r}")
    per = precision.weight + (precision.grad + precision.optimizer if trained else 0)
    return n_params * per


def rlhf_memory(n_params: int, precision: Precision = MIXED_FP16,
                networks=("policy", "critic", "reference", "reward model")) -> list[dict]:
    """One row per network of an RLHF method (all of size ``n_params``) and a total row.

    ``networks`` picks the method: PPO uses all four; GRPO drops the critic (its baseline is the
    mean reward of a group of samples); DPO drops the critic and the reward model (the policy's
    own log-ratio is the reward). Each row: name, trained, bytes, GiB."""
    trained = {"policy": True, "critic": True, "reference": False, "reward model": False}
    unknown = [n for n in networks if n not in trained]
    if unknown:
        raise ValueError(f"networks: unknown {unknown}; choose from {list(trained)}")
    rows = [{"network": n, "trained": trained[n],
             "bytes": network_bytes(n_params, trained[n], precision)} for n in networks]
    total = sum(r["bytes"] for r in rows)
    rows.append({"network": "total", "trained": None, "bytes": total})
    for row in rows:
        row["GiB"] = row["bytes"] / GIB
    return rows


def measured_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Bytes actually held by ``model``'s parameters, their gradients and ``optimizer``'s state
    tensors (distinct storages only, so tied weights count once; Adam's 0-dim step counters,
    a few bytes, are left out)."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()

    for p in model.parameters():
        add(p)
        if p.grad is not None:
            add(p.grad)
    if optimizer is not None:
        for state in optimizer.state.values():
            for value in state.values():
                add(value)
    return total
