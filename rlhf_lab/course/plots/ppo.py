"""Figures of notebooks 04 and 05: PPO's training curves, proxy against gold, the beta sweep."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rlhf_lab.course.plots.common import COLORS, LEGEND_FONTSIZE, _smooth, ramp

__all__ = ['ppo_training_curves', 'gold_vs_proxy_over_training', 'beta_sweep']


# ---------------------------------------------------------------------------------------------
# PPO (stage 3)
# ---------------------------------------------------------------------------------------------
PPO_PANELS = [("proxy", "proxy reward r_φ"), ("gold", "gold utility r*"), ("kl", "KL(π‖π_ref), nats"),
              ("length", "response length"), ("entropy", "entropy per token"), ("clipfrac", "clip fraction")]


def ppo_training_curves(histories: dict[str, list[dict]], panels=PPO_PANELS):
    """One panel per metric of the PPO loop, one line per run (``{"β=0.03": history, ...}``)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.2))
    colors = ramp(len(histories))
    for ax, (key, label) in zip(axes.flat, panels):
        for color, (name, history) in zip(colors, histories.items()):
            x = [h["iteration"] for h in history]
            y = [h[key] for h in history]
            ax.plot(x, y, color=color, alpha=0.35, lw=0.8)
            smooth = _smooth(y, 5)
            ax.plot(x[len(x) - len(smooth):], smooth, color=color, lw=2, label=name)
        ax.set(title=label, xlabel="PPO iteration")
    axes.flat[0].legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


def gold_vs_proxy_over_training(history: list[dict], title: str = "Proxy vs gold during PPO",
                                fit: tuple[float, float] | None = None,
                                baseline: dict | None = None):
    """Proxy reward and gold utility against d = sqrt(KL) along one run, a dot per iteration and a
    curve through the means of neighbouring d (:func:`binned_means`): where the two part ways, the
    policy has found what the reward model misses. Gains are over ``baseline`` (``gold`` and
    ``proxy``: the SFT policy's means, e.g. from :func:`rlhf_lab.studies.ppo_gao.sft_baseline`), else
    over iteration 0's rollouts. ``fit = (alpha, beta)`` adds Gao et al.'s
    R_RL(d) = d(α − β log d) over the gold gain."""
    d = np.sqrt(np.maximum([h["kl"] for h in history], 0.0))
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    for key, label in (("proxy", "proxy r_φ"), ("gold", "gold r*")):
        y = np.asarray([h[key] for h in history])
        zero = y[0] if baseline is None else baseline[key]
        # points, not a line in iteration order: d goes back and forth, and joined it scribbles
        ax.plot(d, y - zero, "o", ms=2.5, alpha=0.45, color=COLORS[key])
        ax.plot(*binned_means(d, y - zero), lw=2, color=COLORS[key], label=f"{label} (gain)")
    if fit is not None:
        grid = np.linspace(max(d.min(), 1e-3), d.max(), 200)
        ax.plot(grid, grid * (fit[0] - fit[1] * np.log(grid)), color=COLORS["gold"], lw=1.5,
                ls=":", label=f"fit d(α − β log d): α = {fit[0]:.2f}, β = {fit[1]:.2f}")
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set(title=title, xlabel="d = sqrt(KL(π‖π_ref))", ylabel="gain over the SFT policy")
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


def binned_means(x, y, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The means of ``x`` and of ``y`` in ``bins`` groups of (nearly) equal size taken in order of
    ``x``: a smoothed curve of y against x, increasing in x whatever order the points came in.

    >>> binned_means([3, 1, 2, 4], [30, 10, 20, 40], bins=2)
    (array([1.5, 3.5]), array([15., 35.]))
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(x, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(x))) if len(g)]
    return np.array([x[g].mean() for g in groups]), np.array([y[g].mean() for g in groups])


def _split_trust(ax, x, y, trusted, color, label):
    """A curve drawn solid where ``trusted`` and dashed where not."""
    x, y, trusted = map(np.asarray, (x, y, trusted))
    ax.plot(np.where(trusted, x, np.nan), np.where(trusted, y, np.nan), color=color, lw=2,
            label=label)
    ax.plot(np.where(~trusted, x, np.nan), np.where(~trusted, y, np.nan), color=color, lw=1.5,
            ls="--", label=f"{label} (few effective samples)")


def beta_sweep(result: dict):
    """PPO's final (KL, proxy) and (KL, gold) at each β on top of the importance-sampled
    closed-form frontier (``result`` from :func:`rlhf_lab.studies.sweep.beta_sweep`). Each PPO point is
    joined to the closed-form optimum of the same β."""
    front, rows = result["frontier"], result["rows"]
    trusted = np.asarray(front["trustworthy"], dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (key, opt_key, label) in zip(axes, (("proxy", "expected_reward", "proxy reward r_φ"),
                                                ("gold", "expected_gold", "gold utility r*"))):
        _split_trust(ax, front["kl"], front[opt_key], trusted, COLORS["sft"], "closed form π*")
        colors = ramp(len(rows), "plasma")
        for color, row in zip(colors, rows):
            opt_y = row["optimal_proxy"] if key == "proxy" else row["optimal_gold"]
            ax.plot([row["optimal_kl"], row["kl"]], [opt_y, row[key]], color=color, lw=0.8, ls=":")
            ax.plot([row["optimal_kl"]], [opt_y], "o", mfc="white", mec=color, ms=6)
            ax.plot([row["kl"]], [row[key]], "o", color=color, ms=7, label=f"PPO, β = {row['beta']:g}")
        ax.axhline(result["reference"][key], color=COLORS["base"], lw=0.8)
        ax.set_xscale("symlog", linthresh=0.1)
        ticks = [0, 0.1, 0.3, 1, 3, 10]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlim(left=0)
        ax.set(xlabel="KL(π ‖ π_ref) (nats, symlog scale)", ylabel=label, title=f"{label} vs KL")
    axes[1].legend(*axes[0].get_legend_handles_labels(), frameon=False, fontsize=LEGEND_FONTSIZE,
                   loc="upper left", bbox_to_anchor=(1.02, 1.0))      # beside the data, not on it
    fig.suptitle("PPO at each β (filled) and the closed-form optimum of the same β (hollow)",
                 fontsize=11)
    fig.tight_layout()
    return fig
