"""The ready queues' answer to "how many are ahead of this job", as the queues change."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from titan_runtime.core.scheduler import ReadyQueues, Requirement

ANY, GPU = Requirement(), Requirement(tags=frozenset({"GPU"}))


def test_position_counts_the_live_jobs_ahead_in_the_same_queue() -> None:
    queues = ReadyQueues()
    for i, priority in enumerate((1, 5, 1, 9)):
        queues.push(("r", f"j{i}"), ANY, priority)
    queues.push(("r", "gpu"), GPU, 100)
    assert [queues.position(("r", f"j{i}")) for i in range(4)] == [2, 1, 3, 0]
    queues.remove(("r", "j3"))  # the first one leaves: everyone moves up
    assert [queues.position(("r", f"j{i}")) for i in range(3)] == [1, 0, 2]
    queues.push(("r", "late"), ANY, 5)
    assert queues.position(("r", "late")) == 1 and queues.position(("r", "j0")) == 2
    assert queues.position(("r", "gpu")) == 0 and queues.position(("r", "unknown")) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9), st.integers(0, 3)), max_size=40))
def test_position_agrees_with_counting_whatever_the_order_of_changes(steps: list) -> None:
    queues = ReadyQueues()
    live: dict[tuple[str, str], tuple[int, int]] = {}  # key -> (priority, arrival)
    for n, (add, key_no, priority) in enumerate(steps):
        key = ("r", f"j{key_no}")
        if add:
            queues.push(key, ANY, priority)
            live[key] = (-priority, n)
        else:
            queues.remove(key)
            live.pop(key, None)
        for k, rank in live.items():
            assert queues.position(k) == sum(1 for other in live.values() if other < rank)
