-- 0002_invoices: purchase invoices (进项发票), their lines, what they cleared of the receipts, and the
-- three-way-match exception queue (三单匹配异常). Money in fen, quantities in the line's unit / base units.

CREATE TABLE invoices (
    id                  INTEGER PRIMARY KEY,
    invoice_no          TEXT NOT NULL UNIQUE CHECK (length(invoice_no) = 20 AND invoice_no NOT GLOB '*[^0-9]*'),
    kind                TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    original_invoice_no TEXT,                   -- a credit note's original (蓝字发票号码)
    issue_date          TEXT NOT NULL,
    seller_name         TEXT NOT NULL,
    seller_credit_code  TEXT NOT NULL,
    buyer_name          TEXT NOT NULL,
    buyer_credit_code   TEXT NOT NULL,
    supplier_id         TEXT REFERENCES suppliers(id),
    po_id               INTEGER,                -- as named on entry (not a foreign key: it may be wrong)
    receipt_ids         TEXT NOT NULL DEFAULT '[]',  -- JSON list, as named on entry
    net_fen             INTEGER NOT NULL,
    tax_fen             INTEGER NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('api', 'csv', 'xlsx', 'xml')),
    status              TEXT NOT NULL CHECK (status IN (
                            'matched', 'exception', 'pending_approval', 'awaiting_credit_note',
                            'accepted', 'credited', 'rejected', 'cancelled', 'netted', 'posted')),
    entered_at          TEXT NOT NULL,          -- when it arrived: the match window counts to this
    entered_by          TEXT NOT NULL,
    command_key         TEXT NOT NULL UNIQUE,   -- idempotency key of the request that entered it
    fingerprint         TEXT NOT NULL,
    applies_to          INTEGER REFERENCES invoices(id),  -- a credit note netted into this invoice
    document_id         INTEGER REFERENCES documents(id), -- the AP entry (purchase_invoice or credit_note)
    tax_trusted         INTEGER NOT NULL DEFAULT 0,
    updated_at          TEXT NOT NULL,
    CHECK (kind = 'invoice' OR original_invoice_no IS NOT NULL)
);
CREATE INDEX invoices_by_status ON invoices(status);
CREATE INDEX invoices_by_supplier ON invoices(supplier_id);
CREATE INDEX invoices_by_original ON invoices(original_invoice_no);

CREATE TABLE invoice_lines (
    invoice_id   INTEGER NOT NULL REFERENCES invoices(id),
    line_no      INTEGER NOT NULL,
    item_name    TEXT NOT NULL,
    sku          TEXT,                          -- as given on entry
    unit         TEXT,
    qty          INTEGER NOT NULL,
    unit_price   TEXT,                          -- as printed (decimal text, excl. VAT)
    amount_fen   INTEGER NOT NULL,              -- excl. VAT
    tax_rate_bp  INTEGER NOT NULL CHECK (tax_rate_bp IN (0, 300, 600, 900, 1300)),
    tax_fen      INTEGER NOT NULL,
    matched_sku  TEXT,                          -- the item the match found
    PRIMARY KEY (invoice_id, line_no)
);

-- What an invoice line cleared of a receipt line when its AP entry was posted: the same receipt quantity is
-- never invoiced twice (the trigger below refuses clearing more than the receipt line holds).
CREATE TABLE invoice_clearances (
    invoice_id        INTEGER NOT NULL REFERENCES invoices(id),
    invoice_line_no   INTEGER NOT NULL,
    receipt_id        INTEGER NOT NULL REFERENCES documents(id),
    receipt_line_no   INTEGER NOT NULL,
    po_id             INTEGER NOT NULL REFERENCES documents(id),
    qty_base          INTEGER NOT NULL CHECK (qty_base > 0),
    net_fen           INTEGER NOT NULL,
    PRIMARY KEY (invoice_id, invoice_line_no, receipt_id, receipt_line_no)
);
CREATE INDEX invoice_clearances_by_receipt_line ON invoice_clearances(receipt_id, receipt_line_no);
CREATE INDEX invoice_clearances_by_po ON invoice_clearances(po_id);

CREATE TRIGGER invoice_clearances_within_receipt BEFORE INSERT ON invoice_clearances
WHEN NEW.qty_base + (SELECT COALESCE(SUM(qty_base), 0) FROM invoice_clearances
                     WHERE receipt_id = NEW.receipt_id AND receipt_line_no = NEW.receipt_line_no)
     > (SELECT qty_base FROM document_lines WHERE document_id = NEW.receipt_id AND line_no = NEW.receipt_line_no)
BEGIN SELECT RAISE(ABORT, 'receipt quantity invoiced twice'); END;
CREATE TRIGGER invoice_clearances_append_only_update BEFORE UPDATE ON invoice_clearances
BEGIN SELECT RAISE(ABORT, 'invoice clearances are append-only'); END;
CREATE TRIGGER invoice_clearances_append_only_delete BEFORE DELETE ON invoice_clearances
BEGIN SELECT RAISE(ABORT, 'invoice clearances are append-only'); END;
CREATE TRIGGER invoice_lines_append_only_update BEFORE UPDATE OF qty, amount_fen, tax_fen, tax_rate_bp ON invoice_lines
BEGIN SELECT RAISE(ABORT, 'invoice lines are append-only'); END;
CREATE TRIGGER invoice_lines_append_only_delete BEFORE DELETE ON invoice_lines
BEGIN SELECT RAISE(ABORT, 'invoice lines are append-only'); END;
CREATE TRIGGER invoices_never_deleted BEFORE DELETE ON invoices
BEGIN SELECT RAISE(ABORT, 'invoices are never deleted'); END;

-- The exception queue: one row per invoice that did not match, with the reasons of its latest match and who
-- did what about it. The invoice's status says where it stands.
CREATE TABLE invoice_exceptions (
    id              INTEGER PRIMARY KEY,
    invoice_id      INTEGER NOT NULL UNIQUE REFERENCES invoices(id),
    opened_at       TEXT NOT NULL,
    reasons         TEXT NOT NULL,             -- JSON list of {code, line_no, message, message_en, detail}
    checked_at      TEXT NOT NULL,             -- when the match last ran
    resolution      TEXT CHECK (resolution IN ('matched', 'accepted', 'credited', 'rejected', 'cancelled')),
    accepted_by     TEXT,
    accepted_at     TEXT,
    accept_note     TEXT,
    approved_by     TEXT,
    approved_at     TEXT,
    credit_requested_by TEXT,
    credit_requested_at TEXT,
    closed_by       TEXT,
    closed_at       TEXT,
    note            TEXT
);
CREATE INDEX invoice_exceptions_open ON invoice_exceptions(closed_at);
