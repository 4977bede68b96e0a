"""rlhf_lab.core.workers: calls run in spawned processes and come back in order."""
import operator

from rlhf_lab.core.workers import in_processes


def test_results_come_back_in_the_order_of_the_calls_with_one_thread_each():
    # operator.add(x, threads) with threads = 1 in every worker
    assert in_processes(operator.add, [(10,), (20,), (30,)], jobs=2, desc="test") == [11, 21, 31]
