-- Ledger core: master data, documents, stock moves, balances, vouchers, outbox, audit.
-- Money is integer fen, quantity integer base units. Moves, voucher lines and audit rows are append-only.

CREATE TABLE stores (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    is_local  INTEGER NOT NULL DEFAULT 0,
    address   TEXT
);

CREATE TABLE locations (
    code          TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    name_en       TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('floor', 'backroom', 'cold', 'freezer', 'transit', 'other')),
    storage_class TEXT NOT NULL CHECK (storage_class IN ('ambient', 'chilled', 'frozen'))
);

CREATE TABLE categories (
    code          TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    name_en       TEXT NOT NULL,
    storage_class TEXT NOT NULL CHECK (storage_class IN ('ambient', 'chilled', 'frozen'))
);

CREATE TABLE items (
    sku              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    name_en          TEXT,
    category         TEXT REFERENCES categories(code),
    base_unit        TEXT NOT NULL,
    storage_class    TEXT NOT NULL CHECK (storage_class IN ('ambient', 'chilled', 'frozen')),
    shelf_life_days  INTEGER CHECK (shelf_life_days IS NULL OR shelf_life_days > 0),
    vat_rate_bp      INTEGER NOT NULL DEFAULT 1300 CHECK (vat_rate_bp BETWEEN 0 AND 10000),
    price_fen        INTEGER NOT NULL DEFAULT 0 CHECK (price_fen >= 0),
    cost_fen         INTEGER NOT NULL DEFAULT 0 CHECK (cost_fen >= 0),
    lot_tracked      INTEGER NOT NULL DEFAULT 0,
    active           INTEGER NOT NULL DEFAULT 1
);

-- Units of measure with an integer conversion to the base unit (1 case = 24 pieces).
CREATE TABLE item_units (
    sku     TEXT NOT NULL REFERENCES items(sku),
    unit    TEXT NOT NULL,
    factor  INTEGER NOT NULL CHECK (factor > 0),
    PRIMARY KEY (sku, unit)
);

CREATE TABLE barcodes (
    code  TEXT PRIMARY KEY,
    sku   TEXT NOT NULL REFERENCES items(sku),
    unit  TEXT NOT NULL
);
CREATE INDEX barcodes_by_sku ON barcodes(sku);

CREATE TABLE suppliers (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    credit_code TEXT,
    contact    TEXT,
    phone      TEXT,
    active     INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE lots (
    sku     TEXT NOT NULL REFERENCES items(sku),
    lot     TEXT NOT NULL,
    expiry  TEXT,               -- ISO date, NULL when the item has no expiry
    PRIMARY KEY (sku, lot)
);

-- Every command ever posted, by idempotency key, with its first result (success or refusal).
CREATE TABLE commands (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    ok           INTEGER NOT NULL,
    document_id  INTEGER,
    code         TEXT NOT NULL,
    result       TEXT NOT NULL,  -- JSON of the result as first returned
    ts           TEXT NOT NULL
);

CREATE TABLE documents (
    id            INTEGER PRIMARY KEY,
    doc_no        TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    command_key   TEXT NOT NULL UNIQUE,
    posted_at     TEXT NOT NULL,
    business_date TEXT NOT NULL,
    actor         TEXT NOT NULL,
    device        TEXT,
    location      TEXT REFERENCES locations(code),
    to_location   TEXT REFERENCES locations(code),
    counterparty  TEXT,
    ref_id        INTEGER REFERENCES documents(id),
    reverses_id   INTEGER UNIQUE REFERENCES documents(id),
    reason        TEXT,
    reason_text   TEXT,
    note          TEXT,
    payment       TEXT,
    gross_fen     INTEGER NOT NULL DEFAULT 0,
    tax_fen       INTEGER NOT NULL DEFAULT 0,
    cost_fen      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX documents_by_type_and_time ON documents(type, posted_at);

CREATE TABLE document_lines (
    document_id  INTEGER NOT NULL REFERENCES documents(id),
    line_no      INTEGER NOT NULL,
    sku          TEXT NOT NULL REFERENCES items(sku),
    code         TEXT NOT NULL,          -- as scanned or typed (barcode or sku)
    unit         TEXT NOT NULL,
    qty          INTEGER NOT NULL,       -- in `unit`; for stocktakes the counted quantity
    qty_base     INTEGER NOT NULL,
    price_fen    INTEGER,                -- unit price including VAT, per `unit`
    gross_fen    INTEGER NOT NULL DEFAULT 0,
    tax_fen      INTEGER NOT NULL DEFAULT 0,
    vat_rate_bp  INTEGER NOT NULL DEFAULT 0,
    lot          TEXT,
    expiry       TEXT,
    location     TEXT REFERENCES locations(code),
    PRIMARY KEY (document_id, line_no)
);

CREATE TABLE stock_moves (
    id           INTEGER PRIMARY KEY,
    document_id  INTEGER NOT NULL REFERENCES documents(id),
    line_no      INTEGER NOT NULL,
    sku          TEXT NOT NULL REFERENCES items(sku),
    location     TEXT NOT NULL REFERENCES locations(code),
    lot          TEXT NOT NULL DEFAULT '',
    qty          INTEGER NOT NULL,       -- signed, base units
    value_fen    INTEGER NOT NULL,       -- signed
    ts           TEXT NOT NULL
);
CREATE INDEX stock_moves_by_item_location_lot ON stock_moves(sku, location, lot);
CREATE INDEX stock_moves_by_document ON stock_moves(document_id);

CREATE TABLE balances (
    sku        TEXT NOT NULL REFERENCES items(sku),
    location   TEXT NOT NULL REFERENCES locations(code),
    lot        TEXT NOT NULL DEFAULT '',
    qty        INTEGER NOT NULL,
    value_fen  INTEGER NOT NULL,
    PRIMARY KEY (sku, location, lot)
);
CREATE INDEX balances_by_location ON balances(location);

CREATE TABLE accounts (
    code     TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    name_en  TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('asset', 'liability', 'equity', 'income', 'expense', 'cost'))
);

CREATE TABLE vouchers (
    id           INTEGER PRIMARY KEY,
    voucher_no   TEXT NOT NULL UNIQUE,
    document_id  INTEGER NOT NULL UNIQUE REFERENCES documents(id),
    date         TEXT NOT NULL,
    memo         TEXT NOT NULL,
    rule_version TEXT NOT NULL
);

CREATE TABLE voucher_lines (
    voucher_id  INTEGER NOT NULL REFERENCES vouchers(id),
    line_no     INTEGER NOT NULL,
    account     TEXT NOT NULL REFERENCES accounts(code),
    debit_fen   INTEGER NOT NULL DEFAULT 0,
    credit_fen  INTEGER NOT NULL DEFAULT 0,
    memo        TEXT,
    PRIMARY KEY (voucher_id, line_no)
);
CREATE INDEX voucher_lines_by_account ON voucher_lines(account);

CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id  INTEGER REFERENCES documents(id),
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    acked_at     TEXT
);

CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    device     TEXT,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

-- Append-only, enforced by the database itself.
CREATE TRIGGER stock_moves_append_only_update BEFORE UPDATE ON stock_moves
BEGIN SELECT RAISE(ABORT, 'stock moves are append-only'); END;
CREATE TRIGGER stock_moves_append_only_delete BEFORE DELETE ON stock_moves
BEGIN SELECT RAISE(ABORT, 'stock moves are append-only'); END;
CREATE TRIGGER voucher_lines_append_only_update BEFORE UPDATE ON voucher_lines
BEGIN SELECT RAISE(ABORT, 'voucher lines are append-only'); END;
CREATE TRIGGER voucher_lines_append_only_delete BEFORE DELETE ON voucher_lines
BEGIN SELECT RAISE(ABORT, 'voucher lines are append-only'); END;
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER documents_append_only_delete BEFORE DELETE ON documents
BEGIN SELECT RAISE(ABORT, 'documents are never deleted'); END;
