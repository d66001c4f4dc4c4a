"""The batching policy (sans-IO): time the writer spent in its own sends is not the Task's quiet time."""

from __future__ import annotations

from lute_ipc.transport import batching


def test_time_spent_sending_is_not_quiet_time() -> None:
    policy = batching.FlushPolicy(0.001, 1000, now=0.0)
    assert policy.after_append(1.0, "TASK_LOG", 10, True) == batching.FLUSH  # a lone message goes at once
    policy.busy_until(3.0)  # ... and its send took 2 s (waited for room, or failed after connect_timeout)
    assert policy.after_append(3.0002, "TASK_LOG", 10, True) == batching.SCHEDULE  # right behind: batched
    policy.busy_until(2.0)  # never moves back
    assert policy.after_append(3.0004, "TASK_LOG", 20, False) == batching.KEEP


def test_without_a_send_a_write_after_a_quiet_spell_still_goes_at_once() -> None:
    policy = batching.FlushPolicy(0.001, 1000, now=0.0)
    assert policy.after_append(1.0, "TASK_LOG", 10, True) == batching.FLUSH
    policy.busy_until(1.00005)
    assert policy.after_append(1.5, "TASK_LOG", 10, True) == batching.FLUSH


def test_after_a_hand_over_the_next_message_goes_at_once() -> None:
    """LUTE's per-message pattern: ``clear_communicator()`` hands its message over and the next
    communicator writes right after. The Task said it was done: that message is not batched
    (batching it scheduled the flusher thread, which then waited for the lock the ZeroMQ
    hand-over holds while it waits for the acknowledgement: ~20-25 us per message)."""
    policy = batching.FlushPolicy(0.001, 1000, now=0.0)
    assert policy.after_append(1.0, "TASK_LOG", 10, True) == batching.FLUSH
    policy.busy_until(1.0001)  # the hand-over's send
    policy.handed_over()
    assert policy.after_append(1.0002, "TASK_LOG", 10, True) == batching.FLUSH
