from __future__ import annotations

import re
from pathlib import Path

from edge.ledger.commands import POSTABLE_TYPES, DocType
from edge.security.roles import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    Role,
    has_permission,
    roles_with,
    write_permission,
)

READS = {p for p in PERMISSIONS if p.split(":")[1] in ("read", "valuation", "verify")}
WRITES = PERMISSIONS - READS
STOCK_WRITES = {p for p in PERMISSIONS if p.startswith("documents:write")} | {"documents:reverse"}


def test_every_role_has_a_row_and_only_known_permissions() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    for permissions in ROLE_PERMISSIONS.values():
        assert permissions <= PERMISSIONS


def test_admin_holds_every_permission() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == PERMISSIONS


def test_every_postable_document_type_has_a_write_permission() -> None:
    assert {write_permission(t) for t in POSTABLE_TYPES} <= PERMISSIONS
    assert write_permission(DocType.REVERSAL) not in PERMISSIONS


def test_clerk_sells_receives_and_counts_but_does_not_see_the_books() -> None:
    for doc_type in ("sale", "customer_return", "receipt", "stocktake", "transfer_out", "transfer_in"):
        assert has_permission(Role.CLERK, write_permission(doc_type))
    for permission in ("vouchers:read", "stock:valuation", "ledger:verify", "documents:reverse"):
        assert not has_permission(Role.CLERK, permission)
    assert not has_permission(Role.CLERK, write_permission("purchase_order"))
    assert not has_permission(Role.CLERK, write_permission("write_off"))


def test_accountant_reads_the_books_but_posts_no_stock_documents() -> None:
    assert has_permission(Role.ACCOUNTANT, "vouchers:read")
    assert has_permission(Role.ACCOUNTANT, "stock:valuation")
    assert not ROLE_PERMISSIONS[Role.ACCOUNTANT] & STOCK_WRITES
    assert {"payments:write", "books:export", "invoices:approve", "losses:approve"} <= ROLE_PERMISSIONS[Role.ACCOUNTANT]


def test_auditor_reads_everything_and_writes_nothing() -> None:
    assert ROLE_PERMISSIONS[Role.AUDITOR] == READS


def test_purchaser_posts_purchase_documents_only() -> None:
    writes = ROLE_PERMISSIONS[Role.PURCHASER] & STOCK_WRITES
    assert writes == {write_permission(t) for t in ("purchase_order", "receipt", "supplier_return")}


def test_manager_runs_operations_and_reverses_but_manages_no_users() -> None:
    assert ROLE_PERMISSIONS[Role.MANAGER] >= {write_permission(t) for t in POSTABLE_TYPES}
    assert has_permission(Role.MANAGER, "documents:reverse")
    assert not has_permission(Role.MANAGER, "users:manage")


def test_unknown_role_has_no_permission() -> None:
    assert not has_permission("emperor", "items:read")
    assert roles_with("users:manage") == [Role.ADMIN]


def test_matrix_in_docs_api_md_matches_the_code() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| permission |"))
    roles = [Role(cell.strip()) for cell in header.strip("|").split("|")[1:]]
    documented: dict[Role, set[str]] = {role: set() for role in roles}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z_:]+)` \|(.*)\|$", line)
        if match and match.group(1) in PERMISSIONS:
            for role, cell in zip(roles, match.group(2).split("|"), strict=True):
                if cell.strip() == "✓":
                    documented[role].add(match.group(1))
    assert set(roles) == set(Role)
    assert documented == {role: set(ROLE_PERMISSIONS[role]) for role in Role}
