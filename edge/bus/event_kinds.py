"""Every event kind the ingest takes, in one table: the core kinds (sale, scan, temp) and the device kinds.

A new kind is a `KindSpec` (pydantic model of `data` + what it becomes) registered here; the ingest,
its metrics and its acks need no change. `decode_options` turns store settings into what decoding needs.
"""

from __future__ import annotations

from typing import Any

from edge.bus.payloads import CORE_KINDS, DecodeOptions, KindSpec
from edge.config import Settings
from edge.devices import attachments, barcodes, receiving, supplier_asns, weights


def device_event_kinds() -> dict[str, KindSpec]:
    """The event kinds of this box, by the last topic level `evt/<kind>`."""
    kinds = dict(CORE_KINDS)
    # issue 4 kinds are registered below, one import and one line per module that owns a kind.
    # --- weight (scales) ---
    kinds[weights.EVENT_KIND] = weights.KIND
    # --- receiving (scan-to-receive, delivery notes) ---
    kinds[receiving.EVENT_KIND] = receiving.RECEIVE_KIND
    # --- asn (suppliers over MQTT) ---
    kinds[supplier_asns.EVENT_KIND] = supplier_asns.ASN_KIND
    # --- attachments (photos, signatures) ---
    kinds[attachments.EVENT_KIND] = attachments.ATTACHMENT_KIND
    return kinds


def decode_options(settings: Settings) -> DecodeOptions:
    """The decoding settings of the store (payload limit; per-kind settings in `extra`)."""
    extra: dict[str, Any] = {}
    extra[attachments.OPTIONS_KEY] = attachments.attachment_limits(settings)  # attachments
    extra[receiving.EXTRA_KEY] = receiving.receiving_policy(settings)  # scan-to-receive
    # --- label formats (in-store variable-measure barcodes) ---
    extra[barcodes.LABEL_FORMATS_KEY] = barcodes.parse_label_formats(settings.scale_label_formats)
    extra[weights.MAX_AGE_KEY] = settings.scale_weight_max_age_s
    return DecodeOptions(max_bytes=settings.mqtt_max_payload_bytes, extra=extra)
