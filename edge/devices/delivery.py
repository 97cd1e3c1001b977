"""The delivery contract of a device's events (docs/devices.md), kept by its MQTT connection.

An event is kept from its first send until an ack with its id arrives; it is resent unchanged (same id, same
bytes) after `resend_after` seconds without an ack and on every reconnect. An ack with `retry: true` ("not
posted, send again later") keeps it; any other ack of a pending id releases it, as acked if `ok`, else as
failed. This module only keeps the books and says what to (re)send; the connection does the sending.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


@dataclass(slots=True)
class PendingEvent:
    """An event as it goes on the wire, and when it last went."""

    topic: str
    payload: bytes
    last_sent: float | None  # monotonic seconds; None = not on the wire yet


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """Events sent (each id once), acked ok, failed (acked not ok, final), resent, still pending."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    resent: int = 0
    pending: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(
            self.sent + other.sent,
            self.acked + other.acked,
            self.failed + other.failed,
            self.resent + other.resent,
            self.pending + other.pending,
        )


class AckOutcome(Enum):
    """What an ack did to the pending events."""

    KEPT = "kept"  # `retry: true`, or an id not pending (the ack of a resend, already counted)
    ACKED = "acked"
    FAILED = "failed"


class Delivery:
    """The pending events of one device connection, oldest first. Thread-safe; no I/O."""

    def __init__(self, resend_after: float, monotonic: Callable[[], float], max_pending: int | None = None) -> None:
        """`max_pending`: at most this many kept, the oldest dropped for a new one; None keeps all."""
        self._resend_after = resend_after
        self._monotonic = monotonic
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, PendingEvent] = OrderedDict()
        self._sent = self._acked = self._failed = self._resent = 0

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def pending_ids(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def stats(self) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(self._sent, self._acked, self._failed, self._resent, len(self._pending))

    def add(self, event_id: str, event: PendingEvent, *, on_wire: bool) -> str | None:
        """Keep a new event, stamped as sent now if it goes on the wire now; the id dropped to make room, if any."""
        dropped = None
        with self._lock:
            if self._max_pending is not None and len(self._pending) >= self._max_pending:
                dropped, _ = self._pending.popitem(last=False)
            self._pending[event_id] = event
            self._sent += 1
            if on_wire:
                event.last_sent = self._monotonic()
        return dropped

    def due(self) -> list[PendingEvent]:
        """The events not acked within `resend_after` seconds (or never sent), stamped as sent now."""
        now = self._monotonic()
        with self._lock:
            due = [p for p in self._pending.values() if p.last_sent is None or p.last_sent <= now - self._resend_after]
            self._stamp(due, now)
        return due

    def all_again(self) -> list[PendingEvent]:
        """Every pending event, stamped as sent now: after a reconnect, acks may have been lost with the old one."""
        with self._lock:
            due = list(self._pending.values())
            self._stamp(due, self._monotonic())
        return due

    def take_ack(self, event_id: str, *, ok: bool, retry: bool) -> AckOutcome:
        """Release the event an ack names, unless it says `retry`."""
        with self._lock:
            if event_id not in self._pending or retry:
                return AckOutcome.KEPT
            del self._pending[event_id]
            if ok:
                self._acked += 1
                return AckOutcome.ACKED
            self._failed += 1
            return AckOutcome.FAILED

    def _stamp(self, due: list[PendingEvent], now: float) -> None:
        """Count resends and stamp the send time; the caller holds the lock."""
        for pending in due:
            if pending.last_sent is not None:
                self._resent += 1
            pending.last_sent = now
