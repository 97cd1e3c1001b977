-- The outcome of every device event handled by a writer job (scan-to-receive, weights, ASNs, photos, ...),
-- by the event's idempotency key `dev:<device>:<event id>`: a resent event gets this outcome again.
-- Ledger postings have their own table (commands); this one covers the jobs that are not one posting.
CREATE TABLE event_outcomes (
    key       TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    ok        INTEGER NOT NULL,
    outcome   TEXT NOT NULL,     -- JSON: code, message, message_en, document, detail
    ts        TEXT NOT NULL
);
