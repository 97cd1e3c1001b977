"""Finance entries (财务单据): supplier payments, loss approvals, rule versions, the chart; see docs/finance.md."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.finance import entries, rulebook
from edge.finance.errors import RuleTableError
from edge.ledger.commands import PostResult
from edge.ledger.posting import PostingContext
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, require
from edge.web.errors import ApiError, error_body, error_responses, ledger_status
from edge.web.routes.documents import API_KEY_PREFIX, REPLAY_HEADER, _answer

router = APIRouter(prefix="/api/v1", tags=["finance"], responses=error_responses(401, 403, 422, 500))
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
WRITE_RESPONSES = error_responses(400, 404, 409, 413, 503)
WRITE_EXTRA: dict[str, Any] = {"parameters": [IDEMPOTENCY_KEY_PARAMETER]}


class PaymentIn(BaseModel):
    """供应商付款: Dr 220201 应付货款 (or 1123 预付账款) / Cr the bank."""

    model_config = ConfigDict(extra="forbid", strict=True)

    supplier: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="supplier id")
    amount_fen: int = Field(ge=1, le=entries.MAX_PAYMENT_FEN, description="amount paid, in fen")
    method: str = Field("bank", min_length=1, max_length=20, description="bank (default), cash, wechat, alipay")
    prepayment: bool = Field(False, description="a prepayment before the invoice (预付): Dr 1123")
    note: str | None = Field(None, max_length=500)


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    note: str | None = Field(None, max_length=500, description="why the loss is approved (审批意见)")


async def _posted(deps: Deps, user: User, result: PostResult) -> JSONResponse:
    if not result.ok:
        headers = {REPLAY_HEADER: "true"} if result.replayed else None
        body = error_body(result.code, result.message, result.message_en, result.detail)
        return JSONResponse(body, status_code=ledger_status(result.code), headers=headers)
    return await _answer(deps, user, result)


@router.post(
    "/payments",
    status_code=201,
    summary="Pay a supplier / 供应商付款",
    responses=WRITE_RESPONSES,
    openapi_extra=WRITE_EXTRA,
)
async def pay_supplier(
    body: Annotated[PaymentIn, Body()],
    deps: Deps,
    user: Annotated[User, require("payments:write")],
    key: IdempotencyKey,
) -> JSONResponse:
    """Refused while the supplier is frozen or its papers are missing or expired; the error lists what."""
    payment = entries.Payment(
        key=API_KEY_PREFIX + key,
        supplier=body.supplier,
        amount_fen=body.amount_fen,
        method=body.method,
        prepayment=body.prepayment,
        note=body.note,
        actor=user.username,
    )
    result = await deps.writer.execute_posting(_pay, payment)
    return await _posted(deps, user, result)


def _pay(conn: Any, ctx: PostingContext, payment: entries.Payment) -> PostResult:
    return entries.pay_supplier(conn, ctx, payment)


@router.get("/losses/pending", dependencies=[require("books:read")], summary="Losses waiting for approval / 待审批损溢")
def pending_losses(reader: Reader) -> list[dict[str, Any]]:
    """Write-offs and stocktakes whose differences sit in 1901 待处理财产损溢."""
    return entries.pending_losses(reader)


@router.post(
    "/losses/{document_id}/approve",
    status_code=201,
    summary="Approve a write-off's or stocktake's losses / 损溢审批",
    responses=WRITE_RESPONSES,
    openapi_extra=WRITE_EXTRA,
)
async def approve_losses(
    document_id: Annotated[int, Path(ge=1, le=2**62)],
    deps: Deps,
    user: Annotated[User, require("losses:approve")],
    key: IdempotencyKey,
    body: Annotated[ApprovalIn | None, Body()] = None,
) -> JSONResponse:
    """Loss to 5711 营业外支出, gain to 5301 营业外收入; never by the person who posted the document."""
    result = await deps.writer.execute_posting(
        _approve, API_KEY_PREFIX + key, document_id, user.username, body.note if body else None
    )
    return await _posted(deps, user, result)


def _approve(conn: Any, ctx: PostingContext, key: str, document_id: int, approver: str, note: str | None) -> PostResult:
    return entries.approve_losses(conn, ctx, key, document_id, approver, note)


@router.get("/books/rules", dependencies=[require("books:read")], summary="Voucher rule versions / 凭证规则版本")
def list_rule_versions(reader: Reader) -> list[dict[str, Any]]:
    """Each version with the date it takes effect from and how many vouchers it produced."""
    return rulebook.list_versions(reader)


@router.get(
    "/books/rules/{version}", dependencies=[require("books:read")], summary="One voucher rule table / 凭证规则表"
)
def get_rule_version(reader: Reader, version: Annotated[str, Path(min_length=1, max_length=40)]) -> dict[str, Any]:
    table = rulebook.get_version(reader, version)
    if table is None:
        raise ApiError(404, "unknown_rule_version", f"未知凭证规则版本: {version}", f"unknown rule version: {version}")
    return table


@router.post(
    "/books/rules",
    status_code=201,
    summary="Install a voucher rule version / 安装凭证规则新版本",
    responses=WRITE_RESPONSES,
    openapi_extra=WRITE_EXTRA,
)
async def install_rule_version(
    body: Annotated[dict[str, Any], Body()],
    deps: Deps,
    user: Annotated[User, require("books:rules")],
    key: IdempotencyKey,
) -> dict[str, Any]:
    """Takes effect from its `effective_from` date (after the last voucher, not before today); never rewrites
    posted vouchers. The same version installed again is refused: versions are never changed."""
    del key  # the version itself is the idempotency: installing it twice is refused with a clear error
    return await deps.writer.execute_posting(_install, json.dumps(body), user.username)


def _install(conn: Any, ctx: PostingContext, body: str, actor: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:  # cannot happen from the route; kept for direct callers
        raise RuleTableError("凭证规则表不是有效的 JSON", f"not valid JSON: {exc}") from exc
    rules = rulebook.install_version(conn, data, actor=actor, now=ctx.now, today=ctx.business_date)
    return {"version": rules.version, "effective_from": rules.effective_from.isoformat(), "chart": rules.chart}


@router.get("/books/chart", dependencies=[require("books:read")], summary="Chart of accounts / 科目表")
def chart_of_accounts(reader: Reader) -> list[dict[str, Any]]:
    """Accounts by code with Chinese and English names; only leaves (`leaf`: true) take postings."""
    rows = reader.execute("SELECT code, name, name_en, kind, parent, leaf FROM accounts ORDER BY code").fetchall()
    return [{**dict(row), "leaf": bool(row["leaf"])} for row in rows]
