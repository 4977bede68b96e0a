"""Figures shared by several notebooks (losses, gold histograms, scatter plots) and the kit's colours.

Every figure of the course comes from a function in this package, so the CLI, the summary and
the notebooks draw the same picture. Each function returns a matplotlib Figure.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ['loss_curves', 'gold_histograms', 'save', 'scatter_vs_gold', 'score_histograms', 'ramp',
           'LEGEND_FONTSIZE']


COLORS = {"base": "#9e9e9e", "sft": "#1f77b4", "ppo": "#d62728", "gold": "#2ca02c",
          "proxy": "#ff7f0e"}

LEGEND_FONTSIZE = 9
"""Legends and annotations: smaller than 9 points is hard to read in a notebook at 100 %."""


def ramp(count: int, cmap: str = "viridis") -> np.ndarray:
    """``count`` colours along a sequential colour map (one per β, per size, ...), stopping at
    0.65 of it: its light end (viridis' lime, plasma's yellow) is hard to see as a line on white
    (contrast with white under 2.5:1)."""
    return plt.get_cmap(cmap)(np.linspace(0.0, 0.65, max(count, 1)))


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


def save(fig, path) -> None:
    """Save a figure as PNG and close it."""
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scatter_vs_gold(values, gold, xlabel: str, title: str, max_points: int = 2000):
    """Any per-reply number (a log-probability, a reward-model score) against the gold utility
    r*(x, y) of the same replies, with their correlation."""
    x = np.asarray(values, dtype=float)[:max_points]
    y = np.asarray(gold, dtype=float)[:max_points]
    corr = np.corrcoef(x, y)[0, 1]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.scatter(x, y, s=9, alpha=0.35, color=COLORS["proxy"], edgecolors="none")
    ax.set(title=f"{title} (correlation {corr:.2f})", xlabel=xlabel, ylabel="gold utility r*(x, y)")
    fig.tight_layout()
    return fig


def score_histograms(samples: dict[str, list[float]], xlabel: str, title: str,
                     unit: str = "replies"):
    """Overlaid histograms (normalised, so groups of any size compare) of a score for named
    groups (of replies, or of another ``unit``), with each group's mean."""
    samples = {name: np.asarray(values, dtype=float) for name, values in samples.items()}
    fig, ax = plt.subplots(figsize=(6, 3.4))
    all_values = np.concatenate(list(samples.values()))
    bins = np.linspace(all_values.min(), all_values.max(), 40)
    colors = ramp(len(samples))
    for (name, values), color in zip(samples.items(), colors):
        ax.hist(values, bins=bins, density=True, alpha=0.5, color=color,
                label=f"{name}: {len(values)} {unit}, mean {np.mean(values):.2f}")
        ax.axvline(np.mean(values), color=color, ls="--", lw=1.5)
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


def _size_colors(count: int):
    return ramp(count)
