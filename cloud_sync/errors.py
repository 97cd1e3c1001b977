"""Refusals of the aggregator: a stable code, Chinese and English messages, an HTTP status, and detail.

Every error a client sees is JSON `{"code", "message", "message_en", "detail"}`, like the box's.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("storebox.cloud")


class CloudError(Exception):
    def __init__(self, code: str, message: str, message_en: str, status: int = 400, **detail: Any) -> None:
        super().__init__(message_en)
        self.code = code
        self.message = message
        self.message_en = message_en
        self.status = status
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "message_en": self.message_en, "detail": self.detail}


def error_response(error: CloudError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_cloud_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CloudError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path")),
                "error": e["msg"],
            }
            for e in exc.errors()
        ]
        names = ", ".join(p["field"] for p in problems)
        return error_response(
            CloudError("validation_error", f"参数无效: {names}", f"invalid parameters: {names}", 422, problems=problems)
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            error = CloudError("not_found", "未找到", "not found", 404)
        elif exc.status_code == 405:
            error = CloudError("method_not_allowed", "不支持该请求方法", "method not allowed", 405)
        else:
            error = CloudError(
                f"http_{exc.status_code}", "请求无法处理", "the request cannot be handled", exc.status_code
            )
        return error_response(error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            CloudError("internal_error", "内部错误，已记录日志", "internal error; it has been logged", 500)
        )

    app.add_exception_handler(CloudError, on_cloud_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
