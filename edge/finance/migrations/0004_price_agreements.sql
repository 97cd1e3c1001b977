-- 0004_price_agreements: negotiated prices (协议价), the contracts they belong to, and the price revisions of
-- open purchase orders they caused. The ledger's PO lines stay as posted (append-only); a revision records the
-- old and the new price beside them, and the three-way match takes the latest revision as the PO's price.

CREATE TABLE contracts (
    contract_no  TEXT PRIMARY KEY,
    supplier_id  TEXT NOT NULL REFERENCES suppliers(id),
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);

CREATE TABLE price_agreements (
    id           INTEGER PRIMARY KEY,
    supplier_id  TEXT NOT NULL REFERENCES suppliers(id),
    sku          TEXT NOT NULL REFERENCES items(sku),
    price_fen    INTEGER NOT NULL CHECK (price_fen > 0),   -- per base unit, VAT included
    valid_from   TEXT NOT NULL,
    valid_to     TEXT NOT NULL CHECK (valid_to >= valid_from),
    contract_no  TEXT NOT NULL REFERENCES contracts(contract_no),
    recorded_at  TEXT NOT NULL,
    recorded_by  TEXT NOT NULL,
    command_key  TEXT NOT NULL UNIQUE,
    fingerprint  TEXT NOT NULL,
    note         TEXT
);
CREATE INDEX price_agreements_by_supplier_item ON price_agreements(supplier_id, sku, valid_from);
CREATE INDEX price_agreements_by_contract ON price_agreements(contract_no);

CREATE TABLE po_price_revisions (
    id             INTEGER PRIMARY KEY,
    po_id          INTEGER NOT NULL REFERENCES documents(id),
    po_line_no     INTEGER NOT NULL,
    sku            TEXT NOT NULL REFERENCES items(sku),
    unit           TEXT NOT NULL,
    factor         INTEGER NOT NULL CHECK (factor > 0),  -- base units in the PO line's unit
    old_price_fen  INTEGER NOT NULL,                     -- per the PO line's unit, VAT included
    new_price_fen  INTEGER NOT NULL,
    agreement_id   INTEGER NOT NULL REFERENCES price_agreements(id),
    revised_at     TEXT NOT NULL,
    revised_by     TEXT NOT NULL
);
CREATE INDEX po_price_revisions_by_po_line ON po_price_revisions(po_id, po_line_no, id);

CREATE TRIGGER price_agreements_append_only_update BEFORE UPDATE ON price_agreements
BEGIN SELECT RAISE(ABORT, 'price agreements are append-only: record a new one'); END;
CREATE TRIGGER price_agreements_append_only_delete BEFORE DELETE ON price_agreements
BEGIN SELECT RAISE(ABORT, 'price agreements are append-only: record a new one'); END;
CREATE TRIGGER po_price_revisions_append_only_update BEFORE UPDATE ON po_price_revisions
BEGIN SELECT RAISE(ABORT, 'price revisions are append-only'); END;
CREATE TRIGGER po_price_revisions_append_only_delete BEFORE DELETE ON po_price_revisions
BEGIN SELECT RAISE(ABORT, 'price revisions are append-only'); END;
