-- Cross-store transfers (issue 6): transfers seen at the aggregator, incoming and outgoing.
-- (filled by the transfers part)
CREATE TABLE sync_placeholder_0002 (x INTEGER);
DROP TABLE sync_placeholder_0002;
