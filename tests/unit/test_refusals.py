"""Refused partitions stay held through the consumer's own rejoin (``intake/refusals.py``).

Found on Kubernetes (tests/e2e/test_access.py): with its Read on the input topic removed, the consumer
rejoined the group to unstick the refused partitions, the revocation emptied the held set, and /ready
answered 200 ("in group, 0 partition(s)") between refusals, logging ``kafka.access_restored`` each time.
"""

from __future__ import annotations

from login_consumer.intake.refusals import Refusals

A, B, C = ("user-login", 0), ("user-login", 1), ("user-login", 2)


def test_a_held_partition_stays_held_through_our_rejoin_and_reassignment() -> None:
    refused = Refusals()
    refused.add(A)
    refused.add(B)
    refused.rejoin()
    refused.forget({A, B, C})  # the revocation of every partition, as unsubscribe() does
    assert refused.holding == {A, B}, "still refused: /ready must stay failed"
    refused.assigned({A, B, C})
    assert refused.holding == {A, B}
    assert refused.rejoining == set()


def test_after_the_rejoin_a_partition_assigned_elsewhere_is_not_held_here() -> None:
    refused = Refusals()
    refused.add(A)
    refused.add(B)
    refused.rejoin()
    refused.forget({A, B})
    refused.assigned({B})  # A went to another member: its refusal is that member's to report
    assert refused.holding == {B}


def test_a_revocation_by_the_group_still_drops_what_went_away() -> None:
    refused = Refusals()
    refused.add(A)
    refused.add(B)
    refused.forget({A})  # a rebalance we did not ask for: A is gone
    assert refused.holding == {B}
    refused.read(B)  # B delivered: its read works again
    assert not refused.holding


def test_stuck_waits_for_the_assignment_after_a_rejoin() -> None:
    refused = Refusals()
    refused.add(A)
    refused.rejoin()
    refused.forget({A})
    # between leaving and the new assignment nothing is known: no probe, no client call, still held
    assert refused.stuck(consumer=None, assignment=set()) == set()  # type: ignore[arg-type]
    assert refused.holding == {A}
