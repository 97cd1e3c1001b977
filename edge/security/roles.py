"""Roles (角色) and the permissions each grants, as data.

A permission is a string `<resource>:<action>` (or `documents:write:<type>`). Every HTTP endpoint
states the one permission it needs; `has_permission` is the only check. The matrix below is
documented in docs/api.md; change both together.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from edge.ledger.commands import POSTABLE_TYPES, DocType


class Role(StrEnum):
    ADMIN = "admin"  # 系统管理员
    MANAGER = "manager"  # 店长
    CLERK = "clerk"  # 店员 / 仓管
    PURCHASER = "purchaser"  # 采购员
    ACCOUNTANT = "accountant"  # 会计
    AUDITOR = "auditor"  # 审计


ROLE_NAMES: dict[Role, tuple[str, str]] = {
    Role.ADMIN: ("系统管理员", "administrator"),
    Role.MANAGER: ("店长", "store manager"),
    Role.CLERK: ("店员", "clerk"),
    Role.PURCHASER: ("采购员", "purchaser"),
    Role.ACCOUNTANT: ("会计", "accountant"),
    Role.AUDITOR: ("审计", "auditor"),
}


def write_permission(doc_type: DocType | str) -> str:
    """The permission to post a document of `doc_type`."""
    return f"documents:write:{DocType(doc_type).value}"


MASTER_DATA_READ = frozenset({"items:read", "locations:read", "suppliers:read", "stores:read"})
OPERATIONS_READ = MASTER_DATA_READ | {"profile:read", "stock:read", "documents:read"}
# Photos at inspection and delivery signatures sent by terminals (docs/offline-terminals.md).
OPERATIONS_READ |= {"attachments:read"}
# Scan-to-receive (docs/scan-to-receive.md): ASNs and receipt drafts are read like documents; the draft actions
# post a receipt, so they take `documents:write:receipt`, and suppliers' signing keys `suppliers:write`.
OPERATIONS_READ |= {"asns:read", "receiving:read"}
BOOKS_READ = frozenset({"stock:valuation", "vouchers:read", "ledger:verify"})
ALL_WRITES = frozenset(write_permission(t) for t in POSTABLE_TYPES)

# Finance (业财一体化, docs/finance.md).
FINANCE_READ = frozenset({"books:read", "invoices:read", "compliance:read", "prices:read"})
PURCHASING = frozenset(
    {
        "invoices:write",  # enter and import purchase invoices
        "invoices:resolve",  # resolve a three-way-match exception (accept with approval, credit note, reject)
        "items:write",  # change an item's VAT rate, prices or names
        "suppliers:write",  # create or change a supplier, ask for a bank account change
        "suppliers:papers",  # upload qualification papers and confirm their OCR result
        "prices:write",  # record a negotiated price agreement
        "purchase_orders:approve",
    }
)
APPROVALS = frozenset(
    {
        "invoices:approve",  # approve an accepted match difference
        "compliance:review",  # lift a payment freeze, approve a bank account change (never one's own request)
        "losses:approve",  # approve write-off and stocktake losses out of 1901 (to 5711 / 5301)
    }
)
ACCOUNTING = frozenset({"payments:write", "books:export", "books:rules"})
# Devices and cold rooms (docs/fleet.md, docs/cold-chain.md): the manager and the auditor see the fleet and the
# cold rooms, the clerk (keeper) the cold rooms; registering, rotating and disabling devices is `devices:manage`.
FLEET_READ = frozenset({"devices:read", "cold_rooms:read"})
# --- replenishment (issue 5) ---
# Suggestions and signals are read by everyone who runs the store; running the plan, approving suggestions into PO
# drafts and pushing signals is for the manager and the purchaser; emergency requests come from the floor too.
REPLENISHMENT_READ = frozenset({"replenishment:read", "signals:read"})
REPLENISHMENT_WRITE = frozenset({"replenishment:run", "replenishment:approve", "signals:write"})
EMERGENCY_WRITE = frozenset({"emergency:write"})
# --- sync with the aggregator (issue 6) ---
# Sync state, cross-store transfers and HQ packages: the store's people read them; the floor receives incoming
# transfers; pushing now and rotating the store key is for the manager; installing and rolling back packages is
# the administrator's.
SYNC_READ = frozenset({"sync:read", "transfers:read", "packages:read"})
TRANSFERS_WRITE = frozenset({"transfers:write"})
SYNC_MANAGE = frozenset({"sync:manage"})
PACKAGES_MANAGE = frozenset({"packages:manage"})
# Money on documents, stock and purchase orders (amounts, prices, tax, value): the books, which a clerk does not see.
AMOUNTS_READ = frozenset({"amounts:read"})
# --- low-code rules and scenario modules (issue 8, docs/rules.md, docs/modules.md) ---
# Rules, their firings, holds and rule tickets are read by those who run the store and by the auditor; a rule is
# written by the manager or the purchaser and reviewed by someone other than its author (rules:review); releasing
# a hold and closing a rule ticket is rules:act. Modules are watched by the same people and managed by the admin
# and the manager.
RULES_READ = frozenset({"rules:read", "modules:read"})
RULES_WRITE = frozenset({"rules:write", "rules:review", "rules:act"})
MODULES_MANAGE = frozenset({"modules:manage"})

PERMISSIONS: frozenset[str] = (
    OPERATIONS_READ
    | BOOKS_READ
    | ALL_WRITES
    | FINANCE_READ
    | PURCHASING
    | APPROVALS
    | ACCOUNTING
    | FLEET_READ
    | REPLENISHMENT_READ
    | REPLENISHMENT_WRITE
    | EMERGENCY_WRITE
    | SYNC_READ
    | TRANSFERS_WRITE
    | SYNC_MANAGE
    | PACKAGES_MANAGE
    | AMOUNTS_READ
    | RULES_READ
    | RULES_WRITE
    | MODULES_MANAGE
    | {"documents:reverse", "users:manage", "devices:manage"}
)

ROLE_PERMISSIONS: MappingProxyType[Role, frozenset[str]] = MappingProxyType(
    {
        Role.ADMIN: PERMISSIONS,
        Role.MANAGER: OPERATIONS_READ
        | BOOKS_READ
        | ALL_WRITES
        | FINANCE_READ
        | PURCHASING
        | APPROVALS
        | FLEET_READ
        | REPLENISHMENT_READ
        | REPLENISHMENT_WRITE
        | EMERGENCY_WRITE
        | SYNC_READ
        | TRANSFERS_WRITE
        | SYNC_MANAGE
        | AMOUNTS_READ
        | RULES_READ
        | RULES_WRITE
        | MODULES_MANAGE
        | {"documents:reverse", "books:export", "devices:manage"},
        # Sells, takes returns, receives, moves and counts; does not see the books.
        Role.CLERK: OPERATIONS_READ
        | {"cold_rooms:read", "transfers:read"}
        | REPLENISHMENT_READ
        | EMERGENCY_WRITE
        | TRANSFERS_WRITE
        | {
            write_permission(t)
            for t in (
                DocType.SALE,
                DocType.CUSTOMER_RETURN,
                DocType.RECEIPT,
                DocType.TRANSFER_OUT,
                DocType.TRANSFER_IN,
                DocType.STOCKTAKE,
            )
        },
        Role.PURCHASER: OPERATIONS_READ
        | AMOUNTS_READ
        | {"invoices:read", "compliance:read", "prices:read"}
        | PURCHASING
        | REPLENISHMENT_READ
        | REPLENISHMENT_WRITE
        | EMERGENCY_WRITE
        | {"transfers:read"}
        | RULES_READ
        | RULES_WRITE
        | {write_permission(t) for t in (DocType.PURCHASE_ORDER, DocType.RECEIPT, DocType.SUPPLIER_RETURN)},
        Role.ACCOUNTANT: OPERATIONS_READ
        | AMOUNTS_READ
        | BOOKS_READ
        | FINANCE_READ
        | ACCOUNTING
        | {"sync:read", "transfers:read"}
        | RULES_READ
        | {"rules:review", "rules:act"}
        | {"invoices:write", "invoices:approve", "losses:approve"},
        Role.AUDITOR: OPERATIONS_READ
        | AMOUNTS_READ
        | BOOKS_READ
        | FINANCE_READ
        | FLEET_READ
        | REPLENISHMENT_READ
        | SYNC_READ
        | RULES_READ,
    }
)


def parse_role(value: str) -> Role | None:
    """The role named `value`, or None when there is no such role."""
    try:
        return Role(value)
    except ValueError:
        return None


def has_permission(role: Role | str, permission: str) -> bool:
    parsed = parse_role(role) if isinstance(role, str) else role
    return parsed is not None and permission in ROLE_PERMISSIONS[parsed]


def roles_with(permission: str) -> list[Role]:
    """Roles that hold `permission`, in declaration order (for error details and docs)."""
    return [role for role in Role if permission in ROLE_PERMISSIONS[role]]
