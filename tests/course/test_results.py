"""RESULTS.md: the pipeline summary under a header that names when, where and how long."""
import datetime

import pytest

from rlhf_lab.course.results import results_page


def test_results_page_puts_the_header_above_the_summarys_sections():
    summary = "# rlhf-lab pipeline summary\n\n## Stages 0-1\n\nrow\n"
    when = datetime.datetime(2026, 12, 7, 16, 56, tzinfo=datetime.timezone.utc)
    page = results_page(summary, 90.0, when=when, where="AMD EPYC, 2 cores")
    lines = page.split("\n")
    assert lines[0] == "# Results of the default pipeline" and lines[1] == ""
    assert lines[2].startswith("Measured 2026-12-07 16:56 UTC on AMD EPYC, 2 cores (torch ")
    assert "in 1.5 min of wall time" in lines[2]
    assert lines[3] == "" and lines[4] == "## Stages 0-1"          # a blank line before the heading
    assert "rlhf-lab pipeline summary" not in page and page.endswith("row\n")
    with pytest.raises(ValueError, match="seconds"):
        results_page(summary, -1.0)
