"""``python -m rlhf_lab pipeline``: run every stage on the embedded default, write figures and a
markdown summary into an output folder."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rlhf_lab import world
from rlhf_lab.core.artifacts import write_json
from rlhf_lab.course import summary_json
from rlhf_lab.course.plots import beyond as beyond_plots
from rlhf_lab.course.plots import common as common_plots
from rlhf_lab.course.plots import overoptimisation as overoptimisation_plots
from rlhf_lab.course.plots import ppo as ppo_plots
from rlhf_lab.course.plots import reward_model as reward_model_plots
from rlhf_lab.course.report_hacks import gao_stage_line, hack_section
from rlhf_lab.equations import enumerable_space
from rlhf_lab.equations.overopt_math import fit_rl
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
)
from rlhf_lab.stages import dpo
from rlhf_lab.studies import alignment_tax, feedback, iterative, memory, overoptimisation, sweep
from rlhf_lab.studies.ppo_gao import peak_ordering, ppo_gao_study, sft_baseline

__all__ = ["run_pipeline", "ppo_section", "sweep_section", "overopt_section", "ppo_gao_section",
           "beyond_section",
           "BEYOND_GRPO", "BEYOND_ARMS", "RM_PAIR_GRID",
           "PPO_BETAS"]

RM_PAIR_GRID = (250, 1000, 4000, 16000)
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
                 gao: dict | None = None) -> Path:
    """Train (or load from the cache) every stage, save figures and ``summary.md``; return its path.

    ``rm_pairs``: the reward models' sizes, all measured on ``rm_heldout`` shared held-out pairs
    (:func:`rlhf_lab.pipeline.runs.reward_model_scaling`);
    ``bon``: keyword arguments of :func:`rlhf_lab.studies.overoptimisation.overoptimisation_study`;
    ``sweep_options``: of :func:`rlhf_lab.studies.sweep.beta_sweep` (both default to the course's);
    ``beyond``: of :func:`beyond_section` (notebook 07's studies); ``gao``: of
    :func:`rlhf_lab.studies.ppo_gao.ppo_gao_study` (PPO against proxies of several sizes)."""
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
    lines += ppo_section(run, out, betas, careful, record)   # the sweep's own runs, trained once
    lines += sweep_section(run, out, betas, record, **sweep_options)
    lines += hack_section(run, betas, careful, record)
    lines += overopt_section(run, out, record, **(bon or {}))
    lines += ppo_gao_section(run, out, min(betas), record, **(gao or {}))
    lines += beyond_section(run, out, **(beyond or {}))
    lines += ["", "Figures: " + ", ".join(sorted(p.name for p in out.glob("*.png")))]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    write_json(out / "summary.json", record)
    return summary


def ppo_section(run: RunConfig, out: Path, betas=PPO_BETAS,
                careful: sweep.SweepConfig = sweep.SweepConfig(), record: dict | None = None) -> list[str]:
    """PPO against the proxy RM at each β (the β sweep's runs, :func:`rlhf_lab.studies.sweep.sweep_run`
    with ``careful``'s settings for large β), and against the gold utility itself (the oracle)."""
    runs = {f"β={b:g}": sweep.sweep_run(run, b, careful) for b in betas}
    runs["oracle (gold reward)"] = run.with_ppo(reward="gold")
    lines = ["", "## Stage 3: PPO (tiny preset)", "",
             "Default settings, except where β is large: there the β sweep's careful runs "
             "(smaller step, more iterations, separate critic; `rlhf_lab.studies.sweep.sweep_run`).", "",
             "| run | lr, iterations, critic | time (s, 0 if cached) | KL start -> end | proxy start -> end "
             "| gold start -> peak -> end |",
             "|---|---|---|---|---|---|"]
    histories = {}
    for name, variant in runs.items():
        art, seconds = _timed(load_or_train_ppo, variant)
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


def ppo_gao_section(run: RunConfig, out: Path, ppo_beta: float, record: dict | None = None,
                    **options) -> list[str]:
    """Gao's R_RL fit of the pipeline's PPO run at ``ppo_beta``, and PPO at ``ppo_beta`` against
    proxies of several sizes, several PPO seeds each (:func:`rlhf_lab.studies.ppo_gao.ppo_gao_study`
    with ``options``)."""
    lines = ["", "## Overoptimisation (Gao et al. 2023): PPO"]
    start = time.perf_counter()
    gao = ppo_gao_study(run, beta=ppo_beta, **options)
    lines += ["", f"The study took {time.perf_counter() - start:.0f} s here (reward models, "
                  f"{len(gao['config']['seeds'])} PPO run(s) per proxy and their evaluation; "
                  f"0 s when cached)."]
    grid = gao["config"]["pairs_grid"]
    if record is not None:
        record["ppo_gao"] = summary_json.ppo_gao_rows(gao, {})
    history = load_or_train_ppo(run.with_ppo(beta=ppo_beta)).metrics["history"]
    cfg = gao["config"]
    own = sft_baseline(run, [load_or_train_rm(run).model], cfg["baseline_per_prompt"],
                       cfg["baseline_seed"], run.ppo.max_new_tokens)
    baseline = {"gold": own["gold"], "proxy": own["proxy"][0]}    # the SFT policy's precise means
    d = np.sqrt(np.maximum([h["kl"] for h in history], 1e-6))
    gain = np.array([h["gold"] for h in history]) - baseline["gold"]
    if len(history) < 3:
        return lines + ["", f"PPO at β = {ppo_beta:g}: too few iterations to fit R_RL(d)."]
    fit = fit_rl(d[1:], gain[1:])
    common_plots.save(overoptimisation_plots.ppo_gao_curve(history, (fit.alpha, fit.beta),
                                   f"PPO at β = {ppo_beta:g}: gains against d = sqrt(KL)", baseline),
               out / "ppo_gao_curve.png")
    peak = "never turns down" if not np.isfinite(fit.kl_peak) else f"peak at KL ≈ {fit.kl_peak:.2f}"
    lines += ["", f"PPO at β = {ppo_beta:g}, Gao's R_RL(d) = d(α − β log d) fit to the gold gain: "
                  f"α = {fit.alpha:.3f}, β = {fit.beta:.3f}, {peak}; the gold gain observed at its "
                  f"best is {gain.max():.3f} at KL {history[int(gain.argmax())]['kl']:.2f}."]
    common_plots.save(overoptimisation_plots.ppo_gao_curves(gao), out / "ppo_gao_curves.png")
    lines += ["", f"PPO at β = {ppo_beta:g} against each proxy size (gold gain over the SFT policy's "
                  f"mean over {gao['baseline']['samples']} replies, {gao['baseline']['gold']:.3f}; "
                  f"proxies with the head {cfg['rm_pooling'] or run.rm.pooling}, "
                  f"{cfg['iterations'] or run.ppo.iterations} iterations):", ""]
    for p in gao["proxies"]:
        smooth, rm = p["smoothed_peak"], p["reward_model"]
        lines.append(f"- proxy on {p['n_pairs']} pairs ({p.get('params', '?')} parameters; on its "
                     f"held-out pairs accuracy {rm['accuracy']:.3f} of a Bayes ceiling "
                     f"{rm['bayes_ceiling']:.3f}, gold-order accuracy {rm['gold_order_accuracy']:.3f}, "
                     f"correlation with gold {rm['gold_correlation']:.3f})")
        lines.append(f"  - its first seed's rollout batches: gold peak {p['peak']['gold_gain']:+.3f} at KL "
                     f"{p['peak']['kl']:.2f} (iteration {p['peak']['iteration']}; the best mean of "
                     f"iterations {smooth['first']}-{smooth['last']}: {smooth['gold_gain']:+.3f} at KL "
                     f"{smooth['kl']:.2f}), final {p['final']['gold_gain']:+.3f} at KL "
                     f"{p['final']['kl']:.2f}; {_rl_shape(p['fit'])}")
        if p.get("checkpoints"):
            c = p["checkpoints"]
            lines.append(f"  - checkpoints ({len(world.all_prompts()) * cfg['eval_per_prompt']} replies every "
                         f"{cfg['eval_every']} iterations, the same seeds each time): gold peak "
                         f"{c['peak']['gold_gain']:+.3f} at KL {c['peak']['kl']:.2f} (after "
                         f"{c['peak']['iteration']} iterations), final {c['final']['gold_gain']:+.3f} "
                         f"at KL {c['final']['kl']:.2f}; {_rl_shape(c['fit'])}")
        mean = p.get("seed_mean")
        if mean and mean["seeds"] > 1:
            lines.append(f"  - mean of {mean['seeds']} PPO seeds (± one standard error across seeds): "
                         f"gold peak {mean['peak']['gold_gain']:+.3f} ± {mean['peak']['gold_se']:.3f} at "
                         f"KL {mean['peak']['kl']:.2f} (after {mean['peak']['iteration']} iterations), "
                         f"final {mean['final']['gold_gain']:+.3f} ± {mean['final']['gold_se']:.3f} at KL "
                         f"{mean['final']['kl']:.2f}, fall {mean['fall']:+.3f} ± {mean['fall_se']:.3f}; "
                         f"{_rl_shape(mean['fit'])}")
        if p.get("stages"):
            lines.append(gao_stage_line(p["stages"]))
    means = [p["seed_mean"] for p in gao["proxies"] if p.get("seed_mean")]
    if len(means) == len(gao["proxies"]) and means[0]["seeds"] > 1:
        lines += ["", "Gao et al.'s ordering (a larger proxy peaks higher and later), seed means of "
                      "neighbouring proxy sizes:", ""]
        for (a, b), o in zip(zip(grid, grid[1:]), peak_ordering(means)):
            lines.append(f"- {a} → {b} pairs: peak gain {o['gain_diff']:+.3f} ± {o['gain_se']:.3f} "
                         f"(z = {o['z']:+.1f}), peak KL {o['kl_diff']:+.2f}")
        lines += _gao_goals(means[-1], grid[-1], (record or {}).get("oracle_ppo_gain"))
    return lines


def _gao_goals(best: dict, pairs: int, oracle: float | None) -> list[str]:
    """Issue 22's goals for the best proxy's seed-mean PPO curve, each with its measurement."""
    peak, fall = best["peak"], best["fall"]
    met = lambda ok: "met" if ok else "NOT met"
    half = "" if oracle is None else f" and half the oracle's gain ({oracle / 2:+.3f})"
    return ["", f"Goals (issue 22) for the proxy on {pairs} pairs, ± one standard error across seeds:", "",
            f"- peak gold gain {peak['gold_gain']:+.3f} ± {peak['gold_se']:.3f}, at least +0.3{half}: "
            f"{met(peak['gold_gain'] >= 0.3 and (oracle is None or peak['gold_gain'] >= oracle / 2))}",
            f"- two standard errors above zero: {met(peak['gold_gain'] > 2 * peak['gold_se'])}",
            f"- falls at least 0.3 below its peak: {fall:+.3f} ± {best['fall_se']:.3f}: "
            f"{met(-fall >= 0.3)}"]


def _rl_shape(fit: dict | None) -> str:
    """One R_RL fit of :func:`rlhf_lab.studies.ppo_gao.fit_curve` in words."""
    if fit is None:
        return "too few points to fit"
    return (f"fit α = {fit['alpha']:.3f}, β = {fit['beta']:.3f}, " +
            ("never turns down" if not np.isfinite(fit["kl_peak"]) else f"peak at KL ≈ {fit['kl_peak']:.2f}"))


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
