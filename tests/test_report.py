"""The pipeline command end to end on small settings: every figure and the summary are written."""
import matplotlib

matplotlib.use("Agg")

from rlhf_lab.report import run_pipeline  # noqa: E402

from test_pipeline import SMALL  # noqa: E402
from test_ppo import FAST  # noqa: E402


def test_pipeline_writes_summary_and_figures(tmp_path):
    summary = run_pipeline(tmp_path, SMALL.with_ppo(**FAST), rm_pairs=(128, 256), betas=(0.1, 0.01))
    text = summary.read_text()
    for heading in ("Stages 0-1", "Stage 2", "Stage 3"):
        assert heading in text
    assert "| 256 |" in text and "β=0.01" in text and "oracle" in text
    figures = {p.name for p in tmp_path.glob("*.png")}
    assert figures == {"sft_loss.png", "sft_gold.png", "rm_accuracy.png", "rm_calibration.png", "ppo_curves.png",
                       "ppo_gold_vs_proxy.png"}
