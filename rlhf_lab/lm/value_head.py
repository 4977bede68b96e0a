"""A causal LM with a value head: the policy and PPO's critic on one trunk (``critic="head"``)."""
from __future__ import annotations

import torch

from rlhf_lab.lm import models

__all__ = ['PolicyWithValueHead']


class PolicyWithValueHead(torch.nn.Module):
    """A causal LM with a value head V(s_t) on its last hidden state: one trunk, two outputs."""

    def __init__(self, policy, seed: int = 0):
        super().__init__()
        self.policy = policy
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.value_head = torch.nn.Linear(policy.config.hidden_size, 1)
        self.value_head.to(next(policy.parameters()).device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, position_ids):
        with models.autocast(input_ids.device):
            out = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids, output_hidden_states=True)
            values = self.value_head(out.hidden_states[-1]).squeeze(-1)
        return out.logits.float(), values.float()                             # (B,T,V), (B,T)
