"""No number typed into a notebook's prose drifts from what the kit computes (issue 24).

Every decimal number in the markdown of ``solutions/`` (outside math, code spans, links,
equation tags such as (4.2) and settings written as ``β = …``) must be registered in
:data:`CLAIMS` with a check that recomputes it from the package. A new number fails the first
test until it is registered (or, better, printed by a code cell); a registered number whose
check no longer agrees fails the second (or, where it needs a trained model, the slow third).
"""
import json
import math
import re

import pytest

from rlhf_lab.core.paths import SOLUTIONS

NUMBER = re.compile(r"(?<![\w.])[+−-]?\d+\.\d+(?!\d|\.\d|\w)")
NOT_PROSE = [r"\$\$.*?\$\$", r"\$[^$]*\$", r"`[^`]*`", r"\(https?://[^)]*\)", r"\(\d+\.\d+\)",
             r"β\s*=\s*\d+(?:\.\d+)?(?:(?:,\s*|\s+and\s+|\s+or\s+)\d+(?:\.\d+)?)*"]


def stated_numbers(notebook) -> set[tuple[str, str, str]]:
    """(notebook name, cell id, number) for every decimal number in the prose of ``notebook``
    (its references cell aside: years and arXiv ids)."""
    found = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "markdown" or cell.get("id") == "c-refs":
            continue
        text = "".join(cell["source"])
        for pattern in NOT_PROSE:
            text = re.sub(pattern, "", text, flags=re.S)
        found |= {(notebook.stem, cell["id"], m.group(0)) for m in NUMBER.finditer(text)}
    return found


def _parameters_of_the_base_model():
    from rlhf_lab.lm import models
    from rlhf_lab.stages.sft import PretrainConfig
    return round(models.count_parameters(models.new_policy(PretrainConfig().preset)) / 1e6, 1)


def _binomial_se(n: int) -> float:
    return math.sqrt(0.25 / n)                  # a share near one half, n draws


def _config(cls_path: str, field: str):
    module, name = cls_path.rsplit(".", 1)
    return getattr(getattr(__import__(module, fromlist=[name]), name)(), field)


FAST = {
    # (notebook, cell id, number as written): what it says, recomputed; the number it must match
    ("00_world_and_base_model", "c09", "0.1"): (_parameters_of_the_base_model, 0.1, 0.0),
    ("02_reward_model", "c15", "0.15"): (lambda: _binomial_se(10), 0.15, 0.01),        # ten games
    ("04_ppo", "c33", "0.2"): (lambda: _config("rlhf_lab.stages.ppo.PPOConfig", "clip_eps"), 0.2, 0.0),
    ("05_beta_sweep", "c03", "0.2"): (lambda: _config("rlhf_lab.studies.sweep.SweepConfig", "careful_above"), 0.2, 0.0),
    ("05_beta_sweep", "c03", "1.5"): (lambda: _config("rlhf_lab.studies.sweep.SweepConfig", "careful_length"), 1.5, 0.0),
    ("05_beta_sweep", "c11", "0.2"): (lambda: _config("rlhf_lab.studies.sweep.SweepConfig", "careful_above"), 0.2, 0.0),
    ("06_overoptimisation", "c24", "0.03"): (
        lambda: _binomial_se(_config("rlhf_lab.studies.overoptimisation.BestOfNConfig", "eval_labels_per_n")),
        0.03, 0.005),
    ("07_beyond_rlhf", "c28", "0.4"): (
        lambda: __import__("rlhf_lab.studies.feedback", fromlist=["SOURCES"]).SOURCES["sft_cold"].temperature,
        0.4, 0.0),
}
SLOW = {
    ("00_world_and_base_model", "c18", "1.8"): (lambda: _base_model_final_loss(), 1.8, 0.1),
}
CLAIMS = {**FAST, **SLOW}


def _base_model_final_loss() -> float:
    from rlhf_lab.pipeline.runs import RunConfig, load_or_train_base
    return load_or_train_base(RunConfig()).metrics["history"][-1]["loss"]


def test_every_number_in_the_prose_is_a_registered_claim():
    stated = set().union(*(stated_numbers(p) for p in sorted(SOLUTIONS.glob("*.ipynb"))))
    unregistered = sorted(stated - set(CLAIMS))
    assert not unregistered, (
        f"numbers typed into notebook prose without a check: {unregistered}; print them from a "
        "code cell, or register each in tests/course/test_notebook_claims.py with a check")
    assert not sorted(set(CLAIMS) - stated), "registered claims no longer in the notebooks"


def test_a_typed_number_is_found_and_settings_are_not(tmp_path):
    cell = {"cell_type": "markdown", "id": "x", "source": [
        "PPO at β = 1, 0.3 and 0.01 gained 0.42 gold (4.2); $e^{0.5}$ and `lr=0.01` are not prose.\n"]}
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": [cell]}))
    assert stated_numbers(notebook) == {("nb", "x", "0.42")}


@pytest.mark.parametrize("key", sorted(FAST))
def test_each_fast_claim_matches_what_the_kit_computes(key):
    compute, stated, tolerance = FAST[key]
    assert float(key[2]) == stated
    assert abs(compute() - stated) <= tolerance + 1e-12, f"{key}: the kit now computes {compute()}"


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SLOW))
def test_each_slow_claim_matches_the_trained_default(key):
    compute, stated, tolerance = SLOW[key]
    assert float(key[2]) == stated
    assert abs(compute() - stated) <= tolerance, f"{key}: the kit now computes {compute()}"
