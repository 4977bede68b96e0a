"""Figures of notebook 02: reward-model accuracy against pairs, calibration, the Bradley-Terry league."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rlhf_lab.course.plots.common import COLORS

__all__ = ['rm_accuracy_vs_pairs', 'calibration', 'bt_league']


def rm_accuracy_vs_pairs(rows: list[dict]):
    """Held-out pairwise accuracy of reward models against the number of training pairs, with the
    Bayes ceiling E[sigmoid(|Δr*|)] and chance. ``rows``: {n_pairs, accuracy, bayes_ceiling,
    gold_order_accuracy}."""
    n = [r["n_pairs"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    ax.plot(n, [r["accuracy"] for r in rows], "o-", color=COLORS["proxy"], label="vs annotator labels")
    ax.plot(n, [r["gold_order_accuracy"] for r in rows], "s--", color=COLORS["gold"],
            label="vs gold order")
    ax.axhline(np.mean([r["bayes_ceiling"] for r in rows]), color="k", ls=":",
               label="Bayes ceiling (vs labels)")
    ax.axhline(0.5, color="#999999", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(v) for v in n])
    ax.minorticks_off()
    ax.set(title="Reward model accuracy on held-out pairs", xlabel="training pairs",
           ylabel="pairwise accuracy")
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
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


def bt_league(teams: list[str], strengths, wins):
    """A Bradley-Terry fit of a league: the strengths (left), and each pair's observed share of
    wins against the share sigmoid(s_i - s_j) the fit predicts (right)."""
    s = np.asarray(strengths, dtype=float)
    w = np.asarray(wins, dtype=float)
    games = w + w.T
    order = np.argsort(-s)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.barh(np.arange(len(s)), s[order], color=COLORS["sft"])
    left.set_yticks(np.arange(len(s)), [teams[i] for i in order])
    left.invert_yaxis()
    left.axvline(0, color="k", lw=0.8)
    left.set(title="Fitted strengths (centred)", xlabel="strength s")
    i, j = np.nonzero(games)
    predicted = 1 / (1 + np.exp(-(s[i] - s[j])))
    right.plot([0, 1], [0, 1], color="#999999", lw=1, label="perfect fit")
    right.scatter(predicted, w[i, j] / games[i, j], s=8 + 3 * games[i, j], color=COLORS["proxy"],
                  alpha=0.7, label="pair (i, j)")
    right.set(title="Observed vs predicted", xlabel="predicted P(i beats j)",
              ylabel="share of games i won", xlim=(0, 1), ylim=(0, 1))
    right.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
