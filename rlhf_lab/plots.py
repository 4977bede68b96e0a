"""One function per figure. Each draws from plain results (lists, dicts, arrays), never from a
trainer, and returns the matplotlib ``Figure`` so notebooks show it and the CLI saves it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["loss_curves", "gold_histograms", "rm_accuracy_vs_pairs", "calibration", "save"]

COLORS = {"base": "#9e9e9e", "sft": "#1f77b4", "ppo": "#d62728", "gold": "#2ca02c",
          "proxy": "#ff7f0e"}


def _smooth(values, window: int = 10) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def loss_curves(histories: dict[str, list[dict]], key: str = "loss", title: str = "Training loss"):
    """Loss per step for each named run (``{"pretrain": history, "sft": history}``), smoothed."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4.5 * len(histories), 3.2), squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items()):
        values = [h[key] for h in history]
        ax.plot(values, color="#cccccc", lw=0.8, label="per step")
        smooth = _smooth(values)
        ax.plot(np.arange(len(smooth)) + (len(values) - len(smooth)), smooth,
                color=COLORS.get(name, "#1f77b4"), lw=2, label="moving average")
        ax.set(title=f"{title}: {name}", xlabel="step", ylabel=key)
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def gold_histograms(samples: dict[str, list[float]], title: str = "Gold utility of samples"):
    """Histograms of the gold utility r*(x, y) of sampled replies, one per model, with means."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    all_values = np.concatenate([np.asarray(v, dtype=float) for v in samples.values()])
    bins = np.linspace(all_values.min(), all_values.max(), 40)
    for name, values in samples.items():
        color = COLORS.get(name)
        ax.hist(values, bins=bins, alpha=0.55, color=color, label=f"{name} (mean {np.mean(values):.2f})")
        ax.axvline(np.mean(values), color=color, ls="--", lw=1.5)
    ax.set(title=title, xlabel="gold utility r*(x, y)", ylabel="samples")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def rm_accuracy_vs_pairs(rows: list[dict]):
    """Held-out pairwise accuracy of reward models against the number of training pairs, with the
    Bayes ceiling E[sigmoid(|Δr*|)] and chance. ``rows``: {n_pairs, accuracy, bayes_ceiling,
    gold_order_accuracy}."""
    n = [r["n_pairs"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(n, [r["accuracy"] for r in rows], "o-", color=COLORS["proxy"], label="vs annotator labels")
    ax.plot(n, [r["gold_order_accuracy"] for r in rows], "s--", color=COLORS["gold"],
            label="vs gold order")
    ax.axhline(np.mean([r["bayes_ceiling"] for r in rows]), color="k", ls=":",
               label="Bayes ceiling (vs labels)")
    ax.axhline(0.5, color="#999999", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set(title="Reward model accuracy on held-out pairs", xlabel="training pairs",
           ylabel="pairwise accuracy")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def calibration(rows: list[dict], title: str = "Reward model calibration"):
    """Predicted P(first preferred) against the observed frequency, per bin (size ~ count)."""
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, label="perfect")
    counts = np.array([r["count"] for r in rows], dtype=float)
    ax.scatter([r["predicted"] for r in rows], [r["observed"] for r in rows],
               s=20 + 200 * counts / counts.max(), color=COLORS["proxy"], label="RM")
    ax.set(title=title, xlabel="predicted P(first preferred)", ylabel="observed frequency",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    """Save a figure as PNG and close it."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
