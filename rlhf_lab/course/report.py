"""``python -m rlhf_lab pipeline``: run every stage on the embedded default, write figures and a
markdown summary into an output folder."""
from __future__ import annotations

import os
import time
from pathlib import Path

from rlhf_lab.core.artifacts import write_json
from rlhf_lab.course import summary_json
from rlhf_lab.course.plots import beyond as beyond_plots
from rlhf_lab.course.plots import common as common_plots
from rlhf_lab.course.plots import overoptimisation as overoptimisation_plots
from rlhf_lab.course.plots import ppo as ppo_plots
from rlhf_lab.course.plots import reward_model as reward_model_plots
from rlhf_lab.course.report_gao import ppo_gao_section
from rlhf_lab.course.report_hacks import hack_section
from rlhf_lab.equations import enumerable_space
from rlhf_lab.lm.models import count_parameters
from rlhf_lab.pipeline.runs import (
    RunConfig,
    load_or_train_base,
    load_or_train_dpo,
    load_or_train_grpo,
    load_or_train_ppo,
    load_or_train_rm,
    load_or_train_sft,
    reward_model_scaling,
    stage_keys,
    train_runs,
)
from rlhf_lab.stages import dpo
from rlhf_lab.studies import alignment_tax, feedback, iterative, memory, overoptimisation, sweep

__all__ = ["run_pipeline", "ppo_section", "sweep_section", "overopt_section", "time_section",
           "beyond_section",
           "BEYOND_GRPO", "BEYOND_ARMS", "RM_PAIR_GRID",
           "PPO_BETAS"]

RM_PAIR_GRID = (250, 1000, 4000, 16000)
PIPELINE_JOBS = min(2, os.cpu_count() or 1)
"""PPO runs the pipeline trains at once (single-threaded worker processes)."""
PPO_BETAS = sweep.SWEEP_BETAS
BEYOND_GRPO = {"iterations": 30, "prompts_per_iteration": 16, "minibatch_size": 32}
"""GRPO's notebook-sized run (notebook 07 and the pipeline share it)."""
BEYOND_ARMS = ("human", "constitution", "missing_rule", "narrow_pairs", "diverse_pairs")
"""The AI-feedback arms of notebook 07 and the pipeline."""


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run_pipeline(out_dir: str | Path, run: RunConfig = RunConfig(), rm_pairs=RM_PAIR_GRID,
                 rm_heldout: int = 5000, betas=PPO_BETAS, bon: dict | None = None,
                 sweep_options: dict | None = None, beyond: dict | None = None,
                 gao: dict | None = None, jobs: int = PIPELINE_JOBS) -> Path:
    """Train (or load from the cache) every stage, save figures and ``summary.md``; return its path.

    ``rm_pairs``: the reward models' sizes, all measured on ``rm_heldout`` shared held-out pairs
    (:func:`rlhf_lab.pipeline.runs.reward_model_scaling`);
    ``bon``: keyword arguments of :func:`rlhf_lab.studies.overoptimisation.overoptimisation_study`;
    ``sweep_options``: of :func:`rlhf_lab.studies.sweep.beta_sweep` (both default to the course's);
    ``beyond``: of :func:`beyond_section` (notebook 07's studies); ``gao``: of
    :func:`rlhf_lab.studies.ppo_gao.ppo_gao_study` (PPO against proxies of several sizes);
    ``jobs``: the PPO runs of stage 3 trained at once (:func:`ppo_section`)."""
    start = time.perf_counter()
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
    common_plots.save(common_plots.loss_curves({"base": base.metrics["history"], "sft": sft.metrics["history"]}),
               out / "sft_loss.png")
    common_plots.save(common_plots.gold_histograms({"base": base.metrics["gold_samples"],
                                      "sft": sft.metrics["gold_samples"]}), out / "sft_gold.png")

    rows = reward_model_scaling(run, tuple(rm_pairs), rm_heldout)
    common_plots.save(reward_model_plots.calibration(load_or_train_rm(run).metrics["calibration"]), out / "rm_calibration.png")
    common_plots.save(reward_model_plots.rm_accuracy_vs_pairs(rows), out / "rm_accuracy.png")
    n_heldout = rows[0]["n_heldout"]
    lines += ["", f"## Stage 2: reward models ({n_heldout} shared held-out pairs from the SFT policy)", "",
              "| pairs | time (s) | accuracy | Bayes ceiling | gap | gold-order accuracy | corr. with gold "
              "| accuracy on its own 1000 pairs |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n_pairs']} | {r['seconds']:.1f} | {r['accuracy']:.3f} | {r['bayes_ceiling']:.3f} "
              f"| {r['bayes_ceiling'] - r['accuracy']:.3f} | {r['gold_order_accuracy']:.3f} "
              f"| {r['gold_correlation']:.3f} | {r['accuracy_own']:.3f} |" for r in rows]
    se = (rows[-1]["accuracy"] * (1 - rows[-1]["accuracy"]) / n_heldout) ** 0.5
    lines += ["", f"Standard error of each accuracy ≈ {se:.3f} ({n_heldout} pairs; ≈ 0.016 on 1000)."]
    params = {n: count_parameters(load_or_train_rm(run.with_rm(n_pairs=n)).model) for n in rm_pairs}
    record = {"schema_version": summary_json.SCHEMA_VERSION,
              "reward_models": summary_json.reward_model_rows(rows, params, run.rm.seed)}
    sweep_options = sweep_options or {}
    careful = sweep.SweepConfig(**{k: v for k, v in sweep_options.items() if k.startswith("careful_")})
    sections = [
        ("stage 3: PPO at each β, the oracle, β = 0",
         lambda: ppo_section(run, out, betas, careful, record, jobs)),   # the sweep's runs, trained once
        ("the β sweep (closed-form optimum)", lambda: sweep_section(run, out, betas, record, **sweep_options)),
        ("what the hack is (gold parts)", lambda: hack_section(run, betas, careful, record)),
        ("best-of-n overoptimisation", lambda: overopt_section(run, out, record, **(bon or {}))),
        ("Gao's PPO study", lambda: ppo_gao_section(run, out, min(betas), record, **(gao or {}))),
        ("beyond vanilla RLHF (notebook 07)", lambda: beyond_section(run, out, **(beyond or {}))),
    ]
    timings = {"stages 0-2: base, SFT, reward models": time.perf_counter() - start}
    for name, section in sections:
        section_lines, timings[name] = _timed(section)
        lines += section_lines
    lines += time_section(timings)
    record["timings"] = {name: round(seconds, 1) for name, seconds in timings.items()}
    lines += ["", "Figures: " + ", ".join(sorted(p.name for p in out.glob("*.png")))]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    write_json(out / "summary.json", record)
    return summary


def time_section(timings: dict[str, float]) -> list[str]:
    """Where the pipeline's time went: one row per part, seconds and share (0 s when cached)."""
    total = sum(timings.values())
    lines = ["", "## Where the time went", "",
             f"{total / 60:.1f} min in all (a part found in the cache takes about 0 s).", "",
             "| part | seconds | share |", "|---|---|---|"]
    lines += [f"| {name} | {seconds:.0f} | {seconds / total if total > 0 else 0:.0%} |"
              for name, seconds in timings.items()]
    return lines


def ppo_section(run: RunConfig, out: Path, betas=PPO_BETAS,
                careful: sweep.SweepConfig = sweep.SweepConfig(), record: dict | None = None,
                jobs: int = PIPELINE_JOBS) -> list[str]:
    """PPO against the proxy RM at each β (the β sweep's runs, :func:`rlhf_lab.studies.sweep.sweep_run`
    with ``careful``'s settings for large β), and against the gold utility itself (the oracle)."""
    runs = {f"β={b:g}": sweep.sweep_run(run, b, careful) for b in betas}
    runs["oracle (gold reward)"] = run.with_ppo(reward="gold")
    # Train the missing runs `jobs` at a time in single-threaded workers, the longest (the careful,
    # large-β ones) first; the hack section's β = 0 run goes with them.
    tasks = sorted(runs.values(), key=lambda r: -r.ppo.iterations * (1 + (r.ppo.critic == "separate")))
    load_or_train_rm(run)                            # upstream stages once, before any worker
    trained = train_runs([("ppo", r) for r in tasks + [run.with_ppo(beta=0.0)]], jobs=jobs)
    seconds_of = {stage_keys(r)["ppo"]: s for r, s in zip(tasks, trained)}
    lines = ["", "## Stage 3: PPO (tiny preset)", "",
             "Default settings, except where β is large: there the β sweep's careful runs "
             "(smaller step, more iterations, separate critic; `rlhf_lab.studies.sweep.sweep_run`)."
             + (f" Runs missing from the cache train {jobs} at a time, one thread each: their "
                "times overlap." if jobs > 1 else ""), "",
             "| run | lr, iterations, critic | time (s, 0 if cached) | KL start -> end | proxy start -> end "
             "| gold start -> peak -> end |",
             "|---|---|---|---|---|---|"]
    histories = {}
    for name, variant in runs.items():
        art = load_or_train_ppo(variant)
        seconds = seconds_of[stage_keys(variant)["ppo"]]
        h = histories[name] = art.metrics["history"]
        peak = max(h, key=lambda row: row["gold"])
        ppo = variant.ppo
        lines.append(f"| {name} | {ppo.lr:.3g}, {ppo.iterations}, {ppo.critic} | {seconds:.1f} "
                     f"| {h[0]['kl']:.2f} -> {h[-1]['kl']:.2f} | {h[0]['proxy']:.2f} -> {h[-1]['proxy']:.2f} "
                     f"| {h[0]['gold']:.2f} -> {peak['gold']:.2f} (it. {peak['iteration']}) -> {h[-1]['gold']:.2f} |")
        if name.startswith("oracle") and record is not None:
            record["oracle_ppo_gain"] = float(h[-1]["gold"] - h[0]["gold"])
        if art.metrics.get("stopped"):
            lines.append(f"|  | | {art.metrics['stopped']} | | | |")
    common_plots.save(ppo_plots.ppo_training_curves(histories), out / "ppo_curves.png")
    smallest = f"β={min(betas):g}"
    common_plots.save(ppo_plots.gold_vs_proxy_over_training(histories[smallest],
                                                 f"Proxy vs gold during PPO, {smallest}"),
               out / "ppo_gold_vs_proxy.png")
    last = [s for s in load_or_train_ppo(runs[smallest]).metrics["samples"]][-3:]
    lines += ["", f"Samples at the end of PPO with {smallest} (what the policy learnt to do):", ""]
    lines += [f"- `{s['prompt']}` -> `{s['text']}` (proxy {s['score']:.2f}, gold {s['gold']:.2f})"
              for s in last]
    return lines


def sweep_section(run: RunConfig, out: Path, betas=PPO_BETAS, record: dict | None = None,
                  **options) -> list[str]:
    """PPO's final objective at each β against the importance-sampled optimum β log Z."""
    result = sweep.beta_sweep(run, betas, **options)
    if record is not None:
        record["sweep"] = summary_json.sweep_rows(result)
    common_plots.save(ppo_plots.beta_sweep(result), out / "beta_sweep.png")
    lines = ["", "## The β sweep: PPO against the closed-form optimum", "",
             f"Optimum estimated from {result['n_samples']} SFT replies per prompt; J = proxy − β·KL "
             f"over the last iterations; share = (J − J_ref) / (β log Ẑ − J_ref), "
             f"J_ref = {result['reference']['proxy']:.3f} (the SFT policy).", "",
             "| β | KL | proxy | gold | J (PPO) | β log Ẑ | min ESS | trusted | J / β log Ẑ | share of the gain |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['beta']:g} | {r['kl']:.2f} | {r['proxy']:.3f} | {r['gold']:.2f} "
                     f"| {r['objective']:.3f} | {r['optimum']:.3f} | {r['min_ess']:.0f} "
                     f"| {'yes' if r['trustworthy'] else 'no'} | {r['ratio']:.3f} "
                     f"| {r['gain_fraction']:.2f} |")
    careful = [r for r in result["rows"] if r["critic"] != run.ppo.critic or r["lr"] != run.ppo.lr]
    if careful:
        lines += ["", "Trained carefully (large β: smaller step, more iterations; `sweep.sweep_run`): "
                  + "; ".join(f"β = {r['beta']:g} at lr {r['lr']:.3g} for {r['iterations']} iterations, "
                              f"{r['critic']} critic" for r in careful) + "."]
    trusted = [r for r in result["rows"] if r["trustworthy"]]
    if trusted:
        worst = min(trusted, key=lambda r: r["ratio"])
        lines += ["", f"Where the estimate is trusted, PPO reaches at least {worst['ratio']:.1%} of "
                      f"β log Ẑ (lowest at β = {worst['beta']:g})."]
    return lines


def _bon_row(label: str, accuracy: str, summary: dict) -> str:
    """One row of the best-of-n table from a :func:`rlhf_lab.studies.overoptimisation.gao_summary`."""
    fit, kl_peak = summary["fit"], summary["fit"]["kl_peak"]
    return (f"| {label} | {accuracy} | {fit['alpha']:.3f} | {fit['beta']:.3f} "
            f"| {'none' if kl_peak is None else f'{kl_peak:.2f}'} | {summary['peak']['n']} "
            f"| {summary['peak']['gold_gain']:.3f} | {summary['fall']:.3f} |")


def overopt_section(run: RunConfig, out: Path, record: dict | None = None,
                    **study_options) -> list[str]:
    """Best-of-n against proxies of several sizes (Gao curves, fits), the ensemble and the
    gold-free peak detector."""
    study = overoptimisation.overoptimisation_study(run, **study_options)
    params = {p: count_parameters(load_or_train_rm(run.with_rm(n_pairs=p)).model)
              for p in study["config"]["pairs_grid"]}
    if record is not None:
        record["bon"] = summary_json.bon_rows(study["seed_average"], study["ns"], params)
        record["ensembles"] = summary_json.ensemble_summary(study["ensemble"])
    common_plots.save(overoptimisation_plots.bon_gao_curves(study), out / "bon_gao_curves.png")
    common_plots.save(overoptimisation_plots.bon_ensemble(study), out / "bon_ensemble.png")
    common_plots.save(overoptimisation_plots.bon_seed_average(study), out / "bon_seed_average.png")
    common_plots.save(overoptimisation_plots.bon_peak_detection(study), out / "bon_peak_detection.png")
    lines = ["", "## Overoptimisation (Gao et al. 2023): best-of-n", "",
             "| proxy pairs | RM accuracy | fit α | fit β | fitted peak KL | observed peak n | gold gain at peak | fall to n max |",
             "|---|---|---|---|---|---|---|---|"]
    accuracy = {p["n_pairs"]: study["reward_models"][f"proxy-{p['n_pairs']}"]["accuracy"]
                for p in study["proxies"]}
    lines += [_bon_row(str(p["n_pairs"]), f"{accuracy[p['n_pairs']]:.3f}", p) for p in study["proxies"]]
    lines += [_bon_row(f"{p['n_pairs']}, mean of {p['seeds']} seeds", "", p)
              for p in study["seed_average"]]
    oracle = study["oracle"]
    lines.append(f"| oracle (gold) | 1 | {oracle['fit']['alpha']:.3f} | {oracle['fit']['beta']:.3f} "
                 f"| | {oracle['peak']['n']} | {oracle['peak']['gold_gain']:.3f} | {oracle['fall']:.3f} |")
    ens = study["ensemble"]
    lines += ["", f"Ensemble of {len(ens['members'])} RMs on {ens['n_pairs']} pairs each — fall "
                  f"from the peak to the largest n:", ""]
    lines += [f"- member seed {m['seed']}: {m['fall']:.3f}" for m in ens["members"]]
    lines += [f"- {how}: {agg['fall']:.3f} (peak gain {agg['peak']['gold_gain']:.3f} at n = "
              f"{agg['peak']['n']})" for how, agg in ens["aggregates"].items()]
    lines += ["", "Choosing n without gold (held-out RM on other labels):", ""]
    lines += [f"- proxy on {r['n_pairs']} pairs: gold peak n = {r['n_peak']}, chosen n = "
              f"{r['n_chosen']}, gold lost {r['regret']:.3f} ({r['octaves']:+.1f} octaves)"
              for r in study["detection"]["heldout"]["per_proxy"]]
    labels = study["detection"]["labels"]
    lines += ["", f"Choosing n without gold (a small human evaluation: {labels['labels_per_n']} "
                  f"labels per n, best-of-n vs a plain sample, fitted in Gao's form):", ""]
    lines += [f"- proxy on {r['n_pairs']} pairs: gold peak n = {r['n_peak']}, chosen n = "
              f"{r['n_chosen']}, gold lost {r['regret']:.3f} of a peak gain "
              f"{r['gold_gain_peak']:.3f} ({r['labels']} labels)"
              for r in labels["per_proxy"]]
    return lines


def beyond_section(run: RunConfig, out: Path, pair_counts=(100, 1000, 20000),
                   tax: dict | None = None, grpo: dict = BEYOND_GRPO,
                   iterative_cfg: iterative.IterativeConfig = iterative.IterativeConfig(),
                   feedback_cfg: feedback.FeedbackConfig = feedback.FeedbackConfig(arms=BEYOND_ARMS)
                   ) -> list[str]:
    """Notebook 07 with the reference functions: DPO on the enumerable space and on the LM, GRPO,
    PPO and PPO-ptx on the reward–KL plane with their alignment tax, iterative RLHF, AI feedback.
    ``tax``: options of :func:`rlhf_lab.studies.alignment_tax.alignment_tax_study`; ``grpo``: changes to
    ``run.grpo``; the defaults are the notebook's."""
    space = enumerable_space.enumerable_space(vocab_size=2, max_len=4, seed=0)
    exact = {n: dpo.dpo_enumerable(space.logp_ref, space.rewards, beta=1.0, n_pairs=n)
             for n in pair_counts}
    common_plots.save(beyond_plots.dpo_vs_boltzmann(exact[max(pair_counts)]), out / "dpo_vs_boltzmann.png")
    study = alignment_tax.alignment_tax_study(run, **{"betas": (0.3, 0.03), "ptx_coefs": (0.03,),
                                                      **(tax or {})})
    dpo_art = load_or_train_dpo(run)
    grpo_run = run.with_grpo(**grpo)
    grpo_art = load_or_train_grpo(grpo_run)
    rows = study["rows"] + [
        alignment_tax.tax_row("dpo", dpo_art.model, study, run, beta=run.dpo.beta, ptx_coef=None),
        alignment_tax.tax_row("grpo", grpo_art.model, study, run, beta=grpo_run.grpo.beta,
                              ptx_coef=None)]
    points = [{"method": ("PPO-ptx" if r.get("ptx_coef") else r["model"].upper()) if r["model"] != "sft"
               else "SFT", "beta": r["beta"], "kl": r["kl"], "gold": r["gold"], "proxy": r["proxy"]}
              for r in rows[1:]]
    common_plots.save(beyond_plots.reward_kl_plane(points), out / "reward_kl_plane.png")
    common_plots.save(beyond_plots.alignment_tax(study), out / "alignment_tax.png")
    lines = ["", "## Beyond vanilla RLHF (notebook 07)", "",
             "DPO with a tabular policy on the enumerable space (30 replies, β = 1): total variation "
             "to the exact Boltzmann policy " + ", ".join(f"{res['tv']:.3f} with {n} pairs"
                                                          for n, res in exact.items()) + ".", "",
             "| policy | β | γ_ptx | gold | proxy | KL to SFT | held-out web NLL | tax vs SFT |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        beta = "" if r["beta"] is None else f"{r['beta']:g}"
        ptx = f"{r['ptx_coef']:g}" if r.get("ptx_coef") else ""
        proxy = "" if r["proxy"] is None else f"{r['proxy']:.2f}"
        lines.append(f"| {r['model']} | {beta} | {ptx} | {r['gold']:.2f} | {proxy} | {r['kl']:.2f} "
                     f"| {r['pretrain_nll']:.3f} | {r['tax']:+.3f} |")
    lines += ["", "Memory of a 7B model's networks in mixed precision: " + ", ".join(
        f"{name} {memory.rlhf_memory(7_000_000_000, networks=nets)[-1]['GiB']:.0f} GiB"
        for name, nets in (("PPO", ("policy", "critic", "reference", "reward model")),
                           ("GRPO", ("policy", "reference", "reward model")),
                           ("DPO", ("policy", "reference")))) + "."]
    it = iterative.iterative_rlhf(run, iterative_cfg)
    common_plots.save(beyond_plots.iterative_rounds(it), out / "iterative_rlhf.png")
    lines += ["", "Iterative RLHF vs one round on the same labels (gold / KL after each round; the "
                  "round's RM against the gold order on pairs from its own policy):", ""]
    for arm, data in it["arms"].items():
        lines.append(f"- {arm}: " + "; ".join(
            f"{r['labels']} labels: gold {r['gold']:.2f}, KL {r['kl']:.2f}, RM "
            f"{r['rm_policy']['gold_order_accuracy']:.2f}" for r in data["rounds"]))
    fb = feedback.ai_feedback_study(run, feedback_cfg)
    common_plots.save(beyond_plots.ai_feedback(fb), out / "ai_feedback.png")
    lines += ["", "AI feedback: agreement of each judge with the annotator / the gold-better reply, "
                  "and the gold after PPO on each arm's labels:", ""]
    lines += [f"- judge {name}: {a['annotator']:.2f} / {a['gold']:.2f}"
              for name, a in fb["agreement"].items() if isinstance(a, dict)]
    lines += [f"- arm {name} ({fb['arms'][name]['about']}): gold {fb['arms'][name]['gold']:.2f}, "
              f"KL {fb['arms'][name]['kl']:.2f}" for name in fb["config"]["arms"]]
    return lines
