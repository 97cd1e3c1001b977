"""Errors of replenishment and forecasting, each with a stable code and a Chinese and an English message."""

from __future__ import annotations

from edge.ledger.errors import DomainError


class ReplenishmentError(DomainError):
    """Base of every refusal of the replenishment package."""

    code = "replenishment_error"
