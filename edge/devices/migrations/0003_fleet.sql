-- Devices: device status, offline alerts, cold-room history and excursions.

-- The firmware profile a device follows (firmware_profiles/<id>.yaml) and the room (ledger location) it is in:
-- a cold-room sensor's readings without a location of their own belong to its room.
ALTER TABLE devices ADD COLUMN profile TEXT;
ALTER TABLE devices ADD COLUMN location TEXT;
ALTER TABLE devices ADD COLUMN credentials_rotated_at TEXT;

-- Each device's status as it last reported it on its retained `status` topic (or its last will said).
CREATE TABLE device_status (
    device      TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('online', 'offline')),
    since       TEXT NOT NULL,      -- when it entered this state (box clock, UTC)
    updated_at  TEXT NOT NULL,      -- the last status message
    detail      TEXT                -- JSON: what else a JSON status carried (firmware, ip, battery ...), capped
);

-- Every online/offline transition, for the device's history.
CREATE TABLE device_status_changes (
    id      INTEGER PRIMARY KEY,
    device  TEXT NOT NULL,
    ts      TEXT NOT NULL,
    state   TEXT NOT NULL CHECK (state IN ('online', 'offline'))
);
CREATE INDEX device_status_changes_by_device ON device_status_changes(device, id);

-- Alerts on storebox/<store>/alert/device-offline: a device offline or silent longer than allowed, and back.
-- A device's open alert is its newest row when that is not 'back'.
CREATE TABLE device_alerts (
    id            INTEGER PRIMARY KEY,
    device        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('offline', 'silent', 'back')),
    since         TEXT NOT NULL,    -- when the device was last fine (offline, silent) or went away (back)
    raised_at     TEXT NOT NULL,
    message       TEXT NOT NULL,
    message_en    TEXT NOT NULL,
    published_at  TEXT              -- NULL until it went out on MQTT
);
CREATE INDEX device_alerts_by_device ON device_alerts(device, id);
CREATE INDEX device_alerts_unpublished ON device_alerts(id) WHERE published_at IS NULL;

-- Cold chain (冷链). Readings keep the time in UTC for ordering and ranges (`ts` is as the device sent it).
ALTER TABLE sensor_readings ADD COLUMN ts_utc TEXT;
UPDATE sensor_readings SET ts_utc = strftime('%Y-%m-%dT%H:%M:%fZ', ts) WHERE ts_utc IS NULL;
CREATE INDEX sensor_readings_by_location_and_utc ON sensor_readings(location, ts_utc);

-- Downsampled history per room: per minute (period 60) and per 15 minutes (period 900), in milli-degrees.
CREATE TABLE temperature_rollups (
    location  TEXT NOT NULL,
    period    INTEGER NOT NULL CHECK (period IN (60, 900)),
    bucket    TEXT NOT NULL,        -- start of the bucket, UTC
    n         INTEGER NOT NULL,
    sum_mc    INTEGER NOT NULL,
    min_mc    INTEGER NOT NULL,
    max_mc    INTEGER NOT NULL,
    PRIMARY KEY (location, period, bucket)
) WITHOUT ROWID;

-- The readings the cold chain has taken into rollups and excursions (sensor_readings.id).
CREATE TABLE cold_chain_cursor (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    last_reading_id  INTEGER NOT NULL
);
INSERT INTO cold_chain_cursor (id, last_reading_id) VALUES (1, 0);

-- A sensor's readings out of its room's band (温度异常). Pending until out of band longer than the alarm delay
-- (alarmed_at set), ended by the first reading back in band. A pending one that comes back in time is removed.
CREATE TABLE cold_excursions (
    id                  INTEGER PRIMARY KEY,
    location            TEXT NOT NULL,
    device              TEXT NOT NULL,
    storage_class       TEXT NOT NULL,
    min_mc              INTEGER,        -- the band when it started
    max_mc              INTEGER,
    direction           TEXT NOT NULL CHECK (direction IN ('above', 'below')),
    started_at          TEXT NOT NULL,  -- the first reading out of band (UTC)
    alarmed_at          TEXT,
    ended_at            TEXT,           -- the first reading back in band
    peak_mc             INTEGER NOT NULL,
    last_mc             INTEGER NOT NULL,
    last_at             TEXT NOT NULL,
    readings            INTEGER NOT NULL,
    alarm_published_at  TEXT,
    end_published_at    TEXT
);
CREATE INDEX cold_excursions_by_location ON cold_excursions(location, started_at);
CREATE UNIQUE INDEX cold_excursions_one_open ON cold_excursions(location, device) WHERE ended_at IS NULL;

-- The stock in the room when the excursion started: for near-expiry and quality decisions on those lots.
CREATE TABLE cold_excursion_lots (
    excursion_id  INTEGER NOT NULL REFERENCES cold_excursions(id) ON DELETE CASCADE,
    sku           TEXT NOT NULL,
    lot           TEXT NOT NULL,    -- '' for stock without a lot
    expiry        TEXT,
    qty           INTEGER NOT NULL,
    PRIMARY KEY (excursion_id, sku, lot)
);
CREATE INDEX cold_excursion_lots_by_lot ON cold_excursion_lots(sku, lot);
