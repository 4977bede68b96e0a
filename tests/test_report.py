"""The pipeline command end to end on small settings: every figure and the summary are written."""
import matplotlib

matplotlib.use("Agg")

from rlhf_lab.report import run_pipeline  # noqa: E402

from test_pipeline import SMALL  # noqa: E402
from test_ppo import FAST  # noqa: E402

BON = dict(pairs_grid=(128, 256), n_max=32, ensemble_seeds=(0, 1), ensemble_pairs=128,
           heldout_pairs=128)
SWEEP = dict(n_samples=32, tail=2, frontier_points=5, jobs=1, min_ess=10)


def test_pipeline_writes_summary_and_figures(tmp_path):
    summary = run_pipeline(tmp_path, SMALL.with_ppo(**{**FAST, "iterations": 4}), rm_pairs=(128, 256), betas=(0.1, 0.01),
                           bon=BON, sweep_options=SWEEP)
    text = summary.read_text()
    for heading in ("Stages 0-1", "Stage 2", "Stage 3", "The β sweep", "Overoptimisation"):
        assert heading in text
    assert "| 256 |" in text and "β=0.01" in text and "oracle" in text
    assert "R_RL(d)" in text and "mean_minus_std" in text and "held-out RM" in text
    figures = {p.name for p in tmp_path.glob("*.png")}
    assert figures == {"sft_loss.png", "sft_gold.png", "rm_accuracy.png", "rm_calibration.png",
                       "ppo_curves.png", "ppo_gold_vs_proxy.png", "beta_sweep.png",
                       "bon_gao_curves.png", "bon_ensemble.png", "bon_peak_detection.png",
                       "ppo_gao_curve.png"}
