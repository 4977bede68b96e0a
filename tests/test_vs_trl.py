"""benchmarks/vs_trl.py's pure helpers (the benchmark itself needs TRL and is not a test)."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_trl.py"
_spec = importlib.util.spec_from_file_location("vs_trl", _PATH)
vs_trl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vs_trl)

TRL = {"generate": 1.0, "score": 0.5, "update": 4.0, "other": 0.5, "total": 6.0, "gc": 0.25}
HEAD = {"generate": 0.25, "score": 0.25, "update": 1.0, "total": 1.5, "floor": 1.4}
SEPARATE = {"generate": 0.25, "score": 0.5, "update": 2.25, "total": 3.0, "floor": 2.5}


def test_ratios_are_trl_over_ours_and_ours_over_floor():
    r = vs_trl.ratios(TRL, HEAD, SEPARATE)
    assert r["trl/separate"] == 2.0 and r["trl/head"] == 4.0
    assert r["separate/floor"] == 1.2 and r["head/floor"] == pytest.approx(1.5 / 1.4)
    assert r["met"] == {"trl/separate": True, "trl/head": True, "separate/floor": False, "head/floor": True}


def test_a_goal_is_missed_just_below_it():
    r = vs_trl.ratios({**TRL, "total": 5.9}, HEAD, SEPARATE)
    assert r["met"]["trl/separate"] is False and r["met"]["trl/head"] is True   # 1.97x, 3.93x


def test_best_iteration_leaves_out_the_warm_up():
    rows = [{"total": 1.0}, {"total": 3.0}, {"total": 2.0}]
    assert vs_trl.best_iteration(rows) == {"total": 2.0}
    with pytest.raises(ValueError, match="timed iteration"):
        vs_trl.best_iteration(rows[:1])


def test_best_of_rounds_takes_each_number_at_its_best():
    rounds = [{"total": 3.0, "floor": 2.0, "meta": {}}, {"total": 2.5, "floor": 2.2, "meta": {}}]
    best = vs_trl.best_of(rounds)
    assert best == {"total": 2.5, "floor": 2.0}


def test_work_mismatch_names_what_differs():
    ok = {"reply_lengths": [32, 32], "stop_ids": [None],
          "iterations": [{"optimizer_steps": 16}, {"optimizer_steps": 16}]}
    assert vs_trl.work_mismatch(ok) is None
    bad = {"reply_lengths": [32, 20], "stop_ids": [None, 2], "iterations": [{"optimizer_steps": 4}]}
    assert vs_trl.work_mismatch(bad) == ("reply lengths [20, 32] (want 32); stop token ids [None, 2] "
                                         "(want none); optimiser steps per iteration [4] (want 16)")


def test_table_prints_each_row_and_the_verdicts():
    lines = vs_trl.table("round 1", TRL, HEAD, SEPARATE).splitlines()
    assert lines[1].split()[-7:] == ["1.00", "0.50", "4.00", "0.50", "6.00", "-", "341"]   # 2048 tok / 6 s
    assert lines[2].split()[-7:] == ["0.25", "0.50", "2.25", "-", "3.00", "2.50", "683"]
    assert lines[4] == "  of TRL's iteration, 0.25 s in gc.collect() (within score and other)"
    assert lines[5] == ("  TRL / ours: separate critic 2.00x (goal >= 2: met), value head 4.00x "
                        "(goal >= 3: met)")
    assert lines[6] == "  ours / floor: separate critic 1.20x, value head 1.07x (goal <= 1.1: NOT met / met)"
