"""Figures of notebook 03: the Boltzmann policy against beta and the reward-KL frontier."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rlhf_lab.course.plots.common import COLORS

__all__ = ['boltzmann_policies', 'reward_kl_frontier', 'boltzmann_panel']


def _draw_policies(ax, rewards, policies: dict[str, np.ndarray], bins: int = 24):
    """How each policy spreads its mass over the reward: P_π(r(y) in bin), one bar per bin of r.
    The first policy (π_ref) is drawn as grey bars, the others as lines."""
    r = np.asarray(rewards, dtype=float)
    edges = np.linspace(r.min(), r.max(), bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    colors = plt.cm.plasma(np.linspace(0.1, 0.8, max(1, len(policies) - 1)))
    for k, (name, probs) in enumerate(policies.items()):
        mass, _ = np.histogram(r, bins=edges, weights=np.asarray(probs, dtype=float))
        if k == 0:
            ax.bar(centres, mass, width=edges[1] - edges[0], color="#c8c8c8", label=name)
        else:
            ax.step(centres, mass, where="mid", color=colors[k - 1], lw=2, label=name)
    ax.set(xlabel="reward r(y)", ylabel="probability mass")
    ax.legend(frameon=False, fontsize=8, loc="upper left")


def _draw_frontier(ax, frontier: dict, marks: dict | None = None, cloud=None):
    """The reward-KL frontier (KL on x, expected reward on y), optional points and a cloud."""
    if cloud is not None:
        ax.scatter(np.asarray(cloud[0]), np.asarray(cloud[1]), s=6, color="#bbbbbb", alpha=0.6,
                   label="random policies", edgecolors="none")
    ax.plot(np.asarray(frontier["kl"]), np.asarray(frontier["expected_reward"]),
            color=COLORS["sft"], lw=2, label="π* for every β")
    for name, (kl, reward) in (marks or {}).items():
        ax.plot([kl], [reward], "o", ms=7, color=COLORS["ppo"])
        ax.annotate(name, (kl, reward), textcoords="offset points", xytext=(8, -14), fontsize=8)
    ax.set(xlabel="KL(π ‖ π_ref) (nats)", ylabel="expected reward E_π[r]")
    ax.legend(frameon=False, fontsize=8, loc="lower right")


def boltzmann_policies(rewards, policies: dict[str, np.ndarray],
                       title: str = "The optimal policy π* at several β"):
    """π_ref (the first entry, drawn as bars) and π* at several β over an enumerable space."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    _draw_policies(ax, rewards, policies)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reward_kl_frontier(frontier: dict, marks: dict | None = None, cloud=None,
                       title: str = "The reward–KL frontier"):
    """Expected reward against KL of π* over a grid of β (``frontier``: arrays ``kl`` and
    ``expected_reward``), with named points ``marks`` {name: (kl, reward)} and a ``cloud``
    (kl array, reward array) of other policies, which can never lie above the curve."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    _draw_frontier(ax, frontier, marks, cloud)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def boltzmann_panel(rewards, p_ref, p_star, beta: float, frontier: dict):
    """One β at a glance: π_ref and π* over the responses (left), and where π* sits on the
    reward-KL frontier (right)."""
    p_ref, p_star, r = (np.asarray(a, dtype=float) for a in (p_ref, p_star, rewards))
    on = p_star > 0
    kl = float(np.sum(p_star[on] * np.log(p_star[on] / p_ref[on])))
    reward = float(np.sum(p_star * r))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    _draw_policies(left, r, {"π_ref": p_ref, f"π* (β = {beta:.3g})": p_star})
    left.set_title(f"β = {beta:.3g}: E[r] = {reward:.2f}, KL = {kl:.2f}")
    _draw_frontier(right, frontier, {f"β = {beta:.3g}": (kl, reward)})
    right.set_title("The reward–KL frontier")
    fig.tight_layout()
    return fig
