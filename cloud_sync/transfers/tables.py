"""Aggregator tables of cross-store transfers (on the one `cloud_sync.tables.metadata`)."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.tables import metadata

Big = sa.BigInteger

# One transfer out of one store to another, derived from both stores' documents: in_transit -> received
# (the receiving store's transfer in names it in external_ref) -> settled (the sender's transfer_settle);
# cancelled when the sender reverses its transfer out before receipt.
transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", Big().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("from_store", sa.String(64), nullable=False),
    sa.Column("to_store", sa.String(64), nullable=False),
    sa.Column("out_doc_id", Big, nullable=False),
    sa.Column("out_doc_no", sa.String(64), nullable=False),
    sa.Column("shipped_date", sa.String(10), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("shipped_value_fen", Big, nullable=False),
    sa.Column("received_value_fen", Big),
    sa.Column("in_doc_id", Big),
    sa.Column("in_doc_no", sa.String(64)),
    sa.Column("received_date", sa.String(10)),
    sa.Column("settle_doc_id", Big),
    sa.Column("settle_doc_no", sa.String(64)),
    sa.Column("settled_date", sa.String(10)),
    sa.Column("cancelled_date", sa.String(10)),
    sa.Column("updated_seq", Big, nullable=False),  # the outbox row (of either store) that last changed it
    sa.UniqueConstraint("from_store", "out_doc_id", name="transfers_by_out_doc"),
)
sa.Index("transfers_by_to_store", transfers.c.to_store, transfers.c.state)
sa.Index("transfers_by_out_doc_no", transfers.c.from_store, transfers.c.out_doc_no)

# A transfer's goods by item and lot as they went into the sender's transit, and what the receiver counted.
transfer_parts = sa.Table(
    "transfer_parts",
    metadata,
    sa.Column("transfer_id", Big, sa.ForeignKey("transfers.id"), primary_key=True),
    sa.Column("part_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("lot", sa.String(64), nullable=False),
    sa.Column("qty", Big, nullable=False),
    sa.Column("value_fen", Big, nullable=False),
    sa.Column("expiry", sa.String(10)),
    sa.Column("received_qty", Big),
    sa.Column("received_value_fen", Big),
)

# A store's transfer request (调拨申请, issue 5) sent to the store it asks to ship: the source store's box lists it.
transfer_requests = sa.Table(
    "transfer_requests",
    metadata,
    sa.Column("id", Big().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("to_store", sa.String(64), nullable=False),  # the requesting store, where the goods go
    sa.Column("request_id", Big, nullable=False),  # its id in the requesting box
    sa.Column("from_store", sa.String(64), nullable=False),  # the store asked to ship
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("qty", Big, nullable=False),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("qty_base", Big, nullable=False),
    sa.Column("cold_chain", sa.String(16), nullable=False),
    sa.Column("deadline", sa.String(40)),
    sa.Column("note", sa.Text),
    sa.Column("sent_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("to_store", "request_id", name="transfer_requests_once"),
)
sa.Index("transfer_requests_by_source", transfer_requests.c.from_store, transfer_requests.c.id)

TABLES = [transfers, transfer_parts, transfer_requests]
