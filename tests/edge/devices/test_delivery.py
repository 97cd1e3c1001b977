"""The delivery contract's books (edge/devices/delivery.py), on a hand-turned clock."""

from __future__ import annotations

from edge.devices.delivery import AckOutcome, Delivery, DeliveryStats, PendingEvent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _event(n: int) -> PendingEvent:
    return PendingEvent(f"evt/{n}", f"payload {n}".encode(), None)


def test_an_event_is_resent_unchanged_after_the_timeout_until_its_ack_arrives() -> None:
    clock = Clock()
    delivery = Delivery(5.0, clock)
    event = _event(1)
    delivery.add("e1", event, on_wire=True)
    assert delivery.due() == []
    clock.now += 5.0
    assert delivery.due() == [event] and event.payload == b"payload 1"
    assert delivery.take_ack("e1", ok=True, retry=False) is AckOutcome.ACKED
    clock.now += 60.0
    assert delivery.due() == []
    assert delivery.stats() == DeliveryStats(sent=1, acked=1, failed=0, resent=1, pending=0)


def test_an_event_never_on_the_wire_is_due_at_once_and_not_counted_as_a_resend() -> None:
    delivery = Delivery(5.0, Clock())
    event = _event(1)
    delivery.add("e1", event, on_wire=False)
    assert delivery.due() == [event]
    assert delivery.stats().resent == 0


def test_a_reconnect_sends_every_pending_event_again() -> None:
    delivery = Delivery(5.0, Clock())
    events = [_event(n) for n in range(3)]
    for n, event in enumerate(events):
        delivery.add(f"e{n}", event, on_wire=True)
    assert delivery.all_again() == events
    assert delivery.stats().resent == 3


def test_retry_keeps_the_event_and_a_refusal_releases_it_as_failed() -> None:
    delivery = Delivery(5.0, Clock())
    delivery.add("e1", _event(1), on_wire=True)
    assert delivery.take_ack("e1", ok=False, retry=True) is AckOutcome.KEPT
    assert delivery.pending_ids() == ["e1"]
    assert delivery.take_ack("e1", ok=False, retry=False) is AckOutcome.FAILED
    assert delivery.take_ack("e1", ok=True, retry=False) is AckOutcome.KEPT  # the ack of a resend
    assert delivery.stats() == DeliveryStats(sent=1, acked=0, failed=1, resent=0, pending=0)


def test_a_full_delivery_drops_the_oldest_event_for_a_new_one() -> None:
    delivery = Delivery(5.0, Clock(), max_pending=2)
    assert delivery.add("e1", _event(1), on_wire=True) is None
    assert delivery.add("e2", _event(2), on_wire=True) is None
    assert delivery.add("e3", _event(3), on_wire=True) == "e1"
    assert delivery.pending_ids() == ["e2", "e3"]
