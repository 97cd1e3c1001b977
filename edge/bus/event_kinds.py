"""Every event kind the ingest takes, in one table: the core kinds (sale, scan, temp) and the device kinds.

A new kind is a `KindSpec` (pydantic model of `data` + what it becomes) registered here; the ingest,
its metrics and its acks need no change. `decode_options` turns store settings into what decoding needs.
"""

from __future__ import annotations

from typing import Any

from edge.bus.payloads import CORE_KINDS, DecodeOptions, KindSpec
from edge.config import Settings


def device_event_kinds() -> dict[str, KindSpec]:
    """The event kinds of this box, by the last topic level `evt/<kind>`."""
    kinds = dict(CORE_KINDS)
    # issue 4 kinds are registered below, one import and one line per module that owns a kind.
    # --- weight (scales) ---
    # --- receiving (scan-to-receive, delivery notes) ---
    # --- asn (suppliers over MQTT) ---
    # --- attachments (photos, signatures) ---
    return kinds


def decode_options(settings: Settings) -> DecodeOptions:
    """The decoding settings of the store (payload limit; per-kind settings in `extra`)."""
    extra: dict[str, Any] = {}
    # --- label formats (in-store variable-measure barcodes) ---
    return DecodeOptions(max_bytes=settings.mqtt_max_payload_bytes, extra=extra)
