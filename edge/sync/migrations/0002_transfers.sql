-- Cross-store transfers (issue 6): this store's transfers as last pulled from the aggregator, incoming (to be
-- received here with a transfer in) and outgoing (settled here once the other store has received them).
-- The ledger's documents stay the record; this is a copy to work from offline (docs/transfers.md).
CREATE TABLE sync_transfers (
    id                  INTEGER PRIMARY KEY,            -- the aggregator's transfer id
    direction           TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    from_store          TEXT NOT NULL,
    to_store            TEXT NOT NULL,
    out_doc_id          INTEGER NOT NULL,               -- the transfer out's id in the sending box
    out_doc_no          TEXT NOT NULL,
    external_ref        TEXT NOT NULL,                  -- transfer:<from_store>:<out_doc_no>
    shipped_date        TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('in_transit', 'received', 'settled', 'cancelled')),
    shipped_value_fen   INTEGER NOT NULL,
    received_value_fen  INTEGER,
    in_doc_no           TEXT,
    settle_doc_no       TEXT,
    parts               TEXT NOT NULL,                  -- JSON [{part_no, sku, lot, qty, value_fen, expiry, received_qty}]
    updated_at          TEXT NOT NULL
);
CREATE INDEX sync_transfers_by_direction ON sync_transfers(direction, state);
CREATE INDEX sync_transfers_by_external_ref ON sync_transfers(external_ref);

-- Transfer requests (调拨申请) other stores sent to this store through the aggregator: asked to ship.
CREATE TABLE sync_transfer_requests (
    id          INTEGER PRIMARY KEY,                    -- the aggregator's id
    to_store    TEXT NOT NULL,                          -- the requesting store
    request_id  INTEGER NOT NULL,                       -- its id in the requesting box
    sku         TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    unit        TEXT NOT NULL,
    qty_base    INTEGER NOT NULL,
    cold_chain  TEXT NOT NULL,
    deadline    TEXT,
    note        TEXT,
    sent_at     TEXT NOT NULL,
    pulled_at   TEXT NOT NULL
);
