-- Devices: scale weights and label formats.

-- The last reading of each scale (电子秤), as its `evt/weight` events said: one row per scale, replaced by a
-- newer reading (by the scale's own timestamp). A scan naming the scale takes its weight from here.
-- Label formats are a setting (scale_label_formats); PLUs are item barcodes (docs/barcodes.md).
CREATE TABLE scale_readings (
    scale        TEXT PRIMARY KEY,      -- the scale's device id
    grams        INTEGER NOT NULL,      -- negative when below zero after a tare
    stable       INTEGER NOT NULL,      -- 1: the scale reported a stable weight
    status       TEXT,                  -- as the scale said: NULL or ok, or overload, underload, ...
    ts           TEXT NOT NULL,         -- when weighed, RFC 3339 from the scale (or its serial adapter)
    received_at  TEXT NOT NULL,         -- when the box recorded it
    event_id     TEXT NOT NULL
);
