"""The page's menu: each area's path, catalog key and the permission that shows it (the API still decides)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NavEntry:
    path: str
    label: str  # catalog key
    permission: str
    # Other path prefixes that belong to the entry's area (the rules' review queue, firings, holds, tickets).
    also: tuple[str, ...] = ()


NAV: tuple[NavEntry, ...] = (
    NavEntry("/", "nav.dashboard", "profile:read"),
    NavEntry("/stock", "nav.stock", "stock:read"),
    NavEntry("/documents", "nav.documents", "documents:read"),
    NavEntry("/replenishment", "nav.replenishment", "replenishment:read"),
    NavEntry("/receiving", "nav.receiving", "receiving:read"),
    NavEntry("/transfers", "nav.transfers", "transfers:read"),
    NavEntry("/suppliers", "nav.suppliers", "compliance:read"),  # the cabinet: not for the clerk
    NavEntry("/compliance", "nav.compliance", "compliance:read"),
    NavEntry("/purchasing", "nav.purchasing", "invoices:read"),
    NavEntry("/finance/trial-balance", "nav.finance", "books:read"),
    NavEntry("/cold-rooms", "nav.cold_rooms", "cold_rooms:read"),
    NavEntry("/devices", "nav.devices", "devices:read"),
    NavEntry("/rules", "nav.rules", "rules:read", also=("/rule-", "/holds")),
    NavEntry("/modules", "nav.modules", "modules:read"),
)


def visible(permissions: frozenset[str] | set[str]) -> list[NavEntry]:
    return [entry for entry in NAV if entry.permission in permissions]


def active(path: str, entry: NavEntry) -> bool:
    if entry.path == "/":
        return path == "/"
    head = entry.path.split("/")[1]
    if any(path.startswith(prefix) for prefix in entry.also):
        return True
    return path == entry.path or path.startswith(f"/{head}/") or path == f"/{head}"
