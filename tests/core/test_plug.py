"""The student-function plug: fallback once with a warning placed at the student's function."""
import warnings

import pytest

from rlhf_lab.core.plug import FallbackWarning, as_loss_and_stats, pluggable


def reference(x):
    return 2 * x


def not_written(x):
    raise NotImplementedError


def test_fallback_warns_once_at_the_students_function():
    call = pluggable(not_written, reference, "double")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not call.fell_back()
        assert call(3) == 6 and call(4) == 8                     # the reference, from then on
        assert call.fell_back()
    (w,) = [c for c in caught if issubclass(c.category, FallbackWarning)]
    assert w.filename == __file__ and w.lineno == not_written.__code__.co_firstlineno
    assert "double is not implemented yet" in str(w.message) and "training" not in str(w.message)


def test_a_written_function_is_used_as_written_and_none_means_the_reference():
    written = pluggable(lambda x: x + 1, reference, "double")
    assert written(3) == 4 and not written.fell_back()
    assert pluggable(None, reference, "double") is reference
    with pytest.raises(NotImplementedError):
        pluggable(not_written, not_written, "double")(1)


def test_as_loss_and_stats_accepts_both_forms():
    assert as_loss_and_stats(1.5) == (1.5, {})
    assert as_loss_and_stats((1.5, {"a": 1})) == (1.5, {"a": 1})
