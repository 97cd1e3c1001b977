-- E emergency requests (紧急要货): neighbours' stock, the requests as parsed, and draft transfer requests.

-- What a neighbouring store holds of an item, as last reported (POST /api/v1/replenishment/peer-stock now, the HQ
-- sync later). One snapshot per store: a new report replaces all of that store's rows at once.
CREATE TABLE peer_stock (
    store               TEXT NOT NULL REFERENCES stores(id),
    sku                 TEXT NOT NULL REFERENCES items(sku),
    qty                 INTEGER NOT NULL CHECK (qty >= 0),          -- base units
    storage_class       TEXT NOT NULL CHECK (storage_class IN ('ambient', 'chilled', 'frozen')),
    cold_chain_capable  INTEGER NOT NULL DEFAULT 0 CHECK (cold_chain_capable IN (0, 1)),  -- can ship chilled/frozen
    last_outbound_date  TEXT,                                       -- ISO date of their last sale or issue
    min_shelf_life_days INTEGER CHECK (min_shelf_life_days IS NULL OR min_shelf_life_days >= 0),  -- shortest lot
    distance_km         REAL CHECK (distance_km IS NULL OR distance_km >= 0),
    eta_minutes         INTEGER CHECK (eta_minutes IS NULL OR eta_minutes >= 0),
    updated_at          TEXT NOT NULL,                              -- when the store reported it (RFC 3339)
    PRIMARY KEY (store, sku)
);
CREATE INDEX peer_stock_by_sku ON peer_stock(sku);

-- Every emergency request created: the text, the parse and the proposal as JSON, and what was made of it.
CREATE TABLE emergency_requests (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,                             -- Idempotency-Key
    fingerprint   TEXT NOT NULL,
    text          TEXT NOT NULL,
    parse         TEXT NOT NULL,                                    -- JSON (EmergencyParse.to_json)
    plan          TEXT NOT NULL,                                    -- JSON (EmergencyPlan.to_json)
    action        TEXT NOT NULL CHECK (action IN ('transfer', 'purchase')),
    state         TEXT NOT NULL CHECK (state IN ('created', 'cancelled')),
    sku           TEXT NOT NULL REFERENCES items(sku),
    qty_base      INTEGER NOT NULL CHECK (qty_base > 0),
    deadline      TEXT,
    transfer_id   INTEGER REFERENCES transfer_requests(id),
    document_id   INTEGER REFERENCES documents(id),                 -- the urgent purchase order
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX emergency_requests_by_time ON emergency_requests(created_at);

-- A draft transfer from another store (调拨申请): the other store ships once it accepts; the ledger's transfer
-- documents record the goods when they move.
CREATE TABLE transfer_requests (
    id            INTEGER PRIMARY KEY,
    from_store    TEXT NOT NULL REFERENCES stores(id),
    to_store      TEXT NOT NULL,
    sku           TEXT NOT NULL REFERENCES items(sku),
    qty           INTEGER NOT NULL CHECK (qty > 0),                 -- in `unit`
    unit          TEXT NOT NULL,
    qty_base      INTEGER NOT NULL CHECK (qty_base > 0),
    cold_chain    TEXT NOT NULL CHECK (cold_chain IN ('ambient', 'chilled', 'frozen')),
    vehicle       INTEGER NOT NULL DEFAULT 0 CHECK (vehicle IN (0, 1)),
    deadline      TEXT,
    to_location   TEXT REFERENCES locations(code),
    state         TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'sent', 'cancelled')),
    note          TEXT,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    cancelled_by  TEXT,
    cancelled_at  TEXT,
    cancel_reason TEXT
);
CREATE INDEX transfer_requests_by_state ON transfer_requests(state, created_at);
