-- Device bus: each device's password as an external broker checks it (Mosquitto's PBKDF2-SHA512 "$7$" form).
-- The box's own check is the argon2 hash in `devices`; an external broker cannot read argon2, and the box
-- never keeps a password in clear, so this second hash is written whenever a password is set in clear
-- (device add, rotate) and the broker's password file is written from it (docs/mqtt5.md).
CREATE TABLE broker_credentials (
    device_id   TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    hash        TEXT NOT NULL,       -- $7$<iterations>$<base64 salt>$<base64 sha512 pbkdf2>
    updated_at  TEXT NOT NULL
);
