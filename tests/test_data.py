"""The committed data/ folder is exactly what `python -m rlhf_lab data` writes."""
import json

from rlhf_lab.core.paths import DATA  # noqa: E402
from rlhf_lab.datasets import DATA_SIZES, write_data


def test_regenerating_gives_the_committed_files(tmp_path):
    counts = write_data(tmp_path, seed=0)
    for name in counts:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), f"data/{name} is stale"
    assert counts["pretrain.jsonl"] == DATA_SIZES["pretrain"]


def test_preference_rows_are_labelled_pairs():
    rows = [json.loads(line) for line in (DATA / "preferences.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"prompt", "chosen", "rejected", "gold_chosen", "gold_rejected"}
    agree = sum(r["gold_chosen"] > r["gold_rejected"] for r in rows) / len(rows)
    assert 0.55 < agree < 0.95        # noisy Bradley-Terry labels: mostly, not always, the better one
