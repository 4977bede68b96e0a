"""``python -m rlhf_lab pipeline``: run every stage on the embedded default, write figures and a
markdown summary into an output folder."""
from __future__ import annotations

import time
from pathlib import Path

from . import plots
from .pipeline import (RunConfig, load_or_train_base, load_or_train_ppo, load_or_train_rm,
                       load_or_train_sft)

__all__ = ["run_pipeline", "ppo_section", "RM_PAIR_GRID", "PPO_BETAS"]

RM_PAIR_GRID = (250, 1000, 4000, 16000)
PPO_BETAS = (0.3, 0.03, 0.01)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run_pipeline(out_dir: str | Path, run: RunConfig = RunConfig(), rm_pairs=RM_PAIR_GRID,
                 betas=PPO_BETAS) -> Path:
    """Train (or load from the cache) every stage, save figures and ``summary.md``; return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# rlhf-lab pipeline summary", ""]

    base, t_base = _timed(load_or_train_base, run)
    sft, t_sft = _timed(load_or_train_sft, run)
    lines += ["## Stages 0-1: pretraining and SFT", "",
              "| stage | time (s, 0 if cached) | final train loss | mean gold of samples |",
              "|---|---|---|---|",
              f"| base (pretrained on web text) | {t_base:.1f} | {base.metrics['final_loss']:.3f} "
              f"| {base.metrics['gold_mean']:.2f} |",
              f"| SFT | {t_sft:.1f} | {sft.metrics['history'][-1]['loss']:.3f} "
              f"| {sft.metrics['gold_mean']:.2f} ± {sft.metrics['gold_std']:.2f} |", "",
              f"SFT held-out loss: {sft.metrics['heldout_loss_before']:.3f} (base) -> "
              f"{sft.metrics['heldout_loss_after']:.3f}.", "", "SFT samples:", ""]
    lines += [f"- `{p}` -> `{t}`" for p, t in sft.metrics["samples"][:6]]
    plots.save(plots.loss_curves({"base": base.metrics["history"], "sft": sft.metrics["history"]}),
               out / "sft_loss.png")
    plots.save(plots.gold_histograms({"base": base.metrics["gold_samples"],
                                      "sft": sft.metrics["gold_samples"]}), out / "sft_gold.png")

    rows = []
    for n_pairs in rm_pairs:
        rm, t_rm = _timed(load_or_train_rm, run.with_rm(n_pairs=n_pairs))
        rows.append({"n_pairs": n_pairs, "seconds": t_rm, **{k: v for k, v in rm.metrics.items()
                                                             if k not in ("history", "calibration")}})
        if n_pairs == run.rm.n_pairs:
            plots.save(plots.calibration(rm.metrics["calibration"]), out / "rm_calibration.png")
    plots.save(plots.rm_accuracy_vs_pairs(rows), out / "rm_accuracy.png")
    lines += ["", "## Stage 2: reward models (held-out pairs from the SFT policy)", "",
              "| pairs | time (s) | accuracy | Bayes ceiling | gap | gold-order accuracy | corr. with gold |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n_pairs']} | {r['seconds']:.1f} | {r['accuracy']:.3f} | {r['bayes_ceiling']:.3f} "
              f"| {r['bayes_ceiling'] - r['accuracy']:.3f} | {r['gold_order_accuracy']:.3f} "
              f"| {r['gold_correlation']:.3f} |" for r in rows]
    lines += ppo_section(run, out, betas)
    lines += ["", "Figures: " + ", ".join(sorted(p.name for p in out.glob("*.png")))]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary


def ppo_section(run: RunConfig, out: Path, betas=PPO_BETAS) -> list[str]:
    """PPO against the proxy RM at each β, and against the gold utility itself (the oracle)."""
    runs = {f"β={b:g}": run.with_ppo(beta=b) for b in betas}
    runs["oracle (gold reward)"] = run.with_ppo(reward="gold")
    lines = ["", "## Stage 3: PPO (tiny preset, default settings)", "",
             "| run | time (s, 0 if cached) | KL start -> end | proxy start -> end | gold start -> peak -> end |",
             "|---|---|---|---|---|"]
    histories = {}
    for name, variant in runs.items():
        art, seconds = _timed(load_or_train_ppo, variant)
        h = histories[name] = art.metrics["history"]
        peak = max(h, key=lambda row: row["gold"])
        lines.append(f"| {name} | {seconds:.1f} | {h[0]['kl']:.2f} -> {h[-1]['kl']:.2f} "
                     f"| {h[0]['proxy']:.2f} -> {h[-1]['proxy']:.2f} "
                     f"| {h[0]['gold']:.2f} -> {peak['gold']:.2f} (it. {peak['iteration']}) -> {h[-1]['gold']:.2f} |")
        if art.metrics.get("stopped"):
            lines.append(f"|  | {art.metrics['stopped']} | | | |")
    plots.save(plots.ppo_training_curves(histories), out / "ppo_curves.png")
    smallest = f"β={min(betas):g}"
    plots.save(plots.gold_vs_proxy_over_training(histories[smallest],
                                                 f"Proxy vs gold during PPO, {smallest}"),
               out / "ppo_gold_vs_proxy.png")
    last = [s for s in load_or_train_ppo(runs[smallest]).metrics["samples"]][-3:]
    lines += ["", f"Samples at the end of PPO with {smallest} (what the policy learnt to do):", ""]
    lines += [f"- `{s['prompt']}` -> `{s['text']}` (proxy {s['score']:.2f}, gold {s['gold']:.2f})"
              for s in last]
    return lines
