-- HQ packages (issue 6): signed packages received, installed, rolled back.
-- (filled by the packages part)
CREATE TABLE sync_placeholder_0003 (x INTEGER);
DROP TABLE sync_placeholder_0003;
