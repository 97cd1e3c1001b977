-- Device bus: events that could not be posted (dead letters) and cold-room sensor readings.

-- A device event that did not parse, validate or resolve. Kept for the operator; never retried by the box.
CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY,
    received_at   TEXT NOT NULL,
    device        TEXT NOT NULL,
    topic         TEXT NOT NULL,
    event_id      TEXT,                 -- the event's id when it could be read
    payload       BLOB NOT NULL,        -- the payload as received, cut to the dead-letter cap
    payload_size  INTEGER NOT NULL,     -- size of the payload as received, in bytes
    reason_code   TEXT NOT NULL,
    reason        TEXT NOT NULL,        -- Chinese
    reason_en     TEXT NOT NULL
);
CREATE INDEX dead_letters_by_time ON dead_letters(received_at);
CREATE INDEX dead_letters_by_device ON dead_letters(device, received_at);

-- Temperature readings (冷库温度) from cold-room sensors, in milli-degrees Celsius.
CREATE TABLE sensor_readings (
    id             INTEGER PRIMARY KEY,
    device         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    ts             TEXT NOT NULL,       -- as measured, RFC 3339 from the device
    received_at    TEXT NOT NULL,
    location       TEXT,
    milli_celsius  INTEGER NOT NULL,
    UNIQUE (device, event_id)
);
CREATE INDEX sensor_readings_by_location_and_time ON sensor_readings(location, ts);
