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


def save(fig, path) -> None:
    """Save a figure as PNG and close it."""
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- notebooks 00-03
# (world and base model, reward model, Boltzmann closed form)


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
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(samples)))
    for (name, values), color in zip(samples.items(), colors):
        ax.hist(values, bins=bins, density=True, alpha=0.5, color=color,
                label=f"{name}: {len(values)} {unit}, mean {np.mean(values):.2f}")
        ax.axvline(np.mean(values), color=color, ls="--", lw=1.5)
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    ax.legend(frameon=False, fontsize=8)
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


__all__ += ["scatter_vs_gold", "score_histograms", "bt_league", "boltzmann_policies",
            "reward_kl_frontier", "boltzmann_panel"]


# ----------------------------------------------------------------------------- notebook 06: best-of-n
# (from overopt.overoptimisation_study's results dict)


def _size_colors(count: int):
    return plt.cm.viridis(np.linspace(0.15, 0.8, max(count, 1)))


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
        ax.legend(frameon=False, fontsize=8)
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
    gold_ax.legend(frameon=False, fontsize=7)
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
        ax.legend(frameon=False, fontsize=7)
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
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


__all__ += ["bon_gao_curves", "bon_ensemble", "bon_peak_detection", "bon_seed_average"]


# ---------------------------------------------------------------------------------------------
# PPO (stage 3)
# ---------------------------------------------------------------------------------------------
PPO_PANELS = [("proxy", "proxy reward r_φ"), ("gold", "gold utility r*"), ("kl", "KL(π‖π_ref), nats"),
              ("length", "response length"), ("entropy", "entropy per token"), ("clipfrac", "clip fraction")]


def ppo_training_curves(histories: dict[str, list[dict]], panels=PPO_PANELS):
    """One panel per metric of the PPO loop, one line per run (``{"β=0.03": history, ...}``)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(2, len(histories))))
    for ax, (key, label) in zip(axes.flat, panels):
        for color, (name, history) in zip(colors, histories.items()):
            x = [h["iteration"] for h in history]
            y = [h[key] for h in history]
            ax.plot(x, y, color=color, alpha=0.35, lw=0.8)
            smooth = _smooth(y, 5)
            ax.plot(x[len(x) - len(smooth):], smooth, color=color, lw=2, label=name)
        ax.set(title=label, xlabel="PPO iteration")
    axes.flat[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def gold_vs_proxy_over_training(history: list[dict], title: str = "Proxy vs gold during PPO",
                                fit: tuple[float, float] | None = None,
                                baseline: dict | None = None):
    """Proxy reward and gold utility against d = sqrt(KL) along one run: where the two part ways,
    the policy has found what the reward model misses. Gains are over ``baseline`` (``gold`` and
    ``proxy``: the SFT policy's means, e.g. from :func:`rlhf_lab.ppo_gao.sft_baseline`), else
    over iteration 0's rollouts. ``fit = (alpha, beta)`` adds Gao et al.'s
    R_RL(d) = d(α − β log d) over the gold gain."""
    d = np.sqrt(np.maximum([h["kl"] for h in history], 0.0))
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    for key, label in (("proxy", "proxy r_φ"), ("gold", "gold r*")):
        y = np.asarray([h[key] for h in history])
        zero = y[0] if baseline is None else baseline[key]
        ax.plot(d, y - zero, "o-", ms=2.5, lw=1, color=COLORS[key], label=f"{label} (gain)")
    if fit is not None:
        grid = np.linspace(max(d.min(), 1e-3), d.max(), 200)
        ax.plot(grid, grid * (fit[0] - fit[1] * np.log(grid)), color=COLORS["gold"], lw=1.5,
                ls=":", label=f"fit d(α − β log d): α = {fit[0]:.2f}, β = {fit[1]:.2f}")
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set(title=title, xlabel="d = sqrt(KL(π‖π_ref))", ylabel="gain over the SFT policy")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# The β sweep (PPO against the closed form)
# ---------------------------------------------------------------------------------------------


def _split_trust(ax, x, y, trusted, color, label):
    """A curve drawn solid where ``trusted`` and dashed where not."""
    x, y, trusted = map(np.asarray, (x, y, trusted))
    ax.plot(np.where(trusted, x, np.nan), np.where(trusted, y, np.nan), color=color, lw=2,
            label=label)
    ax.plot(np.where(~trusted, x, np.nan), np.where(~trusted, y, np.nan), color=color, lw=1.5,
            ls="--", label=f"{label} (few effective samples)")


def beta_sweep(result: dict):
    """PPO's final (KL, proxy) and (KL, gold) at each β on top of the importance-sampled
    closed-form frontier (``result`` from :func:`rlhf_lab.sweep.beta_sweep`). Each PPO point is
    joined to the closed-form optimum of the same β."""
    front, rows = result["frontier"], result["rows"]
    trusted = np.asarray(front["trustworthy"], dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (key, opt_key, label) in zip(axes, (("proxy", "expected_reward", "proxy reward r_φ"),
                                                ("gold", "expected_gold", "gold utility r*"))):
        _split_trust(ax, front["kl"], front[opt_key], trusted, COLORS["sft"], "closed form π*")
        colors = plt.cm.plasma(np.linspace(0.1, 0.85, len(rows)))
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
    axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    fig.suptitle("PPO at each β (filled) and the closed-form optimum of the same β (hollow)",
                 fontsize=10)
    fig.tight_layout()
    return fig


__all__ += ["beta_sweep"]


def ppo_gao_curve(history: list[dict], fit: tuple[float, float] | None = None,
                  title: str = "PPO: gold and proxy gain against d = sqrt(KL)",
                  baseline: dict | None = None):
    """:func:`gold_vs_proxy_over_training` with Gao et al.'s R_RL fit ``(alpha, beta)``."""
    return gold_vs_proxy_over_training(history, title, fit, baseline)


def ppo_gao_curves(study: dict):
    """Gao et al. (2023) for PPO, one colour per proxy size (``study`` from
    :func:`rlhf_lab.ppo_gao.ppo_gao_study`) against d = sqrt(KL) along training: gold gain
    (solid), its fit d(α − β log d) (dotted) and proxy gain (dashed, lighter); a star marks each
    run's gold peak. Where the runs have checkpoint evaluations these curves are drawn through
    them, each rollout batch's gold gain is a faint dot behind, and a second panel enlarges the
    checkpoints' gold gain over the first nat of KL (d <= 1), where the rise is."""
    from matplotlib.lines import Line2D
    proxies = study["proxies"]
    checkpoints = all(p.get("checkpoints") for p in proxies)
    if checkpoints:
        fig, (ax, zoom) = plt.subplots(1, 2, figsize=(13.2, 4.4), gridspec_kw={"width_ratios": [2.1, 1]})
    else:
        fig, ax = plt.subplots(figsize=(9.6, 4.4))
    for p, color in zip(proxies, _size_colors(len(proxies))):
        acc = p["reward_model"].get("accuracy")
        label = f"RM on {p['n_pairs']} pairs" + ("" if acc is None else f" (acc. {acc:.2f})")
        shown = p["checkpoints"] if checkpoints else p
        if checkpoints:
            ax.plot(p["curve"]["d"], p["curve"]["gold_gain"], "o", color=color, ms=2, alpha=0.3)
        curve = shown["curve"]
        ax.plot(curve["d"], curve["gold_gain"], color=color, lw=1.4, marker="o", ms=2.5, label=label)
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
    ax.axhline(0, color="#999999", lw=0.8)
    styles = [Line2D([], [], color="k", lw=1.4, label="gold gain" + (" (checkpoints)" if checkpoints else "")),
              Line2D([], [], color="k", lw=2, ls=":", label="fit d(α − β log d)"),
              Line2D([], [], color="k", lw=1.1, ls="--", alpha=0.45, label="proxy gain"),
              Line2D([], [], color="w", marker="*", ms=12, mfc="#777777", mec="k",
                     label="gold peak (checkpoints)" if checkpoints else "observed gold peak")]
    if checkpoints:
        styles.append(Line2D([], [], color="k", marker="o", ms=2, alpha=0.3, lw=0,
                             label="gold, each rollout batch"))
    beside = zoom if checkpoints else ax                          # beside the curves, not on them
    ax.legend(handles=ax.get_legend_handles_labels()[0] + styles, frameon=False, fontsize=8,
              loc="upper left", bbox_to_anchor=(1.02, 1.0), bbox_transform=beside.transAxes)
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


__all__ += ["ppo_gao_curve", "ppo_gao_curves"]


# ---------------------------------------------------------------------------------------------
# GRPO against PPO
# ---------------------------------------------------------------------------------------------

def grpo_vs_ppo(table: list[dict]):
    """Three panels from :func:`rlhf_lab.grpo.compare_grpo_ppo`'s rows: final gold against KL
    (one line per method, β written next to each point), seconds per iteration, and memory
    (the formula's bytes hatched behind the measured ones)."""
    methods = list(dict.fromkeys(row["method"] for row in table))
    colors = {m: c for m, c in zip(methods, ("#d62728", "#9467bd", "#8c564b", "#17becf"))}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2, 1, 1]})
    for method in methods:
        rows = sorted((r for r in table if r["method"] == method), key=lambda r: r["kl"])
        axes[0].plot([r["kl"] for r in rows], [r["gold"] for r in rows], "o-", color=colors[method],
                     label=method)
        for r in rows:
            axes[0].annotate(f"β={r['beta']:g}", (r["kl"], r["gold"]), textcoords="offset points",
                             xytext=(4, 4), fontsize=7, color=colors[method])
    axes[0].set(xlabel="KL(π ‖ π_ref), nats", ylabel="gold utility r*", title="Final policies")
    axes[0].legend(frameon=False, fontsize=8)
    x = np.arange(len(methods))
    seconds = [np.mean([r["s_per_iteration"] for r in table if r["method"] == m]) for m in methods]
    axes[1].bar(x, seconds, color=[colors[m] for m in methods])
    axes[1].set_xticks(x, methods)
    axes[1].set(ylabel="seconds", title="Time per iteration")
    first = [next(r for r in table if r["method"] == m) for m in methods]
    axes[2].bar(x, [r["formula_bytes"] / 2 ** 20 for r in first], width=0.7, fill=False,
                hatch="//", edgecolor="#777777", label="formula (FP32)")
    axes[2].bar(x, [r["measured_bytes"] / 2 ** 20 for r in first], width=0.45,
                color=[colors[m] for m in methods], label="measured")
    axes[2].set_xticks(x, [f"{r['method']}\n{r['networks']} networks" for r in first])
    axes[2].set(ylabel="MiB", title="Weights + grads + Adam state")
    axes[2].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


__all__ += ["grpo_vs_ppo"]


def alignment_tax(table):
    """The alignment tax (``table``: the dict of :func:`rlhf_lab.alignment_tax.alignment_tax_study`
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
                        xytext=(5, 4), fontsize=8)
        colors = plt.cm.viridis(np.linspace(0.2, 0.8, max(1, len(ptx))))
        for color, r in zip(colors, ptx):
            ax.plot([r[x]], [r[y]], "D", color=color, ms=8,
                    label=f"PPO-ptx γ = {r['ptx_coef']:g} (β = {r['beta']:g})")
    ax_tax, ax_gold = axes[:2]
    if base is not None:
        ax_tax.axhline(base["tax"], color=COLORS["base"], lw=0.8, ls="--", label="base model")
    ax_tax.axhline(0, color=COLORS["sft"], lw=0.6)
    ax_tax.set(xlabel="KL(π ‖ π_SFT) (nats)", ylabel="Δ held-out web NLL vs SFT (nats/token)",
               title="(a) alignment tax vs KL")
    ax_tax.legend(frameon=False, fontsize=7)
    ax_gold.set(xlabel="alignment tax (Δ web NLL vs SFT)", ylabel="gold utility r*",
                title="(b) gold vs tax: the trade-off")
    parts = [k for k in ("review", "advise", "describe", "clean", "noisy")
             if f"pretrain_nll_{k}" in rows[0]]
    sft = next(r for r in rows if r["model"] == "sft")
    width = 0.8 / max(1, len(ppo))
    colors = plt.cm.plasma(np.linspace(0.1, 0.85, max(1, len(ppo))))
    for i, (color, r) in enumerate(zip(colors, ppo)):
        taxes = [r[f"pretrain_nll_{k}"] - sft[f"pretrain_nll_{k}"] for k in parts]
        label = f"β={r['beta']:g}" + (f", γ={r['ptx_coef']:g}" if r["ptx_coef"] else "")
        axes[2].bar(np.arange(len(parts)) + (i - (len(ppo) - 1) / 2) * width, taxes, width,
                    color=color, label=label)
    axes[2].axhline(0, color="black", lw=0.6)
    axes[2].set_xticks(np.arange(len(parts)), parts)
    axes[2].set(ylabel="Δ web NLL vs SFT (nats/token)", title="(c) tax by kind of web text")
    axes[2].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


__all__ += ["alignment_tax"]


# ---------------------------------------------------------------------------------------------
# Iterative RLHF and AI feedback
# ---------------------------------------------------------------------------------------------
_ARM_STYLE = {"iterative": ("#9467bd", "iterative RLHF"), "one_round": (COLORS["ppo"], "one round")}


def iterative_rounds(result: dict):
    """Iterative RLHF against one round on the same labels (``result`` from
    :func:`rlhf_lab.iterative.iterative_rlhf`): the policy's gold after each round (and on PPO's
    rollouts, thin), each round's RM accuracy against the gold order on pairs from π_SFT (solid)
    and from the policy PPO produced against it (dashed), and the KL to π_SFT."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
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
            axes[1].plot(x[1:], [r[key]["gold_order_accuracy"] for r in rows], "o", ls=style,
                         color=color, label=f"{label}: pairs from {'π_SFT' if key == 'rm_sft' else 'its policy'}")
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
    for ax in axes:
        ax.legend(frameon=False, fontsize=7)
    labels = [r["labels"] for r in result["arms"].get("iterative", {"rounds": []})["rounds"]]
    fig.suptitle(f"Iterative RLHF (labels so far: {labels}) vs one round on the same budget",
                 fontsize=10)
    fig.tight_layout()
    return fig


def ai_feedback(result: dict):
    """AI feedback (``result`` from :func:`rlhf_lab.feedback.ai_feedback_study`): how often each
    judge agrees with the annotator and with the gold-better reply, and the gold of PPO against
    an RM fit on each arm's labels (the dotted line: the SFT policy; the label: KL to it)."""
    agree = {k: v for k, v in result["agreement"].items() if isinstance(v, dict)}
    arms = [result["arms"][a] for a in result["config"]["arms"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    x = np.arange(len(agree))
    for offset, key, color in ((-0.2, "annotator", COLORS["sft"]), (0.2, "gold", COLORS["gold"])):
        axes[0].bar(x + offset, [v[key] for v in agree.values()], 0.4, color=color,
                    label=f"agrees with the {'annotator' if key == 'annotator' else 'gold-better reply'}")
    axes[0].set_xticks(x, [name.replace("_", "\n") for name in agree], fontsize=7)
    axes[0].axhline(0.5, color="#999999", lw=0.8, ls=":")
    axes[0].set(ylim=(0.4, 1.0), ylabel="agreement on SFT pairs",
                title="judges ('human': a second draw of the annotator)")
    axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    x = np.arange(len(arms))
    colors = ["#7f7f7f" if a["about"].startswith("the") else
              "#2ca02c" if a["about"].startswith("fix") else "#d62728" for a in arms]
    bars = axes[1].bar(x, [a["gold"] for a in arms], 0.6, color=colors)
    for bar, a in zip(bars, arms):
        axes[1].annotate(f"KL {a['kl']:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                         ha="center", va="bottom", fontsize=7)
    sft_gold = result["sft"]["gold"]
    axes[1].axhline(sft_gold, color=COLORS["sft"], lw=1, ls=":")
    axes[1].annotate("SFT\npolicy", (1, sft_gold), xycoords=("axes fraction", "data"),
                     xytext=(3, 0), textcoords="offset points", ha="left", va="center",
                     fontsize=7, color=COLORS["sft"])     # labels the line beside the axes, off the bars
    axes[1].set_xticks(x, [a["arm"].replace("_", "\n") for a in arms], fontsize=7)
    axes[1].set(ylabel="gold utility r* after PPO",
                title="PPO on each arm's labels (grey: reference, red: failure, green: fix)")
    fig.tight_layout()
    return fig


__all__ += ["iterative_rounds", "ai_feedback"]


# ----------------------------------------------------------------------------- notebook 07: DPO


def dpo_vs_boltzmann(result: dict):
    """pi_ref, the exact pi* and DPO's policy over every response of an enumerable space, the
    responses sorted by reward (``result`` from :func:`rlhf_lab.dpo.dpo_enumerable`)."""
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
    ax.legend(frameon=False, fontsize=8, loc="upper left")
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
                            xytext=(5, 4), fontsize=7)
        ax.set(xlabel="KL(π ‖ π_ref) (nats)", ylabel=label, title=f"{label} vs KL")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


__all__ += ["dpo_vs_boltzmann", "reward_kl_plane"]
