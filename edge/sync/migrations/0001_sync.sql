-- Sync (issue 6): batches of the outbox sent to the aggregator, the cursor and compaction watermark.
-- (filled by the upload part)
CREATE TABLE sync_placeholder_0001 (x INTEGER);
DROP TABLE sync_placeholder_0001;
