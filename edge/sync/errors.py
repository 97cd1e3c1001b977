"""Refusals and failures of sync with the aggregator."""

from __future__ import annotations

from typing import Any

from edge.ledger.errors import DomainError


class SyncError(DomainError):
    code = "sync_error"
    status = 502


class SyncNotConfigured(SyncError):
    code = "sync_not_configured"
    status = 409

    def __init__(self, what: str, what_en: str) -> None:
        super().__init__(f"未配置同步: {what}", f"sync is not configured: {what_en}")


class SyncUnavailable(SyncError):
    """The aggregator could not be reached or failed (network, timeout, 5xx): try again later."""

    code = "sync_unavailable"
    status = 503


class SyncRefused(SyncError):
    """The aggregator refused the request (4xx): retrying the same thing will not help by itself."""

    code = "sync_refused"

    def __init__(self, code: str, message: str, message_en: str, status: int, detail: dict[str, Any]) -> None:
        super().__init__(
            f"汇总服务拒绝: {message} ({code})",
            f"the aggregator refused: {message_en} ({code})",
            remote_code=code,
            http_status=status,
            **{k: v for k, v in detail.items() if k not in ("remote_code", "http_status")},
        )
        self.remote_code = code
        self.http_status = status
