"""The pipeline summary's "Overoptimisation (Gao et al. 2023): PPO" section: Gao's R_RL fit of the
pipeline's own small-β run, and :func:`rlhf_lab.studies.ppo_gao.ppo_gao_study` (PPO against
proxies of several sizes, several PPO seeds each) with its figures, orderings and goals."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rlhf_lab import world
from rlhf_lab.course import summary_json
from rlhf_lab.course.plots import common as common_plots
from rlhf_lab.course.plots import overoptimisation as overoptimisation_plots
from rlhf_lab.course.report_hacks import gao_stage_line
from rlhf_lab.equations.overopt_math import fit_rl
from rlhf_lab.pipeline.runs import RunConfig, load_or_train_ppo, load_or_train_rm
from rlhf_lab.studies.ppo_gao import peak_ordering, ppo_gao_study, sft_baseline

__all__ = ["ppo_gao_section"]


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
        lines += _gao_goals(means[-1], grid[-1], (record or {}).get("oracle_ppo_gain"), peak_ordering(means))
    return lines


def _gao_goals(best: dict, pairs: int, oracle: float | None, orders: list[dict] = ()) -> list[str]:
    """Issue 22's goals for the best proxy's seed-mean PPO curve and for the ordering of the
    proxies' peaks (:func:`peak_ordering`), each with its measurement."""
    peak, fall = best["peak"], best["fall"]
    zs = ", ".join(f"{o['z']:+.1f}" for o in orders)
    kls = ", ".join(f"{o['kl_diff']:+.2f}" for o in orders)
    met = lambda ok: "met" if ok else "NOT met"
    half = "" if oracle is None else f" and half the oracle's gain ({oracle / 2:+.3f})"
    return ["", f"Goals (issue 22) for the proxy on {pairs} pairs, ± one standard error across seeds:", "",
            f"- peak gold gain {peak['gold_gain']:+.3f} ± {peak['gold_se']:.3f}, at least +0.3{half}: "
            f"{met(peak['gold_gain'] >= 0.3 and (oracle is None or peak['gold_gain'] >= oracle / 2))}",
            f"- two standard errors above zero: {met(peak['gold_gain'] > 2 * peak['gold_se'])}",
            f"- falls at least 0.3 below its peak: {fall:+.3f} ± {best['fall_se']:.3f}: "
            f"{met(-fall >= 0.3)}"] + ([
            f"- each larger proxy peaks higher by two standard errors (z = {zs}): "
            f"{met(all(o['z'] >= 2 for o in orders))}; and later (peak KL {kls}): "
            f"{met(all(o['kl_diff'] > 0 for o in orders))}"] if orders else [])


def _rl_shape(fit: dict | None) -> str:
    """One R_RL fit of :func:`rlhf_lab.studies.ppo_gao.fit_curve` in words."""
    if fit is None:
        return "too few points to fit"
    return (f"fit α = {fit['alpha']:.3f}, β = {fit['beta']:.3f}, " +
            ("never turns down" if not np.isfinite(fit["kl_peak"]) else f"peak at KL ≈ {fit['kl_peak']:.2f}"))
