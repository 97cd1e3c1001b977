"""Supplier API keys: issued once, stored hashed, scoped, rotated with or without grace, revoked; supplier devices."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.supplier_keys import (
    SUPPLIER_PERMISSIONS,
    InvalidKeyInput,
    InvalidKeyScope,
    NoActiveApiKey,
    NotASupplierDevice,
    authenticate_api_key,
    create_api_key,
    link_supplier_device,
    list_api_keys,
    list_supplier_devices,
    revoke_api_keys,
    rotate_api_keys,
    supplier_of_device,
    unlink_supplier_device,
)
from edge.finance.errors import UnknownSupplier
from edge.ledger.audit import verify_chain
from edge.security.devices import create_device, set_device_enabled
from tests.edge.devices.receiving_store import NOW, in_tx, open_store


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "store.db")
    yield connection
    connection.close()


def issue(conn: sqlite3.Connection, supplier: str = "sup1", **kwargs: object) -> tuple[str, str]:
    issued = in_tx(conn, create_api_key, supplier, now=NOW, actor="tester", **kwargs)
    return issued.info.key_id, issued.key


def test_a_key_authenticates_its_supplier_with_every_scope_by_default(conn: sqlite3.Connection) -> None:
    key_id, key = issue(conn, label="ERP 接口")
    caller = authenticate_api_key(conn, key, NOW)
    assert caller is not None
    assert (caller.supplier, caller.supplier_name, caller.key_id) == ("sup1", "供应商 sup1", key_id)
    assert caller.scopes == frozenset(SUPPLIER_PERMISSIONS)
    assert key.startswith(f"sbk_{key_id}_") and len(key) == 4 + 12 + 1 + 43


def test_only_the_sha256_of_the_key_is_stored(conn: sqlite3.Connection) -> None:
    key_id, key = issue(conn)
    row = conn.execute("SELECT * FROM supplier_api_keys WHERE key_id = ?", (key_id,)).fetchone()
    assert row["secret_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    dump = "\n".join(conn.iterdump())
    secret = key.split("_", 2)[2]  # sbk_<key id>_<secret>; the secret itself may hold "_"
    assert len(secret) == 43 and key not in dump and secret not in dump


def test_a_wrong_secret_an_unknown_id_and_garbage_do_not_authenticate(conn: sqlite3.Connection) -> None:
    key_id, key = issue(conn)
    secret = key.split("_", 2)[2]
    other = ("A" if secret[0] != "A" else "B") + secret[1:]
    for presented in (f"sbk_{key_id}_{other}", f"sbk_aaaaaaaaaaaa_{secret}", "", key + "x", key.upper(), "Bearer x"):
        assert authenticate_api_key(conn, presented, NOW) is None, presented


@pytest.fixture(scope="module")
def keyed_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path_factory.mktemp("keys") / "store.db")
    in_tx(connection, create_api_key, "sup1", now=NOW, actor="tester")
    yield connection
    connection.close()


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=120) | st.from_regex(r"sbk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", fullmatch=True))
def test_any_text_as_a_key_is_refused_without_an_error(keyed_store: sqlite3.Connection, text: str) -> None:
    assert authenticate_api_key(keyed_store, text, NOW) is None


def test_scopes_are_checked_and_profile_read_is_always_granted(conn: sqlite3.Connection) -> None:
    _, key = issue(conn, scopes=["supplier:purchase_orders:read"])
    caller = authenticate_api_key(conn, key, NOW)
    assert caller is not None
    assert caller.scopes == {"supplier:purchase_orders:read", "supplier:profile:read"}
    with pytest.raises(InvalidKeyScope) as err:
        issue(conn, scopes=["documents:write:receipt"])
    assert err.value.detail["allowed"] == list(SUPPLIER_PERMISSIONS)


def test_keys_are_for_known_suppliers_with_printable_labels(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownSupplier):
        issue(conn, "nobody")
    with pytest.raises(InvalidKeyInput):
        issue(conn, label="x" * 101)
    with pytest.raises(InvalidKeyInput):
        issue(conn, label="line\nbreak")
    assert conn.execute("SELECT COUNT(*) FROM supplier_api_keys").fetchone()[0] == 0


def test_rotation_without_grace_stops_the_old_key_at_once(conn: sqlite3.Connection) -> None:
    old_id, old = issue(conn, scopes=["supplier:asns:write"], label="erp")
    (rotated,) = in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester")
    new = rotated.issued
    assert rotated.replaces == old_id
    assert authenticate_api_key(conn, old, NOW) is None
    caller = authenticate_api_key(conn, new.key, NOW)
    assert caller is not None and caller.scopes == {"supplier:asns:write", "supplier:profile:read"}
    assert new.info.label == "erp"
    (old_info,) = [k for k in list_api_keys(conn, "sup1") if k.key_id == old_id]
    assert old_info.revoked_at == NOW and old_info.replaced_by == new.info.key_id


def test_rotation_with_grace_keeps_the_old_key_until_it_ends(conn: sqlite3.Connection) -> None:
    _, old = issue(conn)
    (rotated,) = in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester", grace=timedelta(hours=1))
    new = rotated.issued
    assert authenticate_api_key(conn, old, NOW + timedelta(minutes=59)) is not None
    assert authenticate_api_key(conn, old, NOW + timedelta(hours=1)) is None
    assert authenticate_api_key(conn, new.key, NOW + timedelta(days=400)) is not None
    with pytest.raises(InvalidKeyInput):
        in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester", grace=timedelta(days=31))


def test_rotating_all_keys_rotates_each_with_its_own_label_and_scopes(conn: sqlite3.Connection) -> None:
    full_id, full = issue(conn, label="our ERP")
    ro_id, ro = issue(conn, label="ro", scopes=["supplier:purchase_orders:read", "supplier:asns:read"])
    rotated = in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester", grace=timedelta(hours=1))
    assert [r.replaces for r in rotated] == [full_id, ro_id]
    new_full, new_ro = (r.issued for r in rotated)
    assert (new_full.info.label, new_full.info.scopes) == ("our ERP", SUPPLIER_PERMISSIONS)
    assert (new_ro.info.label, set(new_ro.info.scopes)) == (
        "ro",
        {"supplier:profile:read", "supplier:purchase_orders:read", "supplier:asns:read"},
    )
    caller = authenticate_api_key(conn, new_ro.key, NOW)
    assert caller is not None and "supplier:asns:write" not in caller.scopes
    replaced = {k.key_id: k.replaced_by for k in list_api_keys(conn, "sup1")}
    assert (replaced[full_id], replaced[ro_id]) == (new_full.info.key_id, new_ro.info.key_id)
    # Rotating again within the grace period rotates the new keys, not the old ones on their way out.
    again = in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester")
    assert [r.replaces for r in again] == [new_full.info.key_id, new_ro.info.key_id]
    assert authenticate_api_key(conn, full, NOW) is not None and authenticate_api_key(conn, ro, NOW) is not None


def test_rotating_one_key_leaves_the_others_and_a_replaced_key_names_its_successor(conn: sqlite3.Connection) -> None:
    full_id, full = issue(conn, label="our ERP")
    ro_id, _ = issue(conn, label="ro", scopes=["supplier:asns:read"])
    (rotated,) = in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester", key_id=ro_id, grace=timedelta(hours=1))
    assert rotated.replaces == ro_id and rotated.issued.info.label == "ro"
    assert authenticate_api_key(conn, full, NOW) is not None
    assert {k.key_id: k.replaced_by for k in list_api_keys(conn, "sup1")}[full_id] is None
    with pytest.raises(InvalidKeyInput) as err:
        in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester", key_id=ro_id)
    assert err.value.detail["replaced_by"] == rotated.issued.info.key_id


def test_revoking_one_key_leaves_the_others(conn: sqlite3.Connection) -> None:
    first_id, first = issue(conn)
    _, second = issue(conn)
    assert in_tx(conn, revoke_api_keys, "sup1", now=NOW, actor="tester", key_id=first_id) == [first_id]
    assert authenticate_api_key(conn, first, NOW) is None
    assert authenticate_api_key(conn, second, NOW) is not None
    in_tx(conn, revoke_api_keys, "sup1", now=NOW, actor="tester")
    assert authenticate_api_key(conn, second, NOW) is None
    with pytest.raises(NoActiveApiKey):
        in_tx(conn, revoke_api_keys, "sup1", now=NOW, actor="tester")
    with pytest.raises(NoActiveApiKey):
        in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester")


def test_a_key_cannot_be_rotated_or_revoked_through_another_supplier(conn: sqlite3.Connection) -> None:
    key_id, key = issue(conn, "sup1")
    with pytest.raises(NoActiveApiKey):
        in_tx(conn, revoke_api_keys, "sup2", now=NOW, actor="tester", key_id=key_id)
    assert authenticate_api_key(conn, key, NOW) is not None


def test_an_inactive_supplier_s_keys_stop_working(conn: sqlite3.Connection) -> None:
    _, key = issue(conn)
    conn.execute("UPDATE suppliers SET active = 0 WHERE id = 'sup1'")
    assert authenticate_api_key(conn, key, NOW) is None


def test_every_key_act_is_in_the_audit_chain(conn: sqlite3.Connection) -> None:
    key_id, _ = issue(conn)
    in_tx(conn, rotate_api_keys, "sup1", now=NOW, actor="tester")
    in_tx(conn, revoke_api_keys, "sup1", now=NOW, actor="tester")
    actions = [r[0] for r in conn.execute("SELECT action FROM audit WHERE object = 'supplier:sup1' ORDER BY seq")]
    assert actions == ["supplier_api_key.create", "supplier_api_key.rotate", "supplier_api_key.revoke"]
    assert verify_chain(conn) == []
    assert key_id in conn.execute("SELECT detail FROM audit WHERE action = 'supplier_api_key.create'").fetchone()[0]


def test_a_supplier_device_speaks_for_its_supplier_while_linked_and_enabled(conn: sqlite3.Connection) -> None:
    in_tx(conn, create_device, "sup-acme", "supplier", "pw-acme-123456")
    in_tx(conn, create_device, "pda-9", "handheld", "pw-pda-123456")
    assert supplier_of_device(conn, "sup-acme") is None
    in_tx(conn, link_supplier_device, "sup-acme", "sup1", now=NOW, actor="tester")
    assert supplier_of_device(conn, "sup-acme") == "sup1"
    in_tx(conn, link_supplier_device, "sup-acme", "sup2", now=NOW, actor="tester")
    assert list_supplier_devices(conn) == [{"device": "sup-acme", "supplier": "sup2", "linked_at": NOW.isoformat()}]
    in_tx(conn, set_device_enabled, "sup-acme", False)
    assert supplier_of_device(conn, "sup-acme") is None
    in_tx(conn, set_device_enabled, "sup-acme", True)
    assert in_tx(conn, unlink_supplier_device, "sup-acme", now=NOW, actor="tester") == "sup2"
    assert supplier_of_device(conn, "sup-acme") is None
    with pytest.raises(NotASupplierDevice):
        in_tx(conn, link_supplier_device, "pda-9", "sup1", now=NOW, actor="tester")
    with pytest.raises(NotASupplierDevice):
        in_tx(conn, link_supplier_device, "ghost", "sup1", now=NOW, actor="tester")
    with pytest.raises(UnknownSupplier):
        in_tx(conn, link_supplier_device, "sup-acme", "nobody", now=NOW, actor="tester")


# --- storebox supplier api-key / link-device ---------------------------------------------------------


def test_the_cli_creates_rotates_lists_and_revokes_keys_and_links_devices(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    open_store(tmp_path / "storebox.db").close()
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, [*args, "--data-dir", str(tmp_path)])

    created = cli("supplier", "api-key", "create", "sup1", "--scope", "supplier:asns:write", "--label", "ERP")
    assert created.exit_code == 0, created.output
    issued = json.loads(created.stdout.splitlines()[0])
    assert issued["scopes"] == ["supplier:profile:read", "supplier:asns:write"] and issued["api_key"].startswith("sbk_")
    ro = json.loads(
        cli("supplier", "api-key", "create", "sup1", "--scope", "supplier:asns:read", "--label", "ro").stdout
    )
    rotated = cli("supplier", "api-key", "rotate", "sup1", "--grace-minutes", "30")
    assert rotated.exit_code == 0, rotated.output
    new, new_ro = (json.loads(line) for line in rotated.stdout.splitlines())
    assert (new["replaces"], new["label"], new["scopes"]) == (issued["key_id"], "ERP", issued["scopes"])
    assert (new_ro["replaces"], new_ro["label"], new_ro["scopes"]) == (ro["key_id"], "ro", ro["scopes"])
    listed = [json.loads(line) for line in cli("supplier", "api-key", "list", "sup1").stdout.splitlines()]
    assert [(k["key_id"], k["active"], k["replaced_by"]) for k in listed] == [
        (issued["key_id"], True, new["key_id"]),
        (ro["key_id"], True, new_ro["key_id"]),
        (new["key_id"], True, None),
        (new_ro["key_id"], True, None),
    ]
    one = cli("supplier", "api-key", "rotate", "sup1", "--key", new_ro["key_id"])
    assert one.exit_code == 0 and [json.loads(line)["replaces"] for line in one.stdout.splitlines()] == [
        new_ro["key_id"]
    ]
    assert all("api_key" not in k and "secret_sha256" not in k for k in listed)
    revoked = cli("supplier", "api-key", "revoke", "sup1", "--key", new["key_id"])
    assert revoked.exit_code == 0 and new["key_id"] in revoked.stdout
    refused = cli("supplier", "api-key", "create", "nobody")
    assert refused.exit_code == 2 and "nobody" in refused.output
    assert cli("supplier", "api-key", "create", "sup1", "--scope", "everything").exit_code == 2
    assert cli("device", "add", "sup-x", "--kind", "supplier").exit_code == 0
    linked = cli("supplier", "link-device", "sup1", "sup-x")
    assert linked.exit_code == 0, linked.output
    assert cli("supplier", "link-device", "sup1", "nope").exit_code == 2
    assert cli("supplier", "unlink-device", "sup-x").exit_code == 0
