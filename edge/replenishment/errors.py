"""Errors of replenishment and forecasting, each with a stable code and a Chinese and an English message."""

from __future__ import annotations

from edge.ledger.errors import DomainError


class ReplenishmentError(DomainError):
    """Base of every refusal of the replenishment package."""

    code = "replenishment_error"


# --- signals, lead times, return spikes (S): edge/replenishment/signals.py, leadtime.py, returns.py ---


class InvalidSignal(ReplenishmentError):
    """A signal record (or a whole import file) that does not validate; `detail` names the kind, the record's
    index (API) or line (file) and the field."""

    code = "invalid_signal"
    status = 422


class UnknownSignalKind(ReplenishmentError):
    code = "unknown_signal_kind"
    status = 404

    def __init__(self, kind: str, known: tuple[str, ...]) -> None:
        super().__init__(
            f"未知信号类型: {kind} (可用: {', '.join(known)})",
            f"unknown signal kind: {kind} (known: {', '.join(known)})",
            kind=kind,
            known=list(known),
        )


class SignalImportTooLarge(ReplenishmentError):
    code = "signal_import_too_large"
    status = 413

    def __init__(self, size: int, limit: int, what: str = "file") -> None:
        super().__init__(
            f"文件过大: {size} 字节 (最多 {limit})",
            f"{what} too large: {size} bytes (at most {limit})",
            size=size,
            limit=limit,
        )


# --- emergency requests (E) ---


class EmergencyError(ReplenishmentError):
    """Base of the refusals of emergency requests (紧急要货)."""

    code = "emergency_error"


class EmergencyTextInvalid(EmergencyError):
    """The request text cannot be parsed at all: empty, not text, or too long."""

    code = "emergency_text_invalid"
    status = 422


class EmergencyIncomplete(EmergencyError):
    """The parse lacks what an order needs (one item, a quantity in the item's units)."""

    code = "emergency_incomplete"
    status = 422


class EmergencyKeyReused(EmergencyError):
    """An Idempotency-Key already used for a different emergency request."""

    code = "emergency_key_reused"
    status = 409


class EmergencyNoSource(EmergencyError):
    """No neighbouring store has the item and no supplier is known for it."""

    code = "emergency_no_source"
    status = 409


class EmergencyOrderRefused(EmergencyError):
    """The urgent purchase order was refused by the ledger or a finance guard (detail.code says which)."""

    code = "emergency_order_refused"
    status = 409


class PeerStockInvalid(EmergencyError):
    """A neighbour stock snapshot that does not validate (rows named by index)."""

    code = "peer_stock_invalid"
    status = 422


class TransferRequestNotFound(EmergencyError):
    code = "transfer_request_not_found"
    status = 404


class TransferRequestState(EmergencyError):
    """A transfer request in a state that does not allow the change (e.g. cancelling one already sent)."""

    code = "transfer_request_state"
    status = 409


# --- the planner (P): edge/replenishment/planner.py, suggestions.py, history.py ---


class SuggestionNotFound(ReplenishmentError):
    code = "suggestion_not_found"
    status = 404

    def __init__(self, suggestion_id: int) -> None:
        super().__init__(
            f"补货建议不存在: {suggestion_id}", f"no such suggestion: {suggestion_id}", suggestion=suggestion_id
        )


class SuggestionNotOpen(ReplenishmentError):
    """Only an open suggestion can be approved or rejected; `detail.state` says what it is now."""

    code = "suggestion_not_open"
    status = 409


class SuggestionKeyReused(ReplenishmentError):
    """An Idempotency-Key already used for a different approval, rejection or history import."""

    code = "replenishment_key_reused"
    status = 409


class InvalidSuggestionDecision(ReplenishmentError):
    """A quantity or reason that does not do (detail.field names it)."""

    code = "invalid_suggestion_decision"
    status = 422


class ItemSupplierInvalid(ReplenishmentError):
    """Item supplier parameters that do not validate (unknown item, supplier or unit, values out of range)."""

    code = "item_supplier_invalid"
    status = 422


class ItemNotPlanned(ReplenishmentError):
    """The item has no active primary supplier, or no stock and no sales anywhere: the plan has no row for it."""

    code = "item_not_planned"
    status = 404


class HistoryInvalid(ReplenishmentError):
    """A sales history file that does not validate; `detail.problems` lists up to 20 by line number."""

    code = "history_invalid"
    status = 422


# --- policy file tool (`storebox replenish policy`, edge/replenishment/policies.py) ---


class PolicyFileUnreadable(ReplenishmentError):
    """A policy parameter file that cannot be read at all: missing, not text, not CSV, no header, or a header
    without the required columns. Nothing is computed."""

    code = "policy_file_unreadable"
    status = 422

    def __init__(self, path: str, reason: str, reason_en: str) -> None:
        super().__init__(
            f"无法读取策略参数文件 {path}：{reason}", f"cannot read the policy file {path}: {reason_en}", path=path
        )


class PolicyRowInvalid(ReplenishmentError):
    """One row of a policy parameter file that does not validate (kept as a value and reported by line; the
    good rows are still computed)."""

    code = "policy_row_invalid"
    status = 422

    def __init__(self, line: int, column: str, reason: str, reason_en: str) -> None:
        super().__init__(
            f"第 {line} 行，{column} 列：{reason}",
            f"line {line}, column {column}: {reason_en}",
            line=line,
            column=column,
        )
        self.line = line
        self.column = column
