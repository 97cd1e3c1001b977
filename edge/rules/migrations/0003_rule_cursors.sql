-- 0003_rule_cursors: how far the rules have read the ledger. The rules runtime reads posted documents with an id
-- above `last_id`, evaluates them and records the firings and the new `last_id` in one transaction: a posting is
-- evaluated once, never skipped, also when the box was busy, stopped or killed in between.
CREATE TABLE rule_cursors (
    name        TEXT PRIMARY KEY,        -- 'ledger'
    last_id     INTEGER NOT NULL,        -- documents.id read up to (included)
    at          TEXT NOT NULL
);
