"""Figures of notebook 07: the alignment tax, iterative RLHF, AI feedback, DPO against the closed form."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rlhf_lab.course.plots.common import COLORS, LEGEND_FONTSIZE, ramp

__all__ = ['alignment_tax', 'iterative_rounds', 'ai_feedback', 'dpo_vs_boltzmann', 'reward_kl_plane']


def alignment_tax(table):
    """The alignment tax (``table``: the dict of :func:`rlhf_lab.studies.alignment_tax.alignment_tax_study`
    or its ``rows``): (a) the increase of held-out web-text NLL over the SFT model against KL, for
    plain PPO at each β and PPO-ptx at each γ; (b) gold against that tax, the trade-off; (c) the
    tax on each kind of web text (per task, clean and noisy replies)."""
    rows = table["rows"] if isinstance(table, dict) else table
    base = next((r for r in rows if r["model"] == "base"), None)
    ppo = [r for r in rows if r["model"] == "ppo"]
    plain = sorted((r for r in ppo if not r["ptx_coef"]), key=lambda r: r["kl"])
    ptx = [r for r in ppo if r["ptx_coef"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (x, y) in zip(axes[:2], (("kl", "tax"), ("tax", "gold"))):
        sft = next(r for r in rows if r["model"] == "sft")
        ax.plot([sft[x]], [sft[y]], "s", color=COLORS["sft"], ms=8, label="SFT")
        ax.plot([r[x] for r in plain], [r[y] for r in plain], "o-", color=COLORS["ppo"],
                label="PPO (γ = 0)")
        for r in plain:
            ax.annotate(f"β={r['beta']:g}", (r[x], r[y]), textcoords="offset points",
                        xytext=(5, 4), fontsize=LEGEND_FONTSIZE)
        colors = ramp(len(ptx))
        for color, r in zip(colors, ptx):
            ax.plot([r[x]], [r[y]], "D", color=color, ms=8,
                    label=f"PPO-ptx γ = {r['ptx_coef']:g} (β = {r['beta']:g})")
    ax_tax, ax_gold = axes[:2]
    if base is not None:
        ax_tax.axhline(base["tax"], color=COLORS["base"], lw=0.8, ls="--", label="base model")
    ax_tax.axhline(0, color=COLORS["sft"], lw=0.6)
    ax_tax.set(xlabel="KL(π ‖ π_SFT) (nats)", ylabel="Δ held-out web NLL vs SFT (nats/token)",
               title="(a) alignment tax vs KL")
    ax_tax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    ax_gold.set(xlabel="alignment tax (Δ web NLL vs SFT)", ylabel="gold utility r*",
                title="(b) gold vs tax: the trade-off")
    parts = [k for k in ("review", "advise", "describe", "clean", "noisy")
             if f"pretrain_nll_{k}" in rows[0]]
    sft = next(r for r in rows if r["model"] == "sft")
    width = 0.8 / max(1, len(ppo))
    colors = ramp(len(ppo), "plasma")
    for i, (color, r) in enumerate(zip(colors, ppo)):
        taxes = [r[f"pretrain_nll_{k}"] - sft[f"pretrain_nll_{k}"] for k in parts]
        label = f"β={r['beta']:g}" + (f", γ={r['ptx_coef']:g}" if r["ptx_coef"] else "")
        axes[2].bar(np.arange(len(parts)) + (i - (len(ppo) - 1) / 2) * width, taxes, width,
                    color=color, label=label)
    axes[2].axhline(0, color="black", lw=0.6)
    axes[2].set_xticks(np.arange(len(parts)), parts)
    axes[2].set(ylabel="Δ web NLL vs SFT (nats/token)", title="(c) tax by kind of web text")
    axes[2].legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Iterative RLHF and AI feedback
# ---------------------------------------------------------------------------------------------
_ARM_STYLE = {"iterative": ("#9467bd", "iterative RLHF"), "one_round": (COLORS["ppo"], "one round")}


def iterative_rounds(result: dict):
    """Iterative RLHF against one round on the same labels (``result`` from
    :func:`rlhf_lab.studies.iterative.iterative_rlhf`): the policy's gold after each round (and on PPO's
    rollouts, thin), each round's RM accuracy against the gold order on pairs from π_SFT (solid)
    and from the policy PPO produced against it (dashed), and the KL to π_SFT."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.2))
    sft_gold = result["sft"]["gold"]
    for arm, data in result["arms"].items():
        color, label = _ARM_STYLE.get(arm, ("#333333", arm))
        rows = data["rounds"]
        x = [0] + [r["iterations"] for r in rows]
        hist = data["history"]
        axes[0].plot([h["iteration"] for h in hist], [h["gold"] for h in hist], color=color,
                     lw=0.7, alpha=0.4)
        axes[0].plot(x, [sft_gold] + [r["gold"] for r in rows], "o-", color=color, lw=2, label=label)
        for key, style in (("rm_sft", "-"), ("rm_policy", "--")):
            axes[1].plot(x[1:], [r[key]["gold_order_accuracy"] for r in rows], marker="o", ls=style,
                         lw=2, color=color,
                         label=f"{label}: pairs from {'π_SFT' if key == 'rm_sft' else 'its policy'}")
        axes[2].plot(x, [0.0] + [r["kl"] for r in rows], "o-", color=color, lw=2, label=label)
    for row in next(iter(result["arms"].values()))["rounds"][:-1]:
        for ax in axes:
            ax.axvline(row["iterations"], color="#dddddd", lw=0.8, zorder=0)
    axes[0].axhline(sft_gold, color=COLORS["sft"], lw=0.8, ls=":", label="SFT policy")
    axes[1].axhline(0.5, color="#999999", lw=0.8, ls=":")
    axes[0].set(xlabel="PPO iterations", ylabel="gold utility r*", title="gold of the policy")
    axes[1].set(xlabel="PPO iterations", ylabel="accuracy against the gold order",
                title="the round's RM, held-out pairs")
    axes[2].set(xlabel="PPO iterations", ylabel="KL(π ‖ π_SFT) (nats)", title="KL to the SFT policy")
    for ax in axes:                     # under each panel, off the lines; long enough handles that
        ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE, handlelength=4,     # a dash shows
                  loc="upper center", bbox_to_anchor=(0.5, -0.16))
    labels = [r["labels"] for r in result["arms"].get("iterative", {"rounds": []})["rounds"]]
    fig.suptitle(f"Iterative RLHF (labels so far: {labels}) vs one round on the same budget",
                 fontsize=11)
    fig.tight_layout()
    return fig


def ai_feedback(result: dict):
    """AI feedback (``result`` from :func:`rlhf_lab.studies.feedback.ai_feedback_study`): how often each
    judge agrees with the annotator and with the gold-better reply, and the gold of PPO against
    an RM fit on each arm's labels (the dotted line: the SFT policy; the label: KL to it)."""
    agree = {k: v for k, v in result["agreement"].items() if isinstance(v, dict)}
    arms = [result["arms"][a] for a in result["config"]["arms"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    x = np.arange(len(agree))
    for offset, key, color in ((-0.2, "annotator", COLORS["sft"]), (0.2, "gold", COLORS["gold"])):
        axes[0].bar(x + offset, [v[key] for v in agree.values()], 0.4, color=color,
                    label=f"agrees with the {'annotator' if key == 'annotator' else 'gold-better reply'}")
    axes[0].set_xticks(x, [name.replace("_", "\n") for name in agree], fontsize=LEGEND_FONTSIZE)
    axes[0].axhline(0.5, color="#999999", lw=0.8, ls=":")
    axes[0].set(ylim=(0.4, 1.0), ylabel="agreement on SFT pairs",
                title="judges ('human': a second draw of the annotator)")
    axes[0].legend(frameon=False, fontsize=LEGEND_FONTSIZE, loc="upper left")
    x = np.arange(len(arms))
    colors = ["#7f7f7f" if a["about"].startswith("the") else
              "#2ca02c" if a["about"].startswith("fix") else "#d62728" for a in arms]
    bars = axes[1].bar(x, [a["gold"] for a in arms], 0.6, color=colors)
    for bar, a in zip(bars, arms):
        axes[1].annotate(f"KL {a['kl']:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                         ha="center", va="bottom", fontsize=LEGEND_FONTSIZE)
    sft_gold = result["sft"]["gold"]
    axes[1].axhline(sft_gold, color=COLORS["sft"], lw=1, ls=":")
    axes[1].annotate("SFT\npolicy", (1, sft_gold), xycoords=("axes fraction", "data"),
                     xytext=(3, 0), textcoords="offset points", ha="left", va="center",
                     fontsize=LEGEND_FONTSIZE, color=COLORS["sft"])  # beside the axes, off the bars
    axes[1].set_xticks(x, [a["arm"].replace("_", "\n") for a in arms], fontsize=LEGEND_FONTSIZE)
    axes[1].set(ylabel="gold utility r* after PPO",
                title="PPO on each arm's labels (grey: reference, red: failure, green: fix)")
    fig.tight_layout()
    return fig


def dpo_vs_boltzmann(result: dict):
    """pi_ref, the exact pi* and DPO's policy over every response of an enumerable space, the
    responses sorted by reward (``result`` from :func:`rlhf_lab.stages.dpo.dpo_enumerable`)."""
    r = np.asarray(result["rewards"], dtype=float)
    order = np.argsort(r)
    probs = {name: np.exp(np.asarray(result[key], dtype=float))[order]
             for name, key in (("π_ref", "logp_ref"), ("π* (exact)", "logp_star"),
                               ("π_DPO", "logp_dpo"))}
    x = np.arange(len(r))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.bar(x, probs["π_ref"], color="#c8c8c8", label="π_ref")
    ax.plot(x, probs["π* (exact)"], "o-", color=COLORS["sft"], ms=4, lw=1.5, label="π* (exact)")
    ax.plot(x, probs["π_DPO"], "x--", color=COLORS["ppo"], ms=5, lw=1, label="π_DPO")
    n_pairs = result.get("n_pairs")
    pairs = "soft labels, infinite data" if n_pairs is None else f"{n_pairs} pairs"
    ax.set(xlabel="response, sorted by reward r(y)", ylabel="probability",
           title=f"DPO ({pairs}, β = {result['beta']:g}) against π*: "
                 f"total variation {result['tv']:.3f}")
    ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE, loc="upper left")
    fig.tight_layout()
    return fig


def reward_kl_plane(points: list[dict], frontier: dict | None = None):
    """Gold (left) and proxy (right, when any point has one) against KL(π ‖ π_ref) for several
    methods. ``points``: dicts {method, beta, kl, gold, proxy}; the points of one method are
    joined by a line when it is PPO, else drawn alone, each labelled with its β. ``frontier``:
    optional arrays ``kl`` with ``expected_gold`` and/or ``expected_reward`` (the closed form,
    e.g. ``beta_sweep(...)["frontier"]``), drawn as a curve."""
    keys = [("gold", "expected_gold", "gold utility r*")]
    if any(p.get("proxy") is not None for p in points):
        keys.append(("proxy", "expected_reward", "proxy reward r_φ"))
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
    methods = list(dict.fromkeys(p["method"] for p in points))
    colors = dict(zip(methods, plt.cm.tab10(np.arange(len(methods)) % 10)))
    for ax, (key, front_key, label) in zip(axes[0], keys):
        if frontier is not None and front_key in frontier:
            ax.plot(frontier["kl"], frontier[front_key], color="#999999", lw=1.5,
                    label="closed form π*")
        for method in methods:
            mine = sorted((p for p in points if p["method"] == method and p.get(key) is not None),
                          key=lambda p: p["kl"])
            style = "o-" if method.lower() == "ppo" else "o"
            ax.plot([p["kl"] for p in mine], [p[key] for p in mine], style, ms=7,
                    color=colors[method], label=method)
            for p in (p for p in mine if p.get("beta") is not None):
                ax.annotate(f"β={p['beta']:g}", (p["kl"], p[key]), textcoords="offset points",
                            xytext=(5, 4), fontsize=LEGEND_FONTSIZE)
        ax.set(xlabel="KL(π ‖ π_ref) (nats)", ylabel=label, title=f"{label} vs KL")
        ax.legend(frameon=False, fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig
