-- Devices: scan-to-receive: ASNs, delivery notes, receipt drafts, supplier signing keys.

-- Advance shipping notices (发货通知), latest revision; `asn_id` is the supplier's own id.
CREATE TABLE asns (
    supplier     TEXT NOT NULL REFERENCES suppliers(id),
    asn_id       TEXT NOT NULL,
    revision     INTEGER NOT NULL CHECK (revision >= 1),
    po_id        INTEGER NOT NULL REFERENCES documents(id),
    ship_date    TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'received')),
    note         TEXT,
    fingerprint  TEXT NOT NULL,       -- sha256 of the content as sent: same id + same content = a resend
    created_at   TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,       -- of the latest revision
    receipt_ids  TEXT,                -- JSON list of receipt document ids posted against it
    differences  TEXT,                -- JSON list of differences found at receipt
    PRIMARY KEY (supplier, asn_id)
);
CREATE INDEX asns_by_po ON asns(po_id, state);
CREATE INDEX asns_by_recorded_at ON asns(recorded_at);

CREATE TABLE asn_lines (
    supplier   TEXT NOT NULL,
    asn_id     TEXT NOT NULL,
    line_no    INTEGER NOT NULL,
    code       TEXT NOT NULL,
    sku        TEXT NOT NULL REFERENCES items(sku),
    unit       TEXT NOT NULL,
    qty        INTEGER NOT NULL,
    qty_base   INTEGER NOT NULL,
    lot        TEXT,
    expiry     TEXT,
    price_fen  INTEGER,
    PRIMARY KEY (supplier, asn_id, line_no),
    FOREIGN KEY (supplier, asn_id) REFERENCES asns(supplier, asn_id)
);

-- Every revision as sent (append-only history).
CREATE TABLE asn_revisions (
    supplier     TEXT NOT NULL,
    asn_id       TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    fingerprint  TEXT NOT NULL,
    body         TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (supplier, asn_id, revision)
);

-- Suppliers' Ed25519 public keys that sign their delivery-note QR codes (docs/scan-to-receive.md).
CREATE TABLE supplier_signing_keys (
    supplier    TEXT NOT NULL REFERENCES suppliers(id),
    key_id      TEXT NOT NULL,        -- first 8 hex digits of sha256(raw public key)
    public_key  TEXT NOT NULL,        -- raw 32 bytes, base64url without padding
    added_at    TEXT NOT NULL,
    added_by    TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_by  TEXT,
    PRIMARY KEY (supplier, key_id)
);

-- Every delivery note scanned, by its nonce: refuses replays (a received note, or a nonce seen with other content).
CREATE TABLE delivery_notes (
    supplier     TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    note_hash    TEXT NOT NULL,       -- sha256 of the signed body
    asn_id       TEXT NOT NULL,
    po_id        INTEGER NOT NULL,
    key_id       TEXT NOT NULL,
    issued_at    TEXT NOT NULL,
    first_seen   TEXT NOT NULL,
    receipt_id   INTEGER REFERENCES documents(id),
    PRIMARY KEY (supplier, nonce)
);
CREATE INDEX delivery_notes_by_asn ON delivery_notes(supplier, asn_id);

-- Receipt drafts (收货草稿): opened by scanning a delivery note, filled by scans, confirmed into a receipt.
CREATE TABLE receipt_drafts (
    id            INTEGER PRIMARY KEY,
    state         TEXT NOT NULL CHECK (state IN ('open', 'confirmed', 'cancelled')),
    supplier      TEXT NOT NULL REFERENCES suppliers(id),
    po_id         INTEGER NOT NULL REFERENCES documents(id),
    asn_id        TEXT NOT NULL,
    asn_revision  INTEGER,            -- the stored ASN's revision matched; NULL when the note is the ASN
    note_nonce    TEXT NOT NULL,
    note_hash     TEXT NOT NULL,
    location      TEXT REFERENCES locations(code),
    opened_by     TEXT NOT NULL,
    device        TEXT,
    opened_at     TEXT NOT NULL,
    closed_at     TEXT,
    closed_by     TEXT,
    receipt_id    INTEGER REFERENCES documents(id),
    result        TEXT                -- JSON: what was received and what differed, as acked at confirm
);
-- One open draft per delivery note: scanning it again resumes that draft.
CREATE UNIQUE INDEX receipt_drafts_open_by_note ON receipt_drafts(note_hash) WHERE state = 'open';
CREATE INDEX receipt_drafts_by_state ON receipt_drafts(state, id);

-- What the draft expects: the delivery note's lines (matched to the ASN and PO).
CREATE TABLE receipt_draft_expected (
    draft_id   INTEGER NOT NULL REFERENCES receipt_drafts(id),
    line_no    INTEGER NOT NULL,
    code       TEXT NOT NULL,
    sku        TEXT NOT NULL REFERENCES items(sku),
    unit       TEXT NOT NULL,
    qty        INTEGER NOT NULL,
    qty_base   INTEGER NOT NULL,
    lot        TEXT,
    expiry     TEXT,
    PRIMARY KEY (draft_id, line_no)
);

-- What the keeper scanned or weighed into the draft.
CREATE TABLE receipt_draft_scans (
    draft_id    INTEGER NOT NULL REFERENCES receipt_drafts(id),
    seq         INTEGER NOT NULL,
    code        TEXT NOT NULL,
    sku         TEXT NOT NULL REFERENCES items(sku),
    unit        TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    qty_base    INTEGER NOT NULL,
    lot         TEXT,
    expiry      TEXT,
    device      TEXT,
    actor       TEXT NOT NULL,
    scanned_at  TEXT NOT NULL,
    PRIMARY KEY (draft_id, seq)
);
