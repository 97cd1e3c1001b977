"""Ledger errors: each has a stable code, a Chinese and an English message, and the fields a user needs."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A refusal by the domain: a stable `code`, a Chinese and an English message, and the fields a user
    needs. Each package has its own subclass (LedgerError, SecurityError); the web layer maps them all."""

    code: ClassVar[str] = "domain_error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, message_en: str, **detail: Any) -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "message_en": self.message_en, "detail": self.detail}

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other arguments than their fields; rebuild from the fields (for the writer's pipe).
        return (_rebuild, (type(self), self.message, self.message_en, self.detail))


def _rebuild(cls: type[DomainError], message: str, message_en: str, detail: dict[str, Any]) -> DomainError:
    error = cls.__new__(cls)
    DomainError.__init__(error, message, message_en, **detail)
    return error


class LedgerError(DomainError):
    """Base of every refusal by the ledger. `code` is stable; clients switch on it."""

    code = "ledger_error"


class RefusedByRule(LedgerError):
    """A rule another package keeps in the database (a trigger whose message starts `refused: `) refused the
    posting, e.g. reversing a supplier return a credit note has cleared."""

    code = "refused_by_rule"
    status = 409

    def __init__(self, text: str) -> None:
        zh, _, en = text.partition(" / ")
        super().__init__(zh, en or zh)


class InvalidCommand(LedgerError):
    code = "invalid_command"
    status = 422


class UnknownItem(LedgerError):
    code = "unknown_item"
    status = 404

    def __init__(self, code: str) -> None:
        super().__init__(f"未知商品或条码: {code}", f"unknown item or barcode: {code}", item=code)


class UnknownLocation(LedgerError):
    code = "unknown_location"
    status = 404

    def __init__(self, location: str) -> None:
        super().__init__(f"未知库位: {location}", f"unknown location: {location}", location=location)


class UnknownUnit(LedgerError):
    code = "unknown_unit"
    status = 422

    def __init__(self, sku: str, unit: str) -> None:
        super().__init__(f"商品 {sku} 没有计量单位 {unit}", f"item {sku} has no unit {unit}", item=sku, unit=unit)


class UnknownDocument(LedgerError):
    code = "unknown_document"
    status = 404

    def __init__(self, document_id: int) -> None:
        super().__init__(f"单据不存在: {document_id}", f"no such document: {document_id}", document=document_id)


class InsufficientStock(LedgerError):
    code = "insufficient_stock"
    status = 409

    def __init__(self, sku: str, location: str, requested: int, available: int, lot: str | None = None) -> None:
        shortfall = requested - available
        where = f"{location}" + (f" 批次 {lot}" if lot else "")
        super().__init__(
            f"库存不足: 商品 {sku} 在 {where} 需要 {requested}, 可用 {available}, 缺 {shortfall}",
            f"insufficient stock: item {sku} at {location}{f' lot {lot}' if lot else ''} "
            f"needs {requested}, available {available}, short by {shortfall}",
            item=sku,
            location=location,
            lot=lot,
            requested=requested,
            available=available,
            shortfall=shortfall,
        )


class LotExpired(LedgerError):
    code = "lot_expired"
    status = 409

    def __init__(self, sku: str, lot: str, expiry: str) -> None:
        super().__init__(
            f"批次已过期不能销售: 商品 {sku} 批次 {lot} 有效期至 {expiry}",
            f"expired lot cannot be sold: item {sku} lot {lot} expired {expiry}",
            item=sku,
            lot=lot,
            expiry=expiry,
        )


class AlreadyReversed(LedgerError):
    code = "already_reversed"
    status = 409

    def __init__(self, document_id: int, reversal_id: int) -> None:
        super().__init__(
            f"单据 {document_id} 已被单据 {reversal_id} 冲销",
            f"document {document_id} was already reversed by {reversal_id}",
            document=document_id,
            reversed_by=reversal_id,
        )


class NotReversible(LedgerError):
    code = "not_reversible"
    status = 409


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"
    status = 422

    def __init__(self, key: str) -> None:
        super().__init__(
            f"幂等键 {key} 已用于另一个不同的请求",
            f"idempotency key {key} was already used for a different request",
            key=key,
        )
