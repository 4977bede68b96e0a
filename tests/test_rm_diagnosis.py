"""benchmarks/rm_diagnosis.py's exact helpers."""
import importlib.util
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "rm_diagnosis.py"
_spec = importlib.util.spec_from_file_location("rm_diagnosis", _PATH)
rm_diagnosis = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm_diagnosis)


def test_annotator_agreement_is_p_squared_plus_its_complement_squared():
    agree = rm_diagnosis.annotator_agreement
    assert agree([0.0], [0.0], 1.0) == 0.5                       # a coin each: agree half the time
    assert agree([math.log(3.0)], [0.0], 1.0) == pytest.approx(0.75 ** 2 + 0.25 ** 2)
    assert agree([math.log(3.0)], [0.0], 2.0) == pytest.approx(0.9 ** 2 + 0.1 ** 2)   # σ(2 ln 3) = 0.9
    assert agree([50.0, 0.0], [0.0, 0.0], 1.0) == pytest.approx((1.0 + 0.5) / 2)
