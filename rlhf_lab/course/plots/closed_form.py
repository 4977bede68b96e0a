"""Figures of notebook 03: the Boltzmann policy against beta and the reward-KL frontier."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from rlhf_lab.course.plots.common import COLORS, LEGEND_FONTSIZE, ramp

__all__ = ['boltzmann_policies', 'reward_kl_frontier', 'boltzmann_panel']


def _draw_policies(ax, rewards, policies: dict[str, np.ndarray], bins: int = 24):
    """How each policy spreads its mass over the reward: P_π(r(y) in bin), one bar per bin of r.
    The first policy (π_ref) is drawn as grey bars, the others as lines."""
    r = np.asarray(rewards, dtype=float)
    edges = np.linspace(r.min(), r.max(), bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    colors = ramp(len(policies) - 1, "plasma")
    for k, (name, probs) in enumerate(policies.items()):
        mass, _ = np.histogram(r, bins=edges, weights=np.asarray(probs, dtype=float))
        if k == 0:
            ax.bar(centres, mass, width=edges[1] - edges[0], color="#c8c8c8", label=name)
        else:
            ax.step(centres, mass, where="mid", color=colors[k - 1], lw=2, label=name)
    ax.set(xlabel="reward r(y)", ylabel="probability mass")
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE, loc="upper left")


def _label_inside(ax, text: str, x: float, y: float) -> None:
    """Label the point (x, y) on the side that faces the middle of the axes, so that the label
    neither runs off the frame (a point on the right) nor into the x axis (a point at the bottom)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    right, low = (x - x0) / (x1 - x0) > 0.6, (y - y0) / (y1 - y0) < 0.3
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(-9 if right else 9, 9 if low else -16),
                ha="right" if right else "left", va="bottom" if low else "top",
                fontsize=LEGEND_FONTSIZE)


def _draw_frontier(ax, frontier: dict, marks: dict | None = None, cloud=None):
    """The reward-KL frontier (KL on x, expected reward on y), optional points and a cloud."""
    if cloud is not None:
        ax.scatter(np.asarray(cloud[0]), np.asarray(cloud[1]), s=6, color="#bbbbbb", alpha=0.6,
                   label="random policies", edgecolors="none")
    ax.plot(np.asarray(frontier["kl"]), np.asarray(frontier["expected_reward"]),
            color=COLORS["sft"], lw=2, label="π* for every β")
    for name, (kl, reward) in (marks or {}).items():
        ax.plot([kl], [reward], "o", ms=7, color=COLORS["ppo"])
        _label_inside(ax, name, kl, reward)
    ax.set(xlabel="KL(π ‖ π_ref) (nats)", ylabel="expected reward E_π[r]")
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE, loc="lower right")


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
    # An invisible frame as large as the figure: the notebook crops each picture to what is drawn
    # ("tight"), which changed its width with every β under the slider; now it keeps it whole.
    fig.add_artist(Rectangle((0, 0), 1, 1, transform=fig.transFigure, fill=False, lw=0))
    return fig
