"""Every error the API returns is JSON `{"code", "message", "message_en", "detail"}` with a fitting status.

Ledger and security errors carry their own code and status; validation errors name the field in
Chinese and English; anything unexpected is a 500 that shows nothing of the internals.
"""

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.ledger.errors import DomainError
from edge.security.errors import InvalidToken, SecurityError
from edge.web.schemas import ErrorOut
from edge.writer import WriterClosed

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal by the web layer itself (a missing header, an unknown resource)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        message_en: str,
        headers: dict[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(message_en)
        self.status = status
        self.code = code
        self.message = message
        self.message_en = message_en
        self.headers = headers
        self.detail = detail


def error_body(code: str, message: str, message_en: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "message_en": message_en, "detail": detail or {}}


def error_response(
    status: int,
    code: str,
    message: str,
    message_en: str,
    detail: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, message_en, detail), status_code=status, headers=headers)


def ledger_status(code: str) -> int:
    """HTTP status of a refusal's code, from the `status` of its DomainError subclass (400 if unknown)."""
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls.status
        pending.extend(cls.__subclasses__())
    return 400


_STATUS_TEXT: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "请求无效", "bad request"),
    404: ("not_found", "接口或资源不存在", "no such endpoint or resource"),
    405: ("method_not_allowed", "不支持此请求方法", "method not allowed"),
    406: ("not_acceptable", "无法提供所请求的格式", "not acceptable"),
    413: ("payload_too_large", "请求体过大", "request body too large"),
    415: ("unsupported_media_type", "不支持的内容类型", "unsupported media type"),
}

# Chinese wording of pydantic's error types; the English message is pydantic's own. A validator that raises a
# DomainError that is also a ValueError (edge.devices.supplier_asns.AsnFieldInvalid) says both itself.
_VALIDATION_ZH: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数，不能有小数",
    "string_type": "应为字符串",
    "bool_type": "应为布尔值",
    "list_type": "应为数组",
    "dict_type": "应为对象",
    "model_type": "应为 JSON 对象",
    "model_attributes_type": "应为 JSON 对象",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "greater_than": "数值过小",
    "less_than": "数值过大",
    "string_too_short": "不能为空或过短",
    "string_too_long": "过长",
    "too_short": "项数过少",
    "too_long": "项数过多",
    "string_pattern_mismatch": "格式不符",
    "enum": "取值不在允许范围内",
    "literal_error": "取值不在允许范围内",
    "date_type": "应为日期 (YYYY-MM-DD)",
    "date_parsing": "应为日期 (YYYY-MM-DD)",
    "date_from_datetime_parsing": "应为日期 (YYYY-MM-DD)",
    "date_from_datetime_inexact": "应为日期 (YYYY-MM-DD)",
    "json_invalid": "JSON 格式错误",
    "json_type": "JSON 格式错误",
    "value_error": "值无效",
    "union_tag_invalid": "取值不在允许范围内",
}
# The same with the limit the English names, from the error's context.
_VALIDATION_ZH_LIMITS: dict[str, str] = {
    "greater_than_equal": "应大于或等于 {ge}",
    "less_than_equal": "应小于或等于 {le}",
    "greater_than": "应大于 {gt}",
    "less_than": "应小于 {lt}",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "string_pattern_mismatch": "格式不符, 应匹配 {pattern}",
}


def _field_path(loc: tuple[Any, ...]) -> str:
    """("body", "lines", 0, "qty") -> "lines[0].qty"; ("query", "limit") -> "limit"."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (isinstance(part, str) and ("[" in part or part.startswith("function-"))):
            path += f".{part}" if path else str(part)
    return path or (str(loc[0]) if loc else "request")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _messages(error: Mapping[str, Any]) -> tuple[str, str]:
    """The Chinese and English of one pydantic error: the validator's own when it raised a DomainError, else
    its type's in Chinese with the limits the English names, and pydantic's English."""
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, DomainError):
        return cause.message, cause.message_en
    return _message_zh(str(error.get("type")), ctx), str(error.get("msg", ""))


def _message_zh(kind: str, ctx: Mapping[str, Any]) -> str:
    if kind in _VALIDATION_ZH_LIMITS:
        try:
            return _VALIDATION_ZH_LIMITS[kind].format_map({k: _jsonable(v) for k, v in ctx.items()})
        except (KeyError, IndexError, ValueError):
            pass
    return _VALIDATION_ZH.get(kind, "值无效")


def validation_detail(errors: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    """Chinese and English messages naming the fields, and the list of problems (inputs not echoed)."""
    problems = []
    for error in errors[:50]:
        loc = tuple(error.get("loc", ()))
        json_error = str(error.get("type", "")).startswith("json_")
        message, message_en = _messages(error)
        ctx = error.get("ctx") or {}
        limits = {k: _jsonable(v) for k, v in ctx.items() if not isinstance(v, DomainError)}
        problems.append(
            {
                "field": "body" if json_error else _field_path(loc),
                "in": str(loc[0]) if loc else "body",
                "type": str(error.get("type", "")),
                "message": message,
                "message_en": message_en,
                **({"limits": limits} if limits else {}),
                **({"position": loc[1]} if json_error and len(loc) > 1 else {}),
            }
        )
    first = problems[0] if problems else {"field": "request", "message": "值无效", "message_en": "invalid"}
    more = len(errors) - 1
    message = f"请求无效: 字段 {first['field']} {first['message']}" + (f" (另有 {more} 处错误)" if more > 0 else "")
    message_en = f"invalid request: field {first['field']}: {first['message_en']}" + (
        f" (and {more} more)" if more > 0 else ""
    )
    return message, message_en, {"errors": problems}


def _bearer_challenge(err: SecurityError) -> dict[str, str]:
    if isinstance(err, InvalidToken):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return {"WWW-Authenticate": "Bearer"}


def install_error_handlers(app: FastAPI) -> None:
    async def on_security_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SecurityError)
        headers = _bearer_challenge(exc) if exc.status == 401 else None
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)  # a ledger, finance or any other domain refusal
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.message_en, exc.detail, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, message_en, detail = validation_detail(list(exc.errors()))
        return error_response(422, "validation_error", message, message_en, detail)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, message, message_en = _STATUS_TEXT.get(
            exc.status_code, (f"http_{exc.status_code}", "请求无法处理", "the request cannot be handled")
        )
        if exc.status_code == 400 and isinstance(exc.detail, str):
            message_en = f"bad request: {exc.detail}"
        return error_response(exc.status_code, code, message, message_en, headers=exc.headers)

    async def on_writer_closed(request: Request, exc: Exception) -> JSONResponse:
        return error_response(
            503,
            "unavailable",
            "系统正在关闭，请稍后重试",
            "the box is shutting down; retry later",
            headers={"Retry-After": "5"},
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "内部错误，已记录日志", "internal error; it has been logged")

    app.add_exception_handler(SecurityError, on_security_error)
    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(WriterClosed, on_writer_closed)
    app.add_exception_handler(Exception, on_unexpected)


_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (e.g. missing Idempotency-Key header) / 请求无效",
    401: "Missing, invalid or expired bearer token / 未登录或令牌无效",
    403: "The caller's role lacks the permission this endpoint needs / 权限不足",
    404: "No such resource / 资源不存在",
    409: "Conflict with the ledger's state (insufficient stock, already reversed) / 与账务状态冲突",
    413: "Request body larger than 1 MiB / 请求体过大",
    422: "Invalid request: the message names the field / 请求参数无效",
    500: "Internal error; details are only in the box's log / 内部错误",
    503: "The box is shutting down / 系统正在关闭",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all with the ErrorOut body."""
    return {status: {"model": ErrorOut, "description": _DESCRIPTIONS[status]} for status in statuses}
