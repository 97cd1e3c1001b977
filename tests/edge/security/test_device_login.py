"""A device's login names its kind, which decides what it may read on the bus (docs/devices.md)."""

from __future__ import annotations

import sqlite3

from edge.security.devices import (
    DeviceKind,
    DeviceLogin,
    authenticate_device,
    create_device,
    reads_store_topics,
    set_device_enabled,
    verify_device,
)


def test_a_login_names_the_device_and_its_kind(conn: sqlite3.Connection) -> None:
    create_device(conn, "sup-acme", "supplier", "sup-acme-secret")
    create_device(conn, "pos-1", "pos", "pos-1-secret")
    assert authenticate_device(conn, "sup-acme", "sup-acme-secret") == DeviceLogin("sup-acme", "supplier")
    assert authenticate_device(conn, "pos-1", "pos-1-secret") == DeviceLogin("pos-1", "pos")
    assert verify_device(conn, "sup-acme", "sup-acme-secret") == "sup-acme"  # the id alone, as before


def test_a_login_is_refused_as_verify_device_refuses_it(conn: sqlite3.Connection) -> None:
    create_device(conn, "pos-1", "pos", "pos-1-secret")
    set_device_enabled(conn, "pos-1", False)
    assert authenticate_device(conn, "pos-1", "pos-1-secret") is None
    set_device_enabled(conn, "pos-1", True)
    for username, password in (("pos-1", "wrong-secret"), ("pos-2", "pos-1-secret"), ("", ""), ("POS-1", "x")):
        assert authenticate_device(conn, username, password) is None


def test_every_kind_of_the_stores_own_devices_reads_stock_and_alerts_but_a_suppliers_does_not() -> None:
    assert {kind for kind in DeviceKind if not reads_store_topics(kind)} == {DeviceKind.SUPPLIER}
    assert reads_store_topics("pos") and not reads_store_topics("supplier")
    assert not reads_store_topics("a-kind-the-box-does-not-know")
