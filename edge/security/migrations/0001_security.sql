-- Users of the HTTP API and devices on the MQTT bus, each with an argon2id password hash.
-- Roles and device kinds are validated by edge/security (data there), not by CHECK constraints,
-- so a new role or kind needs no migration.

CREATE TABLE users (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    active         INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at     TEXT NOT NULL
);

-- The MQTT username of a device is its id, which is also its topic segment: [a-z0-9-]+.
CREATE TABLE devices (
    id             TEXT PRIMARY KEY
                   CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^a-z0-9-]*'),
    kind           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at     TEXT NOT NULL,
    last_seen      TEXT
);
