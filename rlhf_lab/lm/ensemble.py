"""Several reward models read as one, so that PPO (or best-of-n, or an evaluation) can optimise an
ensemble's aggregate like any reward model (Coste et al. 2024, "Reward Model Ensembles Help
Mitigate Overoptimization"; Eisenstein et al. 2023 on members that share their errors)."""
from __future__ import annotations

import torch

from rlhf_lab.equations.overopt_math import aggregate_ensemble
from rlhf_lab.lm import models

__all__ = ["RewardEnsemble"]


class RewardEnsemble(torch.nn.Module):
    """r(x, y) = aggregate over members m of r_m(x, y) (:func:`aggregate_ensemble`: "mean",
    "min" or "mean_minus_std" with weight ``k``). Each member is read its own way (its
    ``config.reward_pooling``); :func:`rlhf_lab.lm.models.reward_scores` calls
    :meth:`reward_scores` for an ensemble."""

    def __init__(self, members, how: str = "min", k: float = 1.0):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("members must hold at least one reward model")
        aggregate_ensemble(torch.zeros(len(members), 1), how, k)     # refuse a bad how or k now
        self.members = torch.nn.ModuleList(members)
        self.how, self.k = how, k

    def reward_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      prompt_len: int) -> torch.Tensor:
        """The aggregate score of each row: (B,)."""
        scores = torch.stack([models.reward_scores(m, input_ids, attention_mask, prompt_len)
                              for m in self.members])                             # (M, B)
        return aggregate_ensemble(scores, self.how, self.k)
