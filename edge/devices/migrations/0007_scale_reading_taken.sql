-- A stable scale reading is taken once: a scan or a receipt draft that took its weight marks it, and a second
-- take needs a new reading (the goods off and back on, or another stable weight). docs/barcodes.md.
ALTER TABLE scale_readings ADD COLUMN taken_by TEXT;  -- what took it (an event key, a draft); NULL: not taken
ALTER TABLE scale_readings ADD COLUMN taken_at TEXT;  -- when, the box's clock
