"""The store at a glance (门店概览): what the manager's dashboard shows, one call, sections by permission."""

from datetime import datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from edge import dashboard
from edge.security.roles import has_permission
from edge.security.users import User
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=error_responses(401, 403, 422, 500))


@router.get("/dashboard", summary="The store at a glance / 门店概览")
def get_dashboard(
    user: Annotated[User, require("profile:read")],
    deps: Deps,
    reader: Reader,
    expiry_days: Annotated[
        int, Query(ge=0, le=365, description="near expiry: lots expiring within this many days")
    ] = 7,
) -> dict[str, Any]:
    """Today's sales and margin (`stock:valuation`), stock alerts: below reorder point, near expiry, postings
    refused for negative stock (`stock:read`), devices (`devices:read`), open work: match exceptions, review
    tickets, receipt drafts, cold-room excursions (each by its read permission). A section the caller's role
    may not read is left out, not zeroed."""
    now = deps.clock()
    tz = ZoneInfo(deps.settings.timezone)
    day = deps.settings.business_date(now)
    day_start = datetime.combine(day, time(0), tz).astimezone(ZoneInfo("UTC")).isoformat()

    def can(permission: str) -> bool:
        return has_permission(user.role, permission)

    out: dict[str, Any] = {"business_date": day.isoformat(), "generated_at": now.isoformat()}
    if can("stock:valuation"):
        out["sales"] = {
            **dashboard.sales_today(reader, day),
            "by_hour_fen": dashboard.sales_by_hour(reader, day, tz),
        }
    if can("stock:read"):
        out["alerts"] = {
            "below_reorder": dashboard.below_reorder(reader) if can("replenishment:read") else None,
            "near_expiry": dashboard.near_expiry(reader, day, expiry_days),
            "negative_refused": dashboard.negative_refused(reader, day_start),
        }
    if can("devices:read"):
        out["devices"] = dashboard.devices(reader)
    work = dashboard.open_work(reader)
    allowed = {
        "match_exceptions": "invoices:read",
        "review_tickets": "compliance:read",
        "receipt_drafts": "receiving:read",
        "cold_excursions": "cold_rooms:read",
    }
    out["open_work"] = {name: work[name] for name, permission in allowed.items() if can(permission)}
    return out
