"""The supplier API (供应商接口): suppliers send advance shipping notices (ASN, 发货通知) and read their own
purchase orders with a per-supplier API key in `X-Api-Key`, not a user's token.

Each route states the supplier permission it needs with `supplier_key(...)` (an `Access` like `require`), so
the OpenAPI document names it in `x-permission` and its security scheme is `SupplierApiKey`. A supplier sees
only its own purchase orders and ASNs: anyone else's answer 404, exactly like ones that do not exist.
`supplier_openapi` cuts these routes out of the box's OpenAPI document for the supplier API pack
(docs/supplier-api/).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from edge.devices import asn as asns
from edge.devices.asn_templates import (
    MAX_IMPORT_BYTES,
    AsnTemplate,
    AsnTemplateInvalid,
    convert,
    find_template,
    list_templates,
)
from edge.devices.supplier_asns import (
    AsnSource,
    IncomingAsn,
    SupplierAsnIn,
    asn_source,
    record_incoming_asns,
    supplier_purchase_order,
)
from edge.devices.supplier_keys import SupplierCaller, authenticate_api_key
from edge.web.deps import Access, ApiDeps, Deps, Reader, read
from edge.web.errors import ApiError, error_responses
from edge.web.schemas import ErrorOut

API_KEY_HEADER = "X-Api-Key"
SCHEME = "SupplierApiKey"
PATH_PREFIX = "/api/v1/supplier/"
_CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name=SCHEME,
    auto_error=False,
    description="The supplier API key (供应商接口密钥) `sbk_...` from the store: storebox supplier api-key create",
)


def _error(status: int, description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses(500),
    401: _error(401, "Missing, unknown, revoked or expired API key / 缺少接口密钥或密钥无效"),
    403: _error(403, "The key lacks the permission (scope) this endpoint needs / 密钥权限不足"),
    422: _error(422, "Invalid request: the message names the field / 请求参数无效"),
    429: _error(429, "Too many requests with this key; retry after `Retry-After` seconds / 请求过于频繁"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _error(404, "Not found, or not this supplier's / 不存在 (或不属于本供应商)")
}
REFUSED: dict[int | str, dict[str, Any]] = {
    409: _error(409, "The ASN id was received against already and cannot change / 发货通知已收货, 不能修改"),
    413: _error(413, "Request body larger than 1 MiB / 请求体过大"),
    422: _error(422, "Refused: every problem with its line / 被拒绝: 每个问题及其行号"),
}

router = APIRouter(prefix="/api/v1", tags=["supplier API"], responses=RESPONSES)


class KeyRateLimiter:
    """Requests per minute and key: a token bucket per key id, `per_minute` deep, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 when the request may go; else the seconds until it may."""
        now = self.clock()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate


def _limiter(request: Request, deps: ApiDeps) -> KeyRateLimiter:
    limiter: KeyRateLimiter | None = getattr(request.app.state, "supplier_rate_limiter", None)
    if limiter is None:  # one per app; a race at the very first requests costs at most a fresh bucket
        limiter = KeyRateLimiter(deps.settings.supplier_api_requests_per_minute)
        request.app.state.supplier_rate_limiter = limiter
    return limiter


class SupplierKey(Access):
    """Dependency: the caller is the supplier of a valid key that holds `permission` and is within its rate."""

    scheme: ClassVar[str] = SCHEME

    def __init__(self, permission: str) -> None:
        self.permission = permission

    def __call__(
        self,
        request: Request,
        deps: Deps,
        reader: Reader,
        key: Annotated[str | None, Security(api_key_header)],
    ) -> SupplierCaller:
        if not key:
            raise ApiError(
                401,
                "not_authenticated",
                f"缺少 {API_KEY_HEADER} 请求头: 供应商接口使用供应商接口密钥, 不用登录令牌",
                f"missing {API_KEY_HEADER} header: the supplier API takes a supplier API key, not a login token",
                headers=_CHALLENGE,
                header=API_KEY_HEADER,
            )
        caller = authenticate_api_key(reader, key, deps.clock())
        if caller is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "接口密钥无效、已吊销或已过期",
                "the API key is unknown, revoked or expired",
                headers=_CHALLENGE,
                header=API_KEY_HEADER,
            )
        if self.permission not in caller.scopes:
            raise ApiError(
                403,
                "permission_denied",
                f"权限不足: 密钥 {caller.key_id} 没有权限 {self.permission}",
                f"permission denied: key {caller.key_id} lacks permission {self.permission}",
                permission=self.permission,
                key_id=caller.key_id,
            )
        wait = _limiter(request, deps).take(caller.key_id)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            per_minute = deps.settings.supplier_api_requests_per_minute
            raise ApiError(
                429,
                "rate_limited",
                f"请求过于频繁: 每个密钥每分钟最多 {per_minute} 次, 请 {seconds} 秒后重试",
                f"too many requests: at most {per_minute} a minute per key; retry in {seconds} s",
                headers={"Retry-After": str(seconds)},
                retry_after=seconds,
            )
        return caller

    def __repr__(self) -> str:
        return f"supplier_key({self.permission!r})"


def supplier_key(permission: str) -> Any:
    """`caller: Annotated[SupplierCaller, supplier_key("supplier:asns:write")]`."""
    return Depends(SupplierKey(permission))


# --- response bodies ------------------------------------------------------------------------------


class SupplierMeOut(BaseModel):
    supplier: str = Field(examples=["sup-1"])
    name: str = Field(examples=["华润饮料"])
    key_id: str = Field(examples=["k3j9x0a1b2c4"])
    scopes: list[str]
    requests_per_minute: int


class SupplierPoItemOut(BaseModel):
    """One item of a purchase order in base units: ordered, received, announced by other open ASNs, remaining."""

    sku: str
    name: str
    base_unit: str
    ordered: int
    received: int
    announced: int
    remaining: int
    price_fen: int | None


class SupplierPurchaseOrderOut(BaseModel):
    po_id: int = Field(description="document id: send it as `po_id` in an ASN")
    po_no: str = Field(examples=["PO20240601-000001"], description="the PO's number: or send it as `po_no`")
    supplier: str
    business_date: str = Field(examples=["2024-06-01"])
    items: list[SupplierPoItemOut]


class SupplierAsnLineOut(BaseModel):
    line_no: int
    code: str
    sku: str
    unit: str
    qty: int
    qty_base: int
    lot: str | None
    expiry: str | None = Field(examples=["2024-06-30"])
    price_fen: int | None


class SupplierDifferenceOut(BaseModel):
    """What the store's receipt found against the ASN: short, over, wrong_lot, expired or not_on_po."""

    kind: str = Field(examples=["short"])
    sku: str
    expected: int
    received: int
    lot: str | None
    expiry: str | None
    line_no: int | None


class SupplierAsnSourceOut(BaseModel):
    channel: str = Field(examples=["http"], description="http (JSON), import (a file through a template) or mqtt")
    template: str | None
    key_id: str | None
    device: str | None
    received_at: str


class SupplierAsnOut(BaseModel):
    """An ASN as the box keeps it (latest revision): state `open` until goods are received, then `received`."""

    supplier: str
    asn_id: str
    revision: int
    po_id: int
    po_no: str
    ship_date: str
    state: str = Field(examples=["open"])
    note: str | None
    recorded_at: str
    outcome: str = Field(examples=["created"], description="created, revised, unchanged (a resend), or stored")
    receipt_ids: list[int]
    lines: list[SupplierAsnLineOut]
    differences: list[SupplierDifferenceOut]
    source: SupplierAsnSourceOut | None = None


class SupplierImportOut(BaseModel):
    template: str
    asns: list[SupplierAsnOut]


class SupplierTemplateOut(BaseModel):
    name: str = Field(examples=["erp-gbk-csv"])
    description: str
    format: str = Field(examples=["csv"])
    encoding: str
    delimiter: str | None
    fields: dict[str, str] = Field(description="ASN field -> the column or JSON path it is read from")


class SupplierTemplateDetailOut(SupplierTemplateOut):
    yaml: str = Field(description="the template file as the box has it")


# --- routes ---------------------------------------------------------------------------------------


def _template(name: str, deps: ApiDeps) -> AsnTemplate:
    """A template by name; a broken one is the store's to fix, and its file paths stay on the box."""
    try:
        return find_template(name, deps.settings.asn_templates_dir)
    except AsnTemplateInvalid as err:
        raise ApiError(
            422,
            err.code,
            f"门店的对接模板 {name} 有错误, 请联系门店修正: {err.issues[0].reason}",
            f"the store's connector template {name} is broken; ask the store to fix it: {err.issues[0].reason}",
            template=name,
            issues=[{"file": Path(i.file).name, "line": i.line, "reason": i.reason} for i in err.issues],
        ) from None


def _asn_out(conn: Any, record: asns.AsnRecord) -> dict[str, Any]:
    return {**record.to_dict(), "source": asn_source(conn, record.supplier, record.asn_id, record.revision)}


def _asns_out(conn: Any, records: list[asns.AsnRecord]) -> list[dict[str, Any]]:
    return [_asn_out(conn, record) for record in records]


@router.get("/supplier/me", response_model=SupplierMeOut, summary="Who am I / 当前供应商")
def supplier_me(deps: Deps, caller: Annotated[SupplierCaller, supplier_key("supplier:profile:read")]) -> dict[str, Any]:
    return {
        "supplier": caller.supplier,
        "name": caller.supplier_name,
        "key_id": caller.key_id,
        "scopes": sorted(caller.scopes),
        "requests_per_minute": deps.settings.supplier_api_requests_per_minute,
    }


@router.get(
    "/supplier/purchase-orders",
    response_model=list[SupplierPurchaseOrderOut],
    summary="My open purchase orders / 未完成的采购订单",
)
def supplier_purchase_orders(
    reader: Reader,
    caller: Annotated[SupplierCaller, supplier_key("supplier:purchase_orders:read")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    orders = asns.open_purchase_orders(reader, caller.supplier)
    return [po.to_dict() for po in orders[offset : offset + limit]]


@router.get(
    "/supplier/purchase-orders/{po_id}",
    response_model=SupplierPurchaseOrderOut,
    responses=NOT_FOUND,
    summary="One of my purchase orders / 采购订单",
)
def supplier_purchase_order_get(
    po_id: int, reader: Reader, caller: Annotated[SupplierCaller, supplier_key("supplier:purchase_orders:read")]
) -> dict[str, Any]:
    po = supplier_purchase_order(reader, caller.supplier, po_id) if 0 < po_id < 2**63 else None
    if po is None:
        raise ApiError(
            404,
            "unknown_purchase_order",
            f"采购订单不存在: {po_id}",
            f"no such purchase order: {po_id}",
            po_id=po_id,
        )
    return po.to_dict()


async def _record(
    deps: ApiDeps, caller: SupplierCaller, incoming: tuple[IncomingAsn, ...], source: AsnSource
) -> list[dict[str, Any]]:
    records = await deps.writer.execute(record_incoming_asns, caller.supplier, incoming, source, deps.clock())
    return await read(deps, _asns_out, records)


@router.post(
    "/supplier/asns",
    response_model=SupplierAsnOut,
    status_code=201,
    responses={
        **REFUSED,
        200: {"model": SupplierAsnOut, "description": "The same ASN again: unchanged / 重复发送, 未改变"},
    },
    summary="Send an ASN / 发送发货通知",
)
async def supplier_send_asn(
    body: SupplierAsnIn,
    response: Response,
    deps: Deps,
    caller: Annotated[SupplierCaller, supplier_key("supplier:asns:write")],
) -> dict[str, Any]:
    """A new ASN id is created (201); the same id with other content is a new revision while nothing was received
    against it (201, `outcome: revised`); the same id and content again changes nothing (200, `unchanged`)."""
    (answer,) = await _record(deps, caller, (body.incoming(),), AsnSource("http", key_id=caller.key_id))
    if answer["outcome"] == asns.RecordOutcome.UNCHANGED.value:
        response.status_code = 200
    return answer


IMPORT_BODY = {
    "required": True,
    "description": "The supplier's file as it is (not multipart), at most 1 MiB.",
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("text/csv", "application/json", "application/octet-stream")
    },
}


@router.post(
    "/supplier/asns/import",
    response_model=SupplierImportOut,
    status_code=201,
    responses={**REFUSED, **NOT_FOUND},
    openapi_extra={"requestBody": IMPORT_BODY},
    summary="Send ASNs as a file through a connector template / 按对接模板导入发货通知",
)
async def supplier_import_asns(
    request: Request,
    deps: Deps,
    caller: Annotated[SupplierCaller, supplier_key("supplier:asns:write")],
    template: Annotated[str, Query(min_length=1, max_length=64, description="connector template name")],
) -> dict[str, Any]:
    """Every ASN in the file is recorded, or none: a refusal lists every problem with its place in the file
    (CSV line or JSON path)."""
    loaded = await run_in_threadpool(_template, template, deps)
    data = await request.body()
    if len(data) > MAX_IMPORT_BYTES:
        raise ApiError(413, "payload_too_large", "请求体过大", "request body too large", limit=MAX_IMPORT_BYTES)
    found = await run_in_threadpool(lambda: convert(loaded, data, today=deps.today()))
    incoming = tuple(IncomingAsn.from_file(asn) for asn in found)
    source = AsnSource("import", key_id=caller.key_id, template=loaded.name)
    return {"template": loaded.name, "asns": await _record(deps, caller, incoming, source)}


@router.get("/supplier/asns", response_model=list[SupplierAsnOut], summary="My ASNs / 我的发货通知")
def supplier_asns(
    reader: Reader,
    caller: Annotated[SupplierCaller, supplier_key("supplier:asns:read")],
    state: Annotated[asns.AsnState | None, Query()] = None,
    po_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    records = asns.list_asns(reader, supplier=caller.supplier, po_id=po_id, state=state, limit=limit, offset=offset)
    return _asns_out(reader, records)


@router.get(
    "/supplier/asns/{asn_id}",
    response_model=SupplierAsnOut,
    responses=NOT_FOUND,
    summary="One ASN: state, receipts, differences / 发货通知状态与差异",
)
def supplier_asn(
    asn_id: str, reader: Reader, caller: Annotated[SupplierCaller, supplier_key("supplier:asns:read")]
) -> dict[str, Any]:
    record = asns.get_asn(reader, asn_id, supplier=caller.supplier) if len(asn_id) <= 64 else None
    if record is None:
        raise asns.UnknownAsn(asn_id[:64])
    return _asn_out(reader, record)


@router.get(
    "/supplier/asn-templates", response_model=list[SupplierTemplateOut], summary="Connector templates / 对接模板"
)
def supplier_templates(
    deps: Deps, caller: Annotated[SupplierCaller, supplier_key("supplier:asns:read")]
) -> list[dict[str, Any]]:
    loaded, _ = list_templates(deps.settings.asn_templates_dir)
    return [template.summary() for template in loaded]


@router.get(
    "/supplier/asn-templates/{name}",
    response_model=SupplierTemplateDetailOut,
    responses={**NOT_FOUND, 422: REFUSED[422]},
    summary="One connector template with its YAML / 对接模板详情",
)
def supplier_template(
    name: str, deps: Deps, caller: Annotated[SupplierCaller, supplier_key("supplier:asns:read")]
) -> dict[str, Any]:
    template = _template(name, deps)
    return {**template.summary(), "yaml": template.text}


# --- the OpenAPI subset of the supplier API pack -----------------------------------------------------

SUPPLIER_API_DESCRIPTION = """\
StoreBox supplier API (供应商接口): send advance shipping notices (ASN, 发货通知) to a store's box and read
your own purchase orders. Authenticate every request with your API key in the `X-Api-Key` header; you see
only your own purchase orders and ASNs. Every error is JSON `{"code", "message", "message_en", "detail"}`;
a refused ASN lists every problem with its line. See docs/supplier-api/README.md.
"""


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        for item in value.values():
            found |= _refs(item)
        return found
    if isinstance(value, list):
        return set().union(*(_refs(item) for item in value)) if value else set()
    return set()


def supplier_openapi(full: dict[str, Any]) -> dict[str, Any]:
    """The supplier routes of the box's OpenAPI document, with only the schemas they use."""
    paths = {path: item for path, item in full["paths"].items() if path.startswith(PATH_PREFIX)}
    schemas: dict[str, Any] = full.get("components", {}).get("schemas", {})
    used: dict[str, Any] = {}
    pending = _refs(paths)
    while pending:
        ref = pending.pop()
        name = ref.removeprefix("#/components/schemas/")
        if name in used or name not in schemas:
            continue
        used[name] = schemas[name]
        pending |= _refs(schemas[name])
    return {
        "openapi": full["openapi"],
        "info": {
            "title": "StoreBox supplier API",
            "version": full["info"]["version"],
            "description": SUPPLIER_API_DESCRIPTION,
        },
        "servers": [
            {
                "url": "http://{box}:{port}",
                "variables": {"box": {"default": "127.0.0.1"}, "port": {"default": "8080"}},
            }
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(used.items())),
            "securitySchemes": {SCHEME: full["components"]["securitySchemes"][SCHEME]},
        },
        "security": [{SCHEME: []}],
    }
