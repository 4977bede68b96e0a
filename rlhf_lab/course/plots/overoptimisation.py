"""Figures of notebook 06: Gao's gold-vs-proxy curves for best-of-n and PPO, ensembles, peak detection."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rlhf_lab.course.plots.common import COLORS, LEGEND_FONTSIZE, _size_colors
from rlhf_lab.course.plots.ppo import gold_vs_proxy_over_training

__all__ = ['bon_gao_curves', 'bon_ensemble', 'bon_peak_detection', 'bon_seed_average', 'ppo_gao_curve', 'ppo_gao_curves',
           'ppo_gao_seed_curves']


def _bon_gold(ax, curve: dict, label: str, color, fit: dict | None = None, **style):
    """Gold gain of one best-of-n curve against d = sqrt(KL_bon), and its fit d(α − βd)."""
    ax.plot(curve["d"], curve["gold_gain"], color=color, label=label, **style)
    if fit is not None:
        d = np.linspace(0, max(curve["d"]), 100)
        ax.plot(d, d * (fit["alpha"] - fit["beta"] * d), color=color, ls=":", lw=1.2)


def _n_axis(ax, ns, ds):
    """A top axis that labels d = sqrt(KL_bon) with n."""
    top = ax.secondary_xaxis("top")
    shown = [i for i, n in enumerate(ns) if n in (1, 4, 16, 64, 256, 1024, 4096)]
    top.set_xticks([ds[i] for i in shown], [str(ns[i]) for i in shown])
    top.set_xlabel("n", fontsize=8)


def bon_gao_curves(results: dict):
    """Gao et al. (2023) for best-of-n: the gold gain (left) and the proxy gain (right) of the
    proxy's choice against d = sqrt(KL_bon), one colour per reward-model size; dotted: the fit
    d(α − βd); black: best-of-n on gold itself (the oracle)."""
    proxies, oracle = results["proxies"], results["oracle"]
    fig, (gold_ax, proxy_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for p, color in zip(proxies, _size_colors(len(proxies))):
        _bon_gold(gold_ax, p["curve"], f"RM on {p['n_pairs']} pairs", color, p["fit"], marker="o", ms=3)
        proxy_ax.plot(p["curve"]["d"], p["curve"]["proxy_gain"], color=color, marker="o", ms=3,
                      label=f"RM on {p['n_pairs']} pairs")
    _bon_gold(gold_ax, oracle["curve"], "oracle (best-of-n on gold)", "k", lw=1.5)
    gold_ax.axhline(0, color="#999999", lw=0.8)
    gold_ax.set(title="Gold gain of best-of-n", xlabel="d = sqrt(KL_bon)",
                ylabel="gold utility gain over n = 1")
    proxy_ax.set(title="Proxy gain of best-of-n", xlabel="d = sqrt(KL_bon)",
                 ylabel="proxy score gain over n = 1")
    for ax in (gold_ax, proxy_ax):
        _n_axis(ax, oracle["curve"]["n"], oracle["curve"]["d"])
        ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


def bon_ensemble(results: dict):
    """An RM ensemble against overoptimisation (Coste et al. 2024). Left: the gold gain of
    best-of-n against each member alone (grey), against the mean, the min and mean − k·std of
    the members, and against one RM trained on all their labels (if in the grid). Right: how
    much the members disagree (std) on the reply one member alone picks."""
    ens = results["ensemble"]
    fig, (gold_ax, spread_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, member in enumerate(ens["members"]):
        gold_ax.plot(member["curve"]["d"], member["curve"]["gold_gain"], color="#b0b0b0", lw=1,
                     label=f"single RM ({ens['n_pairs']} pairs)" if i == 0 else None)
    styles = {"mean": ("#1f77b4", "mean"), "min": ("#d62728", "min"),
              "mean_minus_std": ("#2ca02c", f"mean − {ens['k']:g}·std")}
    for how, agg in ens["aggregates"].items():
        color, name = styles[how]
        gold_ax.plot(agg["curve"]["d"], agg["curve"]["gold_gain"], color=color, marker="o", ms=3,
                     label=f"ensemble of {len(ens['members'])}: {name}")
    same = [p for p in results["proxies"] if p["n_pairs"] == ens.get("same_labels_n_pairs")]
    for p in same:
        gold_ax.plot(p["curve"]["d"], p["curve"]["gold_gain"], color="k", ls="--",
                     label=f"one RM on {p['n_pairs']} pairs (same labels)")
    gold_ax.axhline(0, color="#999999", lw=0.8)
    gold_ax.set(title="Gold gain: single RMs vs ensembles", xlabel="d = sqrt(KL_bon)",
                ylabel="gold utility gain over n = 1")
    gold_ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    d = ens["members"][0]["curve"]["d"]
    spread_ax.plot(d, ens["disagreement"], color=COLORS["proxy"], marker="o", ms=3)
    spread_ax.set(title="Ensemble disagreement on one RM's choice", xlabel="d = sqrt(KL_bon)",
                  ylabel="std of the members' scores")
    for ax in (gold_ax, spread_ax):
        _n_axis(ax, ens["members"][0]["curve"]["n"], d)
    fig.tight_layout()
    return fig


def bon_peak_detection(results: dict):
    """Choosing n without gold: for each proxy, the gold gain of its best-of-n choice (green)
    and the gain a held-out reward model (trained on other labels) gives the same choice
    (orange); purple: a small human evaluation (win rate of best-of-n against a plain sample,
    as 2·win − 1 with ±1 s.e.). Dotted: the true gold peak; dashed / dash-dotted: the n the
    held-out model / the labels pick."""
    rows = results["detection"]["heldout"]["per_proxy"]
    labelled = {r["n_pairs"]: r for r in results["detection"].get("labels", {}).get("per_proxy", [])}
    curves = {p["n_pairs"]: p["curve"] for p in results["proxies"]}
    fig, axes = plt.subplots(1, len(rows), figsize=(3.8 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        curve = curves[row["n_pairs"]]
        d_of = dict(zip(curve["n"], curve["d"]))
        ax.plot(curve["d"], curve["gold_gain"], color=COLORS["gold"], marker="o", ms=3,
                label="gold gain")
        ax.plot(curve["d"], row["judge_gain"], color=COLORS["proxy"], marker="s", ms=3,
                label="held-out RM gain")
        ax.axvline(d_of[row["n_peak"]], color=COLORS["gold"], ls=":", label=f"gold peak n={row['n_peak']}")
        ax.axvline(d_of[row["n_chosen"]], color=COLORS["proxy"], ls="--",
                   label=f"held-out RM picks n={row['n_chosen']}")
        lab = labelled.get(row["n_pairs"])
        if lab is not None:
            d_lab = np.sqrt(np.log(lab["ns"]) - (np.asarray(lab["ns"]) - 1) / np.asarray(lab["ns"]))
            ax.errorbar(d_lab, 2 * np.asarray(lab["win_rate"]) - 1,
                        yerr=2 * np.asarray(lab["win_rate_se"]), fmt="^", ms=3.5, lw=0.8,
                        color="#6a3d9a", label=f"2·win − 1 ({lab['labels']} labels)")
            ax.axvline(d_of.get(lab["n_chosen"], d_lab[lab["ns"].index(lab["n_chosen"])]),
                       color="#6a3d9a", ls="-.", label=f"labels pick n={lab['n_chosen']}")
        ax.set(title=f"proxy on {row['n_pairs']} pairs (regret {row['regret']:.2f})",
               xlabel="d = sqrt(KL_bon)", ylabel="gain over n = 1")
        ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


def bon_seed_average(results: dict):
    """Best-of-n gold gain per proxy size averaged over its seeds (``results["seed_average"]``):
    thin lines, each seed alone; thick, their mean with its fit d(α − βd) dotted and its peak
    starred. One seed's peak wanders where its curve is flat; the mean's peak is what to compare
    across sizes."""
    rows, oracle = results["seed_average"], results["oracle"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for row, color in zip(rows, _size_colors(len(rows))):
        d = row["curve"]["d"]
        for seed in row["per_seed"]:
            ax.plot(d, seed["gold_gain"], color=color, lw=0.7, alpha=0.45)
        _bon_gold(ax, row["curve"], f"RM on {row['n_pairs']} pairs: peak at n = {row['peak']['n']}",
                  color, row["fit"], lw=2)
        ax.plot(row["peak"]["d"], row["peak"]["gold_gain"], marker="*", ms=12, color=color, ls="none")
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set(title=f"Gold gain of best-of-n, mean of {rows[0]['seeds']} reward-model seeds per size",
           xlabel="d = sqrt(KL_bon)", ylabel="gold utility gain over n = 1")
    _n_axis(ax, oracle["curve"]["n"], oracle["curve"]["d"])
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


def ppo_gao_curve(history: list[dict], fit: tuple[float, float] | None = None,
                  title: str = "PPO: gold and proxy gain against d = sqrt(KL)",
                  baseline: dict | None = None):
    """:func:`gold_vs_proxy_over_training` with Gao et al.'s R_RL fit ``(alpha, beta)``."""
    return gold_vs_proxy_over_training(history, title, fit, baseline)


def ppo_gao_curves(study: dict):
    """Gao et al. (2023) for PPO, one colour per proxy size (``study`` from
    :func:`rlhf_lab.studies.ppo_gao.ppo_gao_study`) against d = sqrt(KL) along training: gold gain
    (solid), its fit d(α − β log d) (dotted) and proxy gain (dashed, lighter); a star marks each
    run's gold peak. Where the runs have checkpoint evaluations these curves are drawn through
    them, each rollout batch's gold gain is a faint dot behind, and a second panel enlarges the
    checkpoints' gold gain over the first nat of KL (d <= 1), where the rise is. Where each proxy
    was run with several PPO seeds (``seed_mean``), the curves are the seeds' mean checkpoint
    curves with a band of ±2 standard errors across seeds around the gold gain."""
    from matplotlib.lines import Line2D
    proxies = study["proxies"]
    if all((p.get("seed_mean") or {}).get("seeds", 1) > 1 for p in proxies):
        return ppo_gao_seed_curves(study)
    checkpoints = all(p.get("checkpoints") for p in proxies)
    seeded = checkpoints and all((p.get("seed_mean") or {}).get("seeds", 1) > 1 for p in proxies)
    if checkpoints:
        fig, (ax, zoom) = plt.subplots(1, 2, figsize=(13.2, 4.4), gridspec_kw={"width_ratios": [2.1, 1]})
    else:
        fig, ax = plt.subplots(figsize=(9.6, 4.4))
    for p, color in zip(proxies, _size_colors(len(proxies))):
        acc = p["reward_model"].get("accuracy")
        label = f"RM on {p['n_pairs']} pairs" + ("" if acc is None else f" (acc. {acc:.2f})")
        shown = p["seed_mean"] if seeded else p["checkpoints"] if checkpoints else p
        if checkpoints and not seeded:
            ax.plot(p["curve"]["d"], p["curve"]["gold_gain"], "o", color=color, ms=2, alpha=0.3)
        curve = shown["curve"]
        ax.plot(curve["d"], curve["gold_gain"], color=color, lw=1.4, marker="o", ms=2.5, label=label)
        if seeded:
            low, high = (np.array(curve["gold_gain"]) + k * np.array(curve["gold_se"]) for k in (-2, 2))
            ax.fill_between(curve["d"], low, high, color=color, alpha=0.18, lw=0)
        ax.plot(curve["d"], curve["proxy_gain"], color=color, lw=1.1, ls="--", alpha=0.45)
        if shown["fit"] is not None:
            grid = np.linspace(1e-3, max(curve["d"]), 200)
            ax.plot(grid, grid * (shown["fit"]["alpha"] - shown["fit"]["beta"] * np.log(grid)),
                    color=color, lw=2, ls=":")
        ax.plot([shown["peak"]["d"]], [shown["peak"]["gold_gain"]], "*", color=color, ms=14,
                mec="k", mew=0.8)
        if checkpoints:                             # the first nat: d = sqrt(KL) <= 1
            d, gold = np.array(curve["d"]), np.array(curve["gold_gain"])
            zoom.plot(d[d <= 1.0], gold[d <= 1.0], color=color, lw=1.4, marker="o", ms=4)
            if seeded:
                se = 2 * np.array(curve["gold_se"])[d <= 1.0]
                zoom.fill_between(d[d <= 1.0], gold[d <= 1.0] - se, gold[d <= 1.0] + se,
                                  color=color, alpha=0.18, lw=0)
    ax.axhline(0, color="#999999", lw=0.8)
    styles = [Line2D([], [], color="k", lw=1.4, label="gold gain" + (" (checkpoints)" if checkpoints else "")),
              Line2D([], [], color="k", lw=2, ls=":", label="fit d(α − β log d)"),
              Line2D([], [], color="k", lw=1.1, ls="--", alpha=0.45, label="proxy gain"),
              Line2D([], [], color="w", marker="*", ms=12, mfc="#777777", mec="k",
                     label="gold peak (checkpoints)" if checkpoints else "observed gold peak")]
    if seeded:
        from matplotlib.patches import Patch
        n = proxies[0]["seed_mean"]["seeds"]
        styles[0].set_label(f"gold gain, mean of {n} PPO seeds (checkpoints)")
        styles.append(Patch(color="k", alpha=0.18, label="±2 standard errors across seeds"))
    elif checkpoints:
        styles.append(Line2D([], [], color="k", marker="o", ms=2, alpha=0.3, lw=0,
                             label="gold, each rollout batch"))
    beside = zoom if checkpoints else ax                          # beside the curves, not on them
    ax.legend(handles=ax.get_legend_handles_labels()[0] + styles, frameon=False,
              fontsize=LEGEND_FONTSIZE, loc="upper left", bbox_to_anchor=(1.02, 1.0), bbox_transform=beside.transAxes)
    ax.set(title=f"PPO at β = {study['config']['beta']:g} against proxies of each size",
           xlabel="d = sqrt(KL(π‖π_ref))",
           ylabel="gain over the SFT policy" + ("" if study.get("baseline") else " (iteration 0)"))
    if checkpoints:
        zoom.axhline(0, color="#999999", lw=0.8)
        zoom.set(title="The first nat: gold gain at the checkpoints", xlabel="d = sqrt(KL(π‖π_ref))",
                 xlim=(-0.03, 1.03))
        fig.subplots_adjust(left=0.06, right=0.81, bottom=0.12, top=0.92, wspace=0.2)
    else:
        fig.tight_layout()
    return fig


def ppo_gao_seed_curves(study: dict):
    """Gao et al. (2023) for PPO with several PPO seeds per proxy (``seed_mean`` of
    :func:`rlhf_lab.studies.ppo_gao.ppo_gao_study`): each proxy's mean checkpoint curve against
    d = sqrt(KL), gold gain (solid, a band of ±2 standard errors across seeds, a star at its
    peak) and proxy gain (dashed). Left: the rise and the peak, the vertical axis cut a few peak
    heights below zero; right: the whole runs, where the weaker proxies fall far."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    proxies = study["proxies"]
    fig, (ax, whole) = plt.subplots(1, 2, figsize=(13.6, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    top = max(0.1, max(p["seed_mean"]["peak"]["gold_gain"] for p in proxies))
    for p, color in zip(proxies, _size_colors(len(proxies))):
        mean, acc = p["seed_mean"], p["reward_model"].get("gold_order_accuracy")
        curve = mean["curve"]
        d, gold, se = (np.array(curve[k]) for k in ("d", "gold_gain", "gold_se"))
        label = f"RM on {p['n_pairs']} pairs" + ("" if acc is None else f" (gold order {acc:.2f})")
        for axis in (ax, whole):
            axis.plot(d, gold, color=color, lw=1.5, marker="o", ms=2.5,
                      label=label if axis is ax else None)
            axis.fill_between(d, gold - 2 * se, gold + 2 * se, color=color, alpha=0.2, lw=0)
            axis.plot(d, curve["proxy_gain"], color=color, lw=1.1, ls="--", alpha=0.5)
            axis.plot([mean["peak"]["d"]], [mean["peak"]["gold_gain"]], "*", color=color, ms=14,
                      mec="k", mew=0.8)
    for axis in (ax, whole):
        axis.axhline(0, color="#999999", lw=0.8)
        axis.set_xlabel("d = sqrt(KL(π‖π_ref))")
    ax.set_ylim(-3 * top, 2.5 * top)
    ax.set_xlim(-0.05, 1.7 * max(0.5, max(p["seed_mean"]["peak"]["d"] for p in proxies)))
    n = proxies[0]["seed_mean"]["seeds"]
    ax.set(title=f"PPO at β = {study['config']['beta']:g}: the rise and the peak",
           ylabel="gain over the SFT policy")
    whole.set(title="The whole runs")
    styles = [Line2D([], [], color="k", lw=1.5, label=f"gold gain, mean of {n} seeds"),
              Patch(color="k", alpha=0.2, label="±2 standard errors"),
              Line2D([], [], color="k", lw=1.1, ls="--", alpha=0.5, label="proxy gain"),
              Line2D([], [], color="w", marker="*", ms=12, mfc="#777777", mec="k", label="gold peak")]
    whole.legend(handles=ax.get_legend_handles_labels()[0] + styles, frameon=False,
                 fontsize=LEGEND_FONTSIZE, loc="lower left")                    # below the curves' start, off the fall
    fig.tight_layout()
    return fig
