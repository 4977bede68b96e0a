"""rlhf_lab.core.workers: calls run in spawned processes and come back in order; their loops feed
one bar in the parent and draw nothing themselves."""
import io
import multiprocessing
import operator
import time
from concurrent.futures import ProcessPoolExecutor

from rlhf_lab.core import progress
from rlhf_lab.core.workers import in_processes


def test_results_come_back_in_the_order_of_the_calls_with_one_thread_each():
    # operator.add(x, threads) with threads = 1 in every worker
    assert in_processes(operator.add, [(10,), (20,), (30,)], jobs=2, desc="test") == [11, 21, 31]


def steps_then_sleep(steps: int, step_s: float, sleep_s: float, threads: int = 1) -> int:
    """A worker's task: a loop of ``steps`` (as a training loop), then ``sleep_s`` without one."""
    for _ in progress.progress(range(steps), desc="worker loop"):
        time.sleep(step_s)
    time.sleep(sleep_s)
    return steps


def test_a_worker_draws_no_bar_of_its_own(monkeypatch, capfd):
    """Before #26 each worker drew a text bar on its stderr (a pink box in Jupyter)."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)          # the workers would draw
    assert in_processes(steps_then_sleep, [(20, 0.01, 0), (30, 0.01, 0)], 2, "test") == [20, 30]
    assert "worker loop" not in capfd.readouterr().err


def _follow(calls, **options) -> tuple[int, str]:
    """Run ``steps_then_sleep`` on ``calls`` in two workers; the steps counted and the bar's text."""
    context = multiprocessing.get_context("spawn")
    steps, text = context.Queue(), io.StringIO()
    with ProcessPoolExecutor(2, mp_context=context, initializer=progress.report_to,
                             initargs=(steps,)) as pool:
        futures = [pool.submit(steps_then_sleep, *call) for call in calls]
        counted = progress.follow_workers(futures, steps, "runs", file=text, disable=False)
    return counted, text.getvalue()


def test_one_bar_counts_every_step_of_every_worker_and_the_calls_done():
    counted, text = _follow([(30, 0.05, 0), (50, 0.01, 0), (70, 0, 0)])
    assert counted == 150
    assert "runs: 150 steps [" in text and "3/3 done]" in text, text


def test_the_bar_is_redrawn_while_no_step_ends_so_its_clock_moves():
    """A worker busy for 2.5 s outside any loop: the bar shows 1 s and 2 s go by (before #26 it
    sat at 00:00 until a call finished)."""
    counted, text = _follow([(1, 0, 2.5)])
    redraws = text.split("\r")
    assert counted == 1
    assert any("00:01" in r and "0/1 done" in r for r in redraws), text
    assert any("00:02" in r and "0/1 done" in r for r in redraws), text
