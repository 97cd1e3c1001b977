-- 0003_supplier_compliance: the supplier qualification cabinet (资质档案), payment freezes, review tickets, bank
-- account changes, expiry alerts and purchase order approvals. See edge/finance/compliance.py, docs/suppliers.md.

-- The supplier's registered address (注册地址, what the licence must show), whether it supplies food (then the food
-- business licence is required), and the bank account payments go to (changed only with a second person's approval).
ALTER TABLE suppliers ADD COLUMN registered_address TEXT;
ALTER TABLE suppliers ADD COLUMN food_supplier INTEGER NOT NULL DEFAULT 0 CHECK (food_supplier IN (0, 1));
ALTER TABLE suppliers ADD COLUMN bank_name TEXT;
ALTER TABLE suppliers ADD COLUMN bank_account TEXT;

-- One row per uploaded paper. The file is <data_dir>/papers/<sha256>.<file_type>. The OCR result and the fields
-- proposed from it are kept as read; `fields` holds what a person confirmed (possibly corrected). Only a confirmed
-- paper counts; confirming a newer paper of the same kind supersedes the older one.
CREATE TABLE supplier_papers (
    id             INTEGER PRIMARY KEY,
    supplier       TEXT NOT NULL REFERENCES suppliers(id),
    kind           TEXT NOT NULL
                   CHECK (kind IN ('business_licence', 'bank_account', 'general_taxpayer', 'food_licence')),
    sha256         TEXT NOT NULL CHECK (length(sha256) = 64),
    file_type      TEXT NOT NULL CHECK (file_type IN ('jpg', 'png', 'pdf')),
    size_bytes     INTEGER NOT NULL CHECK (size_bytes > 0),
    filename       TEXT,
    ocr            TEXT NOT NULL,        -- JSON {"lines": [{"text","box","score","page"}], "pages", "seconds"}
    proposed       TEXT NOT NULL,        -- JSON {"fields", "detected_kind", "notes"} read from the OCR lines
    state          TEXT NOT NULL DEFAULT 'uploaded'
                   CHECK (state IN ('uploaded', 'confirmed', 'rejected', 'superseded')),
    fields         TEXT,                 -- JSON of the confirmed fields
    valid_from     TEXT,                 -- ISO dates copied from the confirmed fields; valid_to NULL: no end date
    valid_to       TEXT,
    uploaded_by    TEXT NOT NULL,
    uploaded_at    TEXT NOT NULL,
    confirmed_by   TEXT,
    confirmed_at   TEXT,
    rejected_by    TEXT,
    rejected_at    TEXT,
    reject_reason  TEXT,
    superseded_by  INTEGER REFERENCES supplier_papers(id),
    CHECK ((state IN ('confirmed', 'superseded')) = (fields IS NOT NULL AND confirmed_by IS NOT NULL))
);
CREATE INDEX supplier_papers_by_supplier ON supplier_papers(supplier, kind, state);
CREATE UNIQUE INDEX supplier_papers_one_confirmed ON supplier_papers(supplier, kind) WHERE state = 'confirmed';
CREATE INDEX supplier_papers_by_expiry ON supplier_papers(valid_to) WHERE state = 'confirmed';

-- A review ticket (审核工单) asks a second person to look at something: a licence address that differs from the
-- registered one, a manual freeze. Resolving it lifts the freezes it opened.
CREATE TABLE review_tickets (
    id           INTEGER PRIMARY KEY,
    supplier     TEXT NOT NULL REFERENCES suppliers(id),
    kind         TEXT NOT NULL CHECK (kind IN ('address_mismatch', 'manual')),
    summary      TEXT NOT NULL,
    summary_en   TEXT NOT NULL,
    detail       TEXT NOT NULL,          -- JSON
    paper        INTEGER REFERENCES supplier_papers(id),
    opened_by    TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    resolved_by  TEXT,
    resolved_at  TEXT,
    resolution   TEXT,
    CHECK ((state = 'resolved') = (resolved_by IS NOT NULL))
);
CREATE INDEX review_tickets_by_state ON review_tickets(state, supplier);

-- A bank account change (银行账户变更) takes effect only when a second person approves it; until then payments
-- to the supplier are frozen.
CREATE TABLE bank_account_changes (
    id                INTEGER PRIMARY KEY,
    supplier          TEXT NOT NULL REFERENCES suppliers(id),
    old_bank_name     TEXT,
    old_bank_account  TEXT,
    new_bank_name     TEXT NOT NULL,
    new_bank_account  TEXT NOT NULL,
    reason            TEXT NOT NULL,
    paper             INTEGER REFERENCES supplier_papers(id),
    requested_by      TEXT NOT NULL,
    requested_at      TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_by        TEXT,
    decided_at        TEXT,
    decision_note     TEXT,
    CHECK ((state = 'pending') = (decided_by IS NULL))
);
CREATE UNIQUE INDEX bank_account_changes_one_pending ON bank_account_changes(supplier) WHERE state = 'pending';

-- A payment freeze (付款冻结): while open, payments and purchase orders to the supplier are refused.
CREATE TABLE supplier_freezes (
    id           INTEGER PRIMARY KEY,
    supplier     TEXT NOT NULL REFERENCES suppliers(id),
    reason       TEXT NOT NULL CHECK (reason IN ('address_mismatch', 'bank_account_change', 'manual')),
    note         TEXT NOT NULL,
    detail       TEXT NOT NULL,          -- JSON
    opened_by    TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    ticket       INTEGER REFERENCES review_tickets(id),
    bank_change  INTEGER REFERENCES bank_account_changes(id),
    lifted_by    TEXT,
    lifted_at    TEXT,
    lift_reason  TEXT,
    CHECK ((lifted_by IS NULL) = (lifted_at IS NULL)),
    CHECK (lifted_by IS NULL OR lift_reason IS NOT NULL)
);
CREATE INDEX supplier_freezes_open ON supplier_freezes(supplier) WHERE lifted_at IS NULL;

-- Expiry alerts (到期预警), each (paper, threshold) once: threshold_days is one of the warning days (30, 7) or 0
-- for "expired". published_at is set when the alert went out on MQTT.
CREATE TABLE compliance_alerts (
    id              INTEGER PRIMARY KEY,
    paper           INTEGER NOT NULL REFERENCES supplier_papers(id),
    supplier        TEXT NOT NULL REFERENCES suppliers(id),
    kind            TEXT NOT NULL,
    threshold_days  INTEGER NOT NULL CHECK (threshold_days >= 0),
    expires_on      TEXT NOT NULL,
    days_left       INTEGER NOT NULL,
    raised_on       TEXT NOT NULL,
    message         TEXT NOT NULL,
    message_en      TEXT NOT NULL,
    published_at    TEXT,
    UNIQUE (paper, threshold_days)
);
CREATE INDEX compliance_alerts_unpublished ON compliance_alerts(id) WHERE published_at IS NULL;

-- Purchase order approvals (采购订单审批), each re-checked against the supplier's freezes and papers.
CREATE TABLE purchase_order_approvals (
    document_id    INTEGER PRIMARY KEY REFERENCES documents(id),
    supplier       TEXT,
    gross_fen      INTEGER NOT NULL,
    approved_by    TEXT NOT NULL,
    approved_at    TEXT NOT NULL,
    business_date  TEXT NOT NULL
);

-- Idempotency of the cabinet's creating requests (uploads, bank account change requests, new suppliers, manual
-- freezes): a key answers the record it first created; the same key with other content is refused.
CREATE TABLE compliance_requests (
    key          TEXT PRIMARY KEY,
    action       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    record_id    TEXT NOT NULL,
    ts           TEXT NOT NULL
);
