"""Observers of what the box itself publishes on its bus (the live page, edge/web/pages/live.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Tap = Callable[[str, bytes], None]


def notify_taps(taps: list[Tap], topic: str, payload: bytes) -> None:
    """Hand a message the box published to each observer; an observer's failure is logged, never raised."""
    for tap in taps:
        try:
            tap(topic, payload)
        except Exception:
            log.exception("bus tap failed on %s", topic)
