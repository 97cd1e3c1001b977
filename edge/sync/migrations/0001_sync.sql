-- Sync (issue 6): each batch of the outbox is recorded (its row range and digest) before it is sent, so a
-- resend after a crash is the very same batch; the aggregator's acknowledgement and what it has applied.
CREATE TABLE sync_batches (
    seq         INTEGER PRIMARY KEY,              -- 1, 2, 3 ... per store, as the aggregator knows them
    first_row   INTEGER NOT NULL,                 -- outbox seq range, inclusive
    last_row    INTEGER NOT NULL,
    row_count   INTEGER NOT NULL CHECK (row_count > 0),
    digest      TEXT NOT NULL,                    -- sha256 of the uncompressed body
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    acked_at    TEXT,                             -- the aggregator stored it (applied, duplicate or queued)
    status      TEXT,                             -- its answer: applied, duplicate, queued
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    CHECK (last_row >= first_row)
);
CREATE INDEX sync_batches_unacked ON sync_batches(seq) WHERE acked_at IS NULL;

-- Small facts of the sync: applied_through (the aggregator's), last contact, clock offset, snapshot hashes and the
-- compaction watermark (outbox rows up to it were acknowledged, applied and deleted after the retention period).
CREATE TABLE sync_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
