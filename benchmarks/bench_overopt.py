"""Benchmark of the best-of-n overoptimisation study (notebook 06, ``rlhf_lab.studies.overoptimisation``).

Runs :func:`rlhf_lab.studies.overoptimisation.overoptimisation_study` with its defaults from an empty cache (a
temporary ``RLHF_LAB_CACHE``, so base, SFT and every reward model are trained too), then once
more from the warm cache, and prints the time of each part and the headline numbers. The reward
models train and score the pool in two single-threaded worker processes (``--threads`` sets this
process's threads: the base model, SFT, the pool and the curves); a worker's row gives its wall
seconds, training and scoring together.

    python benchmarks/bench_overopt.py [--threads 2] [--figures DIR] [--cache DIR]

The budget (DESIGN.md section 9): the overoptimisation notebook within 4 min from an empty cache
on 2 CPU cores. Other processes on the machine slow every part down; the load average and the
CPU seconds (all threads of this process) are printed beside the wall-clock seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")


def _table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[c if isinstance(c, str) else f"{c:.2f}" if isinstance(c, float) else str(c)
                         for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def _bon_row(name: str, summary: dict, accuracy=None) -> list:
    gain = summary["curve"]["gold_gain"]
    return [name, "-" if accuracy is None else accuracy, summary["peak"]["n"],
            f"{summary['peak']['gold_gain']:+.2f}", f"{gain[-1]:+.2f}", f"{summary['fall']:+.2f}"]


def _choice_row(judge: str, proxy_pairs: int, r: dict) -> list:
    return [judge, proxy_pairs, r["n_chosen"], r["n_peak"], f"{r['gold_gain_chosen']:+.2f}",
            f"{r['gold_gain_peak']:+.2f}", r["regret"], f"{r['octaves']:+.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--cache", default=None, help="cache folder (default: a new empty one)")
    parser.add_argument("--figures", default=None, help="also save the three figures here")
    args = parser.parse_args()

    cache = Path(args.cache or tempfile.mkdtemp(prefix="rlhf_lab_bench_overopt_"))
    os.environ["RLHF_LAB_CACHE"] = str(cache)
    import matplotlib
    matplotlib.use("Agg")
    import torch
    torch.set_num_threads(args.threads)
    from rlhf_lab.course.plots import common as common_plots
    from rlhf_lab.course.plots import overoptimisation as overoptimisation_plots
    from rlhf_lab.pipeline.runs import RunConfig
    from rlhf_lab.studies import overoptimisation

    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    res = overoptimisation.overoptimisation_study(RunConfig())
    cold = (time.perf_counter() - wall, time.process_time() - cpu)
    wall = time.perf_counter()
    again = overoptimisation.overoptimisation_study(RunConfig())
    warm = time.perf_counter() - wall
    assert again == res

    print(f"cache {cache}  torch threads {args.threads}  load average (1 min) "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    rows = [[part, t["wall_s"], t["cpu_s"] if "cpu_s" in t else "-"] for part, t in res["timings"].items()]
    rows += [["whole call, empty cache", cold[0], cold[1]], ["whole call, warm cache", warm, "-"]]
    print(_table(["part", "wall s", "cpu s"], rows))

    pool, oracle = res["pool"], res["oracle"]
    print(f"\npool: {pool['prompts']} prompts x {pool['m']} replies, {pool['distinct_fraction']:.0%} "
          f"distinct; gold {pool['gold_mean']:.2f} ± {pool['gold_std']:.2f}; oracle gain at "
          f"n={res['ns'][-1]}: {oracle['curve']['gold_gain'][-1]:+.2f}\n")
    rows = []
    for p in res["proxies"]:
        c, fit, rm = p["curve"], p["fit"], res["reward_models"][f"proxy-{p['n_pairs']}"]
        rows.append([p["n_pairs"], rm["accuracy"], rm["gold_correlation"], p["peak"]["n"], p["peak"]["d"],
                     f"{p['peak']['gold_gain']:+.2f}", fit["d_peak"] if fit["d_peak"] is not None else "none",
                     f"{c['gold_gain'][-1]:+.2f}", f"{p['fall']:+.2f}", f"{c['proxy_gain'][-1]:+.2f}",
                     f"{c['kl_plugin'][-1]:.2f}"])
    print("Best-of-n per proxy size (gains over n = 1; d = sqrt(KL_bon); last columns at n = n_max)")
    print(_table(["pairs", "RM acc", "corr gold", "peak n", "peak d", "peak gold", "fit d*",
                  "gold@max", "fall", "proxy@max", "KL plug-in@max"], rows))
    print(f"(KL_bon bound at n = {res['ns'][-1]}: {oracle['curve']['kl_bon'][-1]:.2f})")
    rows = [[p["n_pairs"], p["seeds"], p["peak"]["n"], f"{p['peak']['gold_gain']:+.2f}",
             p["fit"]["kl_peak"] if p["fit"]["kl_peak"] is not None else "none", f"{p['fall']:+.2f}",
             " ".join(str(s["peak"]["n"]) for s in p["per_seed"])] for p in res["seed_average"]]
    print("\nThe same, each size's curve averaged over its seeds")
    print(_table(["pairs", "seeds", "peak n", "peak gold", "fit KL*", "fall", "single seeds' peak n"], rows))

    ens, rms = res["ensemble"], res["reward_models"]
    rows = [_bon_row(f"member seed {m['seed']}", m, rms[f"ensemble-{m['seed']}"]["accuracy"])
            for m in ens["members"]]
    rows += [_bon_row(f"ensemble {how}", a) for how, a in ens["aggregates"].items()]
    rows += [_bon_row(f"one RM on {p['n_pairs']} pairs", p, rms[f"proxy-{p['n_pairs']}"]["accuracy"])
             for p in res["proxies"] if p["n_pairs"] == ens["same_labels_n_pairs"]]
    print(f"\nEnsemble of {len(ens['members'])} RMs on {ens['n_pairs']} pairs each (k = {ens['k']:g})")
    print(_table(["reward", "RM acc", "peak n", "peak gold", "gold@max", "fall"], rows))
    print(f"disagreement (std of the members) on member 0's choice: {ens['disagreement'][0]:.2f} "
          f"(n=1) -> {ens['disagreement'][-1]:.2f} (n={res['ns'][-1]})")

    det = res["detection"]
    held = f"held-out RM ({det['heldout']['n_pairs']} pairs, acc {rms['heldout']['accuracy']:.2f})"
    rows = [_choice_row(held, r["n_pairs"], r) for r in det["heldout"]["per_proxy"]]
    rows.append(_choice_row("other members, mean - k std", ens["n_pairs"], det["ensemble_others"]))
    print("\nChoosing n without gold")
    print(_table(["judge", "proxy pairs", "n chosen", "gold peak n", "gold@chosen", "gold@peak",
                  "regret", "octaves"], rows))

    if args.figures:
        out = Path(args.figures)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("bon_gao_curves", "bon_ensemble", "bon_peak_detection"):
            common_plots.save(getattr(overoptimisation_plots, name)(res), out / f"{name}.png")
        print(f"\nfigures in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
